namespace Omega.Cli.Load;

/// <summary>
/// One job the load generator submits: when (seconds from the start), to which scheduler kind, and its shape. Tenant is
/// always 0, the <c>default</c> tenant every cell has: tenants must be created before use, and a load generator must run
/// against any server without setting tenants up first.
/// </summary>
internal readonly record struct JobArrival(double At, string Scheduler, int Tasks, ResourceVector PerTask, double Duration, int Priority, int Tenant, bool Gang);

/// <summary>
/// A job kind of the Omega paper's workload model (§4): exponential interarrival times, an exponential task count rounded
/// up, an exponential duration per job and fixed resources per task.
/// </summary>
internal sealed record JobKind(string Scheduler, double MeanInterarrival, double MeanTasks, double MeanDuration, ResourceVector PerTask, int Priority, bool Gang = false);

/// <summary>A source of arrivals in time order. Synthetic sources are endless; a trace ends.</summary>
internal interface IWorkload
{
    /// <summary>A one-line description for the run header and the report.</summary>
    string Describe { get; }

    /// <summary>The next arrival, or false when the workload is exhausted.</summary>
    bool TryNext(out JobArrival arrival);

    /// <summary>Arrivals not yet taken, or null for an endless source.</summary>
    int? Remaining { get; }

    /// <summary>Seconds from the first to the last arrival (after any speed-up), or null for an endless source.</summary>
    double? Span { get; }
}

/// <summary>
/// The batch/service mix of the Omega paper as an endless arrival stream: each kind is an independent Poisson process,
/// merged in time order. Seeded, so a run's arrivals can be repeated.
/// </summary>
internal sealed class SyntheticWorkload : IWorkload
{
    private readonly JobKind[] _kinds;
    private readonly double[] _next;
    private readonly Random _rng;

    public SyntheticWorkload(IReadOnlyList<JobKind> kinds, int seed)
    {
        _kinds = kinds.ToArray();
        _rng = new Random(seed);
        _next = new double[_kinds.Length];
        for (int i = 0; i < _kinds.Length; i++) _next[i] = Exp(_kinds[i].MeanInterarrival);
    }

    public int? Remaining => null;

    public double? Span => null;

    public string Describe => string.Join("; ", _kinds.Select(k =>
        FormattableString.Invariant($"{k.Scheduler}: a job every {k.MeanInterarrival * 1000:0.##} ms, {k.MeanTasks:0.#} tasks, {k.MeanDuration:0.#} s, {k.PerTask} per task{(k.Gang ? ", gang" : "")}")));

    public bool TryNext(out JobArrival arrival)
    {
        int k = 0;
        for (int i = 1; i < _next.Length; i++) if (_next[i] < _next[k]) k = i;
        var kind = _kinds[k];
        double at = _next[k];
        _next[k] = at + Exp(kind.MeanInterarrival);
        int tasks = Math.Max(1, (int)Math.Ceiling(Exp(kind.MeanTasks)));
        arrival = new JobArrival(at, kind.Scheduler, tasks, kind.PerTask, Exp(kind.MeanDuration), kind.Priority, Tenant: 0, kind.Gang);
        return true;
    }

    // Inverse-CDF sampling; 1 - NextDouble() is in (0, 1], so the log is finite.
    private double Exp(double mean) => -mean * Math.Log(1 - _rng.NextDouble());
}

/// <summary>
/// Replays a job trace (the format of ../shared/traces, read by <see cref="Omega.Simulation.TraceReader"/>) in real time,
/// compressed by <c>speedup</c>: submit times and durations are divided by it. Production priorities (9-11) go to the
/// service scheduler, the rest to batch. Normalized requests scale the node shape (1.0 = a whole node); a zero request
/// (the trace has some) becomes the smallest schedulable one, one millicore and one MiB, because a job must request
/// something. A job with no recorded duration runs to the end of the run.
/// </summary>
internal sealed class TraceWorkload : IWorkload
{
    private readonly IReadOnlyList<Omega.Simulation.TraceJob> _jobs;
    private readonly double _speedup;
    private readonly ResourceVector _node;
    private readonly string _describe;
    private int _next;

    public TraceWorkload(string path, IReadOnlyList<Omega.Simulation.TraceJob> jobs, double speedup, ResourceVector node)
    {
        _jobs = jobs;
        _speedup = speedup;
        _node = node;
        double span = jobs.Count == 0 ? 0 : jobs[^1].SubmitTime - jobs[0].SubmitTime;
        _describe = FormattableString.Invariant($"trace {Path.GetFileName(path)}: {jobs.Count:N0} jobs over {span / 3600:0.0} h, replayed {speedup:0.##}x faster");
    }

    public string Describe => _describe;

    public int? Remaining => _jobs.Count - _next;

    public double? Span => _jobs.Count == 0 ? 0 : (_jobs[^1].SubmitTime - _jobs[0].SubmitTime) / _speedup;

    public bool TryNext(out JobArrival arrival)
    {
        while (_next < _jobs.Count)
        {
            var t = _jobs[_next++];
            if (t.Tasks < 1) continue;
            long cpu = Math.Max(1, (long)Math.Round(t.CpuPerTask * _node.CpuMillis));
            long mem = Math.Max(1L << 20, (long)Math.Round(t.MemPerTask * _node.MemoryBytes));
            double start = _jobs[0].SubmitTime;
            arrival = new JobArrival((t.SubmitTime - start) / _speedup, t.Priority >= 9 ? "service" : "batch", t.Tasks,
                new ResourceVector(cpu, mem), t.Duration is { } d ? Math.Max(d, 0.001) / _speedup : double.PositiveInfinity, t.Priority, Tenant: 0, Gang: false);
            return true;
        }
        arrival = default;
        return false;
    }
}
