using Omega.Protocol;

namespace Omega.Agent;

public sealed partial class ControlClient
{
    /// <summary>
    /// The decision record that last covered <paramref name="task"/> as a JSON document (protocol version 3, Explain
    /// format 1; schema in docs/protocol.md, "Structured replies"), with its text form. <c>Found</c> is false when no
    /// record is kept (then <c>Document</c> is null and <c>Text</c> says why).
    /// </summary>
    public async Task<(bool Found, string Text, byte[]? Document)> ExplainDocumentAsync(TaskId task, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new Explain { Task = task, Format = 1 }, cancellationToken).ConfigureAwait(false);
        var r = Expect<ExplainReply>(t, b);
        return (r.Found, r.Text, r.Found ? r.Document : null);
    }

    /// <summary>
    /// The server's statistics as a JSON document (protocol version 3, Inspect Stats with format 1): the cell, outcome
    /// counters, each scheduler kind and node liveness. Throws <see cref="AgentRequestException"/> with
    /// <see cref="ErrorCode.MalformedBody"/> when the reply carries no document (a server that does not speak version 3).
    /// </summary>
    public async Task<byte[]> StatsDocumentAsync(CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new Inspect { Target = InspectTarget.Stats, Limit = 1, Format = 1 }, cancellationToken).ConfigureAwait(false);
        var r = Expect<InspectReply>(t, b);
        return r.Document ?? throw new AgentRequestException(ErrorCode.MalformedBody, "the server sent no statistics document (it does not speak protocol version 3)");
    }

    /// <summary>
    /// Waits until the job is settled: every task placed (phase 2), parked (3, it will not be placed without help),
    /// completed (4) or stopped (5); or unknown to the server. Returns the status that settled it. Subscribes to the
    /// job's state (<see cref="WatchJobAsync"/>, protocol version 4): the server pushes the change, nothing is polled.
    /// Only a server older than version 4 (it answers WatchJob with <see cref="ErrorCode.UnknownMessageType"/>) is read
    /// with QueryJob every <paramref name="pollInterval"/> (default 100 ms) on <paramref name="time"/>'s clock. Cancel
    /// <paramref name="cancellationToken"/> (or wrap it in a timeout) to stop waiting. A job is never changed by waiting.
    /// </summary>
    public async Task<RemoteJobStatus> WaitForJobAsync(JobId job, TimeSpan? pollInterval = null, TimeProvider? time = null, CancellationToken cancellationToken = default)
    {
        var interval = pollInterval ?? TimeSpan.FromMilliseconds(100);
        if (interval <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(pollInterval), "the poll interval must be positive");
        try
        {
            RemoteJobStatus last = default;
            await foreach (var s in WatchJobAsync(job, cancellationToken).ConfigureAwait(false)) last = s;
            return last;
        }
        catch (AgentRequestException e) when (e.Code == ErrorCode.UnknownMessageType)
        {
            // A server before protocol version 4: no job watch. Fall back to reading the job.
        }
        time ??= TimeProvider.System;
        while (true)
        {
            var s = await QueryJobAsync(job, cancellationToken).ConfigureAwait(false);
            if (!s.Found || s.Phase >= 2) return s;
            await Task.Delay(interval, time, cancellationToken).ConfigureAwait(false);
        }
    }
}
