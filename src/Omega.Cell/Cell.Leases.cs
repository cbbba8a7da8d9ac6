namespace Omega.Cells;

public sealed partial class Cell
{
    // Guarded by _lock. Indexed by SchedulerId.
    private readonly Dictionary<string, SchedulerId> _schedulerByName = new(StringComparer.Ordinal);
    private LeaseState[] _leases = new LeaseState[8];
    private int _schedulerCount;
    private long _lastToken;

    private struct LeaseState
    {
        public string Name;
        public FencingToken Token;
        public long ExpiresAtTimestamp;
        public bool Released;
    }

    /// <summary>
    /// Acquires a lease for the scheduler identity <paramref name="name"/>. A grant always carries a fencing token larger
    /// than any granted before in this cell, so every earlier holder of the identity becomes stale at once.
    /// While another holder's lease is unexpired the request is refused with <see cref="LeaseStatus.HeldByAnother"/>.
    /// </summary>
    public LeaseResult AcquireLease(string name, TimeSpan duration)
    {
        if (string.IsNullOrWhiteSpace(name) || duration <= TimeSpan.Zero) return new LeaseResult(LeaseStatus.Invalid, default, default);
        using (Serial())
        {
            long now = Now();
            if (!_schedulerByName.TryGetValue(name, out var id))
            {
                if (_schedulerCount == _leases.Length) Array.Resize(ref _leases, _leases.Length * 2);
                id = new SchedulerId(_schedulerCount++);
                _schedulerByName.Add(name, id);
                _leases[id.Value].Name = name;
            }
            ref LeaseState s = ref _leases[id.Value];
            if (s.Token.Value != 0 && !s.Released && s.ExpiresAtTimestamp > now)
                return new LeaseResult(LeaseStatus.HeldByAnother, default, ToWallClock(s.ExpiresAtTimestamp));
            s.Token = new FencingToken(++_lastToken);
            s.ExpiresAtTimestamp = now + TicksFor(duration);
            s.Released = false;
            // A token change is a state change, so it gets a cell version (durability records it in version order).
            Volatile.Write(ref _vw.Published, _vw.Published + 1);
            JournalLease(id);
            return new LeaseResult(LeaseStatus.Granted, new SchedulerLease(id, name, s.Token, ToWallClock(s.ExpiresAtTimestamp)), default);
        }
    }

    /// <summary>Extends a lease that is still current and unexpired. The token does not change.</summary>
    public LeaseResult RenewLease(SchedulerLease lease, TimeSpan duration)
    {
        if (duration <= TimeSpan.Zero) return new LeaseResult(LeaseStatus.Invalid, default, default);
        using (Serial())
        {
            if ((uint)lease.Id.Value >= (uint)_schedulerCount) return new LeaseResult(LeaseStatus.Invalid, default, default);
            ref LeaseState s = ref _leases[lease.Id.Value];
            // The id must be the named identity's: tokens are sequential, so without this a client that knows (or
            // guesses) another identity's id and current token could keep that identity's lease alive under its own name.
            if (!string.Equals(s.Name, lease.Name, StringComparison.Ordinal)) return new LeaseResult(LeaseStatus.Invalid, default, default);
            if (s.Token != lease.Token) return new LeaseResult(LeaseStatus.Superseded, default, default);
            long now = Now();
            if (s.Released || s.ExpiresAtTimestamp <= now) return new LeaseResult(LeaseStatus.Expired, default, default);
            s.ExpiresAtTimestamp = now + TicksFor(duration);
            JournalLease(lease.Id);
            return new LeaseResult(LeaseStatus.Renewed, lease with { ExpiresAt = ToWallClock(s.ExpiresAtTimestamp) }, default);
        }
    }

    /// <summary>The identity (lease name) scheduler <paramref name="id"/> was granted under, or null when there is none.</summary>
    public string? LeaseName(SchedulerId id)
    {
        using (Serial()) return (uint)id.Value < (uint)_schedulerCount ? _leases[id.Value].Name : null;
    }

    /// <summary>Gives a lease up early (clean shutdown), so another holder can acquire the identity at once.</summary>
    public LeaseStatus ReleaseLease(SchedulerLease lease)
    {
        using (Serial())
        {
            if ((uint)lease.Id.Value >= (uint)_schedulerCount) return LeaseStatus.Invalid;
            ref LeaseState s = ref _leases[lease.Id.Value];
            if (s.Token != lease.Token) return LeaseStatus.Superseded;
            s.Released = true;
            JournalLease(lease.Id);
            return LeaseStatus.Renewed;
        }
    }

    /// <summary>The current fencing token of a scheduler identity, or null if it never held a lease.</summary>
    public FencingToken? GetCurrentToken(string name)
    {
        using (Serial()) return _schedulerByName.TryGetValue(name, out var id) ? _leases[id.Value].Token : null;
    }

    /// <summary>Caller holds _lock. Step 1 of validation: the token must be the identity's current one, its lease live.</summary>
    private TransactionStatus CheckFencing(SchedulerId id, FencingToken token)
    {
        if ((uint)id.Value >= (uint)_schedulerCount) return TransactionStatus.UnknownScheduler;
        if ((_options.Buggify & Buggify.SkipTokenCheck) != 0) return TransactionStatus.Committed; // BUGGIFY (docs/testing.md)
        ref LeaseState s = ref _leases[id.Value];
        if (s.Token != token) return TransactionStatus.StaleFencingToken;
        if (s.Released || s.ExpiresAtTimestamp <= Now()) return TransactionStatus.LeaseExpired;
        return TransactionStatus.Committed;
    }
}
