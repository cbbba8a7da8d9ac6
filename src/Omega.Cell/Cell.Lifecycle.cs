namespace Omega.Cells;

/// <summary>
/// Where a live binding is in its lifecycle as its agent reports it (issue 12's Binding: bound → started → ready;
/// serving is decided by the workload's readiness notion, failed and terminated end the binding itself).
/// </summary>
public enum BindingPhase : byte
{
    /// <summary>Committed; the agent has not reported the task started (or the report was lost in a restart).</summary>
    Bound = 0,

    /// <summary>The agent reported the task running (TaskState Running).</summary>
    Started = 1,

    /// <summary>The agent reported the task ready (TaskState Ready): it passed its own readiness check.</summary>
    Ready = 2,
}

/// <summary>A binding's reported phase and when (the cell clock's timestamp) it entered it.</summary>
/// <param name="Phase">The phase.</param>
/// <param name="Since">The <see cref="TimeProvider.GetTimestamp"/> of the report that set it; 0 for <see cref="BindingPhase.Bound"/>.</param>
public readonly record struct BindingLifecycle(BindingPhase Phase, long Since);

/// <summary>The outcome of <see cref="Cell.ReportBindingPhase"/>.</summary>
public enum BindingPhaseStatus : byte
{
    /// <summary>Recorded.</summary>
    Ok = 0,

    /// <summary>The task has no binding on that node.</summary>
    NotBound = 1,

    /// <summary>The task is bound at another generation (the report is about a superseded binding).</summary>
    GenerationMismatch = 2,
}

// The binding lifecycle is a small status beside the allocation, NOT a second durable object: agents report started
// and ready for every binding, at the engine's placement rate, and journaling those reports would double the journal's
// write rate for information an agent can simply repeat. So the phase lives in memory next to the allocation (one
// entry per reported binding, removed with the binding, so bounded by the live bindings), and after a restart every
// binding starts at Bound until its agent, re-registering, reports again (AgentClient re-reports what it holds).
//
// Issue 15: the reports never take the commit lock in the common case. They arrive at the placement rate (two per
// binding: Running, then Ready) and each used to queue behind the commit combiner for the lock, delaying the agent's
// next frame and every commit behind it. Now:
//  * validation reads the agent's node list lock-free (the seqlock of NodeBindings, as completed acks do);
//  * the phase itself lives in a striped table (PhaseStripe) with its own small locks, so a report contends only with
//    reports and releases of tasks in the same stripe, never with a commit, and readers (the workload controller)
//    take one stripe lock, not the commit lock.
// The race to close: a report validated lock-free can record its phase just after the committer released the binding
// and forgot its phase, leaving an entry for a dead binding (a leak, and a wrong phase if the binding came back). So the
// committer forgets AFTER it removed the binding from the node list, with a full fence before it reads the phase count,
// and the report re-reads the node list AFTER it recorded (its count increment is a full fence too): one of the two
// always sees the other (Dekker's pattern). A report whose re-read finds the binding gone settles under the commit lock,
// which serializes it with the committer: kept if the binding is live at that generation (a rolled-back transaction's
// transient eviction), forgotten otherwise. Only negative answers take the lock, as before (a report about a
// superseded or unknown binding), so the liveness tests' premise (an unbound report waits for the lock) is unchanged.
// Rejected: keeping the phase in the node's slot (the slot has 4 spare bytes, not room for the timestamp, and the
// list has one writer, the committer, which a report would have to become); a batched queue drained by the committer
// (a report's reply would wait for the next commit, and readers would see stale phases until then).
public sealed partial class Cell
{
    private const int PhaseStripeCount = 64; // a power of two: stripe = hash & (count - 1)

    private sealed class PhaseStripe
    {
        public readonly Lock Sync = new();
        public readonly Dictionary<TaskId, (long Generation, BindingLifecycle Lifecycle)> Map = new();
    }

    private readonly PhaseStripe[] _phaseStripes = NewPhaseStripes();
    private int _phaseCount; // entries over all stripes; changed inside a stripe's lock with Interlocked (a full fence)

    private static PhaseStripe[] NewPhaseStripes()
    {
        var stripes = new PhaseStripe[PhaseStripeCount];
        for (int i = 0; i < stripes.Length; i++) stripes[i] = new PhaseStripe();
        return stripes;
    }

    private PhaseStripe StripeOf(TaskId task)
    {
        // Sixteen consecutive indexes of a job share a stripe (index / 16 is hashed, not the index): an agent reports a
        // run of them in one frame, so its processing loop finds the stripe's lock and its table's lines in cache for
        // all but the first, and TaskId's own hash puts the run in neighbouring buckets (prof15's bind-path profile: the
        // report path missed the cache on a new stripe per report).
        ulong h = (ulong)task.Job.Value * 0x9E3779B97F4A7C15UL ^ (uint)(task.Index >> 4) * 0xC2B2AE3D27D4EB4FUL;
        return _phaseStripes[(int)(h >> 58) & (PhaseStripeCount - 1)];
    }

    /// <summary>
    /// Records the phase an agent reported for its binding of <paramref name="task"/> at <paramref name="generation"/>
    /// on <paramref name="node"/>. The last report wins (a Started after a Ready means the replica is no longer ready);
    /// a report that repeats the current phase keeps its original time. Not journaled (see the class remarks). Does not
    /// take the commit lock when the binding is live on <paramref name="node"/> at <paramref name="generation"/> (the
    /// agent's own, current binding: the common case); other answers are confirmed under it.
    /// </summary>
    public BindingPhaseStatus ReportBindingPhase(TaskId task, NodeId node, long generation, BindingPhase phase)
    {
        if (TryGetAllocationOnNode(node, task, out var a) && a.Generation == generation)
        {
            SetPhase(task, generation, phase);
            // Re-read after recording (see the class remarks): a release that raced the record is seen here.
            if (TryGetAllocationOnNode(node, task, out a) && a.Generation == generation) return BindingPhaseStatus.Ok;
        }
        // A negative lock-free answer may be a transaction's transient state (a victim evicted by an all-or-nothing
        // transaction that is rolling back): confirm under the lock, serialized with every release.
        using (Serial())
        {
            if (!TryGetBindingLocked(task, out a) || a.Node != node)
            {
                ForgetPhase(task, generation);
                return BindingPhaseStatus.NotBound;
            }
            if (a.Generation != generation)
            {
                ForgetPhase(task, generation);
                return BindingPhaseStatus.GenerationMismatch;
            }
            SetPhase(task, generation, phase);
            return BindingPhaseStatus.Ok;
        }
    }

    private void SetPhase(TaskId task, long generation, BindingPhase phase)
    {
        var stripe = StripeOf(task);
        lock (stripe.Sync)
        {
            if (phase == BindingPhase.Bound)
            {
                if (stripe.Map.Remove(task)) Interlocked.Decrement(ref _phaseCount);
                return;
            }
            ref var slot = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(stripe.Map, task, out bool existed);
            if (!existed) Interlocked.Increment(ref _phaseCount);
            else if (slot.Generation == generation && slot.Lifecycle.Phase == phase) return;
            slot = (generation, new BindingLifecycle(phase, _time.GetTimestamp()));
        }
    }

    // Forgets the phase of task's binding at generation only (a newer binding's phase stays).
    private void ForgetPhase(TaskId task, long generation)
    {
        if (Volatile.Read(ref _phaseCount) == 0) return;
        var stripe = StripeOf(task);
        lock (stripe.Sync)
        {
            if (stripe.Map.TryGetValue(task, out var p) && p.Generation == generation && stripe.Map.Remove(task)) Interlocked.Decrement(ref _phaseCount);
        }
    }

    // The committer (under _lock), after the binding left its node's list: its lifecycle status lives and dies with it.
    private void ForgetPhaseOfReleased(TaskId task)
    {
        // Full fence between the node list's removal (a release store) and the count's load: with the reporter's
        // Interlocked increment before its re-read, one of the two sees the other (the class remarks).
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref _phaseCount) == 0) return;
        var stripe = StripeOf(task);
        lock (stripe.Sync)
        {
            if (stripe.Map.Remove(task)) Interlocked.Decrement(ref _phaseCount);
        }
    }

    /// <summary>
    /// The reported lifecycle of the live binding of <paramref name="task"/> at <paramref name="generation"/>:
    /// <see cref="BindingPhase.Bound"/> when nothing was reported for that binding (or it is not live). Does not take the
    /// commit lock.
    /// </summary>
    public BindingLifecycle GetBindingLifecycle(TaskId task, long generation)
    {
        var stripe = StripeOf(task);
        lock (stripe.Sync)
            return stripe.Map.TryGetValue(task, out var p) && p.Generation == generation ? p.Lifecycle : default;
    }

    /// <summary>Bindings with a reported phase (Started or Ready) now.</summary>
    public int ReportedBindingPhases => Volatile.Read(ref _phaseCount);
}
