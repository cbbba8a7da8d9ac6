using System.Diagnostics;
using System.Net;
using HdrHistogram;
using Omega.Agent;
using Omega.Protocol;

namespace Omega.Cli.Fleet;

/// <summary>What a simulated fleet looks like.</summary>
/// <param name="Server">The Omega server.</param>
/// <param name="Count">Agents (one node and one TCP connection each).</param>
/// <param name="Capacity">Each node's capacity.</param>
/// <param name="Racks">Failure domains the nodes are spread over.</param>
/// <param name="MeanTaskSeconds">Mean task run time (exponential) when the driver gives none for a job.</param>
/// <param name="Seed">Seeds the run times and each agent's jitter.</param>
/// <param name="NamePrefix">Node names are <c>{prefix}-{index:D6}</c>.</param>
/// <param name="ReadySeconds">How long after its start (the running report) an agent reports a task ready (its simulated
/// readiness check); positive.</param>
/// <param name="Transport">The agents' transport options, TLS included (null: plaintext defaults).</param>
/// <param name="JoinToken">A join token (docs/protocol.md, section 12): every agent joins with it once and then uses its own
/// node-scoped credential; one credential shared by the fleet is never used. Null for a server without authentication.</param>
/// <param name="Region">The nodes' region (Register key 5; empty: none).</param>
/// <param name="Zones">Zones the nodes are spread over within the region (<c>{region}-a</c>, <c>-b</c>, ...); 0: none.</param>
/// <param name="BatchPriority">When set, control-plane replica tasks run until stopped (services), except those of this
/// priority, which run for the exponential time (batch work); other jobs are unaffected.</param>
/// <param name="Replicas">High availability: every replica's address (the agents follow the leader); null: <paramref name="Server"/> alone.</param>
/// <param name="StartSeconds">How long after a Run binding arrives the task has started and is reported running (a container
/// or process start; issue 13: simulated agents take a non-zero time to start). 0 (the default): running at once, in the
/// binding callback; not negative.</param>
internal sealed record FleetOptions(EndPoint Server, int Count, ResourceVector Capacity, int Racks, double MeanTaskSeconds, int Seed, string NamePrefix = "agent",
    Omega.Transport.TransportOptions? Transport = null, double ReadySeconds = 0.2, string? JoinToken = null, string Region = "", int Zones = 0, int? BatchPriority = null,
    IReadOnlyList<EndPoint>? Replicas = null, double StartSeconds = 0);

/// <summary>
/// Thousands of node agents in one process, each a real <see cref="AgentClient"/> on its own loopback TCP connection:
/// register, heartbeat, receive bindings, report running after <see cref="FleetOptions.StartSeconds"/> (its start), report
/// ready <see cref="FleetOptions.ReadySeconds"/> after that (a task that completes sooner is never reported ready), and
/// report completion after the task's run time (counted from its start). A task's run
/// time comes from <see cref="DurationOf"/> when the driver knows it (the in-process main job) or is drawn from an
/// exponential with <see cref="FleetOptions.MeanTaskSeconds"/>.
/// </summary>
/// <remarks>
/// Binding callbacks run on each connection's processing loop and must not block, so they only report Running (when the
/// start takes no time) and put the later reports into a shared timer heap; one completer thread sends them when due.
/// </remarks>
internal sealed class AgentFleet : IAsyncDisposable
{
    private readonly FleetOptions _options;
    private readonly List<AgentClient> _agents = new();
    private readonly PriorityQueue<(AgentClient Agent, TaskId Task, long Generation, TaskState State), long> _due = new();
    private readonly Lock _dueLock = new();
    private readonly Random _rng;
    private readonly CancellationTokenSource _stop = new();
    private Thread? _completer;
    private long _received, _stops, _completed, _ready, _started;

    public AgentFleet(FleetOptions options)
    {
        if (!(options.ReadySeconds > 0)) throw new ArgumentOutOfRangeException(nameof(options), "ReadySeconds must be positive");
        if (!(options.StartSeconds >= 0) || !double.IsFinite(options.StartSeconds)) throw new ArgumentOutOfRangeException(nameof(options), "StartSeconds must be zero or positive");
        _options = options;
        _rng = new Random(options.Seed);
    }

    /// <summary>Optional: the run time of a job's tasks in seconds, if the driver knows it.</summary>
    public Func<JobId, double?>? DurationOf { get; init; }

    /// <summary>Optional: called with each Run binding's version when it arrives (the bind-latency probe).</summary>
    public Action<long>? OnRunBinding { get; init; }

    /// <summary>
    /// Optional (the drill's recovery breakdown, issue 13): tasks bound with this priority are traced — each Run binding
    /// when it arrives, and each running and ready report when it is sent — through <see cref="Trace"/>.
    /// </summary>
    public int? TracePriority { get; init; }

    /// <summary>Called with ("bound", "running" or "ready", the task, <see cref="Stopwatch.GetTimestamp"/> then) for traced tasks; must not block.</summary>
    public Action<string, TaskId, long>? Trace { get; init; }

    /// <summary>Whether the agents fence themselves when their lease is not renewed in time (<see cref="AgentOptions.FenceOnLeaseLoss"/>, default true).</summary>
    public bool FenceOnLeaseLoss { get; init; } = true;

    // Traced tasks (few: the critical ones), to trace their ready reports too. Guarded by _dueLock.
    private readonly HashSet<TaskId> _traced = new();

    /// <summary>The agents (for the drill's checks after a partition heals).</summary>
    public IReadOnlyList<AgentClient> Agents => _agents;

    /// <summary>Run bindings received.</summary>
    public long Received => Interlocked.Read(ref _received);

    /// <summary>Stop bindings received (preemptions, node fencing).</summary>
    public long Stops => Interlocked.Read(ref _stops);

    /// <summary>Running reports sent (tasks started).</summary>
    public long Started => Interlocked.Read(ref _started);

    /// <summary>Ready reports sent.</summary>
    public long ReadyReported => Interlocked.Read(ref _ready);

    /// <summary>Completions reported.</summary>
    public long Completed => Interlocked.Read(ref _completed);

    /// <summary>Closes every agent's connection at once and stops them reconnecting (a region's agents all going away).</summary>
    public async Task DisconnectAllAsync()
    {
        _stop.Cancel();
        var closing = new List<Task>(_agents.Count);
        foreach (var a in _agents) closing.Add(a.DisposeAsync().AsTask());
        await Task.WhenAll(closing).ConfigureAwait(false);
        _agents.Clear();
    }

    /// <summary>Agents registered now.</summary>
    public int Connected
    {
        get
        {
            int n = 0;
            foreach (var a in _agents) if (a.IsConnected) n++;
            return n;
        }
    }

    /// <summary>Starts every agent and waits until all have registered (or <paramref name="cancel"/> fires).</summary>
    public async Task StartAsync(CancellationToken cancel)
    {
        var o = _options;
        for (int i = 0; i < o.Count; i++)
        {
            var agent = new AgentClient(new AgentOptions
            {
                Server = o.Server,
                Servers = o.Replicas,
                NodeName = $"{o.NamePrefix}-{i:D6}",
                Capacity = o.Capacity,
                FailureDomain = o.Region.Length == 0 ? $"rack-{i % Math.Max(1, o.Racks)}" : $"{o.Region}-rack-{i % Math.Max(1, o.Racks)}",
                Region = o.Region,
                Zone = o.Region.Length == 0 || o.Zones <= 0 ? "" : $"{o.Region}-{(char)('a' + i % Math.Min(26, o.Zones))}",
                Seed = o.Seed + i,
                OnBinding = OnBinding,
                Transport = o.Transport ?? new Omega.Transport.TransportOptions(),
                JoinToken = o.JoinToken,
                FenceOnLeaseLoss = FenceOnLeaseLoss,
            });
            _agents.Add(agent);
        }
        _completer = new Thread(CompleteLoop) { IsBackground = true, Name = "omega-fleet-completer" };
        _completer.Start();
        // Register in waves so the server's accept queue is not flooded by thousands of simultaneous handshakes.
        const int wave = 256;
        for (int i = 0; i < _agents.Count; i += wave)
        {
            var starts = new List<Task>(wave);
            for (int j = i; j < Math.Min(_agents.Count, i + wave); j++) starts.Add(_agents[j].StartAsync(cancel));
            await Task.WhenAll(starts).ConfigureAwait(false);
        }
    }

    private void OnBinding(AgentClient agent, AgentBinding b)
    {
        if (b.Kind == BindingKind.Stop)
        {
            Interlocked.Increment(ref _stops);
            return;
        }
        Interlocked.Increment(ref _received);
        OnRunBinding?.Invoke(b.Version);
        bool traced = TracePriority is { } tp && b.Priority == tp && Trace is not null;
        long arrived = Stopwatch.GetTimestamp();
        if (traced) Trace!("bound", b.Task, arrived);
        // A start that takes no time is reported here, as before; otherwise the completer reports it when due. (A task
        // stopped before it started may still be reported running: the server ignores a report of a released generation.)
        bool startsNow = _options.StartSeconds <= 0;
        if (startsNow)
        {
            agent.Report(b.Task, b.Generation, TaskState.Running);
            Interlocked.Increment(ref _started);
            if (traced) Trace!("running", b.Task, Stopwatch.GetTimestamp());
        }
        double seconds;
        lock (_dueLock)
        {
            long started = arrived + (long)(_options.StartSeconds * Stopwatch.Frequency);
            seconds = DurationOf?.Invoke(b.Task.Job)
                ?? (_options.BatchPriority is { } bp && (b.Task.Job.Value & Omega.ControlPlane.Controllers.WorkloadController.JobIdSpace) != 0 && b.Priority != bp
                    ? double.PositiveInfinity
                    : -_options.MeanTaskSeconds * Math.Log(1 - _rng.NextDouble()));
            if (traced) _traced.Add(b.Task);
            if (!startsNow) _due.Enqueue((agent, b.Task, b.Generation, TaskState.Running), started);
            // Ready only if it runs longer than its readiness delay (a task done sooner never served). The run time counts
            // from the start, so running < ready < completed in due order.
            if (seconds > _options.ReadySeconds)
                _due.Enqueue((agent, b.Task, b.Generation, TaskState.Ready), started + (long)(_options.ReadySeconds * Stopwatch.Frequency));
            if (double.IsFinite(seconds))
                _due.Enqueue((agent, b.Task, b.Generation, TaskState.Completed), started + Math.Max(1, (long)(seconds * Stopwatch.Frequency)));
        }
    }

    private void CompleteLoop()
    {
        var touched = new HashSet<AgentClient>();
        while (!_stop.IsCancellationRequested)
        {
            long now = Stopwatch.GetTimestamp();
            touched.Clear();
            while (true)
            {
                (AgentClient Agent, TaskId Task, long Generation, TaskState State) item;
                lock (_dueLock)
                {
                    if (!_due.TryPeek(out item, out long due) || due > now) break;
                    _due.Dequeue();
                }
                if (item.Agent.Report(item.Task, item.Generation, item.State))
                {
                    if (item.State is TaskState.Ready or TaskState.Running && Trace is { } trace)
                    {
                        bool t;
                        lock (_dueLock) t = _traced.Contains(item.Task);
                        if (t) trace(item.State == TaskState.Ready ? "ready" : "running", item.Task, Stopwatch.GetTimestamp());
                    }
                    Interlocked.Increment(ref item.State == TaskState.Ready ? ref _ready : ref item.State == TaskState.Running ? ref _started : ref _completed);
                    touched.Add(item.Agent);
                }
            }
            foreach (var a in touched) a.Flush();
            _stop.Token.WaitHandle.WaitOne(5);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _completer?.Join();
        foreach (var a in _agents) await a.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
    }
}

/// <summary>
/// Bind latency without per-binding allocation: the cell's binding listener stamps each committed version's time in a
/// ring indexed by version; the agent side looks the stamp up when the binding arrives. A version overwritten in the
/// ring (more than <see cref="RingSize"/> versions ago) is not measured.
/// </summary>
internal sealed class BindLatencyProbe : Omega.Cells.IBindingListener
{
    private const int RingSize = 1 << 20;
    private readonly long[] _version = new long[RingSize];
    private readonly long[] _stamp = new long[RingSize];

    /// <summary>Commit-to-agent latency in microseconds.</summary>
    public LongConcurrentHistogram Latency { get; } = new(1, 60_000_000, 3);

    public void OnBindingChanged(Omega.Cells.BindingChange change, in Allocation allocation, long version) { }

    public void OnVersionComplete(long version)
    {
        int i = (int)(version & (RingSize - 1));
        // Invalidate, stamp, publish: a reader that sees the same version before and after reading the stamp read a
        // stamp of that version.
        Volatile.Write(ref _version[i], 0);
        Volatile.Write(ref _stamp[i], Stopwatch.GetTimestamp());
        Volatile.Write(ref _version[i], version);
    }

    public void Arrived(long version)
    {
        int i = (int)(version & (RingSize - 1));
        if (Volatile.Read(ref _version[i]) != version) return;
        long stamp = Volatile.Read(ref _stamp[i]);
        if (Volatile.Read(ref _version[i]) != version) return;
        long us = (Stopwatch.GetTimestamp() - stamp) * 1_000_000 / Stopwatch.Frequency;
        Latency.RecordValue(Math.Clamp(us, 1, Latency.HighestTrackableValue));
    }
}
