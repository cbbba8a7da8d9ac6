namespace Omega.ControlPlane.Controllers;

/// <summary>What a reconcile asks for next.</summary>
/// <param name="Failed">True when it failed (a conflict, a full queue): the key is re-added with backoff.</param>
/// <param name="RequeueAfter">When positive, the key is re-added after this delay (work in progress).</param>
public readonly record struct ReconcileResult(bool Failed = false, TimeSpan RequeueAfter = default)
{
    /// <summary>Nothing more to do until the object or the world changes (or the resync).</summary>
    public static ReconcileResult Done => default;

    /// <summary>Failed: retry with backoff.</summary>
    public static ReconcileResult Retry => new(Failed: true);

    /// <summary>Look again after <paramref name="delay"/>.</summary>
    public static ReconcileResult After(TimeSpan delay) => new(RequeueAfter: delay);
}

/// <summary>A level-triggered reconciler: reads the current object and world for a key and closes the gap.</summary>
public interface IReconciler
{
    /// <summary>Reconciles the object <paramref name="key"/> (which may no longer exist).</summary>
    ValueTask<ReconcileResult> ReconcileAsync(ObjectKey key, CancellationToken cancellationToken);
}

/// <summary>Settings of a <see cref="ControllerRunner"/>.</summary>
public sealed class ControllerRunnerOptions
{
    /// <summary>Every key is re-enqueued this often (drift in the engine and cell has no watch of its own).</summary>
    public TimeSpan ResyncPeriod { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>First per-key backoff after a failure.</summary>
    public TimeSpan BaseDelay { get; set; } = TimeSpan.FromMilliseconds(5);

    /// <summary>Per-key backoff cap.</summary>
    public TimeSpan MaxDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Overall rate of retried keys per second.</summary>
    public double Rate { get; set; } = 50;

    /// <summary>Overall burst of retried keys.</summary>
    public int Burst { get; set; } = 100;

    /// <summary>Keys reconciled at once.</summary>
    public int Workers { get; set; } = 2;
}

/// <summary>
/// Drives one <see cref="IReconciler"/> the client-go way: list, then watch from the list's version, each event adding
/// its key to a <see cref="WorkQueue"/>; a resync every <see cref="ControllerRunnerOptions.ResyncPeriod"/>; a re-list
/// when the watch expires or is cut off. All work runs on the injected <see cref="IControllerScheduler"/>.
/// </summary>
public sealed class ControllerRunner : IDisposable
{
    private readonly ObjectStore _store;
    private readonly IReconciler _reconciler;
    private readonly ObjectFilter _filter;
    private readonly IControllerScheduler _scheduler;
    private readonly ControllerRunnerOptions _options;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _lock = new();
    private ObjectWatcher? _watcher;
    private int _busy;
    private bool _pumpArmed;

    /// <summary>Creates a runner (call <see cref="Start"/>).</summary>
    public ControllerRunner(ObjectStore store, IReconciler reconciler, ObjectFilter filter, IControllerScheduler scheduler, ControllerRunnerOptions? options = null)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _reconciler = reconciler ?? throw new ArgumentNullException(nameof(reconciler));
        _filter = filter;
        _scheduler = scheduler ?? throw new ArgumentNullException(nameof(scheduler));
        _options = options ?? new ControllerRunnerOptions();
        Queue = new WorkQueue(scheduler, _options.BaseDelay, _options.MaxDelay, _options.Rate, _options.Burst);
        Queue.Available += () => _scheduler.Post(Drain);
    }

    /// <summary>The work queue (for inspection and tests).</summary>
    public WorkQueue Queue { get; }

    /// <summary>Reconciles run so far.</summary>
    public long Reconciles => Interlocked.Read(ref _reconciles);

    private long _reconciles;

    /// <summary>Re-lists after the watch ended (expired or cut off) so far.</summary>
    public long Relists => Interlocked.Read(ref _relists);

    private long _relists;

    /// <summary>Lists every object, enqueues its key, starts the watch and the resync.</summary>
    public void Start()
    {
        _scheduler.Post(ListAndWatch);
        _scheduler.Schedule(_options.ResyncPeriod, Resync);
    }

    private void ListAndWatch()
    {
        if (_stop.IsCancellationRequested) return;
        long rv = EnqueueAll();
        if (_store.Watch(rv, _filter, out var w) != WatchStatus.Ok)
        {
            // Expired between list and watch (a write storm) or too many watchers: try again shortly.
            Interlocked.Increment(ref _relists);
            _scheduler.Schedule(_options.BaseDelay, ListAndWatch);
            return;
        }
        lock (_lock) _watcher = w;
        Pump();
    }

    private long EnqueueAll()
    {
        string? next = null;
        long rv = 0;
        do
        {
            var page = _store.List(_filter, 1000, next);
            if (next is null) rv = page.ResourceVersion;
            foreach (var o in page.Items) Queue.Add(o.Key.ToString());
            next = page.Continue;
        }
        while (next is not null);
        return rv;
    }

    private void Resync()
    {
        if (_stop.IsCancellationRequested) return;
        EnqueueAll();
        _scheduler.Schedule(_options.ResyncPeriod, Resync);
    }

    // Drains the events available now; when none, arms a wake-up that posts the next pump to the scheduler.
    private void Pump()
    {
        ObjectWatcher? w;
        lock (_lock)
        {
            w = _watcher;
            _pumpArmed = false;
        }
        if (w is null || _stop.IsCancellationRequested) return;
        while (true)
        {
            var ev = _store.TryNext(w, out var wait);
            if (ev is not null)
            {
                Queue.Add(ev.Key.ToString());
                continue;
            }
            if (wait is null)
            {
                // Cut off (too slow) or the store closed: re-list from scratch (level-triggered, so nothing is lost).
                lock (_lock) _watcher = null;
                w.Dispose();
                if (w.Termination == WatchTermination.TooSlow)
                {
                    Interlocked.Increment(ref _relists);
                    _scheduler.Post(ListAndWatch);
                }
                return;
            }
            lock (_lock)
            {
                if (_pumpArmed) return;
                _pumpArmed = true;
            }
            // Through the scheduler, not a thread-pool continuation: a simulation must decide when the pump runs.
            _scheduler.PostWhenCompleted(wait, Pump);
            return;
        }
    }

    private void Drain()
    {
        // At most Workers reconciles at once; each finished one drains again.
        if (Interlocked.Increment(ref _busy) > Math.Max(1, _options.Workers))
        {
            Interlocked.Decrement(ref _busy);
            return;
        }
        if (!Queue.TryGet(out var key))
        {
            Interlocked.Decrement(ref _busy);
            return;
        }
        _ = RunOne(key);
    }

    private async Task RunOne(string key)
    {
        ReconcileResult result;
        try
        {
            Interlocked.Increment(ref _reconciles);
            result = ObjectKey.TryParse(key, out var k)
                ? await _reconciler.ReconcileAsync(k, _stop.Token).ConfigureAwait(false)
                : ReconcileResult.Done;
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            result = ReconcileResult.Done;
        }
#pragma warning disable CA1031 // a reconcile bug must not stop the controller: the key backs off and is retried
        catch (Exception)
#pragma warning restore CA1031
        {
            result = ReconcileResult.Retry;
        }
        if (result.Failed) Queue.AddRateLimited(key);
        else
        {
            Queue.Forget(key);
            if (result.RequeueAfter > TimeSpan.Zero) Queue.AddAfter(key, result.RequeueAfter);
        }
        Queue.Done(key);
        Interlocked.Decrement(ref _busy);
        if (!_stop.IsCancellationRequested) _scheduler.Post(Drain);
    }

    /// <summary>Stops: no new reconciles start; the watch ends.</summary>
    public void Dispose()
    {
        _stop.Cancel();
        ObjectWatcher? w;
        lock (_lock)
        {
            w = _watcher;
            _watcher = null;
        }
        w?.Dispose();
    }
}
