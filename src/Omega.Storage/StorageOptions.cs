using Omega.Cells;

namespace Omega.Storage;

/// <summary>
/// Configuration of a durable cell store. Every FASTER memory size is set explicitly here, because FASTER's own default
/// log memory is 16 GiB. The defaults suit an embedded engine with up to a few million bindings.
/// </summary>
public sealed class StorageOptions
{
    /// <summary>
    /// The data directory (journal, store, checkpoints). Defaults to <c>$LocalApplicationData/omega/&lt;cell name&gt;</c>
    /// (on Linux <c>~/.local/share/omega/default</c>), so the embedded default works with no configuration.
    /// </summary>
    public string? DataDirectory { get; set; }

    /// <summary>Options of the cell itself (name, clock, limits).</summary>
    public CellOptions Cell { get; set; } = new();

    /// <summary>
    /// The group-commit window: the committer issues at most one group per window (counted from the previous issue), unless
    /// a group fills (<see cref="GroupCommitMaxRecords"/>, <see cref="GroupCommitMaxBytes"/>) or the journal was idle.
    /// Under sustained load an acknowledgement waits on average half a window plus one log commit. Default 1 ms.
    /// </summary>
    public TimeSpan GroupCommitWindow { get; set; } = TimeSpan.FromMilliseconds(1);

    /// <summary>
    /// How the group-commit thread waits for FasterLog's commit of a group: false (default) spins with yields until the
    /// commit completes (<c>Commit(spinWait: true)</c>), which answers fastest on an idle core; true blocks the dedicated
    /// thread on the commit's completion, which leaves the core to the committers and the server while the disk works
    /// (on two cores the spin competes with them). Which is better is measured, not assumed: <c>Omega.StorageBench
    /// throughput</c> runs both and prints the CPU per claim of each.
    /// </summary>
    public bool GroupCommitBlockingWait { get; set; }

    /// <summary>
    /// How many journal commits the group-commit thread keeps in flight at once (at least 1). With 1, a record that arrives
    /// just after a commit started waits for that commit and then for its own; with 2 (default) the next group is issued
    /// while the previous one flushes, so it waits about one commit. FasterLog completes commits in address order and the
    /// durable watermark advances group by group, oldest first, so no acknowledgement gets ahead of its own commit.
    /// </summary>
    public int GroupCommitMaxInflight { get; set; } = 2;

    /// <summary>
    /// Tests only: wraps the journal's device (a test injects a slow or gated disk to hold writes back). Null in production.
    /// </summary>
    internal Func<FASTER.core.IDevice, FASTER.core.IDevice>? JournalDeviceWrapper { get; set; }

    /// <summary>Commit a group early once it holds this many records. Default 4096 (design.md §11: ~2.8M entries/s).</summary>
    public int GroupCommitMaxRecords { get; set; } = 4096;

    /// <summary>Commit a group early once it holds this many bytes. Default 1 MiB.</summary>
    public int GroupCommitMaxBytes { get; set; } = 1 << 20;

    /// <summary>
    /// Appends wait (back-pressure under the commit lock) once this many bytes are waiting for the committer. Default 64 MiB.
    /// </summary>
    public int MaxPendingBytes { get; set; } = 64 << 20;

    /// <summary>How often the journal tail is applied to the store and a checkpoint taken; null disables the timer. Default 1 minute.</summary>
    public TimeSpan? CheckpointInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Take a checkpoint when the store is disposed cleanly, so the next open replays nothing. Default true.</summary>
    public bool CheckpointOnDispose { get; set; } = true;

    /// <summary>
    /// Write a compact checkpoint (<c>checkpoints/omega-compact.&lt;token&gt;</c>: the store's records as fixed 64-byte
    /// binding records and a few variable entries, checksummed per 1 MiB block) with every checkpoint, so recovery reads
    /// it instead of scanning FasterKV's log (issue 15). Costs one sequential pass over the store log on the checkpointer
    /// thread and a file about the size of the live bindings. Default true.
    /// </summary>
    public bool WriteCompactCheckpoint { get; set; } = true;

    /// <summary>
    /// Recover from the compact checkpoint when it is present and passes its checks (else recovery scans FasterKV's log,
    /// with a warning when a file was present but refused). False forces the full scan (for comparisons). Default true.
    /// </summary>
    public bool UseCompactCheckpoint { get; set; } = true;

    /// <summary>Journal (FasterLog) page size, as a power of two. Default 2^22 = 4 MiB; a journal chunk never exceeds half a page.</summary>
    public int JournalPageSizeBits { get; set; } = 22;

    /// <summary>Journal (FasterLog) in-memory buffer, as a power of two. Default 2^26 = 64 MiB.</summary>
    public int JournalMemorySizeBits { get; set; } = 26;

    /// <summary>Journal segment file size, as a power of two. Default 2^30 = 1 GiB.</summary>
    public int JournalSegmentSizeBits { get; set; } = 30;

    /// <summary>Store (FasterKV) hash index buckets (64 bytes each, 7 entries). Default 2^20 = 64 MiB.</summary>
    public long StoreIndexBuckets { get; set; } = 1L << 20;

    /// <summary>Store (FasterKV) log page size, as a power of two. Default 2^22 = 4 MiB.</summary>
    public int StorePageSizeBits { get; set; } = 22;

    /// <summary>Store (FasterKV) in-memory log, as a power of two. Default 2^28 = 256 MiB; older records live on disk.</summary>
    public int StoreMemorySizeBits { get; set; } = 28;

    /// <summary>Store segment file size, as a power of two. Default 2^30 = 1 GiB.</summary>
    public int StoreSegmentSizeBits { get; set; } = 30;

    /// <summary>
    /// Receives warnings (a torn journal tail discarded on open, a failed periodic checkpoint). A host routes them to its
    /// logger (Omega.Hosting does: event 1002 <c>StorageWarning</c>), which keeps this project free of logging
    /// dependencies. The default, for a store opened without a host, writes them to standard error.
    /// </summary>
    public Action<string> Warning { get; set; } = static m => Console.Error.WriteLine("omega.storage warning: " + m);

    /// <summary>A copy of these options for another data directory (a replica installing a snapshot beside its own).</summary>
    public StorageOptions WithDataDirectory(string dataDirectory)
    {
        var copy = (StorageOptions)MemberwiseClone();
        copy.DataDirectory = dataDirectory;
        return copy;
    }

    internal string ResolveDataDirectory()
        => DataDirectory ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create), "omega", Cell.Name);
}
