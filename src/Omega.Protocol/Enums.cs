namespace Omega.Protocol;

/// <summary>What a binding entry asks the agent to do.</summary>
public enum BindingKind : byte
{
    /// <summary>Run the task: it is bound to this node at the entry's generation.</summary>
    Run = 0,

    /// <summary>Stop the task: its binding at the entry's generation was removed (completed, preempted, node fenced).</summary>
    Stop = 1,
}

/// <summary>Task states an agent reports.</summary>
public enum TaskState : byte
{
    /// <summary>The agent accepted the binding and will start the task.</summary>
    Accepted = 1,

    /// <summary>The task is running.</summary>
    Running = 2,

    /// <summary>The task failed (reason given). The server releases its binding.</summary>
    Failed = 3,

    /// <summary>The task completed. The server releases its binding.</summary>
    Completed = 4,

    /// <summary>The agent refused the binding (for example a generation older than one it holds).</summary>
    Rejected = 5,

    /// <summary>
    /// The running task passed the agent's readiness check and can take work (version 2). Sent after
    /// <see cref="Running"/>; a later <see cref="Running"/> means it is no longer ready. Re-sent after every registration.
    /// </summary>
    Ready = 6,
}

/// <summary>Outcome of a task report, as returned in TaskReportAck.</summary>
public enum TaskReportStatus : byte
{
    /// <summary>Recorded (and for Failed/Completed, the binding was released).</summary>
    Ok = 0,

    /// <summary>The task has no binding on this node.</summary>
    NotBound = 1,

    /// <summary>The task is bound at another generation: the report is about a superseded binding.</summary>
    GenerationMismatch = 2,

    /// <summary>The state value is not one of <see cref="TaskState"/>.</summary>
    InvalidState = 3,
}
