namespace Omega.ControlPlane.Controllers;

/// <summary>
/// Where controllers run their work: no dedicated threads or timers of their own, so a deterministic simulation can run
/// every controller on one thread in virtual time (<see cref="ManualControllerScheduler"/>).
/// </summary>
public interface IControllerScheduler
{
    /// <summary>The clock (due times, condition timestamps).</summary>
    TimeProvider Time { get; }

    /// <summary>Runs <paramref name="work"/> soon. Thread-safe.</summary>
    void Post(Action work);

    /// <summary>Runs <paramref name="work"/> once after <paramref name="delay"/> on <see cref="Time"/>. Thread-safe.</summary>
    void Schedule(TimeSpan delay, Action work);

    /// <summary>
    /// Runs <paramref name="work"/> on this scheduler once <paramref name="task"/> has completed (a watch's wake-up, a
    /// finished sweep). The default posts from the task's continuation (thread pool); a deterministic scheduler
    /// overrides it to notice the completion in its own loop, because a continuation on the thread pool would post at
    /// a moment no simulation controls.
    /// </summary>
    void PostWhenCompleted(Task task, Action work)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(work);
        task.ContinueWith(static (_, s) => { var (sched, w) = ((IControllerScheduler, Action))s!; sched.Post(w); }, (this, work),
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }
}

/// <summary>The production scheduler: the thread pool and timers of the given <see cref="TimeProvider"/>.</summary>
/// <param name="time">The clock (default <see cref="TimeProvider.System"/>).</param>
public sealed class ThreadPoolControllerScheduler(TimeProvider? time = null) : IControllerScheduler
{
    /// <inheritdoc />
    public TimeProvider Time { get; } = time ?? TimeProvider.System;

    /// <inheritdoc />
    public void Post(Action work) => ThreadPool.QueueUserWorkItem(static w => w(), work, preferLocal: false);

    /// <inheritdoc />
    public void Schedule(TimeSpan delay, Action work)
    {
        if (delay <= TimeSpan.Zero) { Post(work); return; }
        ITimer? timer = null;
        timer = Time.CreateTimer(_ =>
        {
            timer?.Dispose();
            work();
        }, null, delay, Timeout.InfiniteTimeSpan);
    }
}

/// <summary>
/// A single-threaded, deterministic scheduler: work runs only inside <see cref="RunUntilIdle"/>, in post order, and
/// delayed work once <see cref="TimeProvider"/> (a fake clock in tests) has reached its due time.
/// </summary>
/// <param name="time">The clock to read due times from.</param>
public sealed class ManualControllerScheduler(TimeProvider time) : IControllerScheduler
{
    private readonly Lock _lock = new();
    private readonly Queue<Action> _ready = new();
    private readonly PriorityQueue<Action, (DateTimeOffset Due, long Seq)> _delayed = new();
    private readonly List<(Task Task, Action Work)> _waiting = new();
    private long _seq;

    /// <inheritdoc />
    public TimeProvider Time { get; } = time ?? throw new ArgumentNullException(nameof(time));

    /// <inheritdoc />
    public void Post(Action work)
    {
        lock (_lock) _ready.Enqueue(work);
    }

    /// <inheritdoc />
    public void Schedule(TimeSpan delay, Action work)
    {
        lock (_lock) _delayed.Enqueue(work, (Time.GetUtcNow() + delay, _seq++));
    }

    /// <inheritdoc />
    /// <remarks>Deterministic: the completion is noticed by <see cref="RunUntilIdle"/>, in the order the waits were registered.</remarks>
    public void PostWhenCompleted(Task task, Action work)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(work);
        lock (_lock) _waiting.Add((task, work));
    }

    /// <summary>Work items waiting (ready, delayed, or waiting for a task).</summary>
    public int Pending
    {
        get
        {
            lock (_lock) return _ready.Count + _delayed.Count + _waiting.Count;
        }
    }

    /// <summary>The due time of the earliest delayed item, or null when none is delayed.</summary>
    public DateTimeOffset? NextDue
    {
        get
        {
            lock (_lock) return _delayed.TryPeek(out _, out var p) ? p.Due : null;
        }
    }

    /// <summary>Runs ready and due work until none is left (or <paramref name="maxSteps"/>); returns the items run.</summary>
    public int RunUntilIdle(int maxSteps = 1_000_000)
    {
        int n = 0;
        while (n < maxSteps)
        {
            Action? work = null;
            lock (_lock)
            {
                var now = Time.GetUtcNow();
                for (int i = 0; i < _waiting.Count; i++)
                {
                    if (!_waiting[i].Task.IsCompleted) continue;
                    _ready.Enqueue(_waiting[i].Work);
                    _waiting.RemoveAt(i--);
                }
                if (_delayed.TryPeek(out var d, out var p) && p.Due <= now)
                {
                    _delayed.Dequeue();
                    _ready.Enqueue(d);
                }
                if (_ready.Count > 0) work = _ready.Dequeue();
            }
            if (work is null) return n;
            work();
            n++;
        }
        return n;
    }
}
