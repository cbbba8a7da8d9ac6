namespace Omega.Scheduling;

/// <summary>Why a job was not accepted into a queue.</summary>
public enum EnqueueStatus : byte
{
    /// <summary>Queued.</summary>
    Accepted = 0,

    /// <summary>The queue is at its bound; retry later or shed load.</summary>
    QueueFull = 1,

    /// <summary>The job spec is invalid (see the reason).</summary>
    InvalidJob = 2,

    /// <summary>A job with this id is already known to the engine.</summary>
    DuplicateJob = 3,

    /// <summary>No scheduler kind of that name is configured.</summary>
    UnknownScheduler = 4,

    // 24-29 mirror the wire's budget error codes (docs/protocol.md, "Budgets"); the server answers them with an Error frame.

    /// <summary>The job asks for more tasks than <see cref="SchedulingOptions.MaxTasksPerJob"/>. Permanent for this spec.</summary>
    JobTooLarge = 24,

    /// <summary>Queuing the job would exceed a queued-task budget (total or the tenant's). Retry once queued tasks were placed.</summary>
    ResourceExhausted = 25,
    /// <summary>
    /// The per-task request is not a valid resource vector: a negative quantity, one above
    /// <see cref="ResourceVector.MaxQuantity"/>, or nothing requested at all.
    /// </summary>
    InvalidResources = 5,

    /// <summary>
    /// The per-task request exceeds, in some dimension, the largest capacity any node of the cell has: no node could ever
    /// hold one task. Refused at admission instead of parking forever. (Not checked while the cell has no node yet.)
    /// </summary>
    RequestExceedsLargestNode = 6,

    /// <summary>The job's tenant does not exist in the cell (tenants are created before use).</summary>
    UnknownTenant = 7,
}

/// <summary>The result of submitting a job.</summary>
/// <param name="Status">The outcome.</param>
/// <param name="Reason">A one-line reason for a rejection.</param>
public readonly record struct EnqueueResult(EnqueueStatus Status, string? Reason = null)
{
    /// <summary>True when the job was queued.</summary>
    public bool Accepted => Status == EnqueueStatus.Accepted;
}

/// <summary>Priority bands: a job's priority maps to one; higher bands are always served first.</summary>
public static class PriorityBands
{
    /// <summary>The number of bands.</summary>
    public const int Count = 3;

    /// <summary>Maps a priority to its band: 0 free (below 2), 1 middle (2-8), 2 production (9 and above), as in the Google trace.</summary>
    public static int Of(int priority) => priority >= 9 ? 2 : priority >= 2 ? 1 : 0;
}

/// <summary>
/// A bounded job queue by priority band and tenant. Dequeue serves the highest non-empty band and, within it, tenants in
/// round-robin order, so one tenant's flood cannot starve another's trickle. Jobs waiting for a retry back-off sit in a
/// delay heap until due (no timers: due jobs move over on the next dequeue). Thread-safe; the lock is held for O(1) or
/// O(log n) work per call, once per job, never per placement.
/// </summary>
public sealed class JobQueue
{
    private readonly Lock _lock = new();
    private readonly Band[] _bands = new Band[PriorityBands.Count];
    private readonly PriorityQueue<QueuedJob, long> _delayed = new();
    private readonly TimeProvider _time;
    private int _count;

    /// <summary>Creates a queue holding at most <paramref name="capacity"/> jobs (ready and delayed).</summary>
    public JobQueue(int capacity, TimeProvider? time = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
        _time = time ?? TimeProvider.System;
        for (int i = 0; i < _bands.Length; i++) _bands[i] = new Band();
    }

    /// <summary>The bound.</summary>
    public int Capacity { get; }

    /// <summary>Jobs queued (ready and delayed).</summary>
    public int Count
    {
        get { lock (_lock) return _count; }
    }

    /// <summary>Adds a job, ready now (<paramref name="notBefore"/> = 0) or after a back-off (a <see cref="TimeProvider"/> timestamp).</summary>
    public EnqueueStatus Enqueue(JobState job, long notBefore = 0)
    {
        ArgumentNullException.ThrowIfNull(job);
        lock (_lock)
        {
            if (_count >= Capacity) return EnqueueStatus.QueueFull;
            _count++;
            var q = new QueuedJob(job, _time.GetTimestamp());
            if (notBefore > _time.GetTimestamp()) _delayed.Enqueue(q, notBefore);
            else AddReady(q);
            return EnqueueStatus.Accepted;
        }
    }

    /// <summary>Takes the next job by band and tenant fairness, or returns false if none is ready.</summary>
    public bool TryDequeue(out JobState job, out TimeSpan waited)
    {
        lock (_lock)
        {
            long now = _time.GetTimestamp();
            while (_delayed.TryPeek(out var d, out long due) && due <= now)
            {
                _delayed.Dequeue();
                AddReady(d with { EnqueuedAt = now });
            }
            for (int b = _bands.Length - 1; b >= 0; b--)
            {
                var band = _bands[b];
                while (band.Tenants.Count > 0)
                {
                    var tenant = band.Tenants.Dequeue();
                    var tq = band.ByTenant[tenant];
                    var q = tq.Dequeue();
                    // Round-robin: a tenant with more work goes to the back of the line.
                    if (tq.Count > 0) band.Tenants.Enqueue(tenant);
                    else band.ByTenant.Remove(tenant);
                    _count--;
                    job = q.Job;
                    waited = _time.GetElapsedTime(q.EnqueuedAt, now);
                    return true;
                }
            }
            job = null!;
            waited = default;
            return false;
        }
    }

    /// <summary>The age of the oldest ready job in each band (zero when empty), for metrics.</summary>
    public TimeSpan[] OldestAgeByBand()
    {
        var ages = new TimeSpan[_bands.Length];
        lock (_lock)
        {
            long now = _time.GetTimestamp();
            for (int b = 0; b < _bands.Length; b++)
                foreach (var tq in _bands[b].ByTenant.Values)
                    if (tq.TryPeek(out var q))
                    {
                        var age = _time.GetElapsedTime(q.EnqueuedAt, now);
                        if (age > ages[b]) ages[b] = age;
                    }
        }
        return ages;
    }

    /// <summary>Ready jobs per band and delayed jobs, for metrics.</summary>
    public (int[] ReadyByBand, int Delayed) Depths()
    {
        lock (_lock)
        {
            var ready = new int[_bands.Length];
            for (int b = 0; b < _bands.Length; b++)
                foreach (var tq in _bands[b].ByTenant.Values) ready[b] += tq.Count;
            return (ready, _delayed.Count);
        }
    }

    private void AddReady(QueuedJob q)
    {
        var band = _bands[PriorityBands.Of(q.Job.Spec.Priority)];
        var tenant = q.Job.Spec.Tenant;
        if (!band.ByTenant.TryGetValue(tenant, out var tq))
        {
            tq = new Queue<QueuedJob>();
            band.ByTenant.Add(tenant, tq);
            band.Tenants.Enqueue(tenant);
        }
        tq.Enqueue(q);
    }

    private readonly record struct QueuedJob(JobState Job, long EnqueuedAt);

    private sealed class Band
    {
        public readonly Queue<TenantId> Tenants = new();
        public readonly Dictionary<TenantId, Queue<QueuedJob>> ByTenant = new();
    }
}
