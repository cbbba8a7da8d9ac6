using System.Diagnostics;
using FASTER.core;
using Omega.Cells;
using Omega.Storage.Log;
using Omega.Storage.State;

namespace Omega.Storage;

/// <summary>
/// The durable cell store on FASTER. Layout of the data directory:
/// <c>LOCK</c> (one process at a time), <c>journal/journal.log.N</c> (FasterLog segments) with <c>journal/commits/</c>
/// (FasterLog commit metadata), <c>store/store.log.N</c> (FasterKV log) and <c>checkpoints/</c> (FasterKV checkpoints,
/// Omega manifests, <c>CURRENT</c>).
/// </summary>
internal sealed class FasterCellStore : ICellStore, IReplicaStore
{
    private readonly StorageOptions _options;
    private readonly FileStream _lockFile;
    private readonly IDevice _logDevice;
    private readonly FasterLog _log;
    private readonly StateStore _state;
    private readonly GroupCommitJournal _journal;
    private readonly JournalReader _applyReader;
    private readonly Lock _checkpointLock = new();
    private readonly ManualResetEventSlim _stop = new(false);
    private Thread? _checkpointer;
    private long _appliedAddress;
    private long _appliedChunkSeq;
    private long _appliedSeq;
    private long _appliedVersion;
    private bool _disposed;
    // ha-core (issue 16): a standby keeps restoring (the cell is built only at promotion); null once promoted or when
    // opened as a plain store.
    private CellRestorer? _follower;
    private Cell? _cell;

    private FasterCellStore(StorageOptions options, FileStream lockFile, IDevice logDevice, FasterLog log, StateStore state, GroupCommitJournal journal,
        JournalReader applyReader, Cell? cell, CellRestorer? follower, RecoveryReport report, StorageMetrics metrics, CheckpointPosition applied)
    {
        _follower = follower;
        _options = options;
        _lockFile = lockFile;
        _logDevice = logDevice;
        _log = log;
        _state = state;
        _journal = journal;
        _applyReader = applyReader;
        _cell = cell;
        Recovery = report;
        Metrics = metrics;
        _appliedAddress = applied.ReplayAddress;
        _appliedChunkSeq = applied.LastChunkSequence;
        _appliedSeq = applied.Sequence;
        _appliedVersion = applied.CellVersion;
    }

    public Cell Cell => _cell ?? throw new InvalidOperationException("a standby replica store has no cell until it is promoted");

    public bool IsPersistent => true;

    public long DurableSequence => _journal.DurableSequence;

    public long DurableVersion => _journal.DurableVersion;

    public RecoveryReport Recovery { get; }

    public StorageMetrics Metrics { get; }

    /// <summary>Bytes the journal's group buffer allocated growing (for the allocation test).</summary>
    internal long JournalGrowthBytes => _journal.GrowthBytes;

    /// <summary>The data directory.</summary>
    public string DataDirectory => _options.ResolveDataDirectory();

    public static FasterCellStore Open(StorageOptions options, bool follower = false)
    {
        var total = Stopwatch.StartNew();
        ThreadPoolFloor.StoreOpened(); // FASTER blocks pool threads in its commit callback (see ThreadPoolFloor)
        string dir = options.ResolveDataDirectory();
        string journalDir = Path.Combine(dir, "journal");
        string storeDir = Path.Combine(dir, "store");
        string checkpointDir = Path.Combine(dir, "checkpoints");
        Directory.CreateDirectory(journalDir);
        Directory.CreateDirectory(storeDir);
        Directory.CreateDirectory(checkpointDir);
        // One process per data directory: two writers would interleave journals. The lock dies with the process.
        FileStream lockFile;
        try
        {
            lockFile = new FileStream(Path.Combine(dir, "LOCK"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        // .NET reports a held lock (FileShare.None is flock on Unix, a sharing violation on Windows) as a plain
        // IOException; the file itself exists (or was just created) in a directory we created, so "in use" is the cause.
        catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException)
        {
            throw new StorageLockedException($"the data directory {dir} is in use by another process (its LOCK is held)", dir, e);
        }
        IDevice? logDevice = null;
        FasterLog? log = null;
        StateStore? state = null;
        var metrics = new StorageMetrics(options.Cell.Name, options.Cell.MeterFactory);
        try
        {
            string logBase = Path.Combine(journalDir, "journal.log");
            JournalGeometry.Apply(journalDir, options);
            logDevice = Devices.CreateLogDevice(logBase, preallocateFile: false, deleteOnClose: false, recoverDevice: true);
            if (options.JournalDeviceWrapper is { } wrap) logDevice = wrap(logDevice);
            string commitDir = Path.Combine(journalDir, "commits");
            try
            {
                log = new FasterLog(new FasterLogSettings
                {
                    LogDevice = logDevice,
                    PageSizeBits = options.JournalPageSizeBits,
                    MemorySizeBits = options.JournalMemorySizeBits,
                    SegmentSizeBits = options.JournalSegmentSizeBits,
                    LogCommitDir = commitDir,
                    TryRecoverLatest = true,
                });
            }
            catch (Exception e) when (e is FasterException or IOException or InvalidOperationException or ArgumentException or FormatException)
            {
                throw new StorageCorruptionException($"journal commit metadata in {commitDir} could not be recovered: {e.Message}", commitDir, e);
            }
            state = new StateStore(options, storeDir, checkpointDir);
            var restorer = new CellRestorer(options.Cell);
            using var disposeRestorer = follower ? null : restorer;
            var loadClock = Stopwatch.StartNew();
            var loaded = state.LoadInto(restorer, out var loadTimes);
            var loadTime = loadClock.Elapsed;
            if (loadTimes.CompactFallback is { } refused && options.UseCompactCheckpoint)
                options.Warning($"the compact checkpoint of {loaded?.Token} was not used ({refused}); recovered by scanning the store log instead");
            var position = loaded?.Position ?? new CheckpointPosition(0, 0, log.BeginAddress, 0);
            if (position.ReplayAddress < log.BeginAddress)
                throw new StorageCorruptionException($"the journal {logBase} begins at address {log.BeginAddress}, after the checkpoint's replay address {position.ReplayAddress}: records are missing", logBase);
            var reader = new JournalReader(log, logBase, options.JournalSegmentSizeBits);
            var replayClock = Stopwatch.StartNew();
            long replayed = 0;
            try
            {
                reader.Read(position.ReplayAddress, log.CommittedUntilAddress, position.LastChunkSequence, rec =>
                {
                    if (restorer.Replay(rec)) replayed++;
                });
            }
            catch (Exception e) when (e is InvalidDataException or FormatException)
            {
                throw new StorageCorruptionException($"journal {logBase}: {e.Message}", logBase, e);
            }
            var replayTime = replayClock.Elapsed;
            foreach (var w in reader.Warnings)
            {
                options.Warning(w);
                metrics.TornTail();
            }
            Cell? cell = null;
            var rebuildClock = Stopwatch.StartNew();
            if (!follower)
            {
                try
                {
                    cell = restorer.Complete();
                }
                catch (InvalidDataException e)
                {
                    throw new StorageCorruptionException($"stored state in {dir} is inconsistent: {e.Message}", dir, e);
                }
            }
            var journal = new GroupCommitJournal(log, options, reader.LastChunkSequence + 1, restorer.Sequence, restorer.CellVersion, metrics);
            cell?.AttachJournal(journal);
            journal.Start();
            var report = new RecoveryReport
            {
                FromCheckpoint = loaded is not null,
                CheckpointToken = loaded?.Token ?? Guid.Empty,
                CheckpointEntries = loaded?.Entries ?? 0,
                RecordsReplayed = replayed,
                Allocations = restorer.AllocationCount,
                CellVersion = restorer.CellVersion,
                Sequence = restorer.Sequence,
                CheckpointLoadTime = loadTime,
                CheckpointVerifyTime = loadTimes.Verify,
                CheckpointRecoverTime = loadTimes.Recover,
                CheckpointScanTime = loadTimes.Scan,
                FromCompactCheckpoint = loadTimes.Compact,
                CompactCheckpointFallback = loadTimes.CompactFallback,
                ReplayTime = replayTime,
                RebuildTime = rebuildClock.Elapsed,
                TotalTime = total.Elapsed,
                Warnings = reader.Warnings.ToArray(),
                ReplayFromAddress = position.ReplayAddress,
                JournalBeginAddress = log.BeginAddress,
                JournalCommittedAddress = log.CommittedUntilAddress,
            };
            var store = new FasterCellStore(options, lockFile, logDevice, log, state, journal,
                new JournalReader(log, logBase, options.JournalSegmentSizeBits), cell, follower ? restorer : null, report, metrics, position);
            store.StartCheckpointer();
            return store;
        }
        catch
        {
            // (a follower's restorer is only handed out on success; on failure its partial cell goes with the GC)
            state?.Dispose();
            log?.Dispose();
            logDevice?.Dispose();
            lockFile.Dispose();
            metrics.Dispose();
            throw;
        }
    }

    private void StartCheckpointer()
    {
        if (_options.CheckpointInterval is not { } interval || interval <= TimeSpan.Zero) return;
        _checkpointer = new Thread(() =>
        {
            while (!_stop.Wait(interval))
            {
                try
                {
                    CheckpointNow();
                }
#pragma warning disable CA1031 // a failed periodic checkpoint is reported and retried; the journal still holds everything
                catch (Exception e)
#pragma warning restore CA1031
                {
                    _options.Warning($"checkpoint failed: {e.Message}");
                }
            }
        }) { IsBackground = true, Name = "omega-checkpointer" };
        _checkpointer.Start();
    }

    /// <summary>Applies the committed journal tail to the store, checkpoints it, and truncates the journal up to it.</summary>
    internal void CheckpointNow()
    {
        lock (_checkpointLock)
        {
            if (_disposed) return;
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            ApplyCommittedTail();
            var apply = System.Diagnostics.Stopwatch.GetElapsedTime(t0);
            _state.Checkpoint(new CheckpointPosition(_appliedVersion, _appliedSeq, _appliedAddress, _appliedChunkSeq), out var phases);
            // Only what a completed checkpoint covers may go: everything before the replay address is in the store now.
            // Page-aligned: truncating into the middle of a page made FasterLog 2.6.5 recover that page as empty (a lost tail).
            _log.TruncateUntilPageStart(_appliedAddress);
            Metrics.CheckpointCompleted(phases with { Apply = apply });
        }
    }

    // Under _checkpointLock: feeds the store of record every journal record the local log has committed.
    private void ApplyCommittedTail()
    {
        {
            long until = _log.CommittedUntilAddress;
            _applyReader.Read(_appliedAddress, until, _appliedChunkSeq, rec =>
            {
                var (_, seq, version) = CellRecord.ReadHeader(rec);
                if (seq <= _appliedSeq) return;
                _state.Apply(rec);
                _appliedSeq = seq;
                _appliedVersion = version;
            });
            if (until > _appliedAddress) _appliedChunkSeq = _applyReader.LastChunkSequence;
            _appliedAddress = Math.Max(_appliedAddress, until);
        }
    }

    // ---------------------------------------------------------------- replica snapshots (issue 16)

    public (long Sequence, long CellVersion) WriteSnapshot(Stream destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        if (!destination.CanSeek) throw new ArgumentException("the snapshot destination must be seekable (the entry count is written last)", nameof(destination));
        // The checkpoint lock, not the commit path: commits keep appending to the journal meanwhile; only a checkpoint
        // would wait for the copy. Everything applied is in the local journal, which (shipped first) is all in etcd.
        lock (_checkpointLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            ApplyCommittedTail();
            long start = destination.Position;
            Span<byte> header = stackalloc byte[ReplicaSnapshot.HeaderSize];
            ReplicaSnapshot.WriteHeader(header, _appliedSeq, _appliedVersion, 0);
            destination.Write(header);
            var entry = new byte[ReplicaSnapshot.EntryHeaderSize];
            long count = _state.DumpTo((tombstone, key, value) =>
            {
                ReplicaSnapshot.WriteEntryHeader(entry, tombstone, key.Length, value.Length);
                destination.Write(entry);
                destination.Write(key);
                destination.Write(value);
            });
            long end = destination.Position;
            ReplicaSnapshot.WriteHeader(header, _appliedSeq, _appliedVersion, count);
            destination.Position = start;
            destination.Write(header);
            destination.Position = end;
            return (_appliedSeq, _appliedVersion);
        }
    }

    /// <summary>
    /// Loads a snapshot (<see cref="ReplicaSnapshot"/>) into this freshly created, empty store and checkpoints it at the
    /// snapshot's position, so that the next open recovers exactly the snapshot.
    /// </summary>
    internal (long Sequence, long CellVersion) LoadSnapshot(Stream source)
    {
        lock (_checkpointLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (Recovery.FromCheckpoint || _appliedSeq != 0 || _journal.DurableSequence != 0 || Recovery.Sequence != 0)
                throw new InvalidOperationException($"a snapshot is installed into an empty data directory only; {DataDirectory} holds a store");
            var (sequence, version, count) = ReplicaSnapshot.ReadEntries(source, (tombstone, key, value) =>
            {
                if (tombstone) _state.RawDelete(key);
                else _state.RawPut(key, value);
            });
            _ = count;
            _appliedSeq = sequence;
            _appliedVersion = version;
            _state.Checkpoint(new CheckpointPosition(_appliedVersion, _appliedSeq, _appliedAddress, _appliedChunkSeq));
            return (sequence, version);
        }
    }

    public ValueTask WaitForDurableAsync(long sequence, CancellationToken cancellationToken = default)
        => _journal.WaitForSequenceAsync(sequence, cancellationToken);

    public ValueTask WaitForVersionAsync(long cellVersion, CancellationToken cancellationToken = default)
    {
        if (cellVersion <= _journal.DurableVersion) return ValueTask.CompletedTask;
        if (cellVersion > Cell.Version) throw new ArgumentOutOfRangeException(nameof(cellVersion), $"the cell has not reached version {cellVersion} (it is at {Cell.Version})");
        // Every record up to the current sequence covers every version up to the current one.
        return _journal.WaitForSequenceAsync(Cell.JournalSequence, cancellationToken);
    }

    public ValueTask<CommitResult> CommitDurableAsync(Transaction transaction, CancellationToken cancellationToken = default)
    {
        var result = Cell.Commit(transaction).Detach();
        var wait = _journal.WaitForSequenceAsync(Cell.JournalSequence, cancellationToken);
        if (wait.IsCompletedSuccessfully) return ValueTask.FromResult(result);
        return Await(wait, result);

        static async ValueTask<CommitResult> Await(ValueTask wait, CommitResult result)
        {
            await wait.ConfigureAwait(false);
            return result;
        }
    }

    // A dedicated thread, not the pool: CheckpointNow blocks for the whole checkpoint (journal apply, FASTER's snapshot
    // awaited synchronously, file checksums), and FASTER completes its own I/O on pool threads, so a pool thread parked
    // here is one fewer for the very completions it waits on and for every socket and timer continuation of the server
    // (the starvation ThreadPoolFloor describes). The periodic checkpointer already runs on its own thread.
    public ValueTask CheckpointAsync(CancellationToken cancellationToken = default)
        => new(Task.Factory.StartNew(CheckpointNow, cancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default));

    // ---------------------------------------------------------------- standby replica (ha-core, issue 16)

    public bool IsPromoted => _cell is not null;

    public long AppliedSequence => _follower?.Sequence ?? _cell!.JournalSequence;

    public long AppliedVersion => _follower?.CellVersion ?? _cell!.Version;

    public long LocalDurableSequence => _journal.DurableSequence;

    public void Apply(ReadOnlySpan<byte> group)
    {
        var restorer = _follower ?? throw new InvalidOperationException("the store was promoted: it writes the replicated log, it no longer applies it");
        int offset = 0;
        while (offset < group.Length)
        {
            if (group.Length - offset < 4) throw new InvalidDataException($"replicated group cut inside an element length at byte {offset}");
            int len = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(group[offset..]);
            if (len <= 0 || len > group.Length - offset - 4) throw new InvalidDataException($"replicated group: element length {len} at byte {offset} runs past the group");
            var element = group.Slice(offset + 4, len);
            offset += 4 + len;
            long lastSeq, lastVersion;
            int records;
            if (CellBatch.IsFrame(element))
            {
                var (count, first, _, lastV) = CellBatch.ReadHeader(element);
                lastSeq = first + count - 1;
                lastVersion = lastV;
                records = count;
            }
            else
            {
                (_, lastSeq, lastVersion) = CellRecord.ReadHeader(element);
                records = 1;
            }
            // Already applied (a group that straddles what the local store recovered): skipped whole. The restorer
            // throws on a gap, which is a broken log, never silently bridged.
            if (lastSeq <= restorer.Sequence) continue;
            restorer.Replay(element);
            _journal.AppendReplicated(lastSeq, records, lastVersion, element);
        }
    }

    public ICellStore Promote(IJournalReplicator? replicator)
    {
        var restorer = _follower ?? throw new InvalidOperationException("the store is already promoted");
        // Everything applied so far is in the replicated log already: flush it locally first, THEN ship what follows,
        // so no applied group is written to the replicated log a second time.
        _journal.WaitForAll();
        Cell cell;
        try
        {
            cell = restorer.Complete();
        }
        catch (InvalidDataException e)
        {
            throw new StorageCorruptionException($"replicated state is inconsistent: {e.Message}", DataDirectory, e);
        }
        if (replicator is not null) _journal.SetReplicator(replicator);
        cell.AttachJournal(_journal);
        _cell = cell;
        _follower = null;
        return this;
    }

    public IDisposable? AddDurableListener(Action listener) => _journal.AddDurableListener(listener);

    public void Dispose()
    {
        if (_disposed) return;
        _stop.Set();
        _checkpointer?.Join();
        _journal.Stop();
        if (_options.CheckpointOnDispose)
        {
            try
            {
                CheckpointNow();
            }
#pragma warning disable CA1031 // the journal holds everything; a failed final checkpoint only makes the next open replay more
            catch (Exception e)
#pragma warning restore CA1031
            {
                _options.Warning($"final checkpoint failed: {e.Message}");
            }
        }
        lock (_checkpointLock) _disposed = true;
        _journal.Dispose();
        _state.Dispose();
        _log.Dispose();
        _logDevice.Dispose();
        _lockFile.Dispose();
        _stop.Dispose();
        _cell?.Dispose();
        _follower?.Dispose();
        Metrics.Dispose();
    }
}
