namespace Omega.Cells;

/// <summary>A reservation as the cell holds it: capacity on a node held for a task until it is bound or released.</summary>
/// <param name="Task">The task the capacity is held for (its identity: a task holds at most one reservation).</param>
/// <param name="Node">The node holding the capacity.</param>
/// <param name="Resources">The resources held.</param>
/// <param name="Tenant">The tenant charged (the hold counts in its usage and against its quota).</param>
/// <param name="Priority">The priority of the eventual binding.</param>
/// <param name="ExpiresAt">When the hold lapses (wall clock of the cell's <see cref="TimeProvider"/>).</param>
/// <param name="Generation">The cell version of the commit that made it.</param>
public readonly record struct CellReservation(TaskId Task, NodeId Node, ResourceVector Resources, TenantId Tenant, int Priority, DateTimeOffset ExpiresAt, long Generation);

/// <summary>Why a reservation was released (recorded in its <see cref="CellRecordKind.ReservationReleased"/> record).</summary>
public enum ReservationReleaseReason : byte
{
    /// <summary>Its owner gave it up (or an operator did).</summary>
    Released = 0,

    /// <summary>Its TTL passed and the reservation controller released it.</summary>
    Expired = 1,

    /// <summary>The repair controller released it (its owner is gone).</summary>
    Repaired = 2,
}

// Reservations (issue 12): capacity held on a node before binding. They live in the cell, not in the object store,
// because they must count against node capacity in the commit check: a reservation is written by a claim of kind
// Reserve (fenced, idempotent, all-or-nothing like any claim, journaled in the same Commit record) and adds to the
// node's allocated resources and the tenant's usage exactly like a binding. A BindReserved claim consumes it in the
// same step that binds, so the capacity moves from the hold to the binding without ever being free in between.
//
// Expiry: the cell never frees an expired reservation by itself. Until the reservation controller releases it (a
// journaled ReservationReleased record) it keeps counting against capacity; only a BindReserved claim sees the expiry
// (ReservationExpired). Counting until released is the safe side: freeing on read would make capacity appear in a
// snapshot without any journal record saying so, and a restarted cell (whose clock differs) could disagree with the
// one that acknowledged. The cost is that an expired hold keeps capacity for up to one controller period; the repair
// deadline (ReservationControllerOptions) bounds that and is alerted on.
public sealed partial class Cell
{
    internal struct ReservationLive
    {
        public Allocation Hold;              // Task, Node, Resources, Tenant, Priority, Generation (= created version)
        public long ExpiresAtTimestamp;      // the cell clock's monotonic timestamp
    }

    private readonly Dictionary<TaskId, ReservationLive> _reservations = new();

    /// <summary>The number of reservations held (expired ones included until released).</summary>
    public int ReservationCount
    {
        get
        {
            using (Serial()) return _reservations.Count;
        }
    }

    /// <summary>Reads the reservation held for <paramref name="task"/>.</summary>
    public bool TryGetReservation(TaskId task, out CellReservation reservation)
    {
        using (Serial())
        {
            if (!_reservations.TryGetValue(task, out var r))
            {
                reservation = default;
                return false;
            }
            reservation = ToPublic(r);
            return true;
        }
    }

    /// <summary>Copies every reservation (an O(reservations) control-plane read).</summary>
    public IReadOnlyList<CellReservation> GetReservations()
    {
        using (Serial())
        {
            var list = new List<CellReservation>(_reservations.Count);
            foreach (var r in _reservations.Values) list.Add(ToPublic(r));
            return list;
        }
    }

    /// <summary>
    /// Releases the reservation of <paramref name="task"/> and frees its capacity (a journaled change, not fenced, like
    /// <see cref="Release"/>). With a non-zero <paramref name="expectedGeneration"/> only the reservation made at that
    /// version is released, so a late release of an older hold cannot free a newer one.
    /// </summary>
    public ReleaseStatus ReleaseReservation(TaskId task, long expectedGeneration = 0, ReservationReleaseReason reason = ReservationReleaseReason.Released)
    {
        using (Serial())
        {
            if (!_reservations.TryGetValue(task, out var r)) return ReleaseStatus.NotBound;
            if (expectedGeneration != 0 && r.Hold.Generation != expectedGeneration) return ReleaseStatus.GenerationMismatch;
            RemoveReservation(in r);
            PublishSingle(r.Hold.Node.Value);
            JournalReservationReleased(task, reason);
            _reservationsReleased[(int)reason]++;
            return ReleaseStatus.Released;
        }
    }

    /// <summary>
    /// Releases up to <paramref name="max"/> reservations whose expiry has passed on the cell's clock (the reservation
    /// controller's step), appending them to <paramref name="released"/> when given. One critical section and one
    /// journal frame for all of them. O(reservations) scan: the table is bounded by <see cref="CellOptions.MaxReservations"/>.
    /// </summary>
    public int ReleaseExpiredReservations(int max, List<CellReservation>? released = null)
    {
        if (max <= 0 || (_options.Buggify & Buggify.SkipReservationExpiry) != 0) return 0; // BUGGIFY (docs/testing.md)
        using (Serial())
        {
            long now = Now();
            List<ReservationLive>? expired = null;
            foreach (var r in _reservations.Values)
            {
                if (r.ExpiresAtTimestamp > now) continue;
                (expired ??= new List<ReservationLive>()).Add(r);
                if (expired.Count >= max) break;
            }
            if (expired is null) return 0;
            BeginJournalBatch();
            try
            {
                foreach (var r in expired)
                {
                    released?.Add(ToPublic(r));
                    RemoveReservation(in r);
                    PublishSingle(r.Hold.Node.Value);
                    JournalReservationReleased(r.Hold.Task, ReservationReleaseReason.Expired);
                    _reservationsReleased[(int)ReservationReleaseReason.Expired]++;
                }
            }
            finally
            {
                EndJournalBatch();
            }
            return expired.Count;
        }
    }

    /// <summary>The number of reservations whose expiry passed more than <paramref name="grace"/> ago and are still held (the repair deadline's alert).</summary>
    public int CountOverdueReservations(TimeSpan grace)
    {
        using (Serial())
        {
            long limit = Now() - TicksFor(grace);
            int n = 0;
            foreach (var r in _reservations.Values)
                if (r.ExpiresAtTimestamp <= limit) n++;
            return n;
        }
    }

    /// <summary>Reservations released so far by reason (this process's lifetime).</summary>
    public long ReservationsReleased(ReservationReleaseReason reason)
    {
        using (Serial()) return _reservationsReleased[(int)reason];
    }

    private readonly long[] _reservationsReleased = new long[3];

    private CellReservation ToPublic(in ReservationLive r)
        => new(r.Hold.Task, r.Hold.Node, r.Hold.Resources, r.Hold.Tenant, r.Hold.Priority, ToWallClock(r.ExpiresAtTimestamp), r.Hold.Generation);

    // Caller holds _lock. A hold adds to its node's allocation and its tenant's usage like a binding (no task count,
    // no binding feed: nothing runs).
    private void AddReservation(in ReservationLive r)
    {
        _reservations.Add(r.Hold.Task, r);
        ref NodeLive live = ref _live[r.Hold.Node.Value];
        live.Allocated += r.Hold.Resources;
        if (live.Status == NodeStatus.Schedulable) _schedAllocated += r.Hold.Resources;
        int t = r.Hold.Tenant.Value;
        _tenantUsage[t] += r.Hold.Resources;
        UsageChanged(t);
        TenantChanged(t);
    }

    private void RemoveReservation(in ReservationLive r)
    {
        _reservations.Remove(r.Hold.Task);
        ref NodeLive live = ref _live[r.Hold.Node.Value];
        live.Allocated -= r.Hold.Resources;
        if (live.Status == NodeStatus.Schedulable) _schedAllocated -= r.Hold.Resources;
        int t = r.Hold.Tenant.Value;
        _tenantUsage[t] -= r.Hold.Resources;
        UsageChanged(t);
        TenantChanged(t);
    }

    private void JournalReservationReleased(TaskId task, ReservationReleaseReason reason)
    {
        if (_journal is null) return;
        var w = BeginRecord(CellRecordKind.ReservationReleased, _vw.Published);
        w.Task(task);
        w.U8((byte)reason);
        EndRecord(_vw.Published);
    }

    /// <summary>Recovery: installs restored reservations (their expiries converted from wall clock) before derived state is rebuilt.</summary>
    internal void RestoreReservations(IEnumerable<CellReservation> reservations)
    {
        long now = Now();
        var utcNow = _time.GetUtcNow();
        foreach (var r in reservations)
        {
            if ((uint)r.Node.Value >= (uint)_live.Length || _live[r.Node.Value].Spec is null) throw new InvalidDataException($"reservation of {r.Task} names unknown node {r.Node}");
            if ((uint)r.Tenant.Value >= (uint)_tenantCount) throw new InvalidDataException($"reservation of {r.Task} names unknown tenant {r.Tenant}");
            if (_taskNode.ContainsKey(r.Task)) throw new InvalidDataException($"{r.Task} is both bound and reserved in stored state");
            var live = new ReservationLive
            {
                Hold = new Allocation(r.Task, r.Node, r.Resources, r.Tenant, r.Priority, r.Generation),
                ExpiresAtTimestamp = now + TicksFor(r.ExpiresAt - utcNow),
            };
            _reservations[r.Task] = live;
            _live[r.Node.Value].Allocated += r.Resources;
            _tenantUsage[r.Tenant.Value] += r.Resources;
        }
    }
}
