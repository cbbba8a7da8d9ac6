namespace Omega.Storage;

/// <summary>What opening a store found and did.</summary>
public sealed class RecoveryReport
{
    /// <summary>True when a checkpoint was loaded.</summary>
    public bool FromCheckpoint { get; init; }

    /// <summary>The checkpoint's token, when one was loaded.</summary>
    public Guid CheckpointToken { get; init; }

    /// <summary>Records loaded from the checkpoint's store (bindings, nodes, leases, quotas, idempotency entries).</summary>
    public long CheckpointEntries { get; init; }

    /// <summary>Journal records replayed after the checkpoint.</summary>
    public long RecordsReplayed { get; init; }

    /// <summary>Bindings in the recovered cell.</summary>
    public int Allocations { get; init; }

    /// <summary>The recovered cell version.</summary>
    public long CellVersion { get; init; }

    /// <summary>The recovered journal sequence.</summary>
    public long Sequence { get; init; }

    /// <summary>Time spent loading the checkpoint.</summary>
    public TimeSpan CheckpointLoadTime { get; init; }

    /// <summary>Part of <see cref="CheckpointLoadTime"/>: verifying the checkpoint's files against their manifest (length and CRC-32C).</summary>
    public TimeSpan CheckpointVerifyTime { get; init; }

    /// <summary>Part of <see cref="CheckpointLoadTime"/>: FasterKV's own recovery of the checkpoint (its index and snapshot log).</summary>
    public TimeSpan CheckpointRecoverTime { get; init; }

    /// <summary>
    /// Part of <see cref="CheckpointLoadTime"/>: the scan of the recovered FasterKV log into the cell under construction
    /// (decoding every entry and staging bindings in their node lists).
    /// </summary>
    public TimeSpan CheckpointScanTime { get; init; }

    /// <summary>
    /// True when the checkpoint's bindings and entries were loaded from its compact checkpoint file instead of a scan of
    /// FasterKV's log (issue 15); <see cref="CheckpointScanTime"/> is then the time of that load, and
    /// <see cref="CheckpointVerifyTime"/> includes the compact file's checks.
    /// </summary>
    public bool FromCompactCheckpoint { get; init; }

    /// <summary>
    /// Why the checkpoint's compact file was present but not used (damaged, of another format, at another position, or
    /// disabled by <see cref="StorageOptions.UseCompactCheckpoint"/>): recovery scanned FasterKV's log instead. Null when
    /// it was used or there was none.
    /// </summary>
    public string? CompactCheckpointFallback { get; init; }

    /// <summary>Time spent replaying the journal tail.</summary>
    public TimeSpan ReplayTime { get; init; }

    /// <summary>Time spent rebuilding derived state (per-node sums and task sets, tenant usage, indexes) and publishing nodes.</summary>
    public TimeSpan RebuildTime { get; init; }

    /// <summary>Total open time.</summary>
    public TimeSpan TotalTime { get; init; }

    /// <summary>The journal address replay started from (the checkpoint's replay address, or the journal's start).</summary>
    public long ReplayFromAddress { get; init; }

    /// <summary>The journal's first address on open.</summary>
    public long JournalBeginAddress { get; init; }

    /// <summary>The journal's committed end on open.</summary>
    public long JournalCommittedAddress { get; init; }

    /// <summary>Warnings (for example a torn final journal chunk that was discarded).</summary>
    public IReadOnlyList<string> Warnings { get; init; } = Array.Empty<string>();
}
