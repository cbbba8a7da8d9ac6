using System.Buffers.Binary;
using System.Diagnostics;
using FASTER.core;
using Omega.Cells;

namespace Omega.Storage.Log;

/// <summary>
/// The cell's journal on FasterLog with group commit. <see cref="Append"/> (under the cell's commit lock) only copies the
/// record into the pending buffer; one committer thread swaps that buffer out every group-commit window (or sooner when
/// the batch fills), writes it to FasterLog as checksummed chunks, commits, and then advances the durable watermark and
/// completes the waiters of that group. While one group commits the next one fills.
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

    // The group being committed (guarded by _bufLock for readers; written by the committer).
    private long _inflightLastSeq;
    private TaskCompletionSource? _inflightGroup;

    // True while the committer sleeps with nothing pending (guarded by _bufLock). The first append into an idle journal
    // wakes it at once instead of waiting out the group-commit window: at a light load (the main job's 2,200
    // placements/s arrive in small bursts) the window only added up to 1 ms to every acknowledgement and binding, and
    // batches nothing there. Under sustained load the committer never goes idle, so groups still fill for a window.
    private bool _committerIdle;

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
        _inflightLastSeq = durableSeq;
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
            t = sequence <= _inflightLastSeq && _inflightGroup is not null ? _inflightGroup.Task : _nextGroup.Task;
        }
        if (!cancellationToken.CanBeCanceled) return new ValueTask(t);
        return new ValueTask(t.WaitAsync(cancellationToken));
    }

    private static readonly TimeSpan IdleWait = TimeSpan.FromMilliseconds(100);

    private static TaskCompletionSource NewGroup() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private void CommitLoop()
    {
        try
        {
            bool idle = false;
            while (true)
            {
                // An idle committer is woken by the first append (see _committerIdle), so it need not poll every window;
                // the long timeout is only a safety net.
                _wake.Wait(idle ? IdleWait : _options.GroupCommitWindow);
                _wake.Reset();
                byte[] buf;
                int len;
                long lastSeq, lastVersion;
                int records;
                TaskCompletionSource group;
                lock (_bufLock)
                {
                    if (_pendingLength == 0)
                    {
                        if (_stopping) return;
                        _committerIdle = idle = true;
                        continue;
                    }
                    _committerIdle = idle = false;
                    buf = _pending;
                    len = _pendingLength;
                    records = _pendingRecords;
                    lastSeq = _pendingLastSeq;
                    lastVersion = _pendingLastVersion;
                    group = _nextGroup;
                    _pending = _spare;
                    _pendingLength = 0;
                    _pendingRecords = 0;
                    _pendingBytesVolatile = 0;
                    _inflightGroup = group;
                    _inflightLastSeq = lastSeq;
                    _nextGroup = NewGroup();
                }
                long start = Stopwatch.GetTimestamp();
                // Replicated mode: the replicated log first (it is what "durable" means there), then the local copy.
                _replicator?.Replicate(buf.AsSpan(0, len), Volatile.Read(ref _durableSeq) + 1, lastSeq, lastVersion);
                WriteGroup(buf.AsSpan(0, len));
                if (_options.GroupCommitBlockingWait)
                {
                    // The dedicated committer thread may block (it is not a pool thread); the commit completes from FASTER's
                    // I/O completion, so no core spins while the device writes.
                    _log.CommitAsync().AsTask().GetAwaiter().GetResult();
                }
                else
                {
                    _log.Commit(spinWait: true);
                }
                _metrics.GroupCommitted(records, len, Stopwatch.GetElapsedTime(start));
                lock (_bufLock)
                {
                    Volatile.Write(ref _durableVersion, lastVersion);
                    Volatile.Write(ref _durableSeq, lastSeq);
                    _inflightGroup = null;
                }
                group.TrySetResult();
                NotifyDurable();
                _spare = buf;
            }
        }
#pragma warning disable CA1031 // the committer thread must report any failure to the waiters instead of crashing the process
        catch (Exception e)
#pragma warning restore CA1031
        {
            lock (_bufLock)
            {
                _failure = e;
                _inflightGroup?.TrySetException(new IOException("journal commit failed", e));
                _nextGroup.TrySetException(new IOException("journal commit failed", e));
            }
            _options.Warning($"journal committer stopped: {e}");
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
