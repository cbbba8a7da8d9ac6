using System.Globalization;
using System.Security.Cryptography;

namespace Omega.ControlPlane.Controllers;

/// <summary>One live replica as the rollout planner sees it.</summary>
/// <param name="Slot">The replica slot.</param>
/// <param name="Serial">The job serial backing it.</param>
/// <param name="Revision">The template revision it runs.</param>
/// <param name="Serving">True when it serves (ready for <c>minReadySeconds</c>).</param>
public readonly record struct ReplicaView(int Slot, int Serial, long Revision, bool Serving);

/// <summary>What one rollout step does: serials to retire and slots that get a new replica of the target revision.</summary>
/// <param name="Retire">Serials to retire (their bindings are released).</param>
/// <param name="Create">Slots to give a new replica of the target revision.</param>
/// <param name="Blocked">True when a slot could not be moved this step (surge or unavailability limit reached).</param>
public sealed record RolloutPlan(IReadOnlyList<int> Retire, IReadOnlyList<int> Create, bool Blocked);

/// <summary>
/// The rollout controller (docs/control-plane.md, "The rollout controller"): replaces a service's replicas when its
/// template (resources, priority, placement, scheduler) changes, within <c>spec.maxSurge</c> and
/// <c>spec.maxUnavailable</c>, reports progress in <c>status.rollout</c> and the conditions <c>RolloutComplete</c> and
/// <c>RolledBack</c>, and rolls back to the stable template when the new one makes no progress within
/// <c>spec.progressDeadlineSeconds</c>.
/// </summary>
/// <remarks>
/// It is a pure state machine over the workload's status, run as a stage of the workload reconciler: the same key, the
/// same <see cref="ControllerRunner"/> and work queue, the same <see cref="TimeProvider"/>, no threads or timers of its
/// own. A second runner writing the same status would conflict with the workload controller on every step (both
/// writing <c>status</c> under resourceVersion preconditions) and would have to agree with it on who creates which
/// serial; one reconcile that first decides the target template, then plans the replicas, keeps one writer per status.
/// Everything it decides is recorded in the status before it is acted on (the templates and each replica's revision
/// are written ahead of any submission), so a kill -9 at any point converges after the restart.
/// </remarks>
public static class RolloutController
{
    /// <summary>The condition that says whether every replica runs and serves the target template.</summary>
    public const string RolloutComplete = "RolloutComplete";

    /// <summary>The condition that says the last new template was rolled back.</summary>
    public const string RolledBack = "RolledBack";

    /// <summary>The template part of a spec: a copy whose non-template fields (replicas, rollout and readiness settings) are zero.</summary>
    public static WorkloadSpec TemplateOf(WorkloadSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var t = ObjectCodec.CloneValue(spec);
        t.Replicas = 0;
        t.MaxSurge = 0;
        t.MaxUnavailable = 0;
        t.MinReadySeconds = 0;
        t.ProgressDeadlineSeconds = 0;
        // Canonical: the selector in key order (a dictionary serializes in insertion order).
        var selector = new Dictionary<string, string>(StringComparer.Ordinal);
        var keys = new List<string>(t.NodeSelector.Keys);
        keys.Sort(StringComparer.Ordinal);
        foreach (var k in keys) selector[k] = t.NodeSelector[k];
        t.NodeSelector = selector;
        return t;
    }

    /// <summary>The hash of a template: SHA-256 of its canonical JSON, as 16 hex digits.</summary>
    public static string HashOf(WorkloadSpec template)
    {
        var bytes = ObjectCodec.SerializeValue(template);
        return Convert.ToHexStringLower(SHA256.HashData(bytes), 0, 8);
    }

    /// <summary>The kept template of <paramref name="revision"/>, or null.</summary>
    public static WorkloadTemplate? Find(WorkloadStatus status, long revision)
    {
        ArgumentNullException.ThrowIfNull(status);
        foreach (var t in status.Templates)
            if (t.Revision == revision) return t;
        return null;
    }

    /// <summary>
    /// Step 1, before any replica is planned: decides the target template from the spec. A new template starts a
    /// rollout (the current stable one is kept as the rollback target); the stable template again (a revert) makes it
    /// the target; a template that was rolled back is not started again until the spec changes to another one; a
    /// replica-count or rollout-setting change starts nothing. Replicas recorded without a revision (status written
    /// before rollouts existed) are adopted as the stable revision. Returns true when the status changed (it must be
    /// written before anything is submitted: write-ahead).
    /// </summary>
    public static bool Track(WorkloadStatus status, WorkloadSpec spec, long generation, DateTimeOffset now, bool batch)
    {
        ArgumentNullException.ThrowIfNull(status);
        var template = TemplateOf(spec);
        string hash = HashOf(template);
        var r = status.Rollout ??= new RolloutStatus();
        bool changed = false;
        var target = Find(status, r.Revision);
        var stable = Find(status, r.StableRevision);
        if (target is null || stable is null)
        {
            // First reconcile (or a status without templates): the spec's template is stable and the target.
            status.Templates = [new WorkloadTemplate { Revision = generation, Hash = hash, Spec = template }];
            r.Phase = RolloutPhases.Complete;
            r.Revision = r.StableRevision = generation;
            target = stable = status.Templates[0];
            changed = true;
        }
        for (int i = 0; i < status.Replicas.Count; i++)
        {
            if (status.Replicas[i].Revision != 0) continue;
            status.Replicas[i] = status.Replicas[i] with { Revision = r.StableRevision };
            changed = true;
        }
        if (hash == target.Hash) return changed;
        if (batch)
        {
            // Batch tasks are not rolled: tasks not started yet take the new template, running ones finish as they are.
            status.Templates = [new WorkloadTemplate { Revision = generation, Hash = hash, Spec = template }];
            r.Revision = r.StableRevision = generation;
            r.Phase = RolloutPhases.Complete;
            return true;
        }
        if (hash == stable.Hash)
        {
            // Back to the stable template while a rollout was under way: the new replicas are replaced by stable ones.
            status.Templates = [stable];
            r.Revision = stable.Revision;
            r.Phase = RolloutPhases.Progressing;
            r.StartedAt = r.LastProgressAt = now;
            return true;
        }
        if (hash == r.FailedHash) return changed; // rolled back: stays on the stable template until the spec changes
        var next = new WorkloadTemplate { Revision = generation, Hash = hash, Spec = template };
        // At most two templates: a rollout superseding an unfinished one drops it (its replicas are replaced too).
        status.Templates = [stable, next];
        r.Revision = generation;
        r.Phase = RolloutPhases.Progressing;
        r.StartedAt = r.LastProgressAt = now;
        r.FailedHash = null;
        r.FailedRevision = 0;
        r.Reason = null;
        return true;
    }

    /// <summary>
    /// Step 2: one step of replica changes for the slots below <paramref name="replicas"/>. A slot whose target-revision
    /// replica serves loses its other replicas; a slot without a target-revision replica gets one while the workload's
    /// live serials (<paramref name="liveSerials"/>: every assigned serial plus the retired ones not yet released) stay
    /// within replicas + maxSurge; at the limit an old replica of that slot is retired instead — an unserving one
    /// first (it costs no availability), a serving one only while the slots serving stay at least
    /// replicas − maxUnavailable. So the serials (hence the serving replicas) never exceed replicas + maxSurge, and the
    /// rollout never takes serving slots below replicas − maxUnavailable. A retired serial still counts until a later
    /// step sees it released, so its slot's replacement is created at the next step.
    /// </summary>
    public static RolloutPlan Plan(int replicas, int maxSurge, int maxUnavailable, long target, IReadOnlyList<ReplicaView> live, int liveSerials)
    {
        ArgumentNullException.ThrowIfNull(live);
        var retire = new List<int>();
        var create = new List<int>();
        var hasNew = new HashSet<int>();
        var newServing = new HashSet<int>();
        foreach (var v in live)
        {
            if (v.Slot >= replicas || v.Revision != target) continue;
            hasNew.Add(v.Slot);
            if (v.Serving) newServing.Add(v.Slot);
        }
        // Old replicas per slot (those not already retired above).
        var old = new Dictionary<int, List<ReplicaView>>();
        foreach (var v in live)
        {
            if (v.Slot >= replicas || v.Revision == target) continue;
            if (newServing.Contains(v.Slot)) { retire.Add(v.Serial); continue; } // replaced: no availability lost
            if (!old.TryGetValue(v.Slot, out var list)) old[v.Slot] = list = new List<ReplicaView>();
            list.Add(v);
        }
        int available = newServing.Count;
        foreach (var (slot, list) in old)
        {
            if (newServing.Contains(slot)) continue;
            foreach (var v in list)
                if (v.Serving) { available++; break; }
        }
        int minAvailable = Math.Max(0, replicas - maxUnavailable);
        long cap = (long)replicas + maxSurge;
        long total = liveSerials;
        bool blocked = false;
        for (int slot = 0; slot < replicas; slot++)
        {
            if (hasNew.Contains(slot)) continue;
            if (total < cap)
            {
                create.Add(slot);
                total++;
                continue;
            }
            blocked = true;
            if (!old.TryGetValue(slot, out var olds) || olds.Count == 0) continue;
            int serving = 0, pick = -1;
            for (int i = 0; i < olds.Count; i++)
            {
                if (olds[i].Serving) serving++;
                else if (pick < 0) pick = i;
            }
            if (pick < 0)
            {
                // Every old replica of the slot serves: retiring one costs availability only if it is the last one.
                if (serving == 1 && available - 1 < minAvailable) continue;
                if (serving == 1) available--;
                pick = 0;
            }
            retire.Add(olds[pick].Serial);
            olds.RemoveAt(pick);
        }
        return new RolloutPlan(retire, create, blocked);
    }

    /// <summary>
    /// Step 3, after the replicas were acted on: records progress (the target revision's bound, ready and serving
    /// replicas), completes the rollout (the target becomes stable; the old template is dropped), or rolls it back when
    /// no target replica started serving within <paramref name="deadline"/> (counted from the last progress, and never
    /// from before <paramref name="notBefore"/>, the controller's start, so downtime does not count), and sets the
    /// conditions <see cref="RolloutComplete"/> and <see cref="RolledBack"/>. Returns true when it rolled back.
    /// </summary>
    public static bool Advance(WorkloadStatus status, int replicas, int updated, int updatedReady, int updatedServing, bool complete,
        DateTimeOffset now, DateTimeOffset notBefore, TimeSpan deadline, long generation)
    {
        ArgumentNullException.ThrowIfNull(status);
        var r = status.Rollout;
        if (updatedServing > r.UpdatedServing) r.LastProgressAt = now;
        r.Updated = updated;
        r.UpdatedReady = updatedReady;
        r.UpdatedServing = updatedServing;
        bool rolledBack = false;
        if (complete)
        {
            if (r.Phase == RolloutPhases.Progressing) r.Phase = RolloutPhases.Complete;
            r.StableRevision = r.Revision;
            status.Templates.RemoveAll(t => t.Revision != r.Revision);
        }
        else if (r.Phase == RolloutPhases.Progressing && r.Revision != r.StableRevision)
        {
            var since = r.LastProgressAt ?? r.StartedAt ?? now;
            if (since < notBefore) since = notBefore;
            if (now - since >= deadline)
            {
                var failed = Find(status, r.Revision);
                r.FailedHash = failed?.Hash;
                r.FailedRevision = r.Revision;
                r.Reason = string.Create(CultureInfo.InvariantCulture,
                    $"{replicas - updatedServing} of {replicas} replicas of revision {r.Revision} not serving {deadline.TotalSeconds:0.###} s after the last progress ({updated} bound, {updatedReady} ready); rolled back to revision {r.StableRevision}");
                r.Revision = r.StableRevision;
                r.Phase = RolloutPhases.RolledBack;
                r.StartedAt = r.LastProgressAt = now;
                r.UpdatedServing = 0;
                status.Templates.RemoveAll(t => t.Revision != r.StableRevision);
                rolledBack = true;
            }
        }

        string progress = string.Create(CultureInfo.InvariantCulture, $"{updatedServing} of {replicas} replicas serving revision {r.Revision} ({updated} bound, {updatedReady} ready)");
        if (r.Phase == RolloutPhases.RolledBack)
        {
            Conditions.Set(status.Conditions, RolloutComplete, complete ? ConditionStatus.True : ConditionStatus.False, "RolledBack", r.Reason ?? "", generation, now);
            Conditions.Set(status.Conditions, RolledBack, ConditionStatus.True, "ProgressDeadlineExceeded", r.Reason ?? "", generation, now);
        }
        else
        {
            // Complete stays complete when a replica later fails: replacing it is the workload controller's ordinary
            // work (Available, Progressing), not a rollout.
            bool done = r.Phase == RolloutPhases.Complete;
            Conditions.Set(status.Conditions, RolloutComplete, done ? ConditionStatus.True : ConditionStatus.False,
                done ? "NewRevisionServing" : "RollingOut", done ? string.Create(CultureInfo.InvariantCulture, $"revision {r.Revision}") : progress, generation, now);
            if (Conditions.Find(status.Conditions, RolledBack) is { Status: ConditionStatus.True })
                Conditions.Set(status.Conditions, RolledBack, ConditionStatus.False, "NewRevision", $"rolling out revision {r.Revision}", generation, now);
        }
        return rolledBack;
    }
}
