using System.Globalization;
using System.Threading.Channels;
using Omega.Scheduling;

namespace Omega.ControlPlane;

/// <summary>A kept decision record of a workload's replica (written by the <see cref="DecisionArchive"/>; read-only).</summary>
public sealed class DecisionSpec
{
    /// <summary>The workload's name.</summary>
    public string Workload { get; set; } = "";

    /// <summary>The workload generation whose reconcile submitted the job.</summary>
    public long WorkloadGeneration { get; set; }

    /// <summary>The replica slot.</summary>
    public int Slot { get; set; }

    /// <summary>The engine job (<c>j…</c>).</summary>
    public string Job { get; set; } = "";

    /// <summary>The attempt.</summary>
    public int Attempt { get; set; }

    /// <summary>Milliseconds the job waited in the queue before this attempt.</summary>
    public double QueueMillis { get; set; }

    /// <summary>The policy revision the decision used.</summary>
    public int PolicyRevision { get; set; }

    /// <summary>The snapshot (cell) version the decision read.</summary>
    public long SnapshotVersion { get; set; }

    /// <summary>The tenant's usage at decision time.</summary>
    public string TenantUsage { get; set; } = "";

    /// <summary>The tenant's quota at decision time (empty: none).</summary>
    public string TenantQuota { get; set; } = "";

    /// <summary>Distinct nodes considered.</summary>
    public int NodesConsidered { get; set; }

    /// <summary>Feasible nodes found.</summary>
    public int Feasible { get; set; }

    /// <summary>Rejections by filter reason.</summary>
    public Dictionary<string, int> Filtered { get; set; } = new(StringComparer.Ordinal);

    /// <summary>The commit (bind) result, or empty when no claim was made.</summary>
    public string CommitStatus { get; set; } = "";

    /// <summary>The outcome in words.</summary>
    public string Outcome { get; set; } = "";

    /// <summary>Who acts next.</summary>
    public string NextOwner { get; set; } = "";

    /// <summary>When the decision was made.</summary>
    public DateTimeOffset At { get; set; }

    /// <summary>The full explanation (what <c>omega explain</c> prints for the record).</summary>
    public string Text { get; set; } = "";

    /// <summary>Each claimed task's choice (node and exact score), for replay.</summary>
    public List<DecisionChoiceRecord> Choices { get; set; } = new();

    /// <summary>What the decision read, so <c>omega replay decision</c> can re-run it (null in records of older releases).</summary>
    public DecisionInputsRecord? Inputs { get; set; }
}

/// <summary>A decision's status (unused: records are immutable).</summary>
public sealed class DecisionStatus
{
}

/// <summary>A durable decision record of a workload replica (docs/control-plane.md, "Decision reconstruction").</summary>
public sealed class Decision : ApiObject<DecisionSpec, DecisionStatus>
{
    /// <summary>The kind name.</summary>
    public const string KindName = "Decision";

    /// <inheritdoc />
    protected override string KindOf() => KindName;

    /// <inheritdoc />
    public override string? ValidateSpec() => string.IsNullOrEmpty(Spec?.Workload) ? "spec.workload is required" : null;
}

/// <summary>Settings of the <see cref="DecisionArchive"/> (its sampling rule and bounds).</summary>
public sealed class DecisionArchiveOptions
{
    /// <summary>Records kept in the store over all workloads; the oldest are deleted first. Default 10,000.</summary>
    public int MaxRecords { get; set; } = 10_000;

    /// <summary>Records per (workload, generation) kept unconditionally: the first N decisions of any outcome. Default 16.</summary>
    public int KeepFirstPerGeneration { get; set; } = 16;

    /// <summary>After the first N, keep every decision that did not place cleanly, and 1 in this many clean ones. Default 64.</summary>
    public int SampleCleanEvery { get; set; } = 64;

    /// <summary>Records waiting to be written; more are dropped (counted). Default 4,096.</summary>
    public int QueueCapacity { get; set; } = 4_096;
}

/// <summary>
/// Keeps decision records of workload replicas durably as <see cref="Decision"/> objects in the <see cref="ObjectStore"/>
/// (the cell's journal), so they survive a restart and <c>omega explain workload/NAME --generation G</c> can reconstruct a
/// decision. An <see cref="IDecisionSink"/>: workers hand records over a bounded queue and never wait for storage; a
/// background pump writes them. The sampling rule (documented in docs/control-plane.md): per (workload, generation) the
/// first <see cref="DecisionArchiveOptions.KeepFirstPerGeneration"/> records are kept, then every record that did not
/// place cleanly (conflict, requeue, park) and 1 in <see cref="DecisionArchiveOptions.SampleCleanEvery"/> clean ones;
/// jobs not backing a workload are not archived (their records stay in the engine's in-memory ring).
/// </summary>
public sealed class DecisionArchive : IDecisionSink, IAsyncDisposable
{
    private readonly ObjectStore _store;
    private readonly DecisionArchiveOptions _options;
    private readonly Channel<DecisionRecord> _queue;
    private readonly Lock _lock = new();
    private readonly Dictionary<(string, string, long), int> _perGeneration = new();
    private readonly Queue<ObjectKey> _kept = new();
    private readonly CancellationTokenSource _stop = new();
    private Task? _pump;
    private long _dropped, _written, _failed, _cleanSeen;

    /// <summary>Opens the archive over <paramref name="store"/>, finding the records a previous run kept.</summary>
    public DecisionArchive(ObjectStore store, DecisionArchiveOptions? options = null)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _options = options ?? new DecisionArchiveOptions();
        _queue = Channel.CreateBounded<DecisionRecord>(new BoundedChannelOptions(Math.Max(1, _options.QueueCapacity))
        {
            FullMode = BoundedChannelFullMode.DropWrite,
            SingleReader = true,
        });
        // Oldest first by resourceVersion, so the bound deletes in write order after a restart too.
        var existing = new List<ApiObject>();
        string? after = null;
        while (true)
        {
            var page = _store.List(new ObjectFilter(Decision.KindName), 1000, after);
            existing.AddRange(page.Items);
            if (page.Continue is null) break;
            after = page.Continue;
        }
        existing.Sort(static (a, b) => a.Metadata.ResourceVersion.CompareTo(b.Metadata.ResourceVersion));
        foreach (var o in existing) _kept.Enqueue(o.Key);
    }

    /// <summary>The object store the records are kept in.</summary>
    public ObjectStore Store => _store;

    /// <summary>Records dropped because the queue was full.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Records written.</summary>
    public long Written => Interlocked.Read(ref _written);

    /// <summary>Records kept in the store now (including those a previous run kept).</summary>
    public int Kept
    {
        get
        {
            lock (_lock) return _kept.Count;
        }
    }

    /// <summary>Records whose write the store refused (full, closed).</summary>
    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>Starts the background writer.</summary>
    public void Start() => _pump ??= Task.Run(() => PumpAsync(_stop.Token));

    /// <inheritdoc />
    public void OnRecorded(DecisionRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (record.Origin is not { } o) return;
        bool clean = record.Outcome == "placed" && record.CommitStatus == TransactionStatus.Committed;
        lock (_lock)
        {
            var key = (o.Tenant, o.Workload, o.Generation);
            _perGeneration.TryGetValue(key, out int n);
            // A bound on the per-generation counters: forget them all when there are many (sampling restarts; harmless).
            if (n == 0 && _perGeneration.Count >= 65_536) _perGeneration.Clear();
            _perGeneration[key] = n + 1;
            if (n >= _options.KeepFirstPerGeneration && clean && ++_cleanSeen % Math.Max(1, _options.SampleCleanEvery) != 0) return;
        }
        if (!_queue.Writer.TryWrite(record)) Interlocked.Increment(ref _dropped);
    }

    /// <summary>Writes every queued record now (tests; the pump does the same in the background). Returns how many.</summary>
    public async Task<int> FlushAsync(CancellationToken cancellationToken = default)
    {
        int n = 0;
        while (_queue.Reader.TryRead(out var r))
        {
            await WriteAsync(r, cancellationToken).ConfigureAwait(false);
            n++;
        }
        return n;
    }

    /// <summary>
    /// The kept records of workload <paramref name="tenant"/>/<paramref name="workload"/>, oldest first; of generation
    /// <paramref name="generation"/> only, or (null) of every generation.
    /// </summary>
    public IReadOnlyList<Decision> For(string tenant, string workload, long? generation = null)
    {
        var result = new List<Decision>();
        string? after = null;
        while (true)
        {
            var page = _store.List(new ObjectFilter(Decision.KindName, tenant), 1000, after);
            foreach (var o in page.Items)
                if (o is Decision d && d.Spec.Workload == workload && (generation is null || d.Spec.WorkloadGeneration == generation)) result.Add(d);
            if (page.Continue is null) break;
            after = page.Continue;
        }
        result.Sort(static (a, b) => a.Metadata.ResourceVersion.CompareTo(b.Metadata.ResourceVersion));
        return result;
    }

    private async Task PumpAsync(CancellationToken ct)
    {
        try
        {
            while (await _queue.Reader.WaitToReadAsync(ct).ConfigureAwait(false))
                while (_queue.Reader.TryRead(out var r)) await WriteAsync(r, ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    private async Task WriteAsync(DecisionRecord r, CancellationToken ct)
    {
        var o = r.Origin!;
        var d = new Decision();
        d.Metadata.Tenant = o.Tenant;
        // Unique per attempt of a replica's job on a snapshot; the job id carries the serial.
        d.Metadata.Name = string.Create(CultureInfo.InvariantCulture, $"{o.Workload}.g{o.Generation}.s{o.Slot}.j{r.Job.Value & 0xFFFFF}.a{r.Attempt}.v{r.SnapshotVersion}");
        var filtered = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (reason, count) in r.FilteredByReason) filtered[reason.ToString()] = count;
        d.Spec = new DecisionSpec
        {
            Workload = o.Workload, WorkloadGeneration = o.Generation, Slot = o.Slot, Job = r.Job.ToString(), Attempt = r.Attempt,
            QueueMillis = r.QueueTime.TotalMilliseconds, PolicyRevision = r.PolicyRevision, SnapshotVersion = r.SnapshotVersion,
            TenantUsage = r.TenantUsage.ToString(), TenantQuota = r.TenantQuota?.ToString() ?? "",
            NodesConsidered = r.NodesConsidered, Feasible = r.Feasible, Filtered = filtered,
            CommitStatus = r.CommitStatus?.ToString() ?? "", Outcome = r.Outcome, NextOwner = r.NextOwner, At = r.At, Text = r.Explain(),
            Inputs = r.Inputs is { } inputs ? DecisionInputsRecord.From(inputs, r.TenantUsage, r.TenantQuota) : null,
        };
        foreach (var t in r.Tasks)
            d.Spec.Choices.Add(new DecisionChoiceRecord { Task = t.TaskIndex, Node = t.Node?.Value ?? -1, NodeName = t.NodeName ?? "", Score = t.Score });
        var res = await _store.CreateAsync(d, ct).ConfigureAwait(false);
        if (res.Status == ObjectStatus.TooLarge && d.Spec.Inputs is not null)
        {
            // A decision that read very many nodes (a huge unplaceable job's probe budget, long label sets): keep the record
            // without its replay inputs rather than lose it; `omega replay decision` then reports it as not replayable.
            d.Spec.Inputs = null;
            res = await _store.CreateAsync(d, ct).ConfigureAwait(false);
        }
        if (!res.IsOk)
        {
            if (res.Status != ObjectStatus.AlreadyExists) Interlocked.Increment(ref _failed);
            return;
        }
        Interlocked.Increment(ref _written);
        ObjectKey? evict = null;
        lock (_lock)
        {
            _kept.Enqueue(res.Object!.Key);
            if (_kept.Count > _options.MaxRecords) evict = _kept.Dequeue();
        }
        if (evict is { } k) await _store.DeleteAsync(k, 0, ct).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        if (_pump is not null)
        {
            try
            {
                await _pump.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                await _stop.CancelAsync().ConfigureAwait(false);
            }
        }
        _stop.Dispose();
    }
}
