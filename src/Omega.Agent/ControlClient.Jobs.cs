using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Omega.Protocol;

namespace Omega.Agent;

/// <summary>What <see cref="ControlClient.StopJobAsync"/> did (docs/protocol.md, StopJobReply).</summary>
/// <param name="Outcome">0 stopped now, 1 already stopped, 2 already completed (1 and 2 changed nothing).</param>
/// <param name="Dequeued">Tasks that were pending and will never be placed.</param>
/// <param name="Released">Bindings released in the cell.</param>
/// <param name="Message">For people.</param>
public readonly record struct StopJobOutcome(int Outcome, int Dequeued, int Released, string Message);

public sealed partial class ControlClient
{
    /// <summary>Job phase 5 (protocol version 4): stopped by an operator; final, like 4 completed.</summary>
    public const int PhaseStopped = 5;

    /// <summary>
    /// Stops a job (protocol version 4, StopJob): its pending tasks are not placed and its bindings are released; the
    /// answer comes once the releases are durable. Safe to retry: a stopped job answers outcome 1. Refusals throw
    /// <see cref="AgentRequestException"/>: <see cref="ErrorCode.UnknownJob"/>, <see cref="ErrorCode.JobOwnedByWorkload"/>,
    /// <see cref="ErrorCode.PermissionDenied"/> (a submitter of another tenant, an operator without the override scope).
    /// </summary>
    public async Task<StopJobOutcome> StopJobAsync(JobId job, string? reason = null, CancellationToken cancellationToken = default)
    {
        var (t, b) = await RequestAsync(new StopJob { JobId = job.Value, Reason = reason ?? "" }, cancellationToken).ConfigureAwait(false);
        var r = Expect<StopJobReply>(t, b);
        return new StopJobOutcome(r.Outcome, r.Dequeued, r.Released, r.Message);
    }

    /// <summary>
    /// The job's state as the server pushes it (protocol version 4, WatchJob): the current state at once, then one after
    /// each change (placed, parked, requeued with more bound, preempted, completed, stopped; intermediate states may be
    /// coalesced). The enumeration ends after the final state: placed (phase 2), parked (3), completed (4), stopped
    /// (<see cref="PhaseStopped"/>) or not found. No polling: the server sends when the engine changes the job.
    /// Cancelling <paramref name="cancellationToken"/> (or disposing the enumerator early) stops the watch on the server.
    /// Ends by throwing <see cref="AgentRequestException"/> on a refusal (<see cref="ErrorCode.PermissionDenied"/>,
    /// <see cref="ErrorCode.ResourceExhausted"/>: too many open job watches on this connection; <see cref="ErrorCode.UnknownMessageType"/>
    /// from a server older than version 4) or with <see cref="ErrorCode.None"/> when the connection closed.
    /// </summary>
    public async IAsyncEnumerable<RemoteJobStatus> WatchJobAsync(JobId job, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var c = _connection ?? throw new AgentRequestException(ErrorCode.None, "not connected");
        uint rid = Interlocked.Increment(ref _nextRid);
        // A watch of one job sends a few events; the bound only caps memory if this process stops reading.
        var stream = Channel.CreateBounded<(MessageType Type, byte[] Body)>(new BoundedChannelOptions(WatchBufferEvents) { SingleReader = true, SingleWriter = true });
        _streams[rid] = stream;
        bool ended = false;
        try
        {
            if (!c.Send(rid, new WatchJob { JobId = job.Value })) throw new AgentRequestException(ErrorCode.None, "connection closed");
            c.Flush();
            var reader = stream.Reader;
            while (!ended)
            {
                if (!reader.TryRead(out var frame))
                {
                    if (!await reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        ended = true;
                        await reader.Completion.ConfigureAwait(false); // rethrows why the stream ended
                        yield break;
                    }
                    continue;
                }
                if (frame.Type == MessageType.Error) ended = true; // the server ended the watch; Expect throws its error
                var ev = Expect<JobEventMessage>(frame.Type, frame.Body);
                ended = ev.Final;
                var s = ev.Status;
                yield return new RemoteJobStatus(s.Found, s.Phase, s.Pending, s.Bound, s.Completed, s.Reason, s.Unreachable, s.Degraded);
            }
        }
        finally
        {
            _streams.TryRemove(rid, out _);
            if (!ended && !c.IsClosing)
            {
                try
                {
                    // Not the consumer's token: it is usually what ended the enumeration.
                    await RequestAsync(new StopJobWatch { Watch = rid }, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10), CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception e) when (e is AgentRequestException or TimeoutException)
                {
                    // Best effort: the connection closing stops it as well.
                }
            }
        }
    }
}
