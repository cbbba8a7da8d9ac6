using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using FASTER.core;
using Omega.Cells;
using Omega.Storage.Log;

namespace Omega.Storage.State;

/// <summary>How long each step of loading a checkpoint took: verifying its files, FasterKV's recovery, the scan into the cell.</summary>
internal struct CheckpointLoadTimes
{
    public TimeSpan Verify;
    public TimeSpan Recover;
    public TimeSpan Scan;

    /// <summary>True when the compact checkpoint was loaded instead of scanning FasterKV's log (issue 15).</summary>
    public bool Compact;

    /// <summary>Why a compact checkpoint that exists was not used (recovery scanned instead); null when it was used or absent.</summary>
    public string? CompactFallback;
}

/// <summary>Where a checkpoint stands in the journal.</summary>
internal readonly record struct CheckpointPosition(long CellVersion, long Sequence, long ReplayAddress, long LastChunkSequence);

/// <summary>
/// The materialized store of record: a FasterKV holding nodes, node versions, bindings by task, scheduler leases and
/// tokens, tenant quotas and idempotency outcomes, one entry each (see docs/storage.md for the layouts). It is fed
/// journal records (it is an <see cref="ICellRecordVisitor"/>) by the checkpointer, never on the commit path, and is
/// checkpointed with a manifest of file checksums so a damaged checkpoint is refused by name.
/// </summary>
/// <remarks>Single-threaded: the caller serializes every use (open, then the checkpointer thread).</remarks>
internal sealed class StateStore : ICellRecordVisitor, IDisposable
{
    private const string CurrentFile = "CURRENT";

    private readonly IDevice _device;
    private readonly FasterKV<SpanByte, SpanByte> _store;
    private readonly string _checkpointDir;
    private readonly int _retention;
    private readonly Queue<(SchedulerId Scheduler, IdempotencyKey Key)> _outcomeOrder = new();
    private ClientSession<SpanByte, SpanByte, SpanByte, SpanByteAndMemory, Empty, SpanByteFunctions<Empty>>? _session;
    private byte[] _value = GC.AllocateArray<byte>(4096, pinned: true);
    private readonly byte[] _key = GC.AllocateArray<byte>(StateKeys.MaxKeySize, pinned: true);
    // Object keys are variable length (1 + up to 3 UTF-8 bytes per character); a pinned buffer of their own.
    private readonly byte[] _objectKey = GC.AllocateArray<byte>(1 + 3 * Cell.MaxObjectKeyLength, pinned: true);
    private long _currentSequence;
    private long _currentVersion;
    // Live bindings in the store (Bind +1, Unbind -1; set from the restored cell at open). Written into the manifest as a
    // sizing hint for the next recovery only: a drift could cost memory or a regrowth, never correctness.
    private long _bindings;
    private readonly List<DomainLossConfirmation> _domainLosses = new();
    private readonly bool _writeCompact;
    private readonly bool _useCompact;

    public StateStore(StorageOptions options, string stateDir, string checkpointDir)
    {
        _writeCompact = options.WriteCompactCheckpoint;
        _useCompact = options.UseCompactCheckpoint;
        _checkpointDir = checkpointDir;
        _retention = Math.Max(1, options.Cell.IdempotencyRetention);
        _device = Devices.CreateLogDevice(Path.Combine(stateDir, "store.log"), preallocateFile: false, deleteOnClose: false, recoverDevice: true);
        _store = new FasterKV<SpanByte, SpanByte>(
            options.StoreIndexBuckets,
            new LogSettings
            {
                LogDevice = _device,
                PageSizeBits = options.StorePageSizeBits,
                MemorySizeBits = options.StoreMemorySizeBits,
                SegmentSizeBits = options.StoreSegmentSizeBits,
            },
            new CheckpointSettings { CheckpointDir = checkpointDir, RemoveOutdated = false });
    }

    private ClientSession<SpanByte, SpanByte, SpanByte, SpanByteAndMemory, Empty, SpanByteFunctions<Empty>> Session
        => _session ??= _store.For(new SpanByteFunctions<Empty>()).NewSession<SpanByteFunctions<Empty>>();

    // ---------------------------------------------------------------- open

    /// <summary>
    /// Loads the current checkpoint (if any) into <paramref name="restorer"/> after verifying every checkpoint file
    /// against its manifest. Returns the checkpoint's position, or null when there is none.
    /// </summary>
    public (CheckpointPosition Position, Guid Token, long Entries)? LoadInto(CellRestorer restorer)
        => LoadInto(restorer, out _);

    /// <summary>As <see cref="LoadInto(CellRestorer)"/>, with the time of each step of the load (issue 15: where recovery goes).</summary>
    public (CheckpointPosition Position, Guid Token, long Entries)? LoadInto(CellRestorer restorer, out CheckpointLoadTimes times)
    {
        times = default;
        string current = Path.Combine(_checkpointDir, CurrentFile);
        if (!File.Exists(current)) return null;
        string tokenText = File.ReadAllText(current).Trim();
        if (!Guid.TryParse(tokenText, out var token)) throw new StorageCorruptionException($"checkpoint pointer {current} does not hold a checkpoint token", current);
        var (position, files) = ReadManifest(token);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        // Issue 15: the compact checkpoint replaces the scan of FasterKV's log when it is intact and reflects exactly
        // this checkpoint's position. It is verified WHOLE before the restorer sees any of it, so a damaged file leaves
        // the restorer untouched and the full scan produces the same cell (tested: CompactCheckpointTests).
        string compactPath = CompactPath(token.ToString());
        CompactCheckpoint.Header header = default;
        int[]? nodeCounts = null;
        string? refused = _useCompact ? CompactCheckpoint.Verify(compactPath, position.CellVersion, position.Sequence, out header, out nodeCounts)
            : File.Exists(compactPath) ? "disabled (StorageOptions.UseCompactCheckpoint)" : "absent";
        // An absent file is not a fault (a checkpoint written before the format existed, or with writing disabled).
        if (refused is not null && refused != "absent") times.CompactFallback = refused;
        var compactVerify = clock.Elapsed;
        restorer.SetCheckpointPosition(position.CellVersion, position.Sequence);
        long entries;
        if (refused is null)
        {
            // The load does not touch FasterKV, so FasterKV's verification and recovery (which the checkpointer needs
            // later, not the cell) run meanwhile on a dedicated thread: the two cores each take one. Its files are still
            // all verified before FasterKV reads any of them, and a failure refuses the store exactly as before.
            TimeSpan fasterVerify = default, fasterRecover = default;
            System.Runtime.ExceptionServices.ExceptionDispatchInfo? fasterError = null;
            var faster = new Thread(() =>
            {
                try
                {
                    var c = System.Diagnostics.Stopwatch.StartNew();
                    VerifyFiles(token, files);
                    fasterVerify = c.Elapsed;
                    c.Restart();
                    RecoverStore(token);
                    fasterRecover = c.Elapsed;
                }
#pragma warning disable CA1031 // carried to the opening thread and rethrown there with its type
                catch (Exception e) { fasterError = System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e); }
#pragma warning restore CA1031
            }) { IsBackground = true, Name = "omega-checkpoint-recover" };
            faster.Start();
            clock.Restart();
            entries = 0;
            System.Runtime.ExceptionServices.ExceptionDispatchInfo? loadError = null;
            try
            {
                // The hint file is verified by the manifest on the other thread; the header's record count (verified
                // here) bounds it, so it cannot ask for more than the file holds.
                long hint = Math.Min(ReadBindingsHint(token, files), header.Bindings);
                if (hint > 0) restorer.ExpectBindings((int)Math.Min(hint, int.MaxValue / 2));
                if (nodeCounts is not null) restorer.ExpectNodeBindings(NodeCapacities(nodeCounts, hint));
                entries = LoadCompact(restorer, compactPath, header);
            }
#pragma warning disable CA1031 // rethrown below, after the FasterKV thread's own failure (which names the damaged file) if any
            catch (Exception e) { loadError = System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e); }
#pragma warning restore CA1031
            faster.Join();
            times.Scan = clock.Elapsed;
            fasterError?.Throw();
            loadError?.Throw();
            times.Verify = compactVerify + fasterVerify;
            times.Recover = fasterRecover;
            times.Compact = true;
        }
        else
        {
            clock.Restart();
            VerifyFiles(token, files);
            times.Verify = clock.Elapsed + compactVerify;
            clock.Restart();
            RecoverStore(token);
            times.Recover = clock.Elapsed;
            clock.Restart();
            // Size the binding table once: growing a 10M-entry dictionary by doubling rehashes every entry ~twice and holds
            // the old and the new table at once at its last step (~1.6 GB transient at 10M).
            // Bounded by what the recovered log can hold (every entry takes well over 32 bytes), so a wrong hint cannot
            // ask for more memory than the store itself implies.
            long hint = Math.Min(ReadBindingsHint(token, files), (_store.Log.TailAddress - _store.Log.BeginAddress) / 32);
            if (hint > 0) restorer.ExpectBindings((int)Math.Min(hint, int.MaxValue / 2));
            entries = ScanInto(restorer);
            times.Scan = clock.Elapsed;
        }
        _bindings = restorer.AllocationCount;
        return (position, token, entries);
    }

    private void RecoverStore(Guid token)
    {
        try
        {
            _store.Recover(token);
        }
        catch (Exception e) when (e is FasterException or IOException or InvalidOperationException or ArgumentException or FormatException)
        {
            throw new StorageCorruptionException($"checkpoint {token} in {_checkpointDir} could not be recovered: {e.Message}", _checkpointDir, e);
        }
    }

    /// <summary>
    /// Verifies every checkpoint file against the manifest before anything of the checkpoint is used. The files are
    /// checksummed on two threads (the caller and one dedicated thread, never a pool thread: the caller may be one),
    /// the largest first on each: at 10M bindings the FasterKV snapshot and its index are hundreds of megabytes each,
    /// and one core was reading them one after the other while the other idled.
    /// </summary>
    private void VerifyFiles(Guid token, List<(string Rel, long Length, uint Crc)> files)
    {
        var paths = new (string Path, long Length, uint Crc)[files.Count];
        for (int i = 0; i < paths.Length; i++)
        {
            string path = Path.Combine(_checkpointDir, files[i].Rel);
            if (!File.Exists(path)) throw new StorageCorruptionException($"checkpoint file {path} is missing (listed in the manifest of checkpoint {token})", path);
            paths[i] = (path, files[i].Length, files[i].Crc);
        }
        // Largest first, dealt alternately: the two halves carry about the same bytes.
        Array.Sort(paths, static (a, b) => b.Length.CompareTo(a.Length));
        long total = 0;
        foreach (var p in paths) total += p.Length;
        StorageCorruptionException? failure = null;
        void Check(int first)
        {
            for (int i = first; i < paths.Length; i += 2)
            {
                var (path, length, crc) = paths[i];
                var (actualLength, actualCrc) = ChecksumFile(path);
                StorageCorruptionException? e = null;
                if (actualLength != length) e = new StorageCorruptionException($"checkpoint file {path} has {actualLength} bytes, its manifest says {length}", path);
                else if (actualCrc != crc) e = new StorageCorruptionException($"checkpoint file {path} fails its checksum (manifest of checkpoint {token})", path);
                if (e is not null) { Interlocked.CompareExchange(ref failure, e, null); return; }
            }
        }
        // Small checkpoints (tests, fresh cells) stay on one thread: a thread costs more than it saves below a few MB.
        if (paths.Length < 2 || total < (8L << 20))
        {
            Check(0);
            Check(1);
        }
        else
        {
            Exception? helperError = null;
            var helper = new Thread(() =>
            {
                try { Check(1); }
#pragma warning disable CA1031 // carried to the opening thread and rethrown there
                catch (Exception e) { helperError = e; }
#pragma warning restore CA1031
            }) { IsBackground = true, Name = "omega-checkpoint-verify" };
            helper.Start();
            Check(0);
            helper.Join();
            if (helperError is not null) throw new IOException($"verifying checkpoint {token}: {helperError.Message}", helperError);
        }
        if (failure is not null) throw failure;
    }

    /// <summary>
    /// Length and CRC-32C of a file, read through one 1 MiB buffer. The checkpoint files of a large store (the FasterKV
    /// snapshot and index) run to hundreds of megabytes: reading each whole into one array put that much on the large
    /// object heap at open and at every checkpoint, which is where a good part of recovery's peak resident memory went.
    /// </summary>
    private static (long Length, uint Crc) ChecksumFile(string path)
    {
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
            long length = 0;
            uint crc = 0;
            int n;
            while ((n = f.Read(buffer, 0, buffer.Length)) > 0)
            {
                crc = Crc32C.Compute(buffer.AsSpan(0, n), crc);
                length += n;
            }
            return (length, crc);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    // What the restore of entries carries from one entry to the next (the domain-loss entry, the outcomes' eviction order).
    private sealed class EntryScan
    {
        public byte[]? DomainLosses;
        public readonly List<(long Order, (SchedulerId, IdempotencyKey) Key)> Order = new();
        public readonly HashSet<(SchedulerId, IdempotencyKey)> Forgotten = new();
    }

    private long ScanInto(CellRestorer restorer)
    {
        var st = new EntryScan();
        long n = 0;
        using (var it = _store.Log.Scan(_store.Log.BeginAddress, _store.Log.TailAddress))
        {
            while (it.GetNext(out RecordInfo info))
            {
                if (info.Invalid) continue;
                n++;
                bool deleted = info.Tombstone;
                RestoreEntry(restorer, it.GetKey().AsReadOnlySpan(), deleted ? default : it.GetValue().AsReadOnlySpan(), deleted, st);
            }
        }
        FinishEntries(restorer, st);
        return n;
    }

    /// <summary>
    /// Loads the compact checkpoint at <paramref name="path"/> (verified by the caller) into the restorer: the bindings
    /// in file order (upserts and releases, as the scan would apply them), then the other entries through the same
    /// per-entry restore as the scan. Returns the records loaded.
    /// </summary>
    private long LoadCompact(CellRestorer restorer, string path, CompactCheckpoint.Header header)
    {
        var st = new EntryScan();
        // The bindings go through the restorer's two-thread pipeline (task index here, node lists on its thread); the
        // loader completes before the other entries are restored, so they see the restorer as Bind/Unbind would leave it.
        using (var loader = restorer.BeginBindingLoad())
        {
            CompactCheckpoint.Read(path, header,
                record =>
                {
                    var task = new TaskId(BinaryPrimitives.ReadInt64LittleEndian(record), BinaryPrimitives.ReadInt32LittleEndian(record[8..]));
                    int node = BinaryPrimitives.ReadInt32LittleEndian(record[12..]);
                    if (node < 0) loader.Unbind(task);
                    else loader.Bind(new Allocation(task, new NodeId(node), ReadResources(record[16..]), new TenantId(BinaryPrimitives.ReadInt32LittleEndian(record[48..])),
                        BinaryPrimitives.ReadInt32LittleEndian(record[52..]), BinaryPrimitives.ReadInt64LittleEndian(record[56..])));
                },
                (tombstone, key, value) => RestoreEntry(restorer, key, value, tombstone, st),
                loader.Complete);
        }
        FinishEntries(restorer, st);
        return header.Bindings + header.Entries;
    }

    /// <summary>
    /// The list size to give each node from a compact checkpoint's per-node counts of binding records. With release churn
    /// the file holds superseded records too, so the counts overstate the live bindings; they are scaled down to the
    /// live total the checkpoint recorded (<paramref name="live"/>, 0 = unknown), with a little room for the scaling's
    /// error. Exact when nothing was superseded (the counts are then the live counts).
    /// </summary>
    internal static int[] NodeCapacities(int[] counts, long live)
    {
        long total = 0;
        foreach (int c in counts) total += c;
        var capacity = new int[counts.Length];
        if (total == 0) return capacity;
        bool scaled = live > 0 && live < total;
        double factor = scaled ? (double)live / total : 1.0;
        for (int i = 0; i < counts.Length; i++)
        {
            if (counts[i] == 0) continue;
            capacity[i] = scaled ? (int)Math.Min(counts[i], Math.Ceiling(counts[i] * factor * 1.0625) + 4) : counts[i];
        }
        return capacity;
    }

    // One store entry into the restorer (the scan's and the compact load's common decoding).
    private void RestoreEntry(CellRestorer restorer, ReadOnlySpan<byte> k, ReadOnlySpan<byte> v, bool deleted, EntryScan st)
    {
        switch ((EntryKind)k[0])
        {
            case EntryKind.Allocation:
            {
                var task = new TaskId(BinaryPrimitives.ReadInt64LittleEndian(k[1..]), BinaryPrimitives.ReadInt32LittleEndian(k[9..]));
                if (deleted) restorer.Unbind(task);
                else restorer.Bind(DecodeAllocation(task, v));
                break;
            }
            case EntryKind.Node when !deleted:
                restorer.Node(new NodeId(BinaryPrimitives.ReadInt32LittleEndian(k[1..])), CellRecord.DecodeSpec(v[9..]), (NodeStatus)v[0], BinaryPrimitives.ReadInt64LittleEndian(v[1..]));
                break;
            case EntryKind.NodeVersion when !deleted:
                restorer.NodeVersion(new NodeId(BinaryPrimitives.ReadInt32LittleEndian(k[1..])), BinaryPrimitives.ReadInt64LittleEndian(v));
                break;
            case EntryKind.Lease when !deleted:
                restorer.Lease(new SchedulerId(BinaryPrimitives.ReadInt32LittleEndian(k[1..])), Encoding.UTF8.GetString(v[17..]),
                    new FencingToken(BinaryPrimitives.ReadInt64LittleEndian(v)), new DateTimeOffset(BinaryPrimitives.ReadInt64LittleEndian(v[8..]), TimeSpan.Zero), v[16] != 0);
                break;
            case EntryKind.Quota when !deleted:
                restorer.Quota(new TenantId(BinaryPrimitives.ReadInt32LittleEndian(k[1..])), v[0] != 0 ? ReadResources(v[1..]) : null);
                break;
            case EntryKind.Tenant when !deleted:
                restorer.Tenant(new TenantId(BinaryPrimitives.ReadInt32LittleEndian(k[1..])), Encoding.UTF8.GetString(v));
                break;
            case EntryKind.Outcome:
            {
                var key = new IdempotencyKey(BinaryPrimitives.ReadUInt64LittleEndian(k[1..]), BinaryPrimitives.ReadUInt64LittleEndian(k[9..]));
                var scheduler = k.Length >= 21 ? new SchedulerId(BinaryPrimitives.ReadInt32LittleEndian(k[17..])) : CellRestorer.LegacyScope;
                if (deleted)
                {
                    restorer.ForgetOutcome(scheduler, key);
                    st.Forgotten.Add((scheduler, key));
                    break;
                }
                long ord = BinaryPrimitives.ReadInt64LittleEndian(v[21..]);
                int count = BinaryPrimitives.ReadInt32LittleEndian(v[29..]);
                restorer.RestoreOutcome(scheduler, key, BinaryPrimitives.ReadUInt64LittleEndian(v), (TransactionStatus)v[8], BinaryPrimitives.ReadInt64LittleEndian(v[9..]),
                    BinaryPrimitives.ReadInt32LittleEndian(v[17..]), MemoryMarshal.Cast<byte, ClaimStatus>(v.Slice(33, count)), ord);
                st.Forgotten.Remove((scheduler, key));
                st.Order.Add((ord, (scheduler, key)));
                break;
            }
            case EntryKind.Object:
            {
                string key = Encoding.UTF8.GetString(k[1..]);
                if (deleted) restorer.ObjectDeleted(key);
                else restorer.RestoreObject(key, v[16..], BinaryPrimitives.ReadInt64LittleEndian(v), BinaryPrimitives.ReadInt64LittleEndian(v[8..]));
                break;
            }
            case EntryKind.Reservation:
            {
                var task = new TaskId(BinaryPrimitives.ReadInt64LittleEndian(k[1..]), BinaryPrimitives.ReadInt32LittleEndian(k[9..]));
                if (deleted) restorer.Unreserve(task);
                else restorer.Reserve(new CellReservation(task, new NodeId(BinaryPrimitives.ReadInt32LittleEndian(v)), ReadResources(v[4..]),
                    new TenantId(BinaryPrimitives.ReadInt32LittleEndian(v[36..])), BinaryPrimitives.ReadInt32LittleEndian(v[40..]),
                    new DateTimeOffset(BinaryPrimitives.ReadInt64LittleEndian(v[44..]), TimeSpan.Zero), BinaryPrimitives.ReadInt64LittleEndian(v[52..])));
                break;
            }
            case EntryKind.Guarantee when !deleted:
                restorer.Guarantee(new TenantId(BinaryPrimitives.ReadInt32LittleEndian(k[1..])), v[0] != 0 ? ReadResources(v[1..]) : null);
                break;
            case EntryKind.AuthRecord:
            {
                string key = Encoding.UTF8.GetString(k[1..]);
                if (deleted) restorer.AuthRecordDeleted(key);
                else restorer.AuthRecordPut(key, v);
                break;
            }
            case EntryKind.RecoveryBudget:
            {
                string region = Encoding.UTF8.GetString(k[1..]);
                if (deleted) restorer.RecoveryBudget(region, null, 0);
                else restorer.RecoveryBudget(region, ReadResources(v), BinaryPrimitives.ReadInt32LittleEndian(v[32..]));
                break;
            }
            case EntryKind.FailoverHome:
                restorer.FailoverHome(BinaryPrimitives.ReadInt64LittleEndian(k[1..]), k[9], deleted ? null : Encoding.UTF8.GetString(v));
                break;
            case EntryKind.DomainLosses when !deleted:
                // The log may hold several versions of the one key; the scan goes in address order, so the last wins.
                st.DomainLosses = v.ToArray();
                break;
            default:
                if (!deleted && (EntryKind)k[0] > EntryKind.Outcome && (EntryKind)k[0] is not (EntryKind.Tenant or EntryKind.DomainLosses or EntryKind.Object or EntryKind.AuthRecord or EntryKind.Reservation or EntryKind.Guarantee
                    or EntryKind.RecoveryBudget or EntryKind.FailoverHome))
                    throw new StorageCorruptionException($"store entry of unknown kind {k[0]} in {_device.FileName}", _device.FileName);
                break;
        }
    }

    private void FinishEntries(CellRestorer restorer, EntryScan st)
    {
        if (st.DomainLosses is not null)
        {
            foreach (var d in DecodeDomainLosses(st.DomainLosses))
            {
                _domainLosses.Add(d);
                restorer.RestoreDomainLoss(d.Domain, d.Author, d.Reason, d.At, d.Version, withdrawn: false);
            }
        }
        // Rebuild the eviction order of the outcomes still remembered (oldest first), as the cell's index holds them.
        var order = st.Order;
        order.Sort(static (a, b) => a.Order.CompareTo(b.Order));
        var seen = new HashSet<(SchedulerId, IdempotencyKey)>();
        for (int i = order.Count - 1; i >= 0; i--)
            if (st.Forgotten.Contains(order[i].Key) || !seen.Add(order[i].Key)) order.RemoveAt(i);
        foreach (var (_, key) in order) _outcomeOrder.Enqueue(key);
    }

    private static Allocation DecodeAllocation(TaskId task, ReadOnlySpan<byte> v)
        => new(task, new NodeId(BinaryPrimitives.ReadInt32LittleEndian(v)), ReadResources(v[4..]), new TenantId(BinaryPrimitives.ReadInt32LittleEndian(v[36..])),
            BinaryPrimitives.ReadInt32LittleEndian(v[40..]), BinaryPrimitives.ReadInt64LittleEndian(v[44..]));

    private static ResourceVector ReadResources(ReadOnlySpan<byte> v)
        => new(BinaryPrimitives.ReadInt64LittleEndian(v), BinaryPrimitives.ReadInt64LittleEndian(v[8..]), BinaryPrimitives.ReadInt64LittleEndian(v[16..]), BinaryPrimitives.ReadInt64LittleEndian(v[24..]));

    private static void WriteResources(Span<byte> s, ResourceVector r)
    {
        BinaryPrimitives.WriteInt64LittleEndian(s, r.CpuMillis);
        BinaryPrimitives.WriteInt64LittleEndian(s[8..], r.MemoryBytes);
        BinaryPrimitives.WriteInt64LittleEndian(s[16..], r.Gpus);
        BinaryPrimitives.WriteInt64LittleEndian(s[24..], r.DiskBytes);
    }

    // ---------------------------------------------------------------- replica snapshots (issue 16)

    /// <summary>
    /// Hands every valid record of the store log to <paramref name="sink"/> in address order (tombstones included),
    /// the same order <see cref="LoadInto(CellRestorer)"/> reads: applying them in order to an empty store reproduces this one.
    /// Returns how many. The caller holds the store still (the checkpoint lock). Not a hot path: one call per snapshot.
    /// </summary>
    public long DumpTo(ReplicaSnapshot.EntrySink sink)
    {
        long n = 0;
        using var it = _store.Log.Scan(_store.Log.BeginAddress, _store.Log.TailAddress);
        while (it.GetNext(out RecordInfo info))
        {
            if (info.Invalid) continue;
            bool tombstone = info.Tombstone;
            sink(tombstone, it.GetKey().AsReadOnlySpan(), tombstone ? default : it.GetValue().AsReadOnlySpan());
            n++;
        }
        return n;
    }

    private byte[] _rawKey = GC.AllocateArray<byte>(256, pinned: true);

    /// <summary>Puts one entry as a snapshot carries it (key and value in the layouts of docs/storage.md).</summary>
    public void RawPut(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        value.CopyTo(Value(value.Length));
        var k = SpanByte.FromFixedSpan(RawKey(key));
        var v = SpanByte.FromFixedSpan(_value.AsSpan(0, value.Length));
        Session.Upsert(ref k, ref v);
    }

    /// <summary>Deletes one entry as a snapshot's tombstone says.</summary>
    public void RawDelete(ReadOnlySpan<byte> key)
    {
        var k = SpanByte.FromFixedSpan(RawKey(key));
        Session.Delete(ref k);
    }

    // A pinned copy of the key (SpanByte points at it).
    private Span<byte> RawKey(ReadOnlySpan<byte> key)
    {
        if (_rawKey.Length < key.Length) _rawKey = GC.AllocateArray<byte>(Math.Max(key.Length, _rawKey.Length * 2), pinned: true);
        key.CopyTo(_rawKey);
        return _rawKey.AsSpan(0, key.Length);
    }

    // ---------------------------------------------------------------- apply (ICellRecordVisitor)

    /// <summary>Applies one journal record to the store.</summary>
    public void Apply(ReadOnlySpan<byte> record) => CellRecord.Decode(record, this);

    public void Begin(CellRecordKind kind, long sequence, long cellVersion)
    {
        _currentSequence = sequence;
        _currentVersion = cellVersion;
    }

    public void DomainLoss(string domain, string author, string reason, DateTimeOffset at, bool withdrawn)
    {
        _domainLosses.RemoveAll(d => string.Equals(d.Domain, domain, StringComparison.Ordinal));
        if (!withdrawn) _domainLosses.Add(new DomainLossConfirmation(domain, author, reason, at, _currentVersion));
        // Layout: count:i32, then per confirmation domain, author, reason (each len:i32 + UTF-8), at:i64 (UTC ticks), version:i64.
        int len = 4;
        foreach (var d in _domainLosses)
            len += 12 + Encoding.UTF8.GetByteCount(d.Domain) + Encoding.UTF8.GetByteCount(d.Author) + Encoding.UTF8.GetByteCount(d.Reason) + 16;
        var v = Value(len);
        int pos = 0;
        BinaryPrimitives.WriteInt32LittleEndian(v, _domainLosses.Count);
        pos += 4;
        foreach (var d in _domainLosses)
        {
            pos += WriteString(v[pos..], d.Domain);
            pos += WriteString(v[pos..], d.Author);
            pos += WriteString(v[pos..], d.Reason);
            BinaryPrimitives.WriteInt64LittleEndian(v[pos..], d.At.UtcTicks);
            BinaryPrimitives.WriteInt64LittleEndian(v[(pos + 8)..], d.Version);
            pos += 16;
        }
        Upsert(StateKeys.ById(_key, EntryKind.DomainLosses, 0), len);
    }

    public void RecoveryBudget(string region, ResourceVector? capacity, int minPriority)
    {
        // The region (≤ Cell.MaxRegionNameLength characters of [a-z0-9-]) shares the object-key buffer.
        _objectKey[0] = (byte)EntryKind.RecoveryBudget;
        int kl = 1 + Encoding.UTF8.GetBytes(region, _objectKey.AsSpan(1));
        var key2 = SpanByte.FromFixedSpan(_objectKey.AsSpan(0, kl));
        if (capacity is not { } c)
        {
            Session.Delete(ref key2);
            return;
        }
        var v = Value(36);
        WriteResources(v, c);
        BinaryPrimitives.WriteInt32LittleEndian(v[32..], minPriority);
        var val = SpanByte.FromFixedSpan(_value.AsSpan(0, 36));
        Session.Upsert(ref key2, ref val);
    }

    public void FailoverHome(long groupKey, byte keyShift, string? region)
    {
        _key[0] = (byte)EntryKind.FailoverHome;
        BinaryPrimitives.WriteInt64LittleEndian(_key.AsSpan(1), groupKey);
        _key[9] = keyShift;
        if (region is null)
        {
            Delete(10);
            return;
        }
        int n = Encoding.UTF8.GetBytes(region, Value(Encoding.UTF8.GetByteCount(region)));
        Upsert(10, n);
    }

    public void ObjectPut(string key, long created, ReadOnlySpan<byte> value)
    {
        var v = Value(16 + value.Length);
        BinaryPrimitives.WriteInt64LittleEndian(v, _currentVersion);
        BinaryPrimitives.WriteInt64LittleEndian(v[8..], created);
        value.CopyTo(v[16..]);
        var key2 = SpanByte.FromFixedSpan(_objectKey.AsSpan(0, ObjectKey(key)));
        var val = SpanByte.FromFixedSpan(_value.AsSpan(0, 16 + value.Length));
        Session.Upsert(ref key2, ref val);
    }

    public void ObjectDeleted(string key)
    {
        var key2 = SpanByte.FromFixedSpan(_objectKey.AsSpan(0, ObjectKey(key)));
        Session.Delete(ref key2);
    }

    public void AuthRecordPut(string key, ReadOnlySpan<byte> value)
    {
        value.CopyTo(Value(value.Length));
        var key2 = SpanByte.FromFixedSpan(_objectKey.AsSpan(0, AuthKey(key)));
        var val = SpanByte.FromFixedSpan(_value.AsSpan(0, value.Length));
        Session.Upsert(ref key2, ref val);
    }

    public void AuthRecordDeleted(string key)
    {
        var key2 = SpanByte.FromFixedSpan(_objectKey.AsSpan(0, AuthKey(key)));
        Session.Delete(ref key2);
    }

    // Security-record keys share the object-key buffer (Cell.MaxAuthKeyLength is below Cell.MaxObjectKeyLength).
    private int AuthKey(string key)
    {
        _objectKey[0] = (byte)EntryKind.AuthRecord;
        return 1 + Encoding.UTF8.GetBytes(key, _objectKey.AsSpan(1));
    }

    private int ObjectKey(string key)
    {
        _objectKey[0] = (byte)EntryKind.Object;
        return 1 + Encoding.UTF8.GetBytes(key, _objectKey.AsSpan(1));
    }

    private static int WriteString(Span<byte> s, string text)
    {
        int n = Encoding.UTF8.GetBytes(text, s[4..]);
        BinaryPrimitives.WriteInt32LittleEndian(s, n);
        return 4 + n;
    }

    private static List<DomainLossConfirmation> DecodeDomainLosses(ReadOnlySpan<byte> v)
    {
        var list = new List<DomainLossConfirmation>();
        try
        {
            int count = BinaryPrimitives.ReadInt32LittleEndian(v);
            int pos = 4;
            string Str(ReadOnlySpan<byte> s, ref int p)
            {
                int n = BinaryPrimitives.ReadInt32LittleEndian(s[p..]);
                string t = Encoding.UTF8.GetString(s.Slice(p + 4, n));
                p += 4 + n;
                return t;
            }
            for (int i = 0; i < count; i++)
            {
                string domain = Str(v, ref pos), author = Str(v, ref pos), reason = Str(v, ref pos);
                var at = new DateTimeOffset(BinaryPrimitives.ReadInt64LittleEndian(v[pos..]), TimeSpan.Zero);
                long version = BinaryPrimitives.ReadInt64LittleEndian(v[(pos + 8)..]);
                pos += 16;
                list.Add(new DomainLossConfirmation(domain, author, reason, at, version));
            }
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new StorageCorruptionException($"the domain-loss entry of the store is truncated: {e.Message}", "store", e);
        }
        return list;
    }

    public void Bind(in Allocation a)
    {
        var v = Value(52);
        BinaryPrimitives.WriteInt32LittleEndian(v, a.Node.Value);
        WriteResources(v[4..], a.Resources);
        BinaryPrimitives.WriteInt32LittleEndian(v[36..], a.Tenant.Value);
        BinaryPrimitives.WriteInt32LittleEndian(v[40..], a.Priority);
        BinaryPrimitives.WriteInt64LittleEndian(v[44..], a.Generation);
        Upsert(StateKeys.Allocation(_key, a.Task), 52);
        _bindings++;
    }

    public void Unbind(TaskId task)
    {
        Delete(StateKeys.Allocation(_key, task));
        _bindings--;
    }

    public void Reserve(in CellReservation r)
    {
        var v = Value(60);
        BinaryPrimitives.WriteInt32LittleEndian(v, r.Node.Value);
        WriteResources(v[4..], r.Resources);
        BinaryPrimitives.WriteInt32LittleEndian(v[36..], r.Tenant.Value);
        BinaryPrimitives.WriteInt32LittleEndian(v[40..], r.Priority);
        BinaryPrimitives.WriteInt64LittleEndian(v[44..], r.ExpiresAt.UtcTicks);
        BinaryPrimitives.WriteInt64LittleEndian(v[52..], r.Generation);
        Upsert(StateKeys.Allocation(_key, r.Task, EntryKind.Reservation), 60);
    }

    public void Unreserve(TaskId task) => Delete(StateKeys.Allocation(_key, task, EntryKind.Reservation));

    public void Guarantee(TenantId tenant, ResourceVector? guaranteed)
    {
        var v = Value(33);
        v[0] = guaranteed.HasValue ? (byte)1 : (byte)0;
        WriteResources(v[1..], guaranteed ?? default);
        Upsert(StateKeys.ById(_key, EntryKind.Guarantee, tenant.Value), 33);
    }

    public void NodeVersion(NodeId node, long nodeVersion)
    {
        BinaryPrimitives.WriteInt64LittleEndian(Value(8), nodeVersion);
        Upsert(StateKeys.ById(_key, EntryKind.NodeVersion, node.Value), 8);
    }

    public void Node(NodeId node, NodeSpec spec, NodeStatus status, long nodeVersion)
    {
        var specBytes = CellRecord.EncodeSpec(spec);
        var v = Value(9 + specBytes.Length);
        v[0] = (byte)status;
        BinaryPrimitives.WriteInt64LittleEndian(v[1..], nodeVersion);
        specBytes.CopyTo(v[9..]);
        Upsert(StateKeys.ById(_key, EntryKind.Node, node.Value), 9 + specBytes.Length);
        NodeVersion(node, nodeVersion);
    }

    public void Idempotency(SchedulerId scheduler, IdempotencyKey key, ulong transactionHash, TransactionStatus status, long resultVersion, int applied, ReadOnlySpan<ClaimStatus> claims)
    {
        int len = 33 + claims.Length;
        var v = Value(len);
        BinaryPrimitives.WriteUInt64LittleEndian(v, transactionHash);
        v[8] = (byte)status;
        BinaryPrimitives.WriteInt64LittleEndian(v[9..], resultVersion);
        BinaryPrimitives.WriteInt32LittleEndian(v[17..], applied);
        BinaryPrimitives.WriteInt64LittleEndian(v[21..], _currentSequence);
        BinaryPrimitives.WriteInt32LittleEndian(v[29..], claims.Length);
        MemoryMarshal.AsBytes(claims).CopyTo(v[33..]);
        Upsert(StateKeys.Outcome(_key, scheduler, key), len);
        // Mirror the cell's bounded index: forget the oldest outcome once more than the retention are remembered.
        _outcomeOrder.Enqueue((scheduler, key));
        while (_outcomeOrder.Count > _retention)
        {
            var (oldScheduler, oldKey) = _outcomeOrder.Dequeue();
            Delete(StateKeys.Outcome(_key, oldScheduler, oldKey));
        }
    }

    public void Lease(SchedulerId id, string name, FencingToken token, DateTimeOffset expiresAt, bool released)
    {
        int nameLen = Encoding.UTF8.GetByteCount(name);
        var v = Value(17 + nameLen);
        BinaryPrimitives.WriteInt64LittleEndian(v, token.Value);
        BinaryPrimitives.WriteInt64LittleEndian(v[8..], expiresAt.UtcTicks);
        v[16] = released ? (byte)1 : (byte)0;
        Encoding.UTF8.GetBytes(name, v[17..]);
        Upsert(StateKeys.ById(_key, EntryKind.Lease, id.Value), 17 + nameLen);
    }

    public void Tenant(TenantId tenant, string name)
    {
        int len = Encoding.UTF8.GetByteCount(name);
        var v = Value(len);
        Encoding.UTF8.GetBytes(name, v);
        Upsert(StateKeys.ById(_key, EntryKind.Tenant, tenant.Value), len);
    }

    public void Quota(TenantId tenant, ResourceVector? limit)
    {
        var v = Value(33);
        v[0] = limit.HasValue ? (byte)1 : (byte)0;
        WriteResources(v[1..], limit ?? default);
        Upsert(StateKeys.ById(_key, EntryKind.Quota, tenant.Value), 33);
    }

    private Span<byte> Value(int n)
    {
        if (_value.Length < n) _value = GC.AllocateArray<byte>(Math.Max(n, _value.Length * 2), pinned: true);
        return _value.AsSpan(0, n);
    }

    private void Upsert(int keyLength, int valueLength)
    {
        // Both buffers are pinned arrays, so SpanByte may point at them.
        var key = SpanByte.FromFixedSpan(_key.AsSpan(0, keyLength));
        var value = SpanByte.FromFixedSpan(_value.AsSpan(0, valueLength));
        Session.Upsert(ref key, ref value);
    }

    private void Delete(int keyLength)
    {
        var key = SpanByte.FromFixedSpan(_key.AsSpan(0, keyLength));
        Session.Delete(ref key);
    }

    // ---------------------------------------------------------------- checkpoint

    /// <summary>
    /// Takes a snapshot checkpoint of everything applied so far, writes its manifest (position + file checksums) and
    /// points CURRENT at it (write-then-rename, so a crash leaves the previous checkpoint current), then deletes older
    /// checkpoints. Returns the token.
    /// </summary>
    public Guid Checkpoint(CheckpointPosition position) => Checkpoint(position, out _);

    /// <summary>As <see cref="Checkpoint(CheckpointPosition)"/>, with the time of each phase (Apply is left to the caller).</summary>
    public Guid Checkpoint(CheckpointPosition position, out CheckpointTimings timings)
    {
        long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        // No session may sit idle inside FASTER's epoch while the checkpoint state machine runs.
        _session?.CompletePending(wait: true);
        _session?.Dispose();
        _session = null;
        var (ok, token) = _store.TakeFullCheckpointAsync(CheckpointType.Snapshot).AsTask().GetAwaiter().GetResult();
        if (!ok) throw new IOException("FASTER refused to start a checkpoint (another one is running)");
        var files = new List<(string, long, uint)>();
        string tokenText = token.ToString();
        // The sizing hint for the next recovery (BindingsHintPath): a file named by the token, so the manifest lists
        // and checksums it like FASTER's own files, and a store opened by an older build verifies it and ignores it
        // (a new manifest line would have made older builds refuse the manifest).
        File.WriteAllText(BindingsHintPath(tokenText), Math.Max(0, _bindings).ToString(CultureInfo.InvariantCulture));
        var snapshot = System.Diagnostics.Stopwatch.GetElapsedTime(t0);
        t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        long compactRecords = _writeCompact ? WriteCompact(tokenText, position) : 0;
        var compact = _writeCompact ? System.Diagnostics.Stopwatch.GetElapsedTime(t0) : TimeSpan.Zero;
        t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        foreach (var path in Directory.EnumerateFiles(_checkpointDir, "*", SearchOption.AllDirectories))
        {
            string rel = Path.GetRelativePath(_checkpointDir, path);
            if (!rel.Contains(tokenText, StringComparison.OrdinalIgnoreCase)) continue;
            // The compact checkpoint checks itself and must not be listed: a damaged one falls back to the scan
            // instead of making the manifest refuse the whole checkpoint.
            if (Path.GetFileName(rel).StartsWith("omega-compact.", StringComparison.Ordinal)) continue;
            var (length, crc) = ChecksumFile(path);
            files.Add((rel, length, crc));
        }
        if (files.Count == 0) throw new IOException($"checkpoint {token} wrote no files under {_checkpointDir}");
        WriteManifest(token, position, files);
        string current = Path.Combine(_checkpointDir, CurrentFile);
        File.WriteAllText(current + ".tmp", tokenText);
        File.Move(current + ".tmp", current, overwrite: true);
        DeleteOlderThan(token);
        timings = new CheckpointTimings(default, snapshot, compact, System.Diagnostics.Stopwatch.GetElapsedTime(t0), compactRecords);
        return token;
    }

    /// <summary>
    /// Writes the compact checkpoint of the state just checkpointed: every record of the store log in address order
    /// (what the recovery scan would read), on this checkpointer thread, never on the commit path. Written before the
    /// manifest and CURRENT, so a crash leaves either no file for the new token or a complete one (or a torn one, which
    /// fails its checks and makes recovery scan instead).
    /// </summary>
    private long WriteCompact(string token, CheckpointPosition position)
    {
        using var writer = new CompactCheckpoint.Writer(CompactPath(token));
        long n = 0;
        using (var it = _store.Log.Scan(_store.Log.BeginAddress, _store.Log.TailAddress))
        {
            while (it.GetNext(out RecordInfo info))
            {
                if (info.Invalid) continue;
                bool tombstone = info.Tombstone;
                writer.Add(tombstone, it.GetKey().AsReadOnlySpan(), tombstone ? default : it.GetValue().AsReadOnlySpan());
                n++;
            }
        }
        writer.Complete(position.CellVersion, position.Sequence);
        return n;
    }

    private string CompactPath(string token) => Path.Combine(_checkpointDir, $"omega-compact.{token}");

    private string BindingsHintPath(string token) => Path.Combine(_checkpointDir, $"omega-bindings.{token}");

    /// <summary>The live-binding count a checkpoint recorded, or 0 when it has none (written before the hint existed).</summary>
    private long ReadBindingsHint(Guid token, List<(string Rel, long Length, uint Crc)> files)
    {
        string path = BindingsHintPath(token.ToString());
        string rel = Path.GetRelativePath(_checkpointDir, path);
        // Only a hint the manifest lists (and so was just verified) is trusted.
        bool listed = false;
        foreach (var f in files) listed |= string.Equals(f.Rel, rel, StringComparison.Ordinal);
        if (!listed || !File.Exists(path)) return 0;   // (a listed file that is missing is refused by the verification)
        return long.TryParse(File.ReadAllText(path).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out long n) ? n : 0;
    }

    private string ManifestPath(Guid token) => Path.Combine(_checkpointDir, $"omega-checkpoint.{token}.manifest");

    private void WriteManifest(Guid token, CheckpointPosition p, List<(string Rel, long Length, uint Crc)> files)
    {
        var sb = new StringBuilder();
        sb.Append("omega-checkpoint 1\n");
        sb.Append(CultureInfo.InvariantCulture, $"token {token}\nversion {p.CellVersion}\nsequence {p.Sequence}\nreplay {p.ReplayAddress}\nchunk {p.LastChunkSequence}\n");

        foreach (var (rel, len, crc) in files) sb.Append(CultureInfo.InvariantCulture, $"file {len} {crc:x8} {rel}\n");
        string path = ManifestPath(token);
        File.WriteAllText(path + ".tmp", sb.ToString());
        File.Move(path + ".tmp", path, overwrite: true);
    }

    private (CheckpointPosition, List<(string, long, uint)>) ReadManifest(Guid token)
    {
        string path = ManifestPath(token);
        if (!File.Exists(path)) throw new StorageCorruptionException($"checkpoint manifest {path} is missing", path);
        var lines = File.ReadAllLines(path);
        try
        {
            if (lines.Length < 6 || lines[0] != "omega-checkpoint 1") throw new FormatException("bad header");
            long Field(int i, string name)
            {
                var parts = lines[i].Split(' ', 2);
                if (parts[0] != name) throw new FormatException($"line {i + 1}: expected {name}");
                return long.Parse(parts[1], CultureInfo.InvariantCulture);
            }
            var pos = new CheckpointPosition(Field(2, "version"), Field(3, "sequence"), Field(4, "replay"), Field(5, "chunk"));
            var files = new List<(string, long, uint)>();
            for (int i = 6; i < lines.Length; i++)
            {
                if (lines[i].Length == 0) continue;
                var parts = lines[i].Split(' ', 4);
                if (parts.Length != 4 || parts[0] != "file") throw new FormatException($"line {i + 1}: expected a file entry");
                files.Add((parts[3], long.Parse(parts[1], CultureInfo.InvariantCulture), uint.Parse(parts[2], NumberStyles.HexNumber, CultureInfo.InvariantCulture)));
            }
            return (pos, files);
        }
        catch (FormatException e)
        {
            throw new StorageCorruptionException($"checkpoint manifest {path} is malformed: {e.Message}", path, e);
        }
    }

    private void DeleteOlderThan(Guid keep)
    {
        string keepText = keep.ToString();
        foreach (var dir in Directory.EnumerateDirectories(_checkpointDir, "*", SearchOption.AllDirectories).ToList())
        {
            string name = Path.GetFileName(dir);
            if (Guid.TryParse(name, out _) && !string.Equals(name, keepText, StringComparison.OrdinalIgnoreCase) && Directory.Exists(dir))
                Directory.Delete(dir, recursive: true);
        }
        foreach (var file in Directory.EnumerateFiles(_checkpointDir, "omega-checkpoint.*.manifest"))
            if (!file.Contains(keepText, StringComparison.OrdinalIgnoreCase)) File.Delete(file);
        foreach (var file in Directory.EnumerateFiles(_checkpointDir, "omega-bindings.*"))
            if (!file.Contains(keepText, StringComparison.OrdinalIgnoreCase)) File.Delete(file);
        foreach (var file in Directory.EnumerateFiles(_checkpointDir, "omega-compact.*"))
            if (!file.Contains(keepText, StringComparison.OrdinalIgnoreCase) || file.EndsWith(".tmp", StringComparison.Ordinal)) File.Delete(file);
    }

    public void Dispose()
    {
        _session?.Dispose();
        _session = null;
        _store.Dispose();
        _device.Dispose();
    }
}
