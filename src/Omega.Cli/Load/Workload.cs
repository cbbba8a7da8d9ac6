namespace Omega.Cli.Load;

/// <summary>One job the load generator submits: when (seconds from the start), to which scheduler kind, and its shape.</summary>
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
    private int _tenant;

    public SyntheticWorkload(IReadOnlyList<JobKind> kinds, int seed)
    {
        _kinds = kinds.ToArray();
        _rng = new Random(seed);
        _next = new double[_kinds.Length];
        for (int i = 0; i < _kinds.Length; i++) _next[i] = Exp(_kinds[i].MeanInterarrival);
    }

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
        arrival = new JobArrival(at, kind.Scheduler, tasks, kind.PerTask, Exp(kind.MeanDuration), kind.Priority, _tenant++ % 8, kind.Gang);
        return true;
    }

    // Inverse-CDF sampling; 1 - NextDouble() is in (0, 1], so the log is finite.
    private double Exp(double mean) => -mean * Math.Log(1 - _rng.NextDouble());
}
