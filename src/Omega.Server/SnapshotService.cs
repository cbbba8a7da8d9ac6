using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using Microsoft.Win32.SafeHandles;

namespace Omega.Server;

/// <summary>
/// The leader's replica snapshots (docs/protocol.md, "Replica snapshots"): at most <see cref="ServerOptions.MaxSnapshots"/>
/// snapshot files at once, each written by <see cref="ISnapshotSource.WriteSnapshot"/> on a dedicated thread, read in
/// chunks by offset, and deleted after <see cref="ServerOptions.SnapshotIdleExpiry"/> without a read, when the
/// leadership is lost, and at dispose.
/// </summary>
/// <remarks>
/// The file is on disk, never in memory: a chunk read rents one buffer of at most the chunk size for the time of the
/// read and the send. A pulled transfer (the replica asks for each chunk) was chosen over a server push so that the
/// server needs no flow control of its own: the reader's pipeline depth bounds what is queued on the connection.
/// </remarks>
internal sealed class SnapshotService : IDisposable
{
    internal sealed class Entry
    {
        public required long Id { get; init; }
        public required string Path { get; init; }
        public required SafeFileHandle Handle { get; init; }
        public required long Sequence { get; init; }
        public required long CellVersion { get; init; }
        public required long TotalBytes { get; init; }
        public required byte[] Sha256 { get; init; }
        public long LastUsedTicks;
        public int Readers;
        public bool Dropped;
    }

    private readonly ISnapshotSource _source;
    private readonly ServerOptions _options;
    private readonly ConcurrentDictionary<long, Entry> _held = new();
    private readonly Lock _lock = new();
    private readonly Timer _sweeper;
    private int _reserved;
    private long _nextId;
    private bool _disposed;

    public SnapshotService(ISnapshotSource source, ServerOptions options)
    {
        _source = source;
        _options = options;
        Directory.CreateDirectory(source.Directory);
        // A crashed process leaves its files: nobody can read them any more.
        foreach (var stale in Directory.EnumerateFiles(source.Directory, "snapshot-*.tmp")) TryDelete(stale);
        _sweeper = new Timer(_ => Sweep(), null, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5));
    }

    public int ChunkBytes => _options.SnapshotChunkBytes;

    /// <summary>Snapshot files held now (for tests).</summary>
    public int Held => _held.Count;

    /// <summary>Takes one of the snapshot slots, or false when all are in use (SnapshotBusy).</summary>
    public bool TryReserve()
    {
        Sweep();
        lock (_lock)
        {
            if (_disposed || _reserved >= _options.MaxSnapshots) return false;
            _reserved++;
            return true;
        }
    }

    /// <summary>Writes a snapshot into a reserved slot (blocking; on a dedicated thread). Releases the slot on failure.</summary>
    public Entry Create()
    {
        long id = Interlocked.Increment(ref _nextId);
        string path = Path.Combine(_source.Directory, $"snapshot-{Environment.ProcessId}-{id}.tmp");
        SafeFileHandle? handle = null;
        try
        {
            long sequence, version;
            using (var file = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read, 1 << 20))
            {
                (sequence, version) = _source.WriteSnapshot(file);
                file.Flush(flushToDisk: false);
            }
            byte[] sha;
            long total;
            using (var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan))
            {
                total = file.Length;
                sha = SHA256.HashData(file);
            }
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            var entry = new Entry
            {
                Id = id, Path = path, Handle = handle,
                Sequence = sequence, CellVersion = version, TotalBytes = total, Sha256 = sha, LastUsedTicks = Stopwatch.GetTimestamp(),
            };
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                _held[id] = entry;
            }
            return entry;
        }
        catch
        {
            handle?.Dispose();
            TryDelete(path);
            lock (_lock) _reserved--;
            throw;
        }
    }

    /// <summary>The snapshot <paramref name="id"/> with a reader counted (call <see cref="EndRead"/>), or null when unknown.</summary>
    public Entry? BeginRead(long id)
    {
        lock (_lock)
        {
            if (!_held.TryGetValue(id, out var e) || e.Dropped) return null;
            e.Readers++;
            e.LastUsedTicks = Stopwatch.GetTimestamp();
            return e;
        }
    }

    public void EndRead(Entry e)
    {
        bool close;
        lock (_lock)
        {
            e.Readers--;
            e.LastUsedTicks = Stopwatch.GetTimestamp();
            close = e.Dropped && e.Readers == 0;
        }
        if (close) Close(e);
    }

    /// <summary>Drops every snapshot (leadership lost, dispose); a read in progress finishes first.</summary>
    public void DropAll()
    {
        foreach (var id in _held.Keys) Drop(id);
    }

    private void Sweep()
    {
        long now = Stopwatch.GetTimestamp();
        foreach (var (id, e) in _held)
            if (Stopwatch.GetElapsedTime(Volatile.Read(ref e.LastUsedTicks), now) > _options.SnapshotIdleExpiry) Drop(id);
    }

    private void Drop(long id)
    {
        bool close;
        Entry? e;
        lock (_lock)
        {
            if (!_held.TryRemove(id, out e)) return;
            e.Dropped = true;
            _reserved--;
            close = e.Readers == 0;
        }
        if (close) Close(e);
    }

    private static void Close(Entry e)
    {
        e.Handle.Dispose();
        TryDelete(e.Path);
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // best effort: the next start deletes it
        }
        catch (UnauthorizedAccessException)
        {
            // idem
        }
    }

    public void Dispose()
    {
        lock (_lock) _disposed = true;
        _sweeper.Dispose();
        DropAll();
    }
}
