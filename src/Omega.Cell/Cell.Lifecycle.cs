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
public sealed partial class Cell
{
    private readonly Dictionary<TaskId, (long Generation, BindingLifecycle Lifecycle)> _phases = new();

    /// <summary>
    /// Records the phase an agent reported for its binding of <paramref name="task"/> at <paramref name="generation"/>
    /// on <paramref name="node"/>. The last report wins (a Started after a Ready means the replica is no longer ready);
    /// a report that repeats the current phase keeps its original time. Not journaled (see the class remarks).
    /// </summary>
    public BindingPhaseStatus ReportBindingPhase(TaskId task, NodeId node, long generation, BindingPhase phase)
    {
        lock (_lock)
        {
            if (!TryGetBindingLocked(task, out var a) || a.Node != node) return BindingPhaseStatus.NotBound;
            if (a.Generation != generation) return BindingPhaseStatus.GenerationMismatch;
            if (phase == BindingPhase.Bound)
            {
                _phases.Remove(task);
                return BindingPhaseStatus.Ok;
            }
            if (_phases.TryGetValue(task, out var p) && p.Generation == generation && p.Lifecycle.Phase == phase) return BindingPhaseStatus.Ok;
            _phases[task] = (generation, new BindingLifecycle(phase, _time.GetTimestamp()));
            return BindingPhaseStatus.Ok;
        }
    }

    /// <summary>
    /// The reported lifecycle of the live binding of <paramref name="task"/> at <paramref name="generation"/>:
    /// <see cref="BindingPhase.Bound"/> when nothing was reported for that binding (or it is not live).
    /// </summary>
    public BindingLifecycle GetBindingLifecycle(TaskId task, long generation)
    {
        lock (_lock)
            return _phases.TryGetValue(task, out var p) && p.Generation == generation ? p.Lifecycle : default;
    }

    /// <summary>Bindings with a reported phase (Started or Ready) now.</summary>
    public int ReportedBindingPhases
    {
        get { lock (_lock) return _phases.Count; }
    }
}
