namespace Omega.ControlPlane.Budgets;

/// <summary>The outcome of a <see cref="GlobalBudgetController"/> or <see cref="BudgetLease"/> operation.</summary>
public enum BudgetLeaseStatus : byte
{
    /// <summary>Done.</summary>
    Ok = 0,

    /// <summary>The budget has nothing left to hand out (a grant) or the lease has too little left (a spend); nothing changed.</summary>
    Exhausted = 1,

    /// <summary>The lease has expired on the holder's clock: it may not spend (it fences itself) and must acquire a new one.</summary>
    LeaseExpired = 2,

    /// <summary>The lease is no longer the controller's (returned, or reclaimed after its expiry): renew and return are refused.</summary>
    StaleLease = 3,

    /// <summary>An unknown budget, a negative amount or a non-positive TTL; nothing changed.</summary>
    Invalid = 4,

    /// <summary>
    /// The global policy revoked this holder's share of the budget (<see cref="GlobalBudgetController.Revoke"/>): no grant
    /// to it and no renewal of its leases until the hold ends; what it holds runs out at its own expiry.
    /// </summary>
    Revoked = 5,
}

/// <summary>Settings of the <see cref="GlobalBudgetController"/>.</summary>
public sealed class GlobalBudgetOptions
{
    /// <summary>
    /// The most a holder's clock may run behind the controller's over one lease's life (rate drift). The controller
    /// reclaims a lease only at grant time + TTL + this, so a holder that stops at its own expiry has stopped by then.
    /// Default 500 ms.
    /// </summary>
    public TimeSpan MaxClockDrift { get; set; } = TimeSpan.FromMilliseconds(500);
}

/// <summary>
/// The global side of seed 004's budgets (issue 13, item 3; docs/control-plane.md, "Global budgets and regional
/// schedulers"): per budget (a tenant's, or recovery's) a limit, of which it hands out parts to regional schedulers as
/// <see cref="BudgetLease"/>s. A regional scheduler spends inside its lease with no round trip to this controller; a
/// lease not renewed expires, and the controller takes back its unspent part (what was spent stays committed until
/// released). Invariant (no overcommit): committed + Σ outstanding grants ≤ limit, and a lease never spends more than
/// it was granted — so Σ spent over every region ≤ limit, whatever the interleaving.
/// </summary>
/// <remarks>
/// Thread-safe (one lock per controller; grants, renewals and sweeps are per lease, not per placement). In one process
/// a lease's spent counter is shared memory; across processes it is what the region committed (its bindings), which the
/// controller reads after the lease's reclaim time, when the holder can no longer spend.
/// </remarks>
public sealed class GlobalBudgetController
{
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private readonly GlobalBudgetOptions _options;
    private readonly Dictionary<string, Budget> _budgets = new(StringComparer.Ordinal);
    private long _lastToken;
    private long _requests;
    private long _releases;
    private long _acquires;
    // (budget, holder) → end of a revocation's hold on the controller's clock.
    private readonly Dictionary<(string Budget, string Holder), DateTimeOffset> _revoked = new();

    /// <summary>
    /// Requests from holders so far (acquire, renew, return). Regional schedulers spend inside their leases with no
    /// request, so this grows per lease, never per placement (the test of "no round trip per replica").
    /// </summary>
    public long Requests => Interlocked.Read(ref _requests);

    private sealed class Budget(long limit)
    {
        public long Limit = limit;
        public long Committed;
        public long Granted;
        public readonly Dictionary<long, BudgetLease> Leases = new();
    }

    /// <summary>Creates a controller on <paramref name="time"/> (its clock decides reclaims).</summary>
    public GlobalBudgetController(TimeProvider? time = null, GlobalBudgetOptions? options = null)
    {
        _time = time ?? TimeProvider.System;
        _options = options ?? new GlobalBudgetOptions();
    }

    /// <summary>Sets budget <paramref name="name"/>'s limit (a lower limit than what is committed and granted withholds new grants until usage drops).</summary>
    public BudgetLeaseStatus SetLimit(string name, long limit)
    {
        if (string.IsNullOrEmpty(name) || limit < 0) return BudgetLeaseStatus.Invalid;
        lock (_lock)
        {
            if (_budgets.TryGetValue(name, out var b)) b.Limit = limit;
            else _budgets[name] = new Budget(limit);
            return BudgetLeaseStatus.Ok;
        }
    }

    /// <summary>
    /// Grants <paramref name="holder"/> (a region's scheduler) up to <paramref name="amount"/> of budget
    /// <paramref name="name"/> for <paramref name="ttl"/>. <paramref name="holderRequestStart"/> is the holder's own clock
    /// read before it sent the request: its lease ends at that instant + TTL on its clock (so network delay only shortens it).
    /// </summary>
    public BudgetLeaseStatus TryAcquire(string name, string holder, long amount, TimeSpan ttl, DateTimeOffset holderRequestStart, out BudgetLease? lease)
    {
        lease = null;
        Interlocked.Increment(ref _requests);
        Interlocked.Increment(ref _acquires);
        if (amount <= 0 || ttl <= TimeSpan.Zero || string.IsNullOrEmpty(holder)) return BudgetLeaseStatus.Invalid;
        lock (_lock)
        {
            if (!_budgets.TryGetValue(name, out var b)) return BudgetLeaseStatus.Invalid;
            ReclaimLocked(b, _time.GetUtcNow());
            if (IsRevokedLocked(name, holder, _time.GetUtcNow())) return BudgetLeaseStatus.Revoked;
            long free = b.Limit - b.Committed - b.Granted;
            if (free <= 0) return BudgetLeaseStatus.Exhausted;
            long grant = Math.Min(amount, free);
            var now = _time.GetUtcNow();
            lease = new BudgetLease(name, holder, ++_lastToken, grant, holderRequestStart + ttl, now + ttl + _options.MaxClockDrift);
            b.Granted += grant;
            b.Leases.Add(lease.Token, lease);
            return BudgetLeaseStatus.Ok;
        }
    }

    /// <summary>
    /// Renews <paramref name="lease"/> for another <paramref name="ttl"/> from <paramref name="holderRequestStart"/>. Refused
    /// (<see cref="BudgetLeaseStatus.StaleLease"/>) once the controller reclaimed it: the holder must acquire a new lease.
    /// </summary>
    public BudgetLeaseStatus Renew(BudgetLease lease, TimeSpan ttl, DateTimeOffset holderRequestStart)
    {
        ArgumentNullException.ThrowIfNull(lease);
        Interlocked.Increment(ref _requests);
        if (ttl <= TimeSpan.Zero) return BudgetLeaseStatus.Invalid;
        lock (_lock)
        {
            if (!_budgets.TryGetValue(lease.Budget, out var b)) return BudgetLeaseStatus.Invalid;
            var now = _time.GetUtcNow();
            ReclaimLocked(b, now);
            if (!b.Leases.ContainsKey(lease.Token)) return BudgetLeaseStatus.StaleLease;
            // A revoked holder keeps what it has until its own expiry (it cannot be reached to stop sooner) but no more.
            if (IsRevokedLocked(lease.Budget, lease.Holder, now)) return BudgetLeaseStatus.Revoked;
            // The holder's end moves first on the holder's side; the controller's reclaim time only ever moves later.
            lease.Extend(holderRequestStart + ttl, now + ttl + _options.MaxClockDrift);
            return BudgetLeaseStatus.Ok;
        }
    }

    /// <summary>Returns <paramref name="lease"/> early: its unspent part is free for other regions at once; its spent part stays committed.</summary>
    public BudgetLeaseStatus Return(BudgetLease lease)
    {
        ArgumentNullException.ThrowIfNull(lease);
        Interlocked.Increment(ref _requests);
        lock (_lock)
        {
            if (!_budgets.TryGetValue(lease.Budget, out var b) || !b.Leases.ContainsKey(lease.Token)) return BudgetLeaseStatus.StaleLease;
            // The holder returns it: it has stopped spending from it (a spend racing its own return is the holder's bug).
            long spent = lease.Close();
            Settle(b, lease, spent);
            return BudgetLeaseStatus.Ok;
        }
    }

    /// <summary>Releases <paramref name="amount"/> of committed usage of budget <paramref name="name"/> (replicas that were spent and are gone).</summary>
    public BudgetLeaseStatus Release(string name, long amount)
    {
        if (amount < 0) return BudgetLeaseStatus.Invalid;
        lock (_lock)
        {
            if (!_budgets.TryGetValue(name, out var b) || amount > b.Committed) return BudgetLeaseStatus.Invalid;
            b.Committed -= amount;
            return BudgetLeaseStatus.Ok;
        }
    }

    /// <summary>
    /// Revokes <paramref name="holder"/>'s share of budget <paramref name="name"/> for <paramref name="hold"/> (the global
    /// policy takes a region's budget away: an operator draining a region, a region that must not spend). Nothing is taken
    /// from the holder at once — across processes the controller cannot reach into it — but its leases are not renewed
    /// and it gets no new one until the hold ends, so it stops spending at its own lease's end (the lease is the fence).
    /// <see cref="TimeSpan.Zero"/> lifts a revocation.
    /// </summary>
    public BudgetLeaseStatus Revoke(string name, string holder, TimeSpan hold)
    {
        if (string.IsNullOrEmpty(holder) || hold < TimeSpan.Zero) return BudgetLeaseStatus.Invalid;
        lock (_lock)
        {
            if (!_budgets.ContainsKey(name)) return BudgetLeaseStatus.Invalid;
            if (hold == TimeSpan.Zero) _revoked.Remove((name, holder));
            else _revoked[(name, holder)] = _time.GetUtcNow() + hold;
            return BudgetLeaseStatus.Ok;
        }
    }

    /// <summary>
    /// Gives back <paramref name="amount"/> that <paramref name="lease"/> spent on a placement that is gone (a replica
    /// released): taken off the lease while the controller still holds it, else off the committed usage its settlement
    /// recorded. Exact under the controller's lock, which every settlement also takes (a lock-free unspend could race the
    /// settlement and be lost). Counted in <see cref="Releases"/>, not <see cref="Requests"/>: it is never on the path of
    /// a placement.
    /// </summary>
    public BudgetLeaseStatus ReleaseSpend(BudgetLease lease, long amount)
    {
        ArgumentNullException.ThrowIfNull(lease);
        if (amount < 0) return BudgetLeaseStatus.Invalid;
        Interlocked.Increment(ref _releases);
        lock (_lock)
        {
            if (!_budgets.TryGetValue(lease.Budget, out var b)) return BudgetLeaseStatus.Invalid;
            if (b.Leases.ContainsKey(lease.Token)) return lease.Unspend(amount);
            if (amount > b.Committed) return BudgetLeaseStatus.Invalid;
            b.Committed -= amount;
            return BudgetLeaseStatus.Ok;
        }
    }

    /// <summary>Acquire requests so far (a part of <see cref="Requests"/>): one per lease a regional scheduler asks for.</summary>
    public long Acquires => Interlocked.Read(ref _acquires);

    /// <summary>Spends given back by <see cref="ReleaseSpend"/> so far (placements that ended).</summary>
    public long Releases => Interlocked.Read(ref _releases);

    /// <summary>Reclaims every lease past its reclaim time (also done on each grant and renewal). Returns how many.</summary>
    public int Sweep()
    {
        lock (_lock)
        {
            int n = 0;
            var now = _time.GetUtcNow();
            foreach (var b in _budgets.Values) n += ReclaimLocked(b, now);
            return n;
        }
    }

    /// <summary>Budget <paramref name="name"/>'s limit, committed (spent by returned or reclaimed leases, not released) and outstanding grants.</summary>
    public (long Limit, long Committed, long Granted, int Leases) Get(string name)
    {
        lock (_lock)
            return _budgets.TryGetValue(name, out var b) ? (b.Limit, b.Committed, b.Granted, b.Leases.Count) : (0, 0, 0, 0);
    }

    /// <summary>Σ spent of the outstanding leases plus committed, for budget <paramref name="name"/>: what the regions hold now.</summary>
    public long InUse(string name)
    {
        lock (_lock)
        {
            if (!_budgets.TryGetValue(name, out var b)) return 0;
            long s = b.Committed;
            foreach (var l in b.Leases.Values) s += l.Spent;
            return s;
        }
    }

    // Caller holds _lock.
    private bool IsRevokedLocked(string budget, string holder, DateTimeOffset now)
    {
        if (_revoked.Count == 0 || !_revoked.TryGetValue((budget, holder), out var until)) return false;
        if (now < until) return true;
        _revoked.Remove((budget, holder));
        return false;
    }

    // Caller holds _lock.
    private static int ReclaimLocked(Budget b, DateTimeOffset now)
    {
        if (b.Leases.Count == 0) return 0;
        List<BudgetLease>? due = null;
        foreach (var l in b.Leases.Values)
            if (now >= l.ReclaimAt) (due ??= new()).Add(l);
        if (due is null) return 0;
        // The holder stopped spending at its own expiry, which falls before ReclaimAt as long as its clock drifts less
        // than MaxClockDrift over the lease: what it spent is final. (Nothing here stops a holder that ignores its expiry:
        // across processes the controller has no such power; the lease is the fence.)
        foreach (var l in due) Settle(b, l, l.Close());
        return due.Count;
    }

    private static void Settle(Budget b, BudgetLease l, long spent)
    {
        b.Leases.Remove(l.Token);
        b.Granted -= l.Amount;
        b.Committed += spent;
    }
}

/// <summary>
/// A part of a global budget held by one regional scheduler (<see cref="GlobalBudgetController.TryAcquire"/>). The
/// holder spends from it locally (<see cref="TrySpend"/>: a compare-and-swap, no round trip) until its own expiry; after
/// that it fences itself: nothing more is spent until it holds a renewed or new lease.
/// </summary>
public sealed class BudgetLease
{
    private long _spent;
    private long _holderExpiresTicks;
    private long _reclaimAtTicks;
    private int _closed;

    internal BudgetLease(string budget, string holder, long token, long amount, DateTimeOffset holderExpires, DateTimeOffset reclaimAt)
    {
        Budget = budget;
        Holder = holder;
        Token = token;
        Amount = amount;
        _holderExpiresTicks = holderExpires.UtcTicks;
        _reclaimAtTicks = reclaimAt.UtcTicks;
    }

    /// <summary>The budget it is a part of.</summary>
    public string Budget { get; }

    /// <summary>The regional scheduler holding it.</summary>
    public string Holder { get; }

    /// <summary>The lease's fencing token (increasing per controller).</summary>
    public long Token { get; }

    /// <summary>The amount granted.</summary>
    public long Amount { get; }

    /// <summary>What the holder has spent from it.</summary>
    public long Spent => Volatile.Read(ref _spent);

    /// <summary>When the lease ends on the holder's clock.</summary>
    public DateTimeOffset HolderExpiresAt => new(Volatile.Read(ref _holderExpiresTicks), TimeSpan.Zero);

    /// <summary>When the controller takes it back (holder expiry + the drift allowance, on the controller's clock).</summary>
    public DateTimeOffset ReclaimAt => new(Volatile.Read(ref _reclaimAtTicks), TimeSpan.Zero);

    /// <summary>
    /// Spends <paramref name="amount"/> if the lease is live on the holder's clock (<paramref name="holderNow"/>) and has
    /// that much left. Lock-free: concurrent spenders of one lease never take more than <see cref="Amount"/> in total.
    /// Once the holder's clock passes <see cref="HolderExpiresAt"/> it fences itself: <see cref="BudgetLeaseStatus.LeaseExpired"/>.
    /// </summary>
    public BudgetLeaseStatus TrySpend(long amount, DateTimeOffset holderNow)
    {
        if (amount < 0) return BudgetLeaseStatus.Invalid;
        while (true)
        {
            // No look at the controller's side (Close): across processes the holder cannot see it; its own clock is the fence.
            if (holderNow.UtcTicks >= Volatile.Read(ref _holderExpiresTicks)) return BudgetLeaseStatus.LeaseExpired;
            long s = Volatile.Read(ref _spent);
            if (s + amount > Amount) return BudgetLeaseStatus.Exhausted;
            if (Interlocked.CompareExchange(ref _spent, s + amount, s) == s) return BudgetLeaseStatus.Ok;
        }
    }

    /// <summary>Gives back <paramref name="amount"/> spent from this lease (a placement undone before the lease ends).</summary>
    public BudgetLeaseStatus Unspend(long amount)
    {
        while (true)
        {
            long s = Volatile.Read(ref _spent);
            if (amount < 0 || amount > s) return BudgetLeaseStatus.Invalid;
            if (Interlocked.CompareExchange(ref _spent, s - amount, s) == s) return BudgetLeaseStatus.Ok;
        }
    }

    internal void Extend(DateTimeOffset holderExpires, DateTimeOffset reclaimAt)
    {
        Volatile.Write(ref _holderExpiresTicks, Math.Max(Volatile.Read(ref _holderExpiresTicks), holderExpires.UtcTicks));
        Volatile.Write(ref _reclaimAtTicks, Math.Max(Volatile.Read(ref _reclaimAtTicks), reclaimAt.UtcTicks));
    }

    /// <summary>True once the controller settled the lease (returned or reclaimed).</summary>
    public bool Settled => Volatile.Read(ref _closed) != 0;

    // Marks the lease settled and returns what it spent.
    internal long Close()
    {
        Volatile.Write(ref _closed, 1);
        return Volatile.Read(ref _spent);
    }
}
