using System.Collections.Concurrent;
using Omega.Protocol;
using Omega.Scheduling;
using Omega.Transport;

namespace Omega.Server;

/// <summary>One open job watch (WatchJob): its connection, its request id, the job, and whether it has ended.</summary>
internal sealed class JobWatch(FrameConnection connection, Session session, uint requestId, JobId job)
{
    public FrameConnection Connection { get; } = connection;
    public Session Session { get; } = session;
    public uint RequestId { get; } = requestId;
    public JobId Job { get; } = job;

    // Guarded by locking the watch: set once, by the final event, a StopJobWatch or the connection closing. Every send
    // happens under the same lock after checking it, so no JobEvent follows the end, and the watch's request slot is
    // released exactly once.
    public bool Ended;
}

/// <summary>
/// The job verbs of protocol version 4 (docs/protocol.md, section 8, "Job verbs"): StopJob, and WatchJob/StopJobWatch,
/// a push subscription to a job's state so a client awaits placement instead of polling QueryJob.
/// </summary>
internal sealed partial class ProtocolHandler
{
    /// <summary>Open job watches per connection (docs/protocol.md: <c>ResourceExhausted</c> beyond this).</summary>
    internal const int MaxJobWatchesPerConnection = 16;

    // Open watches by job. The engine's JobChanged hook runs on a worker thread once per scheduling attempt: with no
    // watch open anywhere it costs one volatile read (_jobWatchCount), with watches one dictionary lookup.
    private readonly ConcurrentDictionary<JobId, List<JobWatch>> _jobWatchers = new();
    private int _jobWatchCount;

    private void OnJobChanged(JobId job)
    {
        if (Volatile.Read(ref _jobWatchCount) == 0 || !_jobWatchers.TryGetValue(job, out var list)) return;
        JobWatch[] targets;
        lock (list) targets = list.ToArray(); // allocates only for a watched job
        foreach (var w in targets) Push(w);
    }

    /// <summary>
    /// Sends the job's current state on the watch (and ends it if the state is final). The state is read under the
    /// watch's lock, so concurrent pushes are serialized and each sends the latest state: a watcher may miss an
    /// intermediate state (coalescing, as documented), never see an older state after a newer one.
    /// </summary>
    private void Push(JobWatch w)
    {
        bool ended = false;
        lock (w)
        {
            if (w.Ended) return;
            var status = JobStatusOf(w.Job);
            bool final = !status.Found || status.Phase is (int)JobPhase.Placed or (int)JobPhase.Parked or (int)JobPhase.Completed or (int)JobPhase.Stopped;
            w.Connection.Send(w.RequestId, new JobEventMessage { Status = status, Final = final });
            if (final) ended = w.Ended = true;
        }
        if (ended) EndJobWatch(w);
        w.Connection.Flush();
    }

    // After a watch ended (Ended set under its lock by exactly one caller): forget it and release its request slot.
    private void EndJobWatch(JobWatch w)
    {
        lock (w.Session) w.Session.JobWatches?.Remove(w.RequestId);
        if (_jobWatchers.TryGetValue(w.Job, out var list))
            lock (list)
            {
                if (list.Remove(w)) Interlocked.Decrement(ref _jobWatchCount);
                // An empty list is left in place: removing it would race with a watch being added to it.
                if (list.Count == 0) _jobWatchers.TryRemove(new KeyValuePair<JobId, List<JobWatch>>(w.Job, list));
            }
        w.Connection.EndRequest();
    }

    private JobStatusReply JobStatusOf(JobId id)
    {
        if (_engine is null || !_engine.TryGetJob(id, out var st)) return new JobStatusReply { Found = false, Reason = "" };
        int unreachable = CountUnreachable(st.Job);
        return new JobStatusReply
        {
            Found = true, Phase = (int)st.Phase, Pending = st.Pending, Bound = st.Bound, Completed = st.Completed,
            Attempts = st.Attempts, Generation = st.Generation, Reason = st.ParkedReason ?? "",
            Unreachable = unreachable, Degraded = unreachable > 0,
        };
    }

    /// <returns>Always false: the watch holds its request slot until its final event or a StopJobWatch.</returns>
    private bool HandleWatchJob(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<WatchJob>(c, rid, frame, out var m)) return true;
        var job = new JobId(m.JobId);
        if (!_authz.JobVisible(c, s, rid, MessageType.WatchJob, job)) return true;
        if (rid == 0)
        {
            c.SendError(rid, ErrorCode.InvalidRequest, "WatchJob: the request id names the watch and must not be 0");
            return true;
        }
        var w = new JobWatch(c, s, rid, job);
        lock (s)
        {
            s.JobWatches ??= new();
            if (s.JobWatches.ContainsKey(rid))
            {
                c.SendError(rid, ErrorCode.InvalidRequest, $"WatchJob: job watch {rid} is already open on this connection");
                return true;
            }
            if (s.JobWatches.Count >= MaxJobWatchesPerConnection)
            {
                c.SendError(rid, ErrorCode.ResourceExhausted, $"WatchJob: this connection already has its maximum of {MaxJobWatchesPerConnection} open job watches");
                return true;
            }
            s.JobWatches.Add(rid, w);
        }
        // Registered before the first event is read, so no change between the read and the registration is missed.
        while (true)
        {
            var list = _jobWatchers.GetOrAdd(job, static _ => new List<JobWatch>(1));
            lock (list)
            {
                // A list removed by EndJobWatch after we got it is dead: take the new one.
                if (!_jobWatchers.TryGetValue(job, out var current) || !ReferenceEquals(current, list)) continue;
                list.Add(w);
                Interlocked.Increment(ref _jobWatchCount);
                break;
            }
        }
        Push(w);
        return false;
    }

    private bool HandleStopJobWatch(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<StopJobWatch>(c, rid, frame, out var m)) return true;
        JobWatch? w;
        lock (s) w = s.JobWatches is { } open && open.TryGetValue(m.Watch, out var found) ? found : null;
        bool stopped = false;
        if (w is not null)
            lock (w)
            {
                if (!w.Ended) stopped = w.Ended = true;
            }
        if (stopped) EndJobWatch(w!);
        c.Send(rid, new JobWatchStopped { Watch = m.Watch, Stopped = stopped });
        return true;
    }

    private void StopAllJobWatches(Session s)
    {
        List<JobWatch> open;
        lock (s)
        {
            if (s.JobWatches is null || s.JobWatches.Count == 0) return;
            open = new List<JobWatch>(s.JobWatches.Values);
        }
        foreach (var w in open)
        {
            bool mine = false;
            lock (w)
            {
                if (!w.Ended) mine = w.Ended = true;
            }
            if (mine) EndJobWatch(w);
        }
    }

    /// <summary>StopJob: audited, answered once the releases are durable.</summary>
    /// <returns>False when the reply waits for durability.</returns>
    private bool HandleStopJob(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<StopJob>(c, rid, frame, out var m)) return true;
        var job = new JobId(m.JobId);
        if (m.Reason.Length > StopJob.MaxReasonLength)
        {
            c.SendError(rid, ErrorCode.InvalidRequest, $"StopJob: the reason is at most {StopJob.MaxReasonLength} characters");
            return true;
        }
        if (!_authz.JobVisible(c, s, rid, MessageType.StopJob, job)) return true;
        string why = m.Reason.Length > 0 ? $" (reason: {m.Reason})" : "";
        var r = _engine?.StopJob(job) ?? new StopJobResult(StopJobStatus.NotFound, 0, 0);
        switch (r.Status)
        {
            case StopJobStatus.NotFound:
                _authz.Audit(s, "StopJob", job.ToString(), "UnknownJob" + why);
                c.SendError(rid, ErrorCode.UnknownJob, $"no job {job} is known to this server (never submitted here, completed and forgotten, or submitted before a restart)");
                return true;
            case StopJobStatus.OwnedByWorkload:
                _authz.Audit(s, "StopJob", job.ToString(), "JobOwnedByWorkload" + why);
                c.SendError(rid, ErrorCode.JobOwnedByWorkload, $"job {job} belongs to a workload: scale or delete the workload instead");
                return true;
        }
        string text = r.Status switch
        {
            StopJobStatus.Stopped => $"job {job} stopped: {r.Dequeued} pending task(s) will not be placed, {r.Released} binding(s) released",
            StopJobStatus.AlreadyStopped => $"job {job} was already stopped",
            _ => $"job {job} had already completed",
        };
        _authz.Audit(s, "StopJob", job.ToString(), r.Status switch
        {
            StopJobStatus.Stopped => $"stopped: {r.Dequeued} dequeued, {r.Released} released{why}",
            _ => r.Status + why,
        });
        // The releases are journaled like every release: acknowledge once they are durable (defect 4's rule). An
        // "already" answer reports state an earlier stop produced, which must be durable too before it is reported.
        return ReplyWhenDurable(c, rid, new StopJobReply
        {
            Outcome = r.Status switch { StopJobStatus.Stopped => 0, StopJobStatus.AlreadyStopped => 1, _ => 2 },
            Dequeued = r.Dequeued, Released = r.Released, Message = text,
        });
    }
}
