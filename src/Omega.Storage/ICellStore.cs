using Omega.Cells;

namespace Omega.Storage;

/// <summary>
/// A cell together with its durability: the in-memory authoritative <see cref="Cell"/> plus the watermark of what is
/// durable. The same interface is served by the FASTER store (<see cref="CellStore.Open"/>) and by an in-memory store for
/// tests and simulation (<see cref="CellStore.InMemory"/>), where everything is durable at once.
/// </summary>
/// <remarks>
/// <para>Which result is safe to act on: the <see cref="CommitResult"/> that <see cref="Cell.Commit"/> returns is the
/// cell's in-memory decision. Use it to continue scheduling (it is what snapshots already show), but hand it to a
/// submitter, push its bindings to agents or start a task only after it is durable: await
/// <see cref="CommitDurableAsync"/>, or <see cref="WaitForDurableAsync"/> with the <see cref="Cell.JournalSequence"/>
/// read after the commit, or (for pushing bindings) never beyond <see cref="DurableVersion"/>. After a crash the cell
/// comes back exactly as of the last durable record; a non-durable result may be lost.</para>
/// </remarks>
public interface ICellStore : IDisposable
{
    /// <summary>The authoritative in-memory cell. Commit, release and change nodes through it as usual.</summary>
    Cell Cell { get; }

    /// <summary>True when the store persists (false for the in-memory store).</summary>
    bool IsPersistent { get; }

    /// <summary>The highest journal sequence known durable.</summary>
    long DurableSequence { get; }

    /// <summary>
    /// The durable watermark: the highest cell version known durable. Bindings with a generation at or below it survive
    /// a crash; push bindings to agents only up to it.
    /// </summary>
    long DurableVersion { get; }

    /// <summary>What opening the store found (checkpoint, replayed records, warnings, timings).</summary>
    RecoveryReport Recovery { get; }

    /// <summary>Storage metrics (also exported through the <c>Omega.Storage</c> meter).</summary>
    StorageMetrics Metrics { get; }

    /// <summary>Completes when every journal record up to <paramref name="sequence"/> (a <see cref="Cell.JournalSequence"/>) is durable.</summary>
    ValueTask WaitForDurableAsync(long sequence, CancellationToken cancellationToken = default);

    /// <summary>Completes when the durable watermark has reached <paramref name="cellVersion"/> (a version the cell has reached).</summary>
    ValueTask WaitForVersionAsync(long cellVersion, CancellationToken cancellationToken = default);

    /// <summary>
    /// Commits <paramref name="transaction"/> and completes with its (detached) result once the record covering it is
    /// durable: the acknowledgement that is safe to act on. Idempotent retries get the original result, durably.
    /// </summary>
    ValueTask<CommitResult> CommitDurableAsync(Transaction transaction, CancellationToken cancellationToken = default);

    /// <summary>
    /// Applies the journal written so far to the store and takes a checkpoint, then truncates the journal up to it.
    /// A no-op on the in-memory store.
    /// </summary>
    ValueTask CheckpointAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Registers <paramref name="listener"/> to be called whenever <see cref="DurableVersion"/> or
    /// <see cref="DurableSequence"/> advances (on the store's group-commit thread: it must be cheap and must not block),
    /// so a consumer such as the server's bind path is woken by durability instead of polling for it. Returns the
    /// registration (dispose it to stop), or null when this store cannot notify (the caller keeps polling).
    /// </summary>
    IDisposable? AddDurableListener(Action listener) => null;
}
