namespace Omega.ControlPlane;

/// <summary>
/// An async mutual-exclusion gate whose waiters are admitted in FIFO order and resume <b>synchronously on the thread
/// that releases the gate</b>, never on a thread-pool thread the gate picks.
/// </summary>
/// <remarks>
/// Why not <see cref="SemaphoreSlim"/>: a contended <c>SemaphoreSlim.WaitAsync</c> completes its waiter with
/// asynchronous continuations, so the second of two overlapping callers always resumes on the thread pool, at a moment
/// nobody controls. In production that is harmless; in the deterministic simulation (docs/testing.md) it moved a policy
/// command's object write and durability wait off the simulation's thread, and 13 of 1,000 seeds stopped being
/// replayable. With this gate the next holder runs on the releasing thread, which is the thread that finished the
/// previous holder's work (in the simulation: the simulation's thread, inside the simulated disk's flush), so the run
/// stays on one thread and its order is the seed's. In production the releasing thread is the one completing the
/// previous holder's durable write: the next holder runs there until its own first await (a journal append, then a
/// durability wait), which is what a pool thread would have done a moment later.
/// A chain of waiters that each finish without awaiting (refused at once) would nest one frame per waiter; the runtime
/// itself falls back to the pool when the stack runs short, and the holders here (operators' policy commands, override
/// sweeps) are few. Callers must not hold a lock when they release: the next holder's code runs inside <see cref="Release"/>.
/// </remarks>
internal sealed class AsyncGate
{
    private readonly Lock _lock = new();
    private readonly Queue<TaskCompletionSource> _waiters = new();
    private bool _held;

    /// <summary>Waits for the gate; completes at once when it is free.</summary>
    public ValueTask WaitAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        TaskCompletionSource waiter;
        lock (_lock)
        {
            if (!_held)
            {
                _held = true;
                return ValueTask.CompletedTask;
            }
            // No RunContinuationsAsynchronously: the waiter resumes inline in Release (the point of this type).
            waiter = new TaskCompletionSource();
            _waiters.Enqueue(waiter);
        }
        if (!cancellationToken.CanBeCanceled) return new ValueTask(waiter.Task);
        return WaitCancellableAsync(waiter, cancellationToken);
    }

    private static async ValueTask WaitCancellableAsync(TaskCompletionSource waiter, CancellationToken cancellationToken)
    {
        // A cancelled waiter stays queued; Release skips it because its TrySetResult fails (whoever completes it first wins).
        using (cancellationToken.UnsafeRegister(static s => ((TaskCompletionSource)s!).TrySetCanceled(), waiter))
            await waiter.Task.ConfigureAwait(false);
    }

    /// <summary>Hands the gate to the oldest live waiter (which resumes inside this call), or frees it.</summary>
    public void Release()
    {
        while (true)
        {
            TaskCompletionSource? next;
            lock (_lock)
            {
                if (!_held) throw new InvalidOperationException("the gate is not held");
                if (!_waiters.TryDequeue(out next))
                {
                    _held = false;
                    return;
                }
            }
            // Outside the lock: the waiter's continuation runs here and may wait on or release this gate again.
            if (next.TrySetResult()) return;
        }
    }
}
