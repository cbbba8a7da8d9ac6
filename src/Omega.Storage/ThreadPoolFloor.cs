namespace Omega.Storage;

/// <summary>
/// Raises the process's minimum worker-thread count while FASTER stores are open.
/// </summary>
/// <remarks>
/// <para>Why: FASTER's log commit runs its metadata write (<c>FasterLog.SerialCommitCallbackWorker</c> →
/// <c>DeviceLogCommitCheckpointManager.WriteInto</c>) on a thread-pool thread and blocks that thread on a semaphore until
/// the device's write completes; on Linux the managed device completes the write on another pool thread. With the
/// runtime's default minimum (one worker per core, 2 here), a few stores committing at once hold every pool thread and
/// the pool adds threads only about once per half second, so every timer and socket continuation in the process waits.
/// Measured on this 2-core machine (issue 16's takeover test, three replicas in one process): an etcd keepalive timer
/// fired 11 s late with 6 pool threads and 15–27 queued items, and the leader's 5 s lease lapsed.</para>
/// <para>Raising the minimum lets the pool create the threads on demand without the starvation delay; idle threads
/// above the minimum still retire. It never lowers a floor the host set, and a closed store does not lower it either
/// (lowering it under a running host would be a surprise). Rejected: a dedicated I/O scheduler for
/// FASTER (its commit callback is internal to FASTER), and making callers avoid blocking (the block is in FASTER).</para>
/// </remarks>
public static class ThreadPoolFloor
{
    /// <summary>Worker threads guaranteed per open store (its commit callback and device completions).</summary>
    public const int PerStore = 4;

    /// <summary>The floor never goes below this (timers, sockets and the host's own work on a small machine).</summary>
    public const int Base = 16;

    private static int _stores;
    private static readonly object Gate = new();

    /// <summary>The floor this class sets never exceeds this (a test process opens hundreds of stores one after another).</summary>
    public const int Max = 64;

    /// <summary>Counts a newly opened store and raises the pool's minimum to <see cref="Base"/> + <see cref="PerStore"/> per store, at most <see cref="Max"/>.</summary>
    public static void StoreOpened()
    {
        lock (Gate)
        {
            _stores++;
            ThreadPool.GetMinThreads(out int workers, out int io);
            int want = Math.Min(Max, Base + (PerStore * _stores));
            if (workers < want) ThreadPool.SetMinThreads(want, io);
        }
    }
}
