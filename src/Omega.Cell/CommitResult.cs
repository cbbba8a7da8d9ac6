namespace Omega.Cells;

/// <summary>
/// The result of committing a transaction: its status, the status of every claim (in claim order) and the cell version a
/// retry must re-sync to (at least this version; compare Nomad's RefreshIndex).
/// </summary>
/// <remarks>
/// A value type so the hot path allocates nothing. On the live path <see cref="ClaimStatuses"/> refers to a buffer owned
/// by the <see cref="Transaction"/>: read it before the transaction is reset or committed again, or call <see cref="Detach"/>.
/// </remarks>
public readonly struct CommitResult
{
    internal CommitResult(TransactionStatus status, long cellVersion, int applied, bool replayed, ReadOnlyMemory<ClaimStatus> claims)
    {
        Status = status;
        CellVersion = cellVersion;
        AppliedCount = applied;
        Replayed = replayed;
        ClaimStatuses = claims;
    }

    /// <summary>The transaction's status.</summary>
    public TransactionStatus Status { get; }

    /// <summary>
    /// The cell version after this commit when something was applied (also the generation of every binding it made);
    /// otherwise the current cell version. A retry should take a snapshot at least this new.
    /// </summary>
    public long CellVersion { get; }

    /// <summary>The generation of the bindings this transaction made (equal to <see cref="CellVersion"/> when any were made).</summary>
    public long Generation => CellVersion;

    /// <summary>The number of claims applied.</summary>
    public int AppliedCount { get; }

    /// <summary>True when this is the stored result of an earlier commit with the same idempotency key: nothing new was applied.</summary>
    public bool Replayed { get; }

    /// <summary>The status of each claim, in the order the claims were added.</summary>
    public ReadOnlyMemory<ClaimStatus> ClaimStatuses { get; }

    /// <summary>The status of claim <paramref name="index"/>.</summary>
    public ClaimStatus this[int index] => ClaimStatuses.Span[index];

    /// <summary>True when every claim was applied.</summary>
    public bool IsCommitted => Status == TransactionStatus.Committed;

    /// <summary>Returns a copy whose claim statuses no longer share the transaction's buffer.</summary>
    public CommitResult Detach() => new(Status, CellVersion, AppliedCount, Replayed, ClaimStatuses.ToArray());

    /// <inheritdoc />
    public override string ToString() => $"{Status} v{CellVersion} applied={AppliedCount}/{ClaimStatuses.Length}{(Replayed ? " (replayed)" : "")}";
}
