using System.Buffers.Binary;
using System.Diagnostics;
using FASTER.core;
using Omega.Cells;

namespace Omega.Storage.Log;

/// <summary>
/// The cell's journal on FasterLog with group commit. <see cref="Append"/> (under the cell's commit lock) only copies the
/// record into the pending buffer; one committer thread swaps that buffer out every group-commit window (or sooner when
/// the batch fills), writes it to FasterLog as checksummed chunks and issues its commit. Up to
/// <see cref="StorageOptions.GroupCommitMaxInflight"/> commits are out at once; as each completes, oldest first, the
/// committer advances the durable watermark and completes the waiters of that group.
/// </summary>
internal sealed class GroupCommitJournal : ICellJournal, IDisposable
{
    private readonly FasterLog _log;
    private readonly StorageOptions _options;
    private readonly int _maxChunkPayload;
    private readonly Lock _bufLock = new();
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly Thread _committer;
    private readonly StorageMetrics _metrics;

    // Pending group (guarded by _bufLock).
    private byte[] _pending;
    private int _pendingLength;
    private int _pendingRecords;
    private long _pendingLastSeq;
    private long _pendingLastVersion;
    private TaskCompletionSource _nextGroup = NewGroup();

    // The groups whose FasterLog commit is issued and not yet retired, oldest first: a ring of GroupCommitMaxInflight
    // slots. Only the committer adds and retires (under _bufLock, which WaitForSequenceAsync takes to pick a group).
    private readonly InflightCommit[] _inflight;
    private int _inflightHead;
    private int _inflightCount;
    private long _issuedSeq;
    private readonly long _windowTicks;
    private readonly bool _ackOnIssue;

    // True while the committer sleeps with nothing pending and nothing in flight (guarded by _bufLock). The first append
    // into an idle journal wakes it at once instead of waiting out the group-commit window: at a light load (the main
    // job's 2,200 placements/s arrive in small bursts) the window only added up to 1 ms to every acknowledgement and
    // binding, and batches nothing there. Under sustained load the committer never goes idle, so groups still fill.
    private bool _committerIdle;

    // Set (then _wake) by WaitForAll: the pending group goes out without waiting for the window. Cleared at the next issue.
    private volatile bool _issueNow;

    private byte[] _spare;
    private byte[] _chunk;
    private long _nextChunkSeq;
    private long _durableSeq;
    private long _durableVersion;
    private volatile int _pendingBytesVolatile;
    private volatile bool _stopping;
    private Exception? _failure;
    // ha-core (issue 16): set when the store serves as the leader of a replicated cell; null in single-node mode and on
    // a standby (whose groups come from the replicated log and need not go back to it).
    private volatile IJournalReplicator? _replicator;

    // Callbacks run on the committer thread right after a group became durable (the bind path's wake-up). A multicast
    // delegate swapped under _bufLock: the committer reads it once per group, with no allocation.
    private Action? _durableListeners;

    public GroupCommitJournal(FasterLog log, StorageOptions options, long nextChunkSeq, long durableSeq, long durableVersion, StorageMetrics metrics)
    {
        _log = log;
        _options = options;
        _metrics = metrics;
        _maxChunkPayload = Math.Max(4096, (1 << options.JournalPageSizeBits) / 2 - ChunkFormat.HeaderSize - 64);
        int initial = Math.Max(64 * 1024, Math.Min(options.GroupCommitMaxBytes * 2, 16 << 20));
        _pending = new byte[initial];
        _spare = new byte[initial];
        _chunk = new byte[ChunkFormat.HeaderSize + _maxChunkPayload];
        _nextChunkSeq = nextChunkSeq;
        _durableSeq = durableSeq;
        _durableVersion = durableVersion;
        _pendingLastSeq = durableSeq;
        _pendingLastVersion = durableVersion;
        _issuedSeq = durableSeq;
        _inflight = new InflightCommit[Math.Max(1, options.GroupCommitMaxInflight)];
        _windowTicks = (long)(options.GroupCommitWindow.TotalSeconds * Stopwatch.Frequency);
        _ackOnIssue = (options.Cell.Buggify & Buggify.AckOnCommitIssue) != 0;
        _committer = new Thread(CommitLoop) { IsBackground = true, Name = "omega-group-commit" };
    }

    public void Start() => _committer.Start();

    /// <summary>
    /// Replicates every later group through <paramref name="replicator"/> before it is written locally and counted durable
    /// (issue 16). Set once, after <see cref="WaitForAll"/> so that no group appended before it (a standby's applied
    /// groups, already in the replicated log) is shipped again.
    /// </summary>
    public void SetReplicator(IJournalReplicator replicator) => _replicator = replicator;

    /// <summary>The last sequence appended (pending or not).</summary>
    public long AppendedSequence
    {
        get
        {
            lock (_bufLock) return _pendingLastSeq;
        }
    }

    /// <summary>Blocks until everything appended so far is durable locally (or the journal failed).</summary>
    public void WaitForAll()
    {
        long last = AppendedSequence;
        if (last <= DurableSequence) return;
        _issueNow = true;
        _wake.Set();
        WaitForSequenceAsync(last, CancellationToken.None).AsTask().GetAwaiter().GetResult();
    }

    /// <summary>Appends one element (a record or a batch frame) received from the replicated log (a standby's apply).</summary>
    internal void AppendReplicated(long lastSequence, int records, long lastCellVersion, ReadOnlySpan<byte> element)
        => AppendElement(lastSequence, records, lastCellVersion, element);

    /// <summary>The highest journal sequence known durable.</summary>
    public long DurableSequence => Volatile.Read(ref _durableSeq);

    /// <summary>The cell version of the last durable record.</summary>
    public long DurableVersion => Volatile.Read(ref _durableVersion);

    /// <summary>Bytes allocated by growing the group buffer (under the commit lock); tests separate it from per-commit cost.</summary>
    public long GrowthBytes { get; private set; }

    /// <summary>The next chunk sequence number (for tests and the checkpointer).</summary>
    public long NextChunkSequence => Volatile.Read(ref _nextChunkSeq);

    /// <inheritdoc />
    public void Append(long sequence, long cellVersion, ReadOnlySpan<byte> record) => AppendElement(sequence, 1, cellVersion, record);

    /// <summary>
    /// A batch frame is one element of the group's record stream (<c>length:u32 frame</c>), never split into its
    /// records: the reader then applies all of it or, when the tail is cut inside it, none of it.
    /// </summary>
    public void AppendBatch(long firstSequence, int count, long lastCellVersion, ReadOnlySpan<byte> frame)
        => AppendElement(firstSequence + count - 1, count, lastCellVersion, frame);

    private void AppendElement(long sequence, int records, long cellVersion, ReadOnlySpan<byte> record)
    {
        // Back-pressure: if the committer has fallen far behind, hold the cell's commit lock until it catches up.
        // The committer never takes the cell lock, so this cannot deadlock.
        if (_pendingBytesVolatile > _options.MaxPendingBytes) WaitForRoom();
        bool signal;
        lock (_bufLock)
        {
            int need = _pendingLength + 4 + record.Length;
            if (need > _pending.Length)
            {
                // Growth only: when the committer lags, the group buffer grows and is kept (both buffers end up this big).
                int size = Math.Max(_pending.Length * 2, need);
                Array.Resize(ref _pending, size);
                GrowthBytes += size + 32;
            }
            BinaryPrimitives.WriteInt32LittleEndian(_pending.AsSpan(_pendingLength), record.Length);
            record.CopyTo(_pending.AsSpan(_pendingLength + 4));
            _pendingLength = need;
            int before = _pendingRecords;
            _pendingRecords += records;
            _pendingLastSeq = sequence;
            _pendingLastVersion = cellVersion;
            _pendingBytesVolatile = need;
            // Wake the committer once, when this append crosses a threshold (a batch may cross it by more than one),
            // or when it is the first record for an idle committer.
            signal = (before < _options.GroupCommitMaxRecords && _pendingRecords >= _options.GroupCommitMaxRecords)
                || (need >= _options.GroupCommitMaxBytes && need - 4 - record.Length < _options.GroupCommitMaxBytes);
            if (_committerIdle)
            {
                _committerIdle = false;
                signal = true;
            }
        }
        if (signal) _wake.Set();
    }

    private void WaitForRoom()
    {
        _wake.Set();
        var spin = new SpinWait();
        while (_pendingBytesVolatile > _options.MaxPendingBytes && !_stopping && _failure is null) spin.SpinOnce();
    }

    /// <summary>Completes when every record up to <paramref name="sequence"/> is durable.</summary>
    public ValueTask WaitForSequenceAsync(long sequence, CancellationToken cancellationToken)
    {
        if (sequence <= Volatile.Read(ref _durableSeq)) return ValueTask.CompletedTask;
        Task t;
        lock (_bufLock)
        {
            if (_failure is not null) return ValueTask.FromException(new IOException("the journal failed; nothing after its last commit is durable", _failure));
            if (sequence <= Volatile.Read(ref _durableSeq)) return ValueTask.CompletedTask;
            if (sequence > _pendingLastSeq) throw new ArgumentOutOfRangeException(nameof(sequence), $"sequence {sequence} was never appended (last {_pendingLastSeq})");
            // The oldest group in flight that holds the sequence (groups complete oldest first), else the pending one.
            t = _nextGroup.Task;
            for (int i = 0; i < _inflightCount; i++)
            {
                ref var f = ref _inflight[(_inflightHead + i) % _inflight.Length];
                if (sequence <= f.LastSeq)
                {
                    t = f.Group!.Task;
                    break;
                }
            }
        }
        if (!cancellationToken.CanBeCanceled) return new ValueTask(t);
        return new ValueTask(t.WaitAsync(cancellationToken));
    }

    private static readonly TimeSpan IdleWait = TimeSpan.FromMilliseconds(100);

    private static TaskCompletionSource NewGroup() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    // One FasterLog commit issued by the committer: it covers the log up to Tail, so the group is durable once FasterLog's
    // committed address reaches Tail. FasterLog completes commits in address order (its commit requests are a FIFO and
    // its flushed address only advances over contiguous writes), and the committer retires the ring oldest first, so the
    // durable watermark never passes a group whose own commit has not completed, whichever write the device finished first.
    private struct InflightCommit
    {
        public long Tail;
        public long LastSeq;
        public long LastVersion;
        public int Records;
        public int Bytes;
        public long IssuedAt;
        public TaskCompletionSource? Group;
        // FasterLog's own wait for Tail. It faults when the log's commit fails (the committed address then never moves).
        // Blocking mode: made at issue, and its completion wakes the committer. Spin mode: made only for a commit still
        // out after SlowCommitCheck, so a normal commit costs no task.
        public Task? Completion;
    }

    private static readonly long SlowCommitCheck = Stopwatch.Frequency / 20;

    private void CommitLoop()
    {
        try
        {
            bool idle = false;
            long lastIssue = Stopwatch.GetTimestamp() - _windowTicks;
            while (true)
            {
                RetireCompleted();
                long now = Stopwatch.GetTimestamp();
                bool issue = false;
                byte[] buf = _spare;
                int len = 0, records = 0;
                long lastSeq = 0, lastVersion = 0;
                int slot = 0;
                bool pending;
                lock (_bufLock)
                {
                    pending = _pendingLength > 0;
                    if (!pending)
                    {
                        if (_inflightCount == 0)
                        {
                            if (_stopping) return;
                            _committerIdle = idle = true;
                        }
                    }
                    else if (_inflightCount < _inflight.Length && (idle || GroupDue() || _stopping || now - lastIssue >= _windowTicks))
                    {
                        // Overlap: a group goes out while earlier ones still flush, up to GroupCommitMaxInflight, so a record
                        // that arrives just after a commit started waits for its own commit, not for that one first.
                        issue = true;
                        _issueNow = false;
                        _committerIdle = idle = false;
                        buf = _pending;
                        len = _pendingLength;
                        records = _pendingRecords;
                        lastSeq = _pendingLastSeq;
                        lastVersion = _pendingLastVersion;
                        _pending = _spare;
                        _pendingLength = 0;
                        _pendingRecords = 0;
                        _pendingBytesVolatile = 0;
                        slot = (_inflightHead + _inflightCount) % _inflight.Length;
                        _inflight[slot] = new InflightCommit { Tail = long.MaxValue, LastSeq = lastSeq, LastVersion = lastVersion, Records = records, Bytes = len, Group = _nextGroup };
                        _inflightCount++;
                        _nextGroup = NewGroup();
                    }
                }
                if (issue)
                {
                    lastIssue = now;
                    Issue(slot, buf, len, lastSeq, lastVersion);
                    continue;
                }
                if (_inflightCount == 0)
                {
                    // Nothing in flight: sleep until the window since the last issue ends (something is pending) or an append
                    // wakes an idle committer. The long idle timeout is only a safety net.
                    if (!idle && !_options.GroupCommitBlockingWait && lastIssue + _windowTicks - now < Stopwatch.Frequency / 1000)
                    {
                        // Spin mode, under a millisecond left: the event cannot sleep that briefly (it would round up to a
                        // whole millisecond, most of a window), so yield until the window ends or an append wants out.
                        long end = lastIssue + _windowTicks;
                        while (Stopwatch.GetTimestamp() < end && !GroupDue() && !_stopping) Thread.Yield();
                    }
                    else
                    {
                        _wake.Wait(idle ? IdleWait : RemainingWindow(lastIssue, now));
                        _wake.Reset();
                    }
                }
                else if (_options.GroupCommitBlockingWait)
                {
                    // Woken by the oldest commit's completion (its continuation sets _wake), an urgent append, or the window's
                    // end when a slot is free for the pending group.
                    bool canIssue = pending && _inflightCount < _inflight.Length;
                    _wake.Wait(canIssue ? RemainingWindow(lastIssue, now) : IdleWait);
                    _wake.Reset();
                }
                else
                {
                    SpinUntilProgress(lastIssue);
                }
            }
        }
#pragma warning disable CA1031 // the committer thread must report any failure to the waiters instead of crashing the process
        catch (Exception e)
#pragma warning restore CA1031
        {
            // Groups whose local commit was issued before the failure (a later group's replication refused, say) are still
            // retired as durable if that commit completes: their waiters were not told anything wrong yet.
            DrainIssued();
            lock (_bufLock)
            {
                _failure = e;
                for (int i = 0; i < _inflightCount; i++)
                    _inflight[(_inflightHead + i) % _inflight.Length].Group?.TrySetException(new IOException("journal commit failed", e));
                _nextGroup.TrySetException(new IOException("journal commit failed", e));
            }
            _options.Warning($"journal committer stopped: {e}");
        }
    }

    private void DrainIssued()
    {
        try
        {
            for (int i = 0; i < _inflightCount; i++)
            {
                long tail = _inflight[(_inflightHead + i) % _inflight.Length].Tail;
                if (tail == long.MaxValue) break;
                if (!_log.WaitForCommitAsync(tail, 0).AsTask().Wait(DrainWait)) break;
            }
            RetireCompleted();
        }
#pragma warning disable CA1031 // the log itself failed: nothing more is durable, the caller fails every waiter
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    private static readonly TimeSpan DrainWait = TimeSpan.FromSeconds(5);

    // Whether the pending group should go out before the window ends: it filled (GroupCommitMaxRecords/Bytes; the append
    // that crossed the line also set _wake) or WaitForAll asked. The first append into an idle journal is the caller's
    // `idle` case. Read without the lock by the spin loops: a stale answer only costs one more turn of the loop.
    private bool GroupDue()
        => _issueNow || _pendingBytesVolatile >= _options.GroupCommitMaxBytes || Volatile.Read(ref _pendingRecords) >= _options.GroupCommitMaxRecords;

    private TimeSpan RemainingWindow(long lastIssue, long now)
    {
        long left = lastIssue + _windowTicks - now;
        // At least a millisecond: the event rounds a shorter timeout down to zero, which would spin the thread.
        return left <= 0 ? TimeSpan.Zero : TimeSpan.FromMilliseconds(Math.Max(1, Math.Ceiling(left * 1000.0 / Stopwatch.Frequency)));
    }

    // Spin mode: yield until the oldest commit is durable, a group may go out (a free slot and a full window or an urgent
    // append), or the journal stops. This is the same yield loop FasterLog's own spinning commit runs, with two more checks.
    private void SpinUntilProgress(long lastIssue)
    {
        ref var head = ref _inflight[_inflightHead];
        bool slotFree = _inflightCount < _inflight.Length;
        while (true)
        {
            if (Volatile.Read(ref _log.CommittedUntilAddress) >= head.Tail || _ackOnIssue) return;
            if (_stopping && slotFree && _pendingBytesVolatile > 0) return;
            long now = Stopwatch.GetTimestamp();
            if (slotFree && _pendingBytesVolatile > 0 && (GroupDue() || now - lastIssue >= _windowTicks)) return;
            if (head.Completion is null)
            {
                if (now - head.IssuedAt > SlowCommitCheck) head.Completion = _log.WaitForCommitAsync(head.Tail, 0).AsTask();
            }
            else if (head.Completion.IsCompleted)
            {
                return;
            }
            Thread.Yield();
        }
    }

    private void Issue(int slot, byte[] buf, int len, long lastSeq, long lastVersion)
    {
        ref var f = ref _inflight[slot];
        f.IssuedAt = Stopwatch.GetTimestamp();
        // Replicated mode: the replicated log first (it is what "durable" means there), then the local copy. Groups reach
        // the replicator in order: it runs on this thread, before the group's local commit is issued.
        _replicator?.Replicate(buf.AsSpan(0, len), _issuedSeq + 1, lastSeq, lastVersion);
        _issuedSeq = lastSeq;
        WriteGroup(buf.AsSpan(0, len));
        // Only this thread enqueues into the log, so the tail now is exactly where this group ends.
        long tail = _log.TailAddress;
        _log.Commit(spinWait: false);
        f.Tail = tail;
        _metrics.CommitsInFlight(_inflightCount);
        // The chunks are copied into FasterLog's page: the buffer is free for the next group at once.
        _spare = buf;
        if (_options.GroupCommitBlockingWait)
        {
            var done = _log.WaitForCommitAsync(tail, 0).AsTask();
            f.Completion = done;
            done.ContinueWith(WakeCommitter, _wake, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    private static void WakeCommitter(Task done, object? wake)
    {
        try
        {
            ((ManualResetEventSlim)wake!).Set();
        }
        catch (ObjectDisposedException)
        {
            // The journal stopped after retiring this commit: nobody waits any more.
        }
    }

    // Retires completed commits oldest first: advances the durable watermark and completes each group's waiters, then
    // runs the durable listeners once.
    private void RetireCompleted()
    {
        bool retired = false;
        while (_inflightCount > 0)
        {
            ref var head = ref _inflight[_inflightHead];
            if (head.Tail == long.MaxValue) break;
            // Buggify.AckOnCommitIssue (tests only): the group counts as durable once its commit is issued.
            if (Volatile.Read(ref _log.CommittedUntilAddress) < head.Tail && !_ackOnIssue)
            {
                // A failed log commit never moves the committed address; its waiting task reports the failure.
                if (head.Completion is { IsCompleted: true } c) c.GetAwaiter().GetResult();
                break;
            }
            _metrics.GroupCommitted(head.Records, head.Bytes, Stopwatch.GetElapsedTime(head.IssuedAt));
            var group = head.Group!;
            lock (_bufLock)
            {
                Volatile.Write(ref _durableVersion, head.LastVersion);
                Volatile.Write(ref _durableSeq, head.LastSeq);
                head = default;
                _inflightHead = (_inflightHead + 1) % _inflight.Length;
                _inflightCount--;
            }
            group.TrySetResult();
            retired = true;
        }
        if (retired)
        {
            _metrics.CommitsInFlight(_inflightCount);
            NotifyDurable();
        }
    }

    /// <summary>
    /// Registers <paramref name="listener"/> to run on the committer thread each time the durable watermark advances, so
    /// a consumer (the server's dispatcher) wakes when a group commits instead of polling for it. The listener must be
    /// cheap and must not block: the next group waits for it. Dispose the result to unregister.
    /// </summary>
    public IDisposable AddDurableListener(Action listener)
    {
        ArgumentNullException.ThrowIfNull(listener);
        lock (_bufLock) _durableListeners += listener;
        return new Registration(this, listener);
    }

    private sealed class Registration(GroupCommitJournal journal, Action listener) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            lock (journal._bufLock) journal._durableListeners -= listener;
        }
    }

    private void NotifyDurable()
    {
        var listeners = Volatile.Read(ref _durableListeners);
        if (listeners is null) return;
        try
        {
            listeners();
        }
#pragma warning disable CA1031 // a listener's failure must not stop the committer: durability matters more than a wake-up
        catch (Exception e)
#pragma warning restore CA1031
        {
            _options.Warning($"durable listener failed: {e.Message}");
        }
    }

    private void WriteGroup(ReadOnlySpan<byte> stream)
    {
        int offset = 0;
        while (offset < stream.Length)
        {
            int n = Math.Min(_maxChunkPayload, stream.Length - offset);
            bool last = offset + n == stream.Length;
            var chunk = _chunk.AsSpan(0, ChunkFormat.HeaderSize + n);
            stream.Slice(offset, n).CopyTo(chunk[ChunkFormat.HeaderSize..]);
            ChunkFormat.WriteHeader(chunk, _nextChunkSeq, n, last ? ChunkFormat.LastInGroup : 0);
            _log.Enqueue(chunk);
            Volatile.Write(ref _nextChunkSeq, _nextChunkSeq + 1);
            offset += n;
        }
    }

    /// <summary>Flushes the last group and stops the committer.</summary>
    public void Stop()
    {
        if (_stopping) return;
        _stopping = true;
        _wake.Set();
        if (_committer.IsAlive) _committer.Join();
    }

    public void Dispose()
    {
        Stop();
        _wake.Dispose();
    }
}
