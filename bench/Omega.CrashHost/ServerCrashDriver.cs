using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using Omega.Cells;
using Omega.Protocol;
using Omega.Storage;

namespace Omega.CrashHost;

/// <summary>The totals of a server-path crash run: work acknowledged over the wire, and invariant violations (all must be 0).</summary>
internal sealed class ServerCrashSummary
{
    public int Seed;
    public int Cycles;
    public int KillsRightAfterGrant;
    public long LeaseGrants, LeaseRenewals, AckedCommits, AckedBindingsChecked, AckedReleases, RejectedClaimsChecked;
    public long StaleCommitsRejected, Registrations, JunkRegistrations, NodeRemovals, FencedAtRestart, UnfencedOnReturn, ExcusedByEviction;

    // Violations.
    public long TokensIssuedTwice, LostLeaseGrants, LostBindings, DoubleBindings, OvercommittedNodes, AuditProblems;
    public long ReleasedBindingsBack, RejectedClaimsPresent, StaleCommitsApplied, LostRegistrations, RemovedNodesBack, FencedAfterReturn;

    public List<string> Failures = new();

    public long Violations => TokensIssuedTwice + LostLeaseGrants + LostBindings + DoubleBindings + OvercommittedNodes + AuditProblems
        + ReleasedBindingsBack + RejectedClaimsPresent + StaleCommitsApplied + LostRegistrations + RemovedNodesBack + FencedAfterReturn;

    public bool Ok => Violations == 0 && Failures.Count == 0;

    public override string ToString() =>
        FormattableString.Invariant($"seed {Seed}: {Cycles} cycles ({KillsRightAfterGrant} killed right after a lease grant); acknowledged: {LeaseGrants} lease grants, ")
        + FormattableString.Invariant($"{LeaseRenewals} renewals, {AckedCommits} commits, {AckedReleases} releases, {Registrations} registrations, {JunkRegistrations} junk registrations, ")
        + FormattableString.Invariant($"{NodeRemovals} node removals; checked: {AckedBindingsChecked} acknowledged bindings, {RejectedClaimsChecked} rejected claims, ")
        + FormattableString.Invariant($"{StaleCommitsRejected} stale-token commits rejected, {FencedAtRestart} nodes fenced at a restart, {UnfencedOnReturn} un-fenced when their agent returned, ")
        + FormattableString.Invariant($"{ExcusedByEviction} bindings released by an eviction; violations: tokens issued twice {TokensIssuedTwice}, lost lease grants {LostLeaseGrants}, ")
        + FormattableString.Invariant($"lost bindings {LostBindings}, double bindings {DoubleBindings}, overcommitted nodes {OvercommittedNodes}, audit problems {AuditProblems}, ")
        + FormattableString.Invariant($"released bindings back {ReleasedBindingsBack}, rejected claims present {RejectedClaimsPresent}, stale commits applied {StaleCommitsApplied}, ")
        + FormattableString.Invariant($"lost registrations {LostRegistrations}, removed nodes back {RemovedNodesBack}, fenced after return {FencedAfterReturn}; ")
        + (Ok ? "OK" : "FAILED: " + string.Join("; ", Failures.Take(5)));
}

/// <summary>
/// The server-path crash driver (issue 10): a real <c>omega serve</c> child process on a durable store is killed with
/// SIGKILL at a random moment (sometimes right after a lease grant) while a scheduler acquires and renews leases and
/// commits over the wire (including claims meant to be rejected and commits with a superseded token), agents register,
/// heartbeat, complete tasks and go silent (so they get evicted), junk registrations arrive and an operator removes
/// nodes. The driver itself is never killed, so it knows exactly which replies it received. After each kill it opens
/// the store and checks every acknowledged reply against it; after each restart it checks that returning agents are
/// un-fenced and that lease tokens only grow.
/// </summary>
internal sealed class ServerCrashDriver
{
    private const string LeaseSeconds = "1";
    private static readonly TimeSpan Rpc = TimeSpan.FromSeconds(20);
    private static readonly string[] Stable = ["stable-0", "stable-1", "stable-2"];
    private static readonly string[] Mortal = ["mortal-0", "mortal-1", "mortal-2", "mortal-3"];
    private static readonly string[] SchedulerNames = ["sched-0", "sched-1"];
    private static readonly ResourceVector NodeCapacity = new(1_000_000, 1L << 42);
    private static readonly ResourceVector TaskSize = new(100, 64L << 20);
    private static readonly ResourceVector TooBig = new(10_000_000, 1L << 20);

    private readonly string _omega;
    private readonly string _workDir;
    private readonly Action<string> _log;

    // What the driver was told, over all cycles.
    private readonly Dictionary<long, string> _tokenOwner = new();
    private long _maxToken;
    private readonly Dictionary<string, (int Id, long Token)> _lease = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _registered = new(StringComparer.Ordinal);
    private readonly HashSet<string> _fencedAtRestart = new(StringComparer.Ordinal);
    private readonly List<string> _junk = new();
    private readonly HashSet<string> _removed = new(StringComparer.Ordinal);
    private readonly Dictionary<TaskId, (int Node, long Generation)> _bound = new();
    private readonly HashSet<TaskId> _released = new();
    private readonly HashSet<TaskId> _rejected = new();
    private readonly HashSet<TaskId> _stopped = new();
    // Completions sent whose ack the kill cut: released or not, either is correct.
    private readonly HashSet<TaskId> _releaseInDoubt = new();
    private readonly Lock _stopLock = new();
    private long _nextJob = 1;

    public ServerCrashDriver(string omegaDll, string workDir, Action<string> log)
    {
        _omega = omegaDll;
        _workDir = workDir;
        _log = log;
    }

    private string DataDir => Path.Combine(_workDir, "data");

    public async Task<ServerCrashSummary> RunAsync(int cycles, int seed)
    {
        Directory.CreateDirectory(_workDir);
        var rng = new Random(seed);
        var s = new ServerCrashSummary { Seed = seed };
        for (int cycle = 1; cycle <= cycles; cycle++)
        {
            try
            {
                await RunCycleAsync(cycle, new Random(rng.Next()), s);
                Verify(cycle, s);
            }
            catch (Exception e) when (e is InvalidOperationException or TimeoutException or InvalidDataException or WireErrorException or IOException or ConnectionLostException)
            {
                s.Failures.Add($"cycle {cycle}: {e.GetType().Name}: {e.Message}");
            }
            s.Cycles = cycle;
            if (cycle % 10 == 0 || cycle == cycles || !s.Ok) _log($"cycle {cycle}: {s}");
            if (!s.Ok) break;
        }
        return s;
    }

    // ---------------------------------------------------------------- one life of the server

    private sealed class CycleState
    {
        public required ServeProcess Serve;
        public required ServerCrashSummary Summary;
        public required Random Rng;
        public int Killed;
        public readonly List<WireConn> Conns = new();
        public readonly Dictionary<string, WireConn> Agents = new(StringComparer.Ordinal);
        public readonly List<Task> Loops = new();
        // Completed when the driver starts committing (or the cycle ends first): the clock of kills drawn in that phase.
        public readonly TaskCompletionSource CommitPhase = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public async Task KillAsync()
        {
            if (Interlocked.Exchange(ref Killed, 1) == 0) await Serve.KillAsync();
        }

        public bool IsKilled => Volatile.Read(ref Killed) != 0;
    }

    private async Task RunCycleAsync(int cycle, Random rng, ServerCrashSummary s)
    {
        using var serve = await ServeProcess.StartAsync(_omega, DataDir, TimeSpan.FromSeconds(90),
            "--node-lease", LeaseSeconds, "--batch-workers", "1", "--service-workers", "1");
        var st = new CycleState { Serve = serve, Summary = s, Rng = rng };
        // Where the kill falls: right after a lease grant (1 in 5), at a random moment from the cycle's start (1 in 4 of
        // the rest: registrations, lease acquisition), or at a random moment of the commit phase. The phase clock matters
        // on a loaded machine, where setup alone can outlast a kill drawn from the cycle's start and the cycle then
        // checks no commit at all. The first cycle always commits, so even a short run checks acknowledged bindings.
        bool killAfterGrant = cycle > 1 && rng.Next(5) == 0;
        bool fromStart = cycle > 1 && rng.Next(4) == 0;
        var killAt = TimeSpan.FromMilliseconds(fromStart ? rng.Next(100, 3500) : rng.Next(300, 3500));
        try
        {
            if (!killAfterGrant)
                st.Loops.Add(Task.Run(async () =>
                {
                    if (!fromStart) await st.CommitPhase.Task;
                    await Task.Delay(killAt);
                    await st.KillAsync();
                }));
            await DriveAsync(cycle, st, killAfterGrant);
        }
        catch (Exception e) when (st.IsKilled && e is ConnectionLostException or TimeoutException or WireErrorException)
        {
            // The kill cut a request: it was never acknowledged, so nothing is expected of it.
        }
        catch (Exception e) when (e is ConnectionLostException && serve.HasExited && !st.IsKilled)
        {
            throw new InvalidOperationException($"omega serve died by itself:\n{serve.Output}");
        }
        finally
        {
            st.CommitPhase.TrySetResult();
            await st.KillAsync();
            foreach (var c in st.Conns) await c.DisposeAsync();
            try { await Task.WhenAll(st.Loops); }
            catch (Exception e) when (e is ConnectionLostException or TimeoutException or WireErrorException) { }
        }
        if (killAfterGrant) s.KillsRightAfterGrant++;
    }

    private async Task<WireConn> ConnectAsync(CycleState st, PeerRole role, string name)
    {
        var c = await WireConn.ConnectAsync(st.Serve.EndPoint, role, name, Rpc);
        st.Conns.Add(c);
        return c;
    }

    private async Task DriveAsync(int cycle, CycleState st, bool killAfterGrant)
    {
        var s = st.Summary;
        var rng = st.Rng;
        var sched = await ConnectAsync(st, PeerRole.Scheduler, "crash-driver");

        // Every agent comes back: its acknowledged registration must still be there (same id), and a node fenced before
        // the restart must be schedulable again once its agent heartbeats (defect 5). Each agent heartbeats from the moment
        // it is registered (stable ones throughout; some mortal ones go silent after a while and are then evicted).
        foreach (var name in Stable.Concat(Mortal))
        {
            var conn = await ConnectAsync(st, PeerRole.Agent, name);
            conn.OnPush = OnPush;
            var reg = await conn.RequestAsync<Register, Registered>(new Register { Node = name, Capacity = NodeCapacity, FailureDomain = "r", ResumeFrom = 0 }, Rpc);
            if (_registered.TryGetValue(name, out int id) && id != reg.NodeId)
            {
                s.LostRegistrations++;
                s.Failures.Add($"cycle {cycle}: {name} was registered as node {id}, now gets {reg.NodeId}");
            }
            var ack = await conn.RequestAsync<Heartbeat, HeartbeatAck>(new Heartbeat { NodeId = reg.NodeId, LastVersion = 0 }, Rpc);
            if (ack.Status != NodeStatus.Schedulable)
            {
                s.FencedAfterReturn++;
                s.Failures.Add($"cycle {cycle}: {name} (node {reg.NodeId}) is {ack.Status} after its agent returned");
            }
            else if (_fencedAtRestart.Remove(name)) s.UnfencedOnReturn++;
            if (!_registered.ContainsKey(name)) s.Registrations++;
            _registered[name] = reg.NodeId;
            st.Agents[name] = conn;
            TimeSpan? silentAfter = name.StartsWith("mortal", StringComparison.Ordinal) && rng.Next(2) == 0 ? TimeSpan.FromMilliseconds(rng.Next(0, 1500)) : null;
            st.Loops.Add(HeartbeatLoopAsync(conn, reg.NodeId, silentAfter));
        }
        // A scheduler's view: a node fenced now whose agent is back (a starved heartbeat can get a node evicted again on a
        // loaded machine) must be un-fenced by that agent's next heartbeat.
        var sync = await sched.RequestAsync<Sync, SyncReply>(new Sync { Since = 0, StartNode = 0, MaxNodes = 0 }, Rpc);
        foreach (var n in sync.Nodes)
            if (n.Status == NodeStatus.Fenced && st.Agents.TryGetValue(n.Name, out var back) && !back.IsClosed)
            {
                var ack = await back.RequestAsync<Heartbeat, HeartbeatAck>(new Heartbeat { NodeId = n.Id, LastVersion = 0 }, Rpc);
                if (ack.Status != NodeStatus.Schedulable)
                {
                    s.FencedAfterReturn++;
                    s.Failures.Add($"cycle {cycle}: {n.Name} stays {ack.Status} although its agent is back and heartbeats");
                }
            }

        // Junk: registrations that never heartbeat; an operator removes one now and then.
        int junk = rng.Next(0, 3);
        for (int k = 0; k < junk; k++)
        {
            string name = string.Create(CultureInfo.InvariantCulture, $"junk-{cycle}-{k}");
            var conn = await ConnectAsync(st, PeerRole.Agent, name);
            await conn.RequestAsync<Register, Registered>(new Register { Node = name, Capacity = NodeCapacity, FailureDomain = "j" }, Rpc);
            _junk.Add(name);
            s.JunkRegistrations++;
            await conn.DisposeAsync();
        }
        if (_junk.Count > 0 && rng.Next(2) == 0)
        {
            string victim = _junk[rng.Next(_junk.Count)];
            var r = await sched.RequestAsync<Operate, OperateReply>(new Operate { Kind = OperateKind.RemoveNode, Target = victim }, Rpc);
            if (r.Status == OperateStatus.Ok)
            {
                _removed.Add(victim);
                s.NodeRemovals++;
            }
            _junk.Remove(victim);
        }

        // Leases, then a commit with each superseded token (must be rejected and leave nothing behind).
        var current = new Dictionary<string, (int Id, long Token)>(StringComparer.Ordinal);
        foreach (var name in SchedulerNames)
        {
            var grant = await AcquireAsync(sched, name, cycle, s);
            current[name] = grant;
            if (killAfterGrant)
            {
                await st.KillAsync();
                return;
            }
            if (_lease.TryGetValue(name, out var old) && old.Token != grant.Token)
            {
                var task = new TaskId(_nextJob++, 0);
                var r = await CommitAsync(sched, old, [new WireClaim(task, _registered[Stable[0]], TaskSize, 0, 0, 1, null)]);
                _rejected.Add(task);
                if (r.Status == TransactionStatus.StaleFencingToken) s.StaleCommitsRejected++;
                else if (r.Applied > 0)
                {
                    s.StaleCommitsApplied++;
                    s.Failures.Add($"cycle {cycle}: a commit with superseded token {old.Token} of {name} was {r.Status}");
                }
                _rejected.Add(task);
            }
            _lease[name] = grant;
        }

        // Commits until the kill: renewals, claims meant to succeed and to fail, acknowledged completions.
        st.CommitPhase.TrySetResult();
        var renewed = Stopwatch.StartNew();
        var nodes = Stable.Concat(Mortal).Select(n => _registered[n]).ToArray();
        while (true)
        {
            if (renewed.ElapsedMilliseconds > 300)
            {
                foreach (var name in SchedulerNames)
                {
                    var (id, token) = _lease[name];
                    var r = await sched.RequestAsync<RenewLease, LeaseReply>(new RenewLease { SchedulerId = id, Name = name, Token = token, DurationMs = 2000 }, Rpc);
                    if (r.Status == (byte)LeaseStatus.Renewed) s.LeaseRenewals++;
                    else if (r.Status == (byte)LeaseStatus.Expired) _lease[name] = await AcquireAsync(sched, name, cycle, s);
                    else s.Failures.Add($"cycle {cycle}: renewing {name} token {token}: {(LeaseStatus)r.Status}");
                }
                renewed.Restart();
            }
            string who = SchedulerNames[rng.Next(SchedulerNames.Length)];
            int n = rng.Next(1, 5);
            var claims = new WireClaim[n];
            for (int i = 0; i < n; i++)
                claims[i] = new WireClaim(new TaskId(_nextJob, i), nodes[rng.Next(nodes.Length)], rng.Next(10) == 0 ? TooBig : TaskSize, 0, 0, 1, null);
            _nextJob++;
            // Sent, not yet answered: if the kill comes now the outcome is unknown, and these tasks are never used again.
            var reply = await CommitAsync(sched, _lease[who], claims);
            var statuses = reply.ClaimStatuses.Span;
            for (int i = 0; i < n; i++)
            {
                if (i < statuses.Length && statuses[i] == ClaimStatus.Applied) _bound[claims[i].Task] = (claims[i].Node, reply.Version);
                else _rejected.Add(claims[i].Task);
            }
            s.AckedCommits++;
            if (rng.Next(3) == 0) await ReleaseOneAsync(st, rng, s);
        }
    }

    private async Task ReleaseOneAsync(CycleState st, Random rng, ServerCrashSummary s)
    {
        // An agent reports a task of its node completed, with a request id: the ack says the binding is released.
        string name = Stable[rng.Next(Stable.Length)];
        int node = _registered[name];
        foreach (var (task, b) in _bound)
        {
            if (b.Node != node || rng.Next(4) != 0) continue;
            _bound.Remove(task);
            _releaseInDoubt.Add(task);
            var ack = await st.Agents[name].RequestAsync<TaskReport, TaskReportAck>(
                new TaskReport { NodeId = node, Task = task, Generation = b.Generation, State = TaskState.Completed, Reason = "" }, Rpc);
            _releaseInDoubt.Remove(task);
            if (ack.Body.Value == (int)TaskReportStatus.Ok)
            {
                _released.Add(task);
                s.AckedReleases++;
            }
            else _bound[task] = b;
            return;
        }
    }

    private async Task HeartbeatLoopAsync(WireConn conn, int nodeId, TimeSpan? silentAfter)
    {
        var alive = Stopwatch.StartNew();
        try
        {
            while (!conn.IsClosed)
            {
                if (silentAfter is { } after && alive.Elapsed >= after)
                {
                    await conn.DisposeAsync();
                    return;
                }
                await conn.RequestAsync<Heartbeat, HeartbeatAck>(new Heartbeat { NodeId = nodeId, LastVersion = 0 }, Rpc);
                await Task.Delay(100);
            }
        }
        catch (Exception e) when (e is ConnectionLostException or TimeoutException or WireErrorException)
        {
        }
    }

    private void OnPush(MessageType type, byte[] body)
    {
        if (type != MessageType.Bindings || !Codec.TryDecode<Bindings>(new ReadOnlySequence<byte>(body), out var b, out _)) return;
        foreach (var e in b.Entries.Span)
            if (e.Kind == BindingKind.Stop)
                lock (_stopLock) _stopped.Add(e.Task);
    }

    private async Task<(int Id, long Token)> AcquireAsync(WireConn sched, string name, int cycle, ServerCrashSummary s)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            var r = await sched.RequestAsync<AcquireLease, LeaseReply>(new AcquireLease { Name = name, DurationMs = 2000 }, Rpc);
            if (r.Status == (byte)LeaseStatus.Granted)
            {
                s.LeaseGrants++;
                if (_tokenOwner.TryGetValue(r.Token, out var owner) || r.Token <= _maxToken)
                {
                    s.TokensIssuedTwice++;
                    s.Failures.Add($"cycle {cycle}: {name} was granted token {r.Token} (scheduler {r.SchedulerId}); already issued to {owner ?? "?"}, highest acknowledged {_maxToken}");
                }
                _tokenOwner[r.Token] = name;
                _maxToken = Math.Max(_maxToken, r.Token);
                return (r.SchedulerId, r.Token);
            }
            if (r.Status != (byte)LeaseStatus.HeldByAnother) throw new InvalidDataException($"acquire {name}: {(LeaseStatus)r.Status}");
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"acquire {name}: still held by another after 30 s");
            // The previous life's lease is still running (its expiry survived the restart): wait for it.
            long waitMs = Math.Clamp(r.ExpiresUnixMs - DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + 5, 5, 500);
            await Task.Delay(TimeSpan.FromMilliseconds(waitMs));
        }
    }

    private static Task<CommitReply> CommitAsync(WireConn sched, (int Id, long Token) lease, IReadOnlyList<WireClaim> claims)
        => sched.RequestAsync<Commit, CommitReply>(new Commit { SchedulerId = lease.Id, Token = lease.Token, Mode = 0, Detection = 0, Claims = claims }, Rpc);

    // ---------------------------------------------------------------- after the kill

    private void Verify(int cycle, ServerCrashSummary s)
    {
        // The options omega serve opens its store with (the defaults), without a checkpoint on close: look, do not touch.
        var options = new StorageOptions { DataDirectory = DataDir, CheckpointOnDispose = false };
        using var store = CellStore.Open(options);
        var cell = store.Cell;
        foreach (var a in cell.Audit())
        {
            s.AuditProblems++;
            s.Failures.Add($"cycle {cycle}: audit: {a}");
        }
        var snap = cell.Snapshot();
        var fencedNodes = new HashSet<int>();
        for (int i = 0; i < snap.NodeCount; i++)
        {
            if (snap.TryGetNode(new NodeId(i), out var v) != SnapshotRead.Ok) continue;
            if (!v.Allocated.FitsWithin(v.Capacity))
            {
                s.OvercommittedNodes++;
                s.Failures.Add($"cycle {cycle}: node {v.Spec.Name} allocated {v.Allocated} over capacity {v.Capacity}");
            }
            if (v.Status == NodeStatus.Fenced) fencedNodes.Add(i);
        }
        // Leases: the last acknowledged grant of each name is still its token (or a newer, unacknowledged one is).
        foreach (var (name, lease) in _lease)
        {
            long now = cell.GetCurrentToken(name)?.Value ?? 0;
            if (now < lease.Token)
            {
                s.LostLeaseGrants++;
                s.Failures.Add($"cycle {cycle}: {name} was granted token {lease.Token}; after the crash its token is {now}");
            }
        }
        // Registrations: same node id for the same name; removed nodes stay removed.
        foreach (var (name, id) in _registered)
        {
            if (!cell.TryGetNodeId(name, out var nid) || nid.Value != id)
            {
                s.LostRegistrations++;
                s.Failures.Add($"cycle {cycle}: {name}'s acknowledged registration as node {id} is gone");
            }
            else if (fencedNodes.Contains(id) && _fencedAtRestart.Add(name)) s.FencedAtRestart++;
        }
        foreach (var name in _removed)
            if (cell.TryGetNodeId(name, out _))
            {
                s.RemovedNodesBack++;
                s.Failures.Add($"cycle {cycle}: node {name} was removed (acknowledged) but is back");
            }
        // Bindings: every acknowledged one is there as acknowledged, unless an eviction released it (its node is fenced,
        // or the agent was told to stop it); released and rejected ones are absent.
        var gone = new List<TaskId>();
        foreach (var (task, b) in _bound)
        {
            s.AckedBindingsChecked++;
            if (!cell.TryGetAllocation(task, out var a))
            {
                bool excused;
                lock (_stopLock) excused = _stopped.Contains(task);
                if (excused || fencedNodes.Contains(b.Node))
                {
                    s.ExcusedByEviction++;
                    gone.Add(task);
                    continue;
                }
                s.LostBindings++;
                s.Failures.Add($"cycle {cycle}: acknowledged binding {task} on node {b.Node} at v{b.Generation} is missing");
            }
            else if (a.Node.Value != b.Node || a.Generation != b.Generation)
            {
                s.DoubleBindings++;
                s.Failures.Add($"cycle {cycle}: {task} acknowledged on node {b.Node} at v{b.Generation} but bound on {a.Node} at v{a.Generation}");
            }
        }
        foreach (var t in gone) _bound.Remove(t);
        foreach (var t in _released)
            if (cell.TryGetAllocation(t, out _))
            {
                s.ReleasedBindingsBack++;
                s.Failures.Add($"cycle {cycle}: released binding {t} is back");
            }
        foreach (var t in _rejected)
        {
            s.RejectedClaimsChecked++;
            if (cell.TryGetAllocation(t, out _))
            {
                s.RejectedClaimsPresent++;
                s.Failures.Add($"cycle {cycle}: rejected claim {t} is bound");
            }
        }
    }
}
