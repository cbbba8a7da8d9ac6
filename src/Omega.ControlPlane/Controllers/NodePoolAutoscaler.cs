using System.Diagnostics.Metrics;
using Omega.Cells;

namespace Omega.ControlPlane.Controllers;

/// <summary>What a pending reason says about capacity (the <c>reason</c> tag of the pending-replicas gauge; bounded on purpose).</summary>
public enum PendingClass
{
    /// <summary>Nodes were considered and rejected for lack of free resources, or there are no nodes: more capacity fixes it.</summary>
    Capacity = 0,

    /// <summary>The tenant's quota refuses it: more nodes would not help (an emergency quota might).</summary>
    Quota = 1,

    /// <summary>Labels, taints, anti-affinity, residency, region avoidance or schedulability: the nodes exist but the workload may not go there.</summary>
    Constraint = 2,

    /// <summary>Commit conflicts or a full queue: contention, not capacity.</summary>
    Contention = 3,

    /// <summary>Anything else (unknown tenant, invalid spec).</summary>
    Other = 4,
}

/// <summary>Classifies the engine's pending reasons (the parked reason a workload's <c>status.pendingReason</c> carries).</summary>
public static class PendingReasons
{
    /// <summary>The class of <paramref name="reason"/> (a workload's or scheduling request's pending reason).</summary>
    public static PendingClass Classify(string reason)
    {
        ArgumentNullException.ThrowIfNull(reason);
        // The engine's wording (SchedulerWorker.ParkReason): "... rejected for {FilterStatus}"; an empty cell considers
        // no node at all ("0 of 0 nodes considered rejected for Feasible").
        if (reason.Contains("rejected for InsufficientResources", StringComparison.Ordinal)) return PendingClass.Capacity;
        if (reason.Contains("0 of 0 nodes considered", StringComparison.Ordinal)) return PendingClass.Capacity;
        if (reason.Contains("QuotaExceeded", StringComparison.Ordinal) || reason.Contains("quota", StringComparison.OrdinalIgnoreCase)) return PendingClass.Quota;
        if (reason.Contains("LabelMismatch", StringComparison.Ordinal) || reason.Contains("TaintNotTolerated", StringComparison.Ordinal)
            || reason.Contains("AntiAffinity", StringComparison.Ordinal) || reason.Contains("NodeUnschedulable", StringComparison.Ordinal)
            // Residency and region avoidance (issue 13) are placement constraints too: they fell through to Other before.
            || reason.Contains("ResidencyViolation", StringComparison.Ordinal) || reason.Contains("RegionAvoided", StringComparison.Ordinal)) return PendingClass.Constraint;
        if (reason.Contains("conflict", StringComparison.OrdinalIgnoreCase) || reason.Contains("queue", StringComparison.OrdinalIgnoreCase)) return PendingClass.Contention;
        return PendingClass.Other;
    }
}

/// <summary>Settings of the <see cref="NodePoolAutoscaler"/>.</summary>
public sealed class NodePoolAutoscalerOptions
{
    /// <summary>How often a step runs (default 10 s).</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Below this fraction of bound replicas ready, scale-up is held (default 0.5): the bottleneck is startup, not capacity.</summary>
    public double MinReadyFraction { get; set; } = 0.5;
}

/// <summary>
/// The node-pool autoscaler for simulated pools (seed 001: "autoscaler that reads pending reasons before scaling up"):
/// every <see cref="NodePoolAutoscalerOptions.Interval"/> it reads the workloads' pending reasons and grows a
/// <see cref="NodePool"/> only for replicas pending for a reason capacity fixes (<see cref="PendingClass.Capacity"/>), by at
/// most <c>spec.maxScaleUpPerStep</c> nodes and up to <c>spec.maxNodes</c>. It holds (condition <c>ScaleUpHeld</c>) while
/// readiness is low (fewer than <see cref="NodePoolAutoscalerOptions.MinReadyFraction"/> of the bound replicas ready) or
/// while nodes it added are still empty (the scheduler has not absorbed the last step), so placement lag and slow
/// startup never turn into more nodes; it does nothing while an <see cref="OverrideType.AutoscalerPause"/> override
/// names the pool (condition <c>Paused</c>). Nodes are added to the cell directly (simulated: no agent).
/// </summary>
public sealed class NodePoolAutoscaler : IDisposable
{
    private readonly ObjectStore _store;
    private readonly Cell _cell;
    private readonly IControllerScheduler _scheduler;
    private readonly NodePoolAutoscalerOptions _options;
    private readonly TimeProvider _time;
    private readonly Meter _meter;
    private readonly long[] _pending = new long[Enum.GetValues<PendingClass>().Length];
    private long _added;
    private long _held;
    private volatile bool _stopped;

    /// <summary>Creates the autoscaler (call <see cref="Start"/>, or drive <see cref="StepAsync"/> yourself).</summary>
    public NodePoolAutoscaler(ObjectStore store, Cell cell, IControllerScheduler scheduler, NodePoolAutoscalerOptions? options = null, IMeterFactory? meterFactory = null)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _cell = cell ?? throw new ArgumentNullException(nameof(cell));
        _scheduler = scheduler ?? throw new ArgumentNullException(nameof(scheduler));
        _options = options ?? new NodePoolAutoscalerOptions();
        _time = scheduler.Time;
        _meter = CellCounters.CreateMeter(ReservationController.MeterName, cell.Name, meterFactory);
        _meter.CreateObservableGauge("omega.controlplane.pending_replicas", ObservePending, "{replica}", "Workload replicas not bound, by pending-reason class");
        _meter.CreateObservableCounter("omega.controlplane.autoscaler.nodes_added", () => NodesAdded, "{node}", "Nodes the autoscaler added");
        _meter.CreateObservableCounter("omega.controlplane.autoscaler.held", () => Held, "{step}", "Scale-ups held back (paused, low readiness, capacity not absorbed)");
    }

    /// <summary>Nodes added so far.</summary>
    public long NodesAdded => Interlocked.Read(ref _added);

    /// <summary>Steps in which a pool had fixable pending replicas but was held back (paused, low readiness, not absorbed).</summary>
    public long Held => Interlocked.Read(ref _held);

    /// <summary>Pending replicas of <paramref name="c"/> at the last step.</summary>
    public long Pending(PendingClass c) => Interlocked.Read(ref _pending[(int)c]);

    /// <summary>Runs a step now and then every <see cref="NodePoolAutoscalerOptions.Interval"/>.</summary>
    public void Start() => _scheduler.Post(Tick);

    /// <summary>Stops the periodic steps.</summary>
    public void Dispose()
    {
        _stopped = true;
        _meter.Dispose();
    }

    private void Tick()
    {
        if (_stopped) return;
        _ = StepAsync(CancellationToken.None).AsTask().ContinueWith(
            static (_, s) => { var a = (NodePoolAutoscaler)s!; if (!a._stopped) a._scheduler.Schedule(a._options.Interval, a.Tick); },
            this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>One step over every pool. Returns the nodes added.</summary>
    public async ValueTask<int> StepAsync(CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        var pending = new long[_pending.Length];
        long bound = 0, ready = 0;
        var capacityPending = new List<(Workload W, int Missing)>();
        foreach (var o in OverrideController.ListAll(_store, Workload.KindName))
        {
            if (o is not Workload w) continue;
            bound += w.Status.Bound;
            ready += w.Status.Ready;
            int missing = Math.Max(0, w.Spec.Replicas - w.Status.Bound - w.Status.Succeeded);
            if (missing == 0 || w.Status.PendingReason is not { } reason) continue;
            var c = PendingReasons.Classify(reason);
            pending[(int)c] += missing;
            if (c == PendingClass.Capacity) capacityPending.Add((w, missing));
        }
        for (int i = 0; i < pending.Length; i++) Interlocked.Exchange(ref _pending[i], pending[i]);

        int added = 0;
        foreach (var o in OverrideController.ListAll(_store, NodePool.KindName))
        {
            if (o is not NodePool pool || pool.Metadata.DeletionTimestamp is not null) continue;
            // Fixable by this pool: capacity-pending replicas its nodes could run. The engine names the first filter that
            // rejected each node, and the resource fit runs before residency, node selectors and region avoidance: a
            // replica that must live in a region the pool's nodes are not in reads "rejected for InsufficientResources"
            // once the nodes it could never use are full. More of this pool's nodes would not help it.
            int fixable = 0;
            var demand = ResourceVector.Zero;
            foreach (var (w, missing) in capacityPending)
            {
                if (!CanHost(pool, w.Spec)) continue;
                fixable += missing;
                var r = w.Spec.Resources.ToVector();
                for (int i = 0; i < missing; i++) demand += r;
            }
            added += await StepPoolAsync(pool, now, fixable, demand, pending, bound, ready, cancellationToken).ConfigureAwait(false);
        }
        return added;
    }

    /// <summary>
    /// Whether a node this pool adds could run a replica of <paramref name="spec"/> by its hard constraints: the region
    /// (residency, avoided regions) and the node selector against the pool's labels. Capacity aside, a replica the
    /// pool's nodes can never take is not the pool's to fix.
    /// </summary>
    public static bool CanHost(NodePool pool, WorkloadSpec spec)
    {
        ArgumentNullException.ThrowIfNull(pool);
        ArgumentNullException.ThrowIfNull(spec);
        var labels = pool.Spec.Labels;
        string region = labels.TryGetValue(Topology.RegionLabel, out var r) ? r : "";
        var t = spec.Topology;
        // A node without a region never satisfies a residency requirement (the engine's topology filter).
        if (t.RequiredRegions.Count > 0 && !t.RequiredRegions.Contains(region)) return false;
        if (region.Length > 0 && t.AvoidRegions.Contains(region)) return false;
        foreach (var (key, value) in spec.NodeSelector)
        {
            string? have = key == NodePool.PoolLabel ? pool.Metadata.Name : labels.TryGetValue(key, out var v) ? v : null;
            if (!string.Equals(have, value, StringComparison.Ordinal)) return false;
        }
        return true;
    }

    private async ValueTask<int> StepPoolAsync(NodePool pool, DateTimeOffset now, int fixable, ResourceVector demand, long[] pending, long bound, long ready, CancellationToken ct)
    {
        string name = pool.Metadata.Name;
        int nodes = 0, empty = 0;
        var snap = _cell.Snapshot();
        for (int i = 0; i < snap.NodeCount; i++)
        {
            if (snap.TryGetNode(new NodeId(i), out var v) != SnapshotRead.Ok || v.Status == NodeStatus.Removed) continue;
            if (!v.Spec.Labels.TryGetValue(NodePool.PoolLabel, out var p) || p != name) continue;
            nodes++;
            if (v.TaskCount == 0) empty++;
        }
        var s = pool.Status;
        s.Nodes = nodes;
        s.PendingFixable = fixable;
        s.PendingUnfixable = (int)Math.Min(int.MaxValue, pending.Sum() - fixable);
        long gen = pool.Metadata.Generation;
        int toAdd = 0;
        string? held = null, heldWhy = null;
        if (FindPause(name, now) is { } pause)
        {
            Conditions.Set(s.Conditions, "Paused", ConditionStatus.True, "Override", $"override/{pause.Metadata.Name} by {pause.Spec.Author} until {pause.ExpiresAt:O}: {pause.Spec.Reason}", gen, now);
            if (fixable > 0) { held = "Paused"; heldWhy = $"paused by override/{pause.Metadata.Name}"; }
        }
        else
        {
            Conditions.Set(s.Conditions, "Paused", ConditionStatus.False, "NoOverride", "", gen, now);
            if (fixable > 0)
            {
                if (bound > 0 && ready < bound * _options.MinReadyFraction)
                {
                    // Seed 001's amplification: replicas already placed are not becoming ready. New nodes would only take
                    // more replicas that start just as slowly; the fix is readiness, so wait for it.
                    held = "LowReadiness";
                    heldWhy = $"{ready} of {bound} bound replicas ready (below {_options.MinReadyFraction:P0}): startup, not capacity, is the bottleneck";
                }
                else if (empty > 0)
                {
                    held = "CapacityNotAbsorbed";
                    heldWhy = $"{empty} node(s) of the pool still empty: the scheduler has not used the last step yet";
                }
                else
                {
                    var cap = pool.Spec.NodeCapacity.ToVector();
                    int need = NodesFor(demand, cap);
                    toAdd = Math.Min(Math.Min(need, pool.Spec.MaxScaleUpPerStep), Math.Max(0, pool.Spec.MaxNodes - nodes));
                    if (toAdd == 0) { held = "MaxNodes"; heldWhy = $"the pool is at its maximum of {pool.Spec.MaxNodes} nodes"; }
                }
            }
        }
        if (held is not null)
        {
            Interlocked.Increment(ref _held);
            Conditions.Set(s.Conditions, "ScaleUpHeld", ConditionStatus.True, held, heldWhy!, gen, now);
        }
        else Conditions.Set(s.Conditions, "ScaleUpHeld", ConditionStatus.False, toAdd > 0 ? "ScaledUp" : "NothingPending", toAdd > 0 ? $"added {toAdd} node(s) for {fixable} pending replica(s)" : "", gen, now);

        int added = 0;
        for (int i = 0; i < toAdd; i++)
        {
            var labels = new Dictionary<string, string>(pool.Spec.Labels, StringComparer.Ordinal) { [NodePool.PoolLabel] = name };
            // Names never reused: s.Added only grows, and a name taken by something else is skipped.
            var spec = new NodeSpec($"{name}-{s.Added++}", pool.Spec.NodeCapacity.ToVector(), pool.Spec.FailureDomain, labels);
            if (_cell.AddNode(spec, out _) == NodeOpStatus.Ok) added++;
        }
        if (added > 0)
        {
            s.Nodes += added;
            s.LastScaleUp = now;
            Interlocked.Add(ref _added, added);
        }
        await _store.UpdateStatusAsync(pool, ct).ConfigureAwait(false);
        return added;
    }

    private static int NodesFor(ResourceVector demand, ResourceVector node)
    {
        long n = 1;
        for (int d = 0; d < 4; d++)
            if (node[d] > 0 && demand[d] > 0) n = Math.Max(n, (demand[d] + node[d] - 1) / node[d]);
        return (int)Math.Min(n, 10_000);
    }

    private Override? FindPause(string pool, DateTimeOffset now) => OverrideController.FindActive(_store, OverrideType.AutoscalerPause, pool, now);

    private IEnumerable<Measurement<long>> ObservePending()
    {
        var classes = Enum.GetValues<PendingClass>();
        for (int i = 0; i < classes.Length; i++)
            yield return new Measurement<long>(Interlocked.Read(ref _pending[i]), new KeyValuePair<string, object?>("reason", classes[i].ToString()));
    }
}
