namespace Omega.ControlPlane.Controllers;

/// <summary>
/// A rate-limited work queue of object keys (client-go's workqueue): a key is held once however often it is added; a
/// key being processed is not handed out again until <see cref="Done"/> (if it was added meanwhile it is queued again
/// then); failures back off per key exponentially; an overall token bucket caps the rate of rate-limited adds.
/// </summary>
/// <remarks>Thread-safe. Delays run on the injected <see cref="IControllerScheduler"/>.</remarks>
public sealed class WorkQueue
{
    private readonly IControllerScheduler _scheduler;
    private readonly Lock _lock = new();
    private readonly Queue<string> _queue = new();
    private readonly HashSet<string> _dirty = new(StringComparer.Ordinal);
    private readonly HashSet<string> _processing = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _failures = new(StringComparer.Ordinal);
    private readonly TimeSpan _baseDelay;
    private readonly TimeSpan _maxDelay;
    private readonly double _rate;
    private readonly double _burst;
    private double _tokens;
    private long _lastRefill;

    /// <summary>Creates a queue.</summary>
    /// <param name="scheduler">Runs delayed adds.</param>
    /// <param name="baseDelay">First per-key backoff (doubles per failure).</param>
    /// <param name="maxDelay">Per-key backoff cap.</param>
    /// <param name="rate">Overall rate-limited adds per second.</param>
    /// <param name="burst">Overall bucket size.</param>
    public WorkQueue(IControllerScheduler scheduler, TimeSpan baseDelay, TimeSpan maxDelay, double rate = 50, int burst = 100)
    {
        _scheduler = scheduler ?? throw new ArgumentNullException(nameof(scheduler));
        _baseDelay = baseDelay;
        _maxDelay = maxDelay;
        _rate = Math.Max(0.001, rate);
        _burst = Math.Max(1, burst);
        _tokens = _burst;
        _lastRefill = scheduler.Time.GetTimestamp();
    }

    /// <summary>Raised (outside the lock) when a key becomes available to <see cref="TryGet"/>.</summary>
    public event Action? Available;

    /// <summary>Keys queued (not counting those being processed).</summary>
    public int Count
    {
        get
        {
            lock (_lock) return _queue.Count;
        }
    }

    /// <summary>Adds <paramref name="key"/> now (deduplicated).</summary>
    public void Add(string key)
    {
        bool signal;
        lock (_lock)
        {
            if (!_dirty.Add(key)) return;
            signal = !_processing.Contains(key);
            if (signal) _queue.Enqueue(key);
        }
        if (signal) Available?.Invoke();
    }

    /// <summary>Adds <paramref name="key"/> after <paramref name="delay"/>.</summary>
    public void AddAfter(string key, TimeSpan delay)
    {
        if (delay <= TimeSpan.Zero) Add(key);
        else _scheduler.Schedule(delay, () => Add(key));
    }

    /// <summary>Adds <paramref name="key"/> after its backoff (per-key exponential, and the overall token bucket).</summary>
    public void AddRateLimited(string key)
    {
        TimeSpan delay;
        lock (_lock)
        {
            _failures.TryGetValue(key, out int n);
            _failures[key] = n + 1;
            double perKey = Math.Min(_maxDelay.TotalMilliseconds, _baseDelay.TotalMilliseconds * Math.Pow(2, Math.Min(n, 30)));
            // Token bucket: refill, take one; a negative balance is the wait until the token exists.
            long now = _scheduler.Time.GetTimestamp();
            _tokens = Math.Min(_burst, _tokens + _scheduler.Time.GetElapsedTime(_lastRefill, now).TotalSeconds * _rate);
            _lastRefill = now;
            _tokens -= 1;
            double bucket = _tokens >= 0 ? 0 : -_tokens / _rate * 1000;
            delay = TimeSpan.FromMilliseconds(Math.Max(perKey, bucket));
        }
        AddAfter(key, delay);
    }

    /// <summary>Forgets <paramref name="key"/>'s failures (call after a successful reconcile).</summary>
    public void Forget(string key)
    {
        lock (_lock) _failures.Remove(key);
    }

    /// <summary>The failures recorded for <paramref name="key"/>.</summary>
    public int Failures(string key)
    {
        lock (_lock) return _failures.TryGetValue(key, out int n) ? n : 0;
    }

    /// <summary>Takes the next key to process, or false when none is queued.</summary>
    public bool TryGet(out string key)
    {
        lock (_lock)
        {
            if (!_queue.TryDequeue(out key!)) return false;
            _dirty.Remove(key);
            _processing.Add(key);
            return true;
        }
    }

    /// <summary>Marks <paramref name="key"/> processed; if it was added while processing, it is queued again.</summary>
    public void Done(string key)
    {
        bool signal;
        lock (_lock)
        {
            _processing.Remove(key);
            signal = _dirty.Contains(key);
            if (signal) _queue.Enqueue(key);
        }
        if (signal) Available?.Invoke();
    }
}
