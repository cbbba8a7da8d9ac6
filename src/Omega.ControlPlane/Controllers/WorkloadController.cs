using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;
using Omega.Cells;
using Omega.Scheduling;

namespace Omega.ControlPlane.Controllers;

/// <summary>Tells the workload controller where a bound replica is in its lifecycle (bound → started → ready).</summary>
public interface IReplicaObserver
{
    /// <summary>The lifecycle of the binding of <paramref name="task"/> at <paramref name="generation"/> as its agent reported it.</summary>
    BindingLifecycle Observe(TaskId task, long generation);
}

/// <summary>Ready-made replica observers.</summary>
public static class ReplicaObserver
{
    /// <summary>
    /// Treats every bound replica as ready since the beginning of time (a cell without agents: tests, simulations). The
    /// library default.
    /// </summary>
    public static IReplicaObserver BoundIsReady { get; } = new Bound();

    /// <summary>What agents reported (TaskState Running/Ready), kept by the cell beside each allocation (<see cref="Cell.ReportBindingPhase"/>). The host's choice.</summary>
    public static IReplicaObserver AgentReported(Cell cell) => new Reported(cell ?? throw new ArgumentNullException(nameof(cell)));

    private sealed class Bound : IReplicaObserver
    {
        public BindingLifecycle Observe(TaskId task, long generation) => new(BindingPhase.Ready, long.MinValue / 2);
    }

    private sealed class Reported(Cell cell) : IReplicaObserver
    {
        public BindingLifecycle Observe(TaskId task, long generation) => cell.GetBindingLifecycle(task, generation);
    }
}

/// <summary>Settings of the <see cref="WorkloadController"/>.</summary>
public sealed class WorkloadControllerOptions
{
    /// <summary>Reads bound replicas' lifecycle (readiness). Default <see cref="ReplicaObserver.BoundIsReady"/>; a host with agents uses <see cref="ReplicaObserver.AgentReported"/>.</summary>
    public IReplicaObserver Observer { get; set; } = ReplicaObserver.BoundIsReady;

    /// <summary>
    /// Maps <c>metadata.tenant</c> to an engine tenant; null when unknown. Default (null): the cell's tenant registry by
    /// name, so a workload can only run for a tenant an operator created.
    /// </summary>
    public Func<string, TenantId?>? TenantResolver { get; set; }

    /// <summary>How soon to look again while converging (pending placements, retiring replicas).</summary>
    public TimeSpan ProgressRequeue { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>The pause between scale-down steps of at most maxUnavailable ready replicas.</summary>
    public TimeSpan ScaleDownPause { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>How long a replica the engine parked (unplaceable) waits before it is retried under a new serial.</summary>
    public TimeSpan ParkedRetryDelay { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Routes replica jobs (issue 13: a region's scheduler spending its budget lease, <see cref="Budgets.RegionalBudgetRouter"/>).
    /// Null (default): every replica goes to the engine directly.
    /// </summary>
    public IReplicaRouter? Router { get; set; }

    /// <summary>
    /// The factory of the meter that carries the serving-stage gauge <c>omega.controlplane.replicas</c> (docs/operations.md,
    /// "Stage dashboards"). The host passes its own; null (default): no meter, no gauge.
    /// </summary>
    public IMeterFactory? MeterFactory { get; set; }
}

/// <summary>
/// The workload controller (docs/control-plane.md, "The workload controller"): brings each <see cref="Workload"/>'s
/// bindings to its spec through the scheduling engine and writes its status. Level-triggered and idempotent: every
/// job id it submits is recorded in the status (write-ahead) and derived from the workload's uid and a serial, so a
/// restart at any point converges with no duplicate binding.
/// </summary>
public sealed class WorkloadController : IReconciler
{
    /// <summary>The bit that marks control-plane job ids (kept clear of ids submitted directly to the engine).</summary>
    public const long JobIdSpace = 1L << 62;

    /// <summary>Bits of the per-workload serial in a job id.</summary>
    public const int SerialBits = 20;

    private readonly ObjectStore _store;
    private readonly SchedulingEngine _engine;
    private readonly WorkloadControllerOptions _options;
    private readonly TimeProvider _time;
    private readonly Dictionary<string, DateTimeOffset> _parkedSince = new(StringComparer.Ordinal);
    // When each workload (by uid) last took ready replicas away. A reconcile runs on every watch event too (its own
    // status write, a released binding), not only on the requeue after ScaleDownPause, so the pause between disruption
    // steps is kept here rather than in the requeue alone. In memory on purpose: after a restart the first step may come
    // at once, which still takes at most maxUnavailable ready replicas.
    private readonly Dictionary<long, DateTimeOffset> _lastReadyRemoval = new();
    private readonly Lock _lock = new();
    // The rollout deadline never counts time before this controller started (a restart is not a stalled rollout).
    private readonly DateTimeOffset _startedAt;
    // The serving-stage gauge's input: each workload's replica counts at its last status write, by key. Written per
    // reconcile (not per placement); summed per tenant only when the gauge is read.
    private readonly ConcurrentDictionary<ObjectKey, StageCounts> _stages = new();
    private readonly Meter? _meter;

    private readonly record struct StageCounts(string Tenant, int Desired, int Bound, int Running, int Ready, int Serving);

    /// <summary>
    /// The <c>state</c> values of <c>omega.controlplane.replicas</c>, in funnel order: running, ready and serving are each
    /// at most the one before; bound may exceed desired during a rollout's surge or a scale-down.
    /// </summary>
    public static IReadOnlyList<string> ReplicaStates { get; } = ["desired", "bound", "running", "ready", "serving"];

    /// <summary>Creates the controller over a store and an engine (whose cell holds the bindings).</summary>
    public WorkloadController(ObjectStore store, SchedulingEngine engine, TimeProvider? time = null, WorkloadControllerOptions? options = null)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _engine = engine ?? throw new ArgumentNullException(nameof(engine));
        _options = options ?? new WorkloadControllerOptions();
        _time = time ?? engine.Time;
        _startedAt = _time.GetUtcNow();
        if (_options.MeterFactory is { } factory)
        {
            _meter = CellCounters.CreateMeter(ReservationController.MeterName, engine.Cell.Name, factory);
            _meter.CreateObservableGauge("omega.controlplane.replicas", ObserveStages, "{replica}",
                "Serving stage: workload replicas by tenant and state (desired, bound, running, ready, serving)");
        }
    }

    // One series per tenant of the cell (zeros included, so a tenant's panel does not vanish when its last workload goes)
    // and state: at most CellOptions.MaxTenants × 5 series. Allocates, but only when a listener reads the gauge (a scrape).
    private IEnumerable<Measurement<long>> ObserveStages()
    {
        var sums = new SortedDictionary<string, long[]>(StringComparer.Ordinal);
        foreach (var t in _engine.Cell.GetTenants()) sums[t.Name] = new long[5];
        foreach (var c in _stages.Values)
        {
            if (!sums.TryGetValue(c.Tenant, out var a)) sums[c.Tenant] = a = new long[5];
            a[0] += c.Desired;
            a[1] += c.Bound;
            a[2] += c.Running;
            a[3] += c.Ready;
            a[4] += c.Serving;
        }
        var states = ReplicaStates;
        foreach (var (tenant, a) in sums)
            for (int i = 0; i < a.Length; i++)
                yield return new Measurement<long>(a[i], new KeyValuePair<string, object?>("tenant", tenant), new KeyValuePair<string, object?>("state", states[i]));
    }

    /// <summary>Which objects the controller watches.</summary>
    public static ObjectFilter Filter => new(Workload.KindName);

    /// <summary>The engine job id backing serial <paramref name="serial"/> of the workload with uid <paramref name="uid"/>.</summary>
    public static JobId JobFor(long uid, int serial) => new(JobIdSpace | (uid << SerialBits) | (uint)serial);

    /// <summary>The task backing serial <paramref name="serial"/> of the workload with uid <paramref name="uid"/>.</summary>
    public static TaskId TaskFor(long uid, int serial) => new(JobFor(uid, serial), 0);

    /// <summary>The constraint group of a workload's replica jobs (all jobs of one workload uid: <see cref="JobFor"/>).</summary>
    public static PlacementGroup GroupFor(WorkloadSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        return new PlacementGroup(SerialBits, (PlacementScope)spec.AntiAffinity, (PlacementScope)spec.Spread);
    }

    /// <summary>
    /// Creates a runner for this controller. The runner is also nudged when a binding of a workload's replica is removed
    /// from outside the controller (node lost, region lost, preemption): bindings have no watch of their own, and without
    /// the nudge a converged workload would notice only at the next resync (30 s), reporting stale serving counts through
    /// a region loss.
    /// </summary>
    public ControllerRunner CreateRunner(IControllerScheduler scheduler, ControllerRunnerOptions? options = null)
    {
        var runner = new ControllerRunner(_store, this, Filter, scheduler, options);
        Volatile.Write(ref _runner, runner);
        if (Interlocked.Exchange(ref _listening, 1) == 0) _engine.Cell.AddBindingListener(new UnboundNudge(this));
        return runner;
    }

    private ControllerRunner? _runner;
    private int _listening;
    // Workload uid → its key, learnt at reconcile: the listener maps a released task's job id to the key to enqueue.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<long, string> _keyByUid = new();

    // Called under the cell's commit lock: a mask, a dictionary lookup and a deduplicating enqueue; no allocation.
    private sealed class UnboundNudge(WorkloadController owner) : IBindingListener
    {
        public void OnBindingChanged(BindingChange change, in Allocation allocation, long version)
        {
            if (change != BindingChange.Unbound) return;
            long j = allocation.Task.Job.Value;
            if (j < 0 || (j & JobIdSpace) == 0) return;
            long uid = (j & (JobIdSpace - 1)) >> SerialBits;
            if (owner._keyByUid.TryGetValue(uid, out var key)) Volatile.Read(ref owner._runner)?.Queue.Add(key);
        }

        public void OnVersionComplete(long version) { }
    }

    /// <inheritdoc />
    public async ValueTask<ReconcileResult> ReconcileAsync(ObjectKey key, CancellationToken cancellationToken)
    {
        if (_store.Get(key).Object is not Workload w)
        {
            _stages.TryRemove(key, out _);
            return ReconcileResult.Done;
        }
        var now = _time.GetUtcNow();
        long uid = w.Metadata.Uid;
        var cell = _engine.Cell;
        if (!_keyByUid.ContainsKey(uid)) _keyByUid[uid] = key.ToString();

        if (w.Metadata.DeletionTimestamp is not null)
        {
            _stages.TryRemove(key, out _);
            lock (_lock) _lastReadyRemoval.Remove(uid);
            return await FinalizeAsync(w, uid, cancellationToken).ConfigureAwait(false);
        }
        if (!w.Metadata.Finalizers.Contains(Workload.BindingsFinalizer))
        {
            // Before anything can be bound, make sure deletion will wait for the bindings' release.
            w.Metadata.Finalizers.Add(Workload.BindingsFinalizer);
            var r = await _store.UpdateAsync(w, cancellationToken).ConfigureAwait(false);
            return r.IsOk ? ReconcileResult.After(TimeSpan.FromTicks(1)) : ReconcileResult.Retry;
        }

        var spec = w.Spec;
        var status = w.Status;
        long gen = w.Metadata.Generation;
        var tenant = _options.TenantResolver is { } resolve ? resolve(w.Metadata.Tenant) : (_engine.Cell.TryGetTenant(w.Metadata.Tenant, out var known) ? known : null);
        if (tenant is null || uid >= 1L << (62 - SerialBits))
        {
            string why = tenant is null ? "UnknownTenant" : "InvalidSpec";
            string msg = tenant is null ? $"tenant '{w.Metadata.Tenant}' does not map to an engine tenant" : "the workload's uid exceeds the job id space";
            Conditions.Set(status.Conditions, "Degraded", ConditionStatus.True, why, msg, gen, now);
            Conditions.Set(status.Conditions, "Progressing", ConditionStatus.False, why, msg, gen, now);
            status.ObservedGeneration = gen;
            _stages.TryRemove(key, out _);
            var r = await _store.UpdateStatusAsync(w, cancellationToken).ConfigureAwait(false);
            return r.IsOk ? ReconcileResult.Done : ReconcileResult.Retry;
        }

        // Recovery budgets (issue 13): the cell counts a critical binding outside its group's home region (the first
        // preferred region) as failover, which consumes that region's budget and is never held back by it. Recorded
        // before any replica is submitted; idempotent (Unchanged writes nothing). A cell at MaxFailoverHomes leaves the
        // group without a home: its replicas are then treated as each region's own work (never failover).
        ReconcileFailoverHome(cell, uid, spec.Topology.PreferredRegions.Count > 0 ? spec.Topology.PreferredRegions[0] : null);

        // ------------------------------------------------------------ observe
        var completed = SlotSet.Parse(status.CompletedSlots);
        bool batch = spec.Type == WorkloadType.Batch;
        // Rollout, step 1: the target template (a new template starts a rollout). Recorded with the assignments below,
        // before any job of the new template is submitted (write-ahead).
        bool changed = RolloutController.Track(status, spec, gen, now, batch);
        long target = status.Rollout.Revision;
        var assignments = new List<ReplicaAssignment>(status.Replicas);
        var retired = new List<int>(status.Retired);
        string? pendingReason = null;
        // One serial per slot and revision (services hold an old and a new one per slot during a rollout).
        var seen = new HashSet<(int, long)>();
        for (int i = assignments.Count - 1; i >= 0; i--)
        {
            var a = assignments[i];
            if (!seen.Add((a.Slot, batch ? 0 : a.Revision)))
            {
                // Two serials for one slot and revision (cannot happen through this code; repair it anyway): retire the extra.
                retired.Add(a.Serial);
                assignments.RemoveAt(i);
                changed = true;
            }
        }
        var toReplace = new List<ReplicaAssignment>();
        foreach (var a in assignments)
        {
            var task = TaskFor(uid, a.Serial);
            if (cell.TryGetAllocation(task, out _)) continue;
            if (!_engine.TryGetJob(task.Job, out var js))
            {
                // Unbound and forgotten by the engine: resubmitted below, unless its template is no longer kept (a
                // superseded or rolled-back revision): then it is retired and its slot gets a target replica.
                if (!batch && RolloutController.Find(status, a.Revision) is null) toReplace.Add(a);
                continue;
            }
            if (js.Phase == JobPhase.Completed)
            {
                if (batch)
                {
                    completed.Add(a.Slot);
                    toReplace.Add(a); // removed, not replaced: batch slots run once
                }
                else toReplace.Add(a);
            }
            else if (js.Phase == JobPhase.Parked)
            {
                pendingReason ??= js.ParkedReason;
                string pk = $"{uid}/{a.Serial}";
                lock (_lock)
                {
                    if (!_parkedSince.TryGetValue(pk, out var since)) _parkedSince[pk] = now;
                    else if (now - since >= _options.ParkedRetryDelay)
                    {
                        _parkedSince.Remove(pk);
                        toReplace.Add(a);
                    }
                }
            }
        }
        foreach (var a in toReplace)
        {
            assignments.Remove(a);
            retired.Add(a.Serial);
            changed = true;
        }

        // ------------------------------------------------------------ plan: scale up (new serials), scale down (retire)
        int replicas = spec.Replicas;
        long minReady = batch ? 0 : (long)(spec.MinReadySeconds * _time.TimestampFrequency);
        long nowTs = _time.GetTimestamp();
        bool exhausted = false;
        if (batch)
        {
            var filled = new HashSet<int>();
            foreach (var a in assignments) filled.Add(a.Slot);
            for (int slot = 0; slot < replicas; slot++)
            {
                if (filled.Contains(slot) || completed.Contains(slot)) continue;
                if (status.NextSerial >= 1 << SerialBits) { exhausted = true; break; } // serial space exhausted: Degraded below
                assignments.Add(new ReplicaAssignment(slot, status.NextSerial++, target));
                changed = true;
            }
        }
        else
        {
            // Rollout, step 2 (also plain scale-up: an empty slot is a slot without a target replica): within
            // replicas + maxSurge serials and replicas - maxUnavailable serving slots.
            var views = new List<ReplicaView>(assignments.Count);
            foreach (var a in assignments)
            {
                if (a.Slot >= replicas) continue;
                var task = TaskFor(uid, a.Serial);
                bool serves = cell.TryGetAllocation(task, out var al) && _options.Observer.Observe(task, al.Generation) is { Phase: BindingPhase.Ready } life && nowTs - life.Since >= minReady;
                views.Add(new ReplicaView(a.Slot, a.Serial, a.Revision, serves));
            }
            var plan = RolloutController.Plan(replicas, spec.MaxSurge, spec.MaxUnavailable, target, views, assignments.Count + retired.Count);
            foreach (int serial in plan.Retire)
            {
                assignments.RemoveAll(a => a.Serial == serial);
                retired.Add(serial);
                changed = true;
            }
            foreach (int slot in plan.Create)
            {
                if (status.NextSerial >= 1 << SerialBits) { exhausted = true; break; }
                assignments.Add(new ReplicaAssignment(slot, status.NextSerial++, target));
                changed = true;
            }
        }
        bool scaleDownLeft = false;
        var excess = new List<(ReplicaAssignment A, bool Ready)>();
        foreach (var a in assignments)
        {
            if (a.Slot < replicas) continue;
            var task = TaskFor(uid, a.Serial);
            bool ready = cell.TryGetAllocation(task, out var al) && _options.Observer.Observe(task, al.Generation).Phase == BindingPhase.Ready;
            excess.Add((a, ready));
        }
        if (excess.Count > 0)
        {
            // Unready first, then highest slot first; ready replicas at most maxUnavailable per step (disruption budget).
            excess.Sort(static (x, y) => x.Ready != y.Ready ? x.Ready.CompareTo(y.Ready) : y.A.Slot.CompareTo(x.A.Slot));
            int readyBudget = spec.MaxUnavailable;
            lock (_lock)
            {
                if (_lastReadyRemoval.TryGetValue(uid, out var last) && now - last < _options.ScaleDownPause) readyBudget = 0;
            }
            bool tookReady = false;
            foreach (var (a, ready) in excess)
            {
                if (ready && readyBudget-- <= 0) { scaleDownLeft = true; continue; }
                assignments.Remove(a);
                retired.Add(a.Serial);
                changed = true;
                tookReady |= ready;
            }
            if (tookReady) lock (_lock) _lastReadyRemoval[uid] = now;
        }
        if (batch)
        {
            string cs = completed.ToString();
            if (!string.Equals(cs, status.CompletedSlots, StringComparison.Ordinal)) { status.CompletedSlots = cs; changed = true; }
        }

        if (changed)
        {
            // Write-ahead: every serial (and the template it runs) is durable in the status before its job is submitted
            // or released.
            assignments.Sort(static (x, y) => x.Slot != y.Slot ? x.Slot.CompareTo(y.Slot) : x.Serial.CompareTo(y.Serial));
            status.Replicas = assignments;
            status.Retired = retired;
            var r = await _store.UpdateStatusAsync(w, cancellationToken).ConfigureAwait(false);
            if (!r.IsOk) return ReconcileResult.Retry; // a conflict: someone changed the workload; look again
            w = (Workload)r.Object!;
            status = w.Status;
        }

        // ------------------------------------------------------------ act
        bool progressing = scaleDownLeft;
        for (int i = status.Retired.Count - 1; i >= 0; i--)
        {
            if (ReleaseSerial(uid, status.Retired[i])) status.Retired.RemoveAt(i);
            else progressing = true;
        }
        int bound = 0, running = 0, ready2 = 0, serving = 0, updated = 0, updatedReady = 0, updatedServing = 0, others = 0, unreachable = 0;
        var snap = cell.Snapshot();
        var servingByRegion = new SortedDictionary<string, int>(StringComparer.Ordinal);
        SortedSet<string>? unreachableRegions = null;
        long nextServing = long.MaxValue; // timestamp when the next ready replica starts serving
        foreach (var a in status.Replicas)
        {
            var task = TaskFor(uid, a.Serial);
            bool isTarget = batch || (a.Revision == target && a.Slot < replicas);
            if (!isTarget) others++;
            if (cell.TryGetAllocation(task, out var al))
            {
                bound++;
                if (isTarget) updated++;
                // A replica on a node that cannot be reached (suspect, fenced) is neither ready nor serving whatever its
                // agent last said: nobody can tell. Looked at again soon (progressing), since node status has no watch.
                string region = "";
                if (snap.TryGetNode(al.Node, out var nv) == SnapshotRead.Ok)
                {
                    region = nv.Spec.Region;
                    if (nv.Status is NodeStatus.Down or NodeStatus.Fenced or NodeStatus.Removed)
                    {
                        unreachable++;
                        (unreachableRegions ??= new(StringComparer.Ordinal)).Add(region.Length == 0 ? "(none)" : region);
                        progressing = true;
                        continue;
                    }
                }
                var life = _options.Observer.Observe(task, al.Generation);
                if (life.Phase != BindingPhase.Bound) running++;
                if (life.Phase != BindingPhase.Ready) { progressing = true; continue; }
                ready2++;
                if (isTarget) updatedReady++;
                // Serving: ready, and ready for minReadySeconds without a relapse (a later "running" resets the clock).
                if (nowTs - life.Since >= minReady)
                {
                    serving++;
                    if (isTarget) updatedServing++;
                    servingByRegion[region] = (servingByRegion.TryGetValue(region, out int sr0) ? sr0 : 0) + 1;
                }
                else nextServing = Math.Min(nextServing, life.Since + minReady);
                continue;
            }
            progressing = true;
            if (_engine.TryGetJob(task.Job, out var js))
            {
                // The engine believes it bound the task but the cell says no (released from outside: node lost).
                if (js.Phase == JobPhase.Placed) _engine.RequeueReleased([task]);
                continue;
            }
            // The replica's template: the revision it was recorded with (batch: the current one if that is gone).
            var t = RolloutController.Find(status, a.Revision)?.Spec ?? (batch ? spec : null);
            if (t is null) continue; // a dropped revision: retired at the next step, never submitted
            var job = new JobSpec(task.Job, tenant.Value, t.Priority, 1, t.Resources.ToVector(), gang: false,
                t.NodeSelector, t.Tolerations, $"{w.Metadata.Tenant}/{w.Metadata.Name}#{a.Slot}")
            {
                // One-task jobs per replica: the group shares the workload's bits above the serial, so replicas avoid
                // (hard) or spread from (soft) each other, and the cell checks the hard part at commit.
                Group = GroupFor(t),
                Topology = t.Topology.ToConstraints(),
                Origin = new JobOrigin(w.Metadata.Tenant, w.Metadata.Name, gen, a.Slot),
            };
            if (_options.Router is { } router)
            {
                // A regional scheduler admits it inside its region's budget lease, or refuses (no lease, lease ended,
                // budget exhausted): the replica stays pending with that reason and is offered again at the next look.
                var rr = router.Submit(job, t.Scheduler);
                if (rr.Status == ReplicaRouteStatus.Refused) { pendingReason ??= rr.Reason; continue; }
                if (rr.Status == ReplicaRouteStatus.Accepted) continue;
            }
            var er = _engine.Submit(job, t.Scheduler);
            if (er.Status is not (EnqueueStatus.Accepted or EnqueueStatus.DuplicateJob)) pendingReason ??= er.Reason ?? er.Status.ToString();
        }
        bool rolledBack = false;
        if (!batch)
        {
            // Rollout, step 3: progress, completion, rollback past the deadline; conditions.
            bool complete = updatedServing == replicas && others == 0 && status.Retired.Count == 0;
            if (!complete) progressing = true;
            rolledBack = RolloutController.Advance(status, replicas, updated, updatedReady, updatedServing, complete, now, _startedAt,
                TimeSpan.FromSeconds(spec.ProgressDeadlineSeconds), gen);
        }

        // ------------------------------------------------------------ status
        int desired = replicas;
        status.ObservedGeneration = gen;
        status.Desired = desired;
        status.Bound = bound;
        status.Ready = ready2;
        status.Serving = serving;
        status.Unreachable = unreachable;
        status.ServingByRegion = servingByRegion;
        // Batch: the slots still to run (completed ones need no replica), so the funnel does not count finished work as missing.
        _stages[key] = new StageCounts(w.Metadata.Tenant, batch ? Math.Max(0, replicas - completed.Count) : replicas, bound, running, ready2, serving);
        Conditions.Set(status.Conditions, "ReplicasUnreachable", unreachable > 0 ? ConditionStatus.True : ConditionStatus.False,
            unreachable > 0 ? "NodeUnreachable" : "AllReachable",
            unreachable > 0 ? $"{unreachable} replicas on unreachable nodes (regions: {string.Join(",", unreachableRegions!)})" : "", gen, now);
        status.Succeeded = batch ? completed.Count : 0;
        status.PendingReason = pendingReason;
        bool available = batch ? completed.Count >= replicas : ready2 >= Math.Max(0, replicas - spec.MaxUnavailable);
        Conditions.Set(status.Conditions, "Available", available ? ConditionStatus.True : ConditionStatus.False,
            batch && available ? "Completed" : available ? "MinimumReplicasAvailable" : "ReplicasUnavailable",
            $"{ready2} of {replicas} replicas ready", gen, now);
        exhausted |= status.NextSerial >= 1 << SerialBits;
        bool unschedulable = pendingReason is not null;
        Conditions.Set(status.Conditions, "Progressing", progressing ? ConditionStatus.True : ConditionStatus.False,
            unschedulable ? "Unschedulable" : progressing ? "Converging" : "Converged",
            unschedulable ? pendingReason! : $"{bound} bound, {ready2} ready of {replicas}", gen, now);
        Conditions.Set(status.Conditions, "Degraded", unschedulable || exhausted ? ConditionStatus.True : ConditionStatus.False,
            exhausted ? "InvalidSpec" : unschedulable ? "Unschedulable" : "AsExpected",
            exhausted ? "the workload's job serials are exhausted" : pendingReason ?? "", gen, now);
        // Batch deadline (issue 13): reported from the creation time on this controller's clock. Sticky once True: a job
        // that finishes after its deadline still missed it (the drill counts misses from this condition).
        TimeSpan? untilDeadline = null;
        if (batch && spec.DeadlineSeconds is { } deadlineSeconds && w.Metadata.CreationTimestamp is { } created)
        {
            var due = created + TimeSpan.FromSeconds(deadlineSeconds);
            bool done = completed.Count >= replicas;
            bool missedBefore = Conditions.Find(status.Conditions, "DeadlineExceeded") is { Status: ConditionStatus.True };
            if (missedBefore || (!done && now >= due))
                Conditions.Set(status.Conditions, "DeadlineExceeded", ConditionStatus.True, "PastDeadline",
                    $"{completed.Count} of {replicas} replicas completed by the deadline of {deadlineSeconds} s", gen, now);
            else
            {
                Conditions.Set(status.Conditions, "DeadlineExceeded", ConditionStatus.False, done ? "CompletedInTime" : "Running",
                    done ? $"all {replicas} replicas completed within {deadlineSeconds} s" : $"{completed.Count} of {replicas} replicas completed", gen, now);
                if (!done) untilDeadline = due - now;
            }
        }
        var sr = await _store.UpdateStatusAsync(w, cancellationToken).ConfigureAwait(false);
        if (!sr.IsOk) return ReconcileResult.Retry;
        // Nothing else wakes us when a running batch's deadline passes: look again at that instant.
        if (untilDeadline is { } left && !rolledBack && !scaleDownLeft && (nextServing == long.MaxValue) && (!progressing || left < _options.ProgressRequeue))
            return ReconcileResult.After(left > TimeSpan.Zero ? left : TimeSpan.FromTicks(1));
        if (rolledBack) return ReconcileResult.After(TimeSpan.FromTicks(1)); // replace the rolled-back replicas at once
        if (scaleDownLeft) return ReconcileResult.After(_options.ScaleDownPause);
        if (nextServing != long.MaxValue)
        {
            // Nothing else may wake us when a ready replica's minReadySeconds pass: look again then.
            var due = TimeSpan.FromSeconds(Math.Max(1, nextServing - nowTs) / (double)_time.TimestampFrequency);
            return ReconcileResult.After(progressing && due > _options.ProgressRequeue ? _options.ProgressRequeue : due);
        }
        return progressing ? ReconcileResult.After(_options.ProgressRequeue) : ReconcileResult.Done;
    }

    // Releases a retired serial's binding. True when nothing of it is left (unbound and not pending in the engine).
    private bool ReleaseSerial(long uid, int serial)
    {
        var task = TaskFor(uid, serial);
        bool known = _engine.TryGetJob(task.Job, out var js);
        if (_engine.Cell.TryGetAllocation(task, out _))
        {
            // Through the engine when it holds the binding, so its job state stays true; else straight in the cell.
            if (!known || _engine.CompleteTask(task) != ReleaseStatus.Released) _engine.Cell.Release(task);
        }
        if (_engine.Cell.TryGetAllocation(task, out _)) return false;
        // Still queued in the engine: it may bind later (the engine has no cancel); keep it retired and look again.
        bool gone = !known || js.Phase is JobPhase.Completed or JobPhase.Parked or JobPhase.Placed;
        if (gone) _options.Router?.Released(task.Job); // its regional budget spend comes back
        return gone;
    }

    private static void ReconcileFailoverHome(Cell cell, long uid, string? home)
    {
        var job = JobFor(uid, 0);
        if (!string.Equals(cell.GetFailoverHome(job), home, StringComparison.Ordinal))
            cell.SetFailoverHome(job.Value >> SerialBits, SerialBits, home, out _);
    }

    private async ValueTask<ReconcileResult> FinalizeAsync(Workload w, long uid, CancellationToken cancellationToken)
    {
        if (!w.Metadata.Finalizers.Contains(Workload.BindingsFinalizer)) return ReconcileResult.Done;
        bool clean = true;
        foreach (var a in w.Status.Replicas) clean &= ReleaseSerial(uid, a.Serial);
        foreach (int s in w.Status.Retired) clean &= ReleaseSerial(uid, s);
        if (!clean) return ReconcileResult.After(_options.ProgressRequeue);
        ReconcileFailoverHome(_engine.Cell, uid, null);
        w.Metadata.Finalizers.Remove(Workload.BindingsFinalizer);
        var r = await _store.UpdateAsync(w, cancellationToken).ConfigureAwait(false);
        if (r.IsOk) _keyByUid.TryRemove(uid, out _);
        return r.IsOk ? ReconcileResult.Done : ReconcileResult.Retry;
    }
}

/// <summary>A set of slots with a compact range encoding (<c>0-9,12</c>), for batch completions in status.</summary>
internal sealed class SlotSet
{
    private readonly SortedSet<int> _slots = new();

    public int Count => _slots.Count;

    public bool Contains(int slot) => _slots.Contains(slot);

    public void Add(int slot) => _slots.Add(slot);

    public static SlotSet Parse(string? text)
    {
        var set = new SlotSet();
        if (string.IsNullOrEmpty(text)) return set;
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int dash = part.IndexOf('-', StringComparison.Ordinal);
            if (dash < 0) { if (int.TryParse(part, CultureInfo.InvariantCulture, out int s)) set._slots.Add(s); continue; }
            if (int.TryParse(part.AsSpan(0, dash), CultureInfo.InvariantCulture, out int a) && int.TryParse(part.AsSpan(dash + 1), CultureInfo.InvariantCulture, out int b))
                for (int i = a; i <= b && i - a <= WorkloadSpec.MaxReplicas; i++) set._slots.Add(i);
        }
        return set;
    }

    public override string ToString()
    {
        var sb = new StringBuilder();
        int start = -1, prev = -2;
        foreach (int s in _slots)
        {
            if (s == prev + 1) { prev = s; continue; }
            Flush();
            start = prev = s;
        }
        Flush();
        return sb.ToString();

        void Flush()
        {
            if (start < 0) return;
            if (sb.Length > 0) sb.Append(',');
            sb.Append(start.ToString(CultureInfo.InvariantCulture));
            if (prev > start) sb.Append('-').Append(prev.ToString(CultureInfo.InvariantCulture));
        }
    }
}
