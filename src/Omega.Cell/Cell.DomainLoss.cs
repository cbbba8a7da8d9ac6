namespace Omega.Cells;

/// <summary>
/// An operator's confirmation that a failure domain (rack, zone) is really lost: its silent nodes may be evicted even
/// while the mass-silence brake holds evictions back. Durable: recorded in the journal (<see cref="CellRecordKind.DomainLossConfirmed"/>)
/// with who confirmed it, why and when, and restored after a restart.
/// </summary>
/// <param name="Domain">The failure domain, as in <see cref="NodeSpec.FailureDomain"/>.</param>
/// <param name="Author">Who confirmed it (free text until authentication exists; later issues bind it to an identity).</param>
/// <param name="Reason">Why, in the operator's words.</param>
/// <param name="At">When the cell applied the confirmation (the cell clock's wall time).</param>
/// <param name="Version">The cell version of the confirmation record: once it is durable, so is the confirmation.</param>
public sealed record DomainLossConfirmation(string Domain, string Author, string Reason, DateTimeOffset At, long Version);

/// <summary>The outcome of <see cref="Cell.ConfirmDomainLost"/> and <see cref="Cell.WithdrawDomainLoss"/>.</summary>
public enum DomainLossStatus : byte
{
    /// <summary>Recorded (a new confirmation, or a withdrawal).</summary>
    Recorded = 0,

    /// <summary>The domain was already confirmed lost; nothing was written (the earlier record stands).</summary>
    AlreadyConfirmed = 1,

    /// <summary>Withdraw: the domain has no confirmation in effect; nothing was written.</summary>
    NotConfirmed = 2,

    /// <summary>No live node has this failure domain; nothing was written (a typo must not disarm the brake for a future domain).</summary>
    UnknownDomain = 3,

    /// <summary>Empty or oversized domain, author or reason; nothing was written.</summary>
    Invalid = 4,
}

public sealed partial class Cell
{
    /// <summary>Longest domain or author accepted, in characters.</summary>
    public const int MaxDomainLossNameLength = 256;

    /// <summary>Longest reason accepted, in characters.</summary>
    public const int MaxDomainLossReasonLength = 1024;

    // Copy-on-write under _lock, read lock-free: the lifecycle controller reads it on every tick.
    private DomainLossConfirmation[] _domainLosses = [];

    /// <summary>The confirmations in effect, oldest first.</summary>
    public IReadOnlyList<DomainLossConfirmation> DomainLosses => Volatile.Read(ref _domainLosses);

    /// <summary>The confirmation in effect for <paramref name="domain"/>, or null.</summary>
    public DomainLossConfirmation? GetDomainLoss(string domain)
    {
        foreach (var d in Volatile.Read(ref _domainLosses))
            if (string.Equals(d.Domain, domain, StringComparison.Ordinal)) return d;
        return null;
    }

    /// <summary>
    /// Records that <paramref name="domain"/> is lost (see <see cref="DomainLossConfirmation"/>). The record gets its own
    /// cell version, so a caller acknowledges it once that version is durable (the durable watermark), like a commit.
    /// </summary>
    public DomainLossStatus ConfirmDomainLost(string domain, string author, string reason, out DomainLossConfirmation? confirmation)
    {
        confirmation = null;
        if (!ValidDomainLoss(domain, author, reason)) return DomainLossStatus.Invalid;
        using (Serial())
        {
            foreach (var d in _domainLosses)
                if (string.Equals(d.Domain, domain, StringComparison.Ordinal)) { confirmation = d; return DomainLossStatus.AlreadyConfirmed; }
            if (!HasLiveNodeInDomain(domain)) return DomainLossStatus.UnknownDomain;
            long v = _vw.Published + 1;
            confirmation = new DomainLossConfirmation(domain, author, reason, _time.GetUtcNow(), v);
            var next = new DomainLossConfirmation[_domainLosses.Length + 1];
            _domainLosses.CopyTo(next, 0);
            next[^1] = confirmation;
            Volatile.Write(ref _domainLosses, next);
            // A version of its own (no node changes at it): the durable watermark then tells when the record is safe.
            Volatile.Write(ref _vw.Published, v);
            JournalDomainLoss(CellRecordKind.DomainLossConfirmed, domain, author, reason, confirmation.At);
            return DomainLossStatus.Recorded;
        }
    }

    /// <summary>
    /// Withdraws the confirmation of <paramref name="domain"/> (the brake applies to it again). Recorded durably with its
    /// author and reason; <paramref name="version"/> is the version to wait for before acknowledging.
    /// </summary>
    public DomainLossStatus WithdrawDomainLoss(string domain, string author, string reason, out long version)
    {
        version = 0;
        if (!ValidDomainLoss(domain, author, reason)) return DomainLossStatus.Invalid;
        using (Serial())
        {
            int at = -1;
            for (int i = 0; i < _domainLosses.Length; i++)
                if (string.Equals(_domainLosses[i].Domain, domain, StringComparison.Ordinal)) { at = i; break; }
            if (at < 0) return DomainLossStatus.NotConfirmed;
            var next = new DomainLossConfirmation[_domainLosses.Length - 1];
            Array.Copy(_domainLosses, 0, next, 0, at);
            Array.Copy(_domainLosses, at + 1, next, at, next.Length - at);
            version = _vw.Published + 1;
            Volatile.Write(ref _domainLosses, next);
            Volatile.Write(ref _vw.Published, version);
            JournalDomainLoss(CellRecordKind.DomainLossWithdrawn, domain, author, reason, _time.GetUtcNow());
            return DomainLossStatus.Recorded;
        }
    }

    private static bool ValidDomainLoss(string domain, string author, string reason)
        => !string.IsNullOrWhiteSpace(domain) && domain.Length <= MaxDomainLossNameLength
           && !string.IsNullOrWhiteSpace(author) && author.Length <= MaxDomainLossNameLength
           && !string.IsNullOrWhiteSpace(reason) && reason.Length <= MaxDomainLossReasonLength;

    /// <summary>
    /// True when a confirmation of <paramref name="domain"/> covers a node: its failure domain, region or zone (issue 13)
    /// is that name. Region and zone names share the confirmation table so that no new record kind is needed.
    /// </summary>
    public static bool InDomain(NodeSpec spec, string domain)
    {
        ArgumentNullException.ThrowIfNull(spec);
        return string.Equals(spec.FailureDomain, domain, StringComparison.Ordinal)
            || (spec.Region.Length > 0 && string.Equals(spec.Region, domain, StringComparison.Ordinal))
            || (spec.Zone.Length > 0 && string.Equals(spec.Zone, domain, StringComparison.Ordinal));
    }

    /// <summary>The confirmation in effect that covers <paramref name="spec"/> (its failure domain, region or zone), or null.</summary>
    public DomainLossConfirmation? GetDomainLossOf(NodeSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        foreach (var d in Volatile.Read(ref _domainLosses))
            if (InDomain(spec, d.Domain)) return d;
        return null;
    }

    // Caller holds _lock. O(nodes): an operator command, never on the placement path.
    private bool HasLiveNodeInDomain(string domain)
    {
        for (int i = 0; i < _nodeCount; i++)
            if (_live[i].Status != NodeStatus.Removed && InDomain(_live[i].Spec!, domain)) return true;
        return false;
    }

    // Caller holds _lock.
    private void JournalDomainLoss(CellRecordKind kind, string domain, string author, string reason, DateTimeOffset at)
    {
        if (_journal is null) return;
        var w = BeginRecord(kind, _vw.Published);
        w.String(domain);
        w.String(author);
        w.String(reason);
        w.I64(at.UtcTicks);
        EndRecord(_vw.Published);
    }

    /// <summary>Recovery: installs the confirmations a restorer found (before the cell is shared).</summary>
    internal void RestoreDomainLosses(DomainLossConfirmation[] confirmations)
    {
        using (Serial()) Volatile.Write(ref _domainLosses, confirmations);
    }
}
