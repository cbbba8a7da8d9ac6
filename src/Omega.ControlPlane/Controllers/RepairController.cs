using System.Diagnostics.Metrics;
using Omega.Cells;

namespace Omega.ControlPlane.Controllers;

/// <summary>What the repair controller did (the <c>kind</c> tag of its metric).</summary>
public enum RepairKind : byte
{
    /// <summary>Released a reservation whose owning workload is gone.</summary>
    LeakedReservation = 0,

    /// <summary>Released a binding whose owning workload is gone.</summary>
    OrphanBinding = 1,

    /// <summary>Finished the cleanup of an object terminating past the deadline (released what was left, removed the finalizer).</summary>
    StaleFinalizer = 2,

    /// <summary>Deleted a scheduling request whose owner is gone.</summary>
    OrphanRequest = 3,

    /// <summary>Marked a scheduling request unplaced past the deadline (condition <c>Stuck=True</c>) for the autoscaler and operators.</summary>
    StuckRequest = 4,

    /// <summary>
    /// Released a binding of a live workload whose serial its status neither runs nor retires (a deposed scheduler bound a
    /// replica job after the workload controller had forgotten it; found by the deterministic simulation, docs/testing.md).
    /// </summary>
    UntrackedBinding = 5,
}

/// <summary>One action of the repair controller, as its audit log keeps it.</summary>
/// <param name="At">When (the controller's clock).</param>
/// <param name="Kind">What was repaired.</param>
/// <param name="Target">The task or object key acted on.</param>
/// <param name="Detail">Why, in words.</param>
public sealed record RepairRecord(DateTimeOffset At, RepairKind Kind, string Target, string Detail);

/// <summary>Settings of the <see cref="RepairController"/>.</summary>
public sealed class RepairControllerOptions
{
    /// <summary>How often a sweep runs (default 5 s).</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Actions per second allowed on average (token bucket; default 20). Over it, repairs wait for the next sweep.</summary>
    public double Rate { get; set; } = 20;

    /// <summary>The most actions one sweep may take (bucket size; default 50).</summary>
    public int Burst { get; set; } = 50;

    /// <summary>How long an object may terminate with finalizers before the repair controller finishes its cleanup (default 5 min).</summary>
    public TimeSpan FinalizerDeadline { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How long a scheduling request may stay unplaced before it is marked stuck (default 10 min).</summary>
    public TimeSpan StuckDeadline { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Entries kept in the audit log (<see cref="RepairController.History"/>; oldest dropped first).</summary>
    public int HistoryCapacity { get; set; } = 1024;
}

/// <summary>
/// The repair controller (docs/control-plane.md, "The repair controller"): a periodic, level-triggered sweep that finds
/// what no other controller will clean up and cleans it — reservations and bindings whose workload is gone (their job
/// ids carry the owner's uid), objects stuck terminating past a deadline, scheduling requests whose owner is gone or that
/// stay unplaced past a deadline. Actions are rate-limited (token bucket), counted by kind in the
/// <c>omega.controlplane.repair.actions</c> counter and recorded in a bounded audit log (<see cref="History"/>).
/// An orphan is acted on only when a second sweep still sees it orphaned, so an owner being written concurrently is
/// never mistaken for a missing one.
/// </summary>
public sealed class RepairController : IDisposable
{
    private readonly ObjectStore _store;
    private readonly Cell _cell;
    private readonly IControllerScheduler _scheduler;
    private readonly RepairControllerOptions _options;
    private readonly TimeProvider _time;
    private readonly Meter _meter;
    private readonly long[] _actions = new long[6];
    private readonly Queue<RepairRecord> _history = new();
    private readonly Lock _lock = new();
    private HashSet<string> _suspects = new(StringComparer.Ordinal);
    private double _tokens;
    private DateTimeOffset _lastRefill;
    private long _deferred;
    private volatile bool _stopped;

    /// <summary>Creates the controller (call <see cref="Start"/>, or drive <see cref="SweepAsync"/> yourself).</summary>
    public RepairController(ObjectStore store, Cell cell, IControllerScheduler scheduler, RepairControllerOptions? options = null, IMeterFactory? meterFactory = null)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _cell = cell ?? throw new ArgumentNullException(nameof(cell));
        _scheduler = scheduler ?? throw new ArgumentNullException(nameof(scheduler));
        _options = options ?? new RepairControllerOptions();
        _time = scheduler.Time;
        _tokens = Math.Max(1, _options.Burst);
        _lastRefill = _time.GetUtcNow();
        _meter = CellCounters.CreateMeter(ReservationController.MeterName, cell.Name, meterFactory);
        _meter.CreateObservableCounter("omega.controlplane.repair.actions", ObserveActions, "{action}", "Repairs made, by kind");
        _meter.CreateObservableCounter("omega.controlplane.repair.deferred", () => Deferred, "{action}", "Repairs postponed to a later sweep by the rate limit");
    }

    /// <summary>Actions taken so far of <paramref name="kind"/>.</summary>
    public long Actions(RepairKind kind) => Interlocked.Read(ref _actions[(int)kind]);

    /// <summary>Repairs postponed by the rate limit so far.</summary>
    public long Deferred => Interlocked.Read(ref _deferred);

    /// <summary>The audit log: the latest actions, oldest first.</summary>
    public IReadOnlyList<RepairRecord> History
    {
        get
        {
            lock (_lock) return [.. _history];
        }
    }

    /// <summary>Runs a sweep now and then every <see cref="RepairControllerOptions.Interval"/> on the scheduler.</summary>
    public void Start() => _scheduler.Post(Tick);

    private void Tick()
    {
        if (_stopped) return;
        // The next sweep is scheduled through the scheduler once this one finished (deterministic in a simulation).
        _scheduler.PostWhenCompleted(SweepAsync(CancellationToken.None).AsTask(), ScheduleNext);
    }

    private void ScheduleNext()
    {
        if (!_stopped) _scheduler.Schedule(_options.Interval, Tick);
    }

    /// <summary>One sweep: observe, then act on what is (still) broken, within the rate limit. Returns the actions taken.</summary>
    public async ValueTask<int> SweepAsync(CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        Refill(now);
        // The cell first, then the objects: a binding read here was made for a workload created before it, so that
        // workload is in the list below unless it was deleted (the other order could see a brand-new owner as missing).
        var reservations = _cell.GetReservations();
        var allocations = _cell.GetAllocations();
        var workloads = ListAll(Workload.KindName);
        var liveUids = new HashSet<long>();
        var terminating = new Dictionary<long, Workload>();
        var workloadsByUid = new Dictionary<long, Workload>();
        foreach (var o in workloads)
        {
            liveUids.Add(o.Metadata.Uid);
            if (o is Workload lw) workloadsByUid[lw.Metadata.Uid] = lw;
            if (o is Workload w && w.Metadata.DeletionTimestamp is not null) terminating[w.Metadata.Uid] = w;
        }
        var suspects = new HashSet<string>(StringComparer.Ordinal);
        int taken = 0;

        foreach (var r in reservations)
        {
            if (!TryOwner(r.Task, out long uid) || liveUids.Contains(uid)) continue;
            string id = "reservation " + r.Task;
            if (!Confirmed(id, suspects) || !Take()) continue;
            if (_cell.ReleaseReservation(r.Task, r.Generation, ReservationReleaseReason.Repaired) == ReleaseStatus.Released)
                Record(now, RepairKind.LeakedReservation, r.Task.ToString(), $"reservation on {r.Node} for workload uid {uid}, which no longer exists");
            taken++;
        }
        foreach (var a in allocations)
        {
            if (!TryOwner(a.Task, out long uid)) continue;
            if (liveUids.Contains(uid))
            {
                // A live workload's binding must be one of its status's serials (running or retiring): every serial is
                // written to the status before its job is submitted, and dropped from it only once unbound. A binding
                // outside both was made by a scheduler that still held a job the controller had forgotten (a scheduler
                // restart with the old one still placing): nothing else would ever release it. Confirmed on two sweeps,
                // and the cell was read before the objects, so a serial assigned since cannot be mistaken for one.
                if (!workloadsByUid.TryGetValue(uid, out var owner) || owner.Metadata.DeletionTimestamp is not null || Tracks(owner, a.Task)) continue; // terminating: its finalization releases it
                string uidId = "untracked " + a.Task;
                if (!Confirmed(uidId, suspects) || !Take()) continue;
                if (_cell.Release(a.Task, a.Generation) == ReleaseStatus.Released)
                    Record(now, RepairKind.UntrackedBinding, a.Task.ToString(), $"binding on {a.Node} (generation {a.Generation}) of {owner.Key}, whose status neither runs nor retires its serial");
                taken++;
                continue;
            }
            string id = "binding " + a.Task;
            if (!Confirmed(id, suspects) || !Take()) continue;
            if (_cell.Release(a.Task, a.Generation) == ReleaseStatus.Released)
                Record(now, RepairKind.OrphanBinding, a.Task.ToString(), $"binding on {a.Node} (generation {a.Generation}) of workload uid {uid}, which no longer exists");
            taken++;
        }

        // Workloads terminating past the deadline: release what the workload controller left, then drop its finalizer.
        foreach (var (uid, w) in terminating)
        {
            if (now - w.Metadata.DeletionTimestamp!.Value < _options.FinalizerDeadline || !w.Metadata.Finalizers.Contains(Workload.BindingsFinalizer)) continue;
            if (!Take()) continue;
            int released = 0;
            foreach (var a in allocations)
                if (TryOwner(a.Task, out long u) && u == uid && _cell.Release(a.Task, a.Generation) == ReleaseStatus.Released) released++;
            foreach (var r in reservations)
                if (TryOwner(r.Task, out long u) && u == uid && _cell.ReleaseReservation(r.Task, r.Generation, ReservationReleaseReason.Repaired) == ReleaseStatus.Released) released++;
            w.Metadata.Finalizers.Remove(Workload.BindingsFinalizer);
            var ur = await _store.UpdateAsync(w, cancellationToken).ConfigureAwait(false);
            if (ur.IsOk)
                Record(now, RepairKind.StaleFinalizer, w.Key.ToString(), $"terminating since {w.Metadata.DeletionTimestamp:O}: released {released} leftover bindings/reservations and removed {Workload.BindingsFinalizer}");
            taken++;
        }

        // Scheduling requests: owner gone → delete; unplaced past the deadline → condition Stuck (once).
        foreach (var o in ListAll(SchedulingRequest.KindName))
        {
            if (o is not SchedulingRequest sr) continue;
            var owner = sr.Metadata.OwnerReferences.Find(static x => x.Controller);
            if (owner is not null && !liveUids.Contains(owner.Uid))
            {
                string id = "request " + sr.Key;
                if (!Confirmed(id, suspects) || !Take()) continue;
                var dr = await _store.DeleteAsync(sr.Key, sr.Metadata.ResourceVersion, cancellationToken).ConfigureAwait(false);
                if (dr.IsOk) Record(now, RepairKind.OrphanRequest, sr.Key.ToString(), $"owner {owner.Kind}/{owner.Name} (uid {owner.Uid}) no longer exists");
                taken++;
                continue;
            }
            bool unplaced = sr.Status.Placed < (sr.Spec.Slots?.Count ?? 0);
            if (!unplaced || sr.Metadata.CreationTimestamp is not { } created || now - created < _options.StuckDeadline) continue;
            if (Conditions.IsTrue(sr.Status.Conditions, "Stuck")) continue;
            if (!Take()) continue;
            Conditions.Set(sr.Status.Conditions, "Stuck", ConditionStatus.True, "PastDeadline",
                $"{sr.Status.Placed} of {sr.Spec.Slots!.Count} slots placed after {(now - created).TotalSeconds:0} s: {sr.Status.PendingReason ?? "no pending reason"}", sr.Metadata.Generation, now);
            var us = await _store.UpdateStatusAsync(sr, cancellationToken).ConfigureAwait(false);
            if (us.IsOk) Record(now, RepairKind.StuckRequest, sr.Key.ToString(), $"unplaced past the {_options.StuckDeadline.TotalSeconds:0} s deadline");
            taken++;
        }
        lock (_lock) _suspects = suspects;
        return taken;
    }

    // Control-plane job ids carry the owning workload's uid (WorkloadController.JobFor); other tasks have no known owner
    // here and are left to their TTL or their submitter.
    private static bool TryOwner(TaskId task, out long uid)
    {
        long job = task.Job.Value;
        uid = (job & (WorkloadController.JobIdSpace - 1)) >> WorkloadController.SerialBits;
        return (job & WorkloadController.JobIdSpace) != 0 && job > 0;
    }

    private static bool Tracks(Workload w, TaskId task)
    {
        int serial = (int)(task.Job.Value & ((1L << WorkloadController.SerialBits) - 1));
        foreach (var r in w.Status.Replicas) if (r.Serial == serial) return true;
        foreach (int s in w.Status.Retired) if (s == serial) return true;
        return false;
    }

    // An orphan is acted on when the previous sweep saw it orphaned too; this sweep's suspects replace the old set.
    private bool Confirmed(string id, HashSet<string> suspects)
    {
        suspects.Add(id);
        lock (_lock) return _suspects.Contains(id);
    }

    private bool Take()
    {
        if (_tokens >= 1)
        {
            _tokens -= 1;
            return true;
        }
        Interlocked.Increment(ref _deferred);
        return false;
    }

    private void Refill(DateTimeOffset now)
    {
        double elapsed = Math.Max(0, (now - _lastRefill).TotalSeconds);
        _lastRefill = now;
        _tokens = Math.Min(Math.Max(1, _options.Burst), _tokens + elapsed * _options.Rate);
    }

    private void Record(DateTimeOffset now, RepairKind kind, string target, string detail)
    {
        Interlocked.Increment(ref _actions[(int)kind]);
        lock (_lock)
        {
            _history.Enqueue(new RepairRecord(now, kind, target, detail));
            while (_history.Count > Math.Max(1, _options.HistoryCapacity)) _history.Dequeue();
        }
    }

    private List<ApiObject> ListAll(string kind)
    {
        var all = new List<ApiObject>();
        string? next = null;
        do
        {
            var page = _store.List(new ObjectFilter(kind), 1000, next);
            all.AddRange(page.Items);
            next = page.Continue;
        }
        while (next is not null);
        return all;
    }

    private IEnumerable<Measurement<long>> ObserveActions()
    {
        var names = Enum.GetNames<RepairKind>();
        for (int i = 0; i < _actions.Length; i++)
            yield return new Measurement<long>(Interlocked.Read(ref _actions[i]), new KeyValuePair<string, object?>("kind", names[i]));
    }

    /// <summary>Stops the periodic sweeps.</summary>
    public void Dispose()
    {
        _stopped = true;
        _meter.Dispose();
    }
}
