using System.Buffers;
using Omega.Agent;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.Protocol;
using Omega.Scheduling;
using Omega.Server;
using Xunit.Abstractions;

namespace Omega.Wire.Tests;

/// <summary>
/// Authentication and authorization over real TLS on loopback (issue 11; docs/protocol.md, section 12): the role
/// matrix request by request, node restriction, tenant isolation, revocation and expiry closing connections, join tokens.
/// </summary>
public sealed class AuthTests(ITestOutputHelper output)
{
    private static readonly ResourceVector Cap = ResourceVector.FromCoresAndGiB(8, 32);
    private static readonly ResourceVector Small = ResourceVector.FromCoresAndGiB(1, 1);

    private enum R { Agent, Join, Scheduler, Submitter, OpRead, OpDrain, OpOverride, OpAdmin, OpBreakGlass }

    private sealed class World : IAsyncDisposable
    {
        public required ServerFixture Fx;
        public required Dictionary<R, string> Tokens;
        public SchedulerLease Lease;
        public TenantId TeamA, TeamB;

        public async ValueTask DisposeAsync() => await Fx.DisposeAsync();

        /// <summary>Everything a request could change: cell version (nodes, leases, tenants, commits), counts, jobs, credentials.</summary>
        public string Fingerprint()
            => string.Join("|", Fx.Cell.Version, Fx.Cell.NodeCount, Fx.Cell.AllocationCount, Fx.Cell.TenantCount, Fx.Engine!.JobCount,
                string.Join(",", Fx.Server.Auth.ListCredentials().Select(c => $"{c.Id}:{c.Revoked}:{c.UsesLeft}")));
    }

    private static async Task<World> StartAsync()
    {
        var fx = ServerFixture.Start(engine: true, startWorkers: false, fakeTime: true, tls: true, auth: true);
        var auth = fx.Server.Auth;
        var w = new World
        {
            Fx = fx,
            TeamA = fx.Cell.CreateTenant("team-a"),
            TeamB = fx.Cell.CreateTenant("team-b"),
            Tokens = new Dictionary<R, string>
            {
                [R.Agent] = auth.CreateCredential(CredentialRole.Agent, "node-a"),
                [R.Join] = auth.CreateCredential(CredentialRole.Join, "fleet", ttl: TimeSpan.FromHours(1), uses: 50),
                [R.Scheduler] = auth.CreateCredential(CredentialRole.Scheduler, "sched-a"),
                [R.Submitter] = auth.CreateCredential(CredentialRole.Submitter, "team-a"),
                [R.OpRead] = auth.CreateCredential(CredentialRole.Operator, "reader"),
                [R.OpDrain] = auth.CreateCredential(CredentialRole.Operator, "drainer", OperatorScopes.Drain),
                [R.OpOverride] = auth.CreateCredential(CredentialRole.Operator, "overrider", OperatorScopes.Override),
                [R.OpAdmin] = auth.CreateCredential(CredentialRole.Operator, "admin", OperatorScopes.Admin),
                [R.OpBreakGlass] = auth.CreateCredential(CredentialRole.Operator, "glass", OperatorScopes.BreakGlass),
            },
        };
        fx.Cell.AddNode(new NodeSpec("node-x", Cap, "fd"));
        w.Lease = fx.Cell.AcquireLease("sched-a", TimeSpan.FromHours(1)).Lease;
        Assert.True(fx.Engine!.Submit(new JobSpec(new JobId(500), w.TeamA, 0, 1, Small)).Accepted);
        Assert.True(fx.Engine.Submit(new JobSpec(new JobId(600), w.TeamB, 0, 1, Small)).Accepted);
        return w;
    }

    private static PeerRole HelloRole(R r) => r is R.Agent or R.Join ? PeerRole.Agent : PeerRole.Scheduler;

    private sealed record Req(string Name, MessageType Type, MessageType Reply, Func<int, int, byte[]> Frame);

    // Every request type of the protocol, valid for a permitted caller (arguments: the connection's node id, the row index).
    private static List<Req> Requests(World w) =>
    [
        new("Register", MessageType.Register, MessageType.Registered, (_, _) => Codec.FrameBytes(7, new Register { Node = "node-a", Capacity = Cap, FailureDomain = "fd" })),
        new("Heartbeat", MessageType.Heartbeat, MessageType.HeartbeatAck, (n, _) => Codec.FrameBytes(7, new Heartbeat { NodeId = n, LastVersion = 0 })),
        new("TaskReport", MessageType.TaskReport, MessageType.TaskReportAck, (n, _) => Codec.FrameBytes(7, new TaskReport { NodeId = n, Task = new TaskId(999, 0), Generation = 1, State = TaskState.Running, Reason = "" })),
        new("TaskReports", MessageType.TaskReports, MessageType.TaskReportsAck, (n, _) => Codec.FrameBytes(7, new TaskReports { NodeId = n, Reports = new[] { new ReportEntry(new TaskId(999, 0), 1, TaskState.Running, "") } })),
        new("Drain", MessageType.Drain, MessageType.DrainAck, (n, _) => Codec.FrameBytes(7, new Drain { Body = new StatusOnly { Value = n } })),
        new("Join", MessageType.Join, MessageType.JoinReply, (_, i) => Codec.FrameBytes(7, new Join { Node = $"joined-{i}" })),
        new("AcquireLease", MessageType.AcquireLease, MessageType.LeaseReply, (_, _) => Codec.FrameBytes(7, new AcquireLease { Name = "sched-a", DurationMs = 10_000 })),
        new("RenewLease", MessageType.RenewLease, MessageType.LeaseReply, (_, _) => Codec.FrameBytes(7, new RenewLease { SchedulerId = w.Lease.Id.Value, Name = "sched-a", Token = w.Lease.Token.Value, DurationMs = 3_600_000 })),
        new("Sync", MessageType.Sync, MessageType.SyncReply, (_, _) => Codec.FrameBytes(7, new Sync { Since = 0 })),
        new("Commit", MessageType.Commit, MessageType.CommitReply, (_, _) => Codec.FrameBytes(7, new Commit { SchedulerId = w.Lease.Id.Value, Token = w.Lease.Token.Value, Claims = [] })),
        new("SubmitJob", MessageType.SubmitJob, MessageType.SubmitJobReply, (_, i) => Codec.FrameBytes(7, new SubmitJob { JobId = 1000 + i, Tenant = "team-a", TaskCount = 1, PerTask = Small, Scheduler = "" })),
        new("QueryJob", MessageType.QueryJob, MessageType.JobStatusReply, (_, _) => Codec.FrameBytes(7, new QueryJob { JobId = 500 })),
        new("Explain", MessageType.Explain, MessageType.ExplainReply, (_, _) => Codec.FrameBytes(7, new Explain { Task = new TaskId(500, 0) })),
        new("InspectNodes", MessageType.Inspect, MessageType.InspectReply, (_, _) => Codec.FrameBytes(7, new Inspect { Target = InspectTarget.Nodes, Limit = 100 })),
        new("InspectJobs", MessageType.Inspect, MessageType.InspectReply, (_, _) => Codec.FrameBytes(7, new Inspect { Target = InspectTarget.Jobs, Limit = 100 })),
        new("OperateDrain", MessageType.Operate, MessageType.OperateReply, (_, _) => Codec.FrameBytes(7, new Operate { Kind = OperateKind.DrainNode, Target = "node-x" })),
        new("OperateCreateTenant", MessageType.Operate, MessageType.OperateReply, (_, i) => Codec.FrameBytes(7, new Operate { Kind = OperateKind.CreateTenant, Target = $"t-{i}" })),
        new("OperateCheckpoint", MessageType.Operate, MessageType.OperateReply, (_, _) => Codec.FrameBytes(7, new Operate { Kind = OperateKind.Checkpoint })),
        new("CreateToken", MessageType.CreateToken, MessageType.TokenCreated, (_, _) => Codec.FrameBytes(7, new CreateToken { Role = CredentialRole.Submitter, Subject = "team-b" })),
        new("ListTokens", MessageType.ListTokens, MessageType.TokenList, (_, _) => Codec.FrameBytes(7, new ListTokens { Limit = 100 })),
        new("RevokeToken", MessageType.RevokeToken, MessageType.TokenRevoked, (_, _) => Array.Empty<byte>()),   // built per row (a fresh credential)
        new("ReadAudit", MessageType.ReadAudit, MessageType.AuditLog, (_, _) => Codec.FrameBytes(7, new ReadAudit { Limit = 10 })),
    ];

    /// <summary>The documented matrix (docs/protocol.md, section 12): null = allowed, else the error code and denial reason.</summary>
    private static (ErrorCode Code, DenyReason Reason)? Expected(R role, Req q)
    {
        bool agentFamily = q.Type is MessageType.Register or MessageType.Heartbeat or MessageType.TaskReport or MessageType.TaskReports or MessageType.Drain or MessageType.Join;
        if (agentFamily != (HelloRole(role) == PeerRole.Agent)) return (ErrorCode.WrongRole, DenyReason.None);
        var pd1 = ((ErrorCode, DenyReason)?)(ErrorCode.PermissionDenied, DenyReason.RoleNotAllowed);
        var pd2 = ((ErrorCode, DenyReason)?)(ErrorCode.PermissionDenied, DenyReason.ScopeMissing);
        bool bg = role == R.OpBreakGlass;
        switch (role)
        {
            case R.Agent: return q.Type == MessageType.Join ? pd1 : null;
            case R.Join: return q.Type == MessageType.Join ? null : pd1;
            case R.Scheduler:
                return q.Type is MessageType.Operate or MessageType.CreateToken or MessageType.ListTokens or MessageType.RevokeToken or MessageType.ReadAudit ? pd1 : null;
            case R.Submitter:
                if (q.Type is MessageType.SubmitJob or MessageType.QueryJob or MessageType.Explain) return null;
                if (q.Type == MessageType.Inspect) return q.Name == "InspectJobs" ? null : pd2;
                return pd1;
            default:
                if (q.Type is MessageType.AcquireLease or MessageType.RenewLease or MessageType.Commit) return pd1;
                if (q.Type is MessageType.Sync or MessageType.QueryJob or MessageType.Explain or MessageType.Inspect) return null;
                if (q.Type == MessageType.SubmitJob) return bg ? null : pd2;
                if (q.Name == "OperateDrain") return bg || role == R.OpDrain ? null : pd2;
                if (q.Type == MessageType.Operate) return bg || role == R.OpOverride ? null : pd2;
                return bg || role == R.OpAdmin ? null : pd2;   // token management and audit
        }
    }

    [Fact]
    public async Task Every_message_type_times_every_role_is_allowed_or_refused_as_documented_and_a_refusal_changes_nothing()
    {
        await using var w = await StartAsync();
        var failures = new List<string>();
        int rows = 0, denied = 0, index = 0;
        foreach (var role in Enum.GetValues<R>())
        {
            foreach (var q in Requests(w))
            {
                index++;
                using var c = await RawClient.ConnectAsync(w.Fx.EndPoint);
                var welcome = await c.HandshakeAsync(HelloRole(role), "matrix", w.Tokens[role]);
                Assert.True(welcome.AuthRequired);
                int node = 0;
                if (role == R.Agent)
                {
                    await c.SendAsync(2, new Register { Node = "node-a", Capacity = Cap, FailureDomain = "fd" });
                    node = (await c.ExpectAsync<Registered>()).NodeId;
                }
                var frame = q.Type == MessageType.RevokeToken
                    ? Codec.FrameBytes(7, new RevokeToken { Id = AuthService.TokenId(w.Fx.Server.Auth.CreateCredential(CredentialRole.Submitter, "team-b"))! })
                    : q.Frame(node, index);
                var expected = Expected(role, q);
                string before = w.Fingerprint();
                long deniedBefore = w.Fx.Server.Auth.DeniedCount;
                await c.SendAsync(frame);
                var f = await c.ReadFrameAsync();
                rows++;
                if (f is null) { failures.Add($"{role} {q.Name}: connection closed"); continue; }
                ErrorMessage err = default;
                bool isError = f.Value.Type == MessageType.Error && Codec.TryDecode(new ReadOnlySequence<byte>(f.Value.Body), out err, out _);
                if (expected is null)
                {
                    if (f.Value.Type != q.Reply) failures.Add($"{role} {q.Name}: expected {q.Reply}, got {f.Value.Type}{(isError ? $" {err.Code} {err.Message}" : "")}");
                    continue;
                }
                denied++;
                if (!isError || err.Code != expected.Value.Code || err.Reason != expected.Value.Reason)
                    failures.Add($"{role} {q.Name}: expected {expected.Value.Code}/{expected.Value.Reason}, got {f.Value.Type}{(isError ? $" {err.Code}/{err.Reason} {err.Message}" : "")}");
                if (w.Fingerprint() != before) failures.Add($"{role} {q.Name}: the refused request changed state ({before} -> {w.Fingerprint()})");
                if (expected.Value.Code == ErrorCode.PermissionDenied && w.Fx.Server.Auth.DeniedCount != deniedBefore + 1) failures.Add($"{role} {q.Name}: denial not counted");
            }
        }
        output.WriteLine($"{rows} cells of the matrix, {denied} refused");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.Equal(Enum.GetValues<R>().Length * Requests(w).Count, rows);
    }

    [Fact]
    public async Task An_agent_cannot_register_heartbeat_report_or_drain_for_another_node_and_receives_only_its_own_bindings()
    {
        await using var w = await StartAsync();
        var auth = w.Fx.Server.Auth;
        string tokenB = auth.CreateCredential(CredentialRole.Agent, "node-b");
        using var b = await RawClient.ConnectAsync(w.Fx.EndPoint);
        int nodeB = (await b.RegisterAsync("node-b", Cap, token: tokenB)).NodeId;
        using var a = await RawClient.ConnectAsync(w.Fx.EndPoint);
        await a.HandshakeAsync(PeerRole.Agent, "node-a", w.Tokens[R.Agent]);

        // Register as node-b with node-a's credential: refused, node-b untouched.
        await a.SendAsync(2, new Register { Node = "node-b", Capacity = ResourceVector.FromCoresAndGiB(64, 256), FailureDomain = "evil" });
        var e = await a.ReadErrorAsync();
        Assert.Equal((ErrorCode.PermissionDenied, DenyReason.OtherNode), (e!.Value.Code, e.Value.Reason));
        Assert.True(w.Fx.Cell.Snapshot().TryGetNode(new NodeId(nodeB), out var view) == SnapshotRead.Ok && view.Capacity == Cap);

        int nodeA = 0;
        await a.SendAsync(3, new Register { Node = "node-a", Capacity = Cap, FailureDomain = "fd" });
        nodeA = (await a.ExpectAsync<Registered>()).NodeId;

        // A binding on node-b: node-a's agent may not ack, complete, heartbeat or drain it.
        var tx = new Transaction(w.Lease);
        tx.Add(new Claim(new TaskId(700, 0), new NodeId(nodeB), Small, 0, w.TeamA, 0));
        Assert.Equal(TransactionStatus.Committed, w.Fx.Cell.Commit(tx).Status);
        long gen = w.Fx.Cell.Version;
        foreach (var bad in new byte[][]
        {
            Codec.FrameBytes(4, new Heartbeat { NodeId = nodeB, LastVersion = 0 }),
            Codec.FrameBytes(5, new TaskReport { NodeId = nodeB, Task = new TaskId(700, 0), Generation = gen, State = TaskState.Completed, Reason = "" }),
            Codec.FrameBytes(6, new TaskReports { NodeId = nodeB, Reports = new[] { new ReportEntry(new TaskId(700, 0), gen, TaskState.Failed, "") } }),
            Codec.FrameBytes(7, new Drain { Body = new StatusOnly { Value = nodeB } }),
        })
        {
            await a.SendAsync(bad);
            var err = await a.ReadErrorAsync();
            Assert.Equal((ErrorCode.PermissionDenied, DenyReason.OtherNode), (err!.Value.Code, err.Value.Reason));
        }
        Assert.True(w.Fx.Cell.TryGetAllocation(new TaskId(700, 0), out var alloc) && alloc.Node == new NodeId(nodeB));
        Assert.True(w.Fx.Cell.Snapshot().TryGetNode(new NodeId(nodeB), out view) == SnapshotRead.Ok && view.Status == NodeStatus.Schedulable);

        // Node-b's agent got the binding; node-a's connection got no Bindings frame at all (a heartbeat round trip proves
        // everything pushed before it has arrived).
        var pushed = await b.ReadFrameAsync();
        Assert.Equal(MessageType.Bindings, pushed!.Value.Type);
        await a.SendAsync(9, new Heartbeat { NodeId = nodeA, LastVersion = 0 });
        var next = await a.ReadFrameAsync();
        Assert.Equal(MessageType.HeartbeatAck, next!.Value.Type);
    }

    [Fact]
    public async Task A_submitter_cannot_see_or_touch_another_tenants_jobs()
    {
        await using var w = await StartAsync();
        await using var c = await ControlClient.ConnectAsync(w.Fx.EndPoint, w.Fx.ClientTransport(), "team-a", w.Tokens[R.Submitter]);
        Assert.Equal("submitter:team-a", c.Principal);
        int jobs = w.Fx.Engine!.JobCount;

        var ex = await Assert.ThrowsAsync<AgentRequestException>(() => c.SubmitJobAsync(new JobSpec(new JobId(601), default, 0, 1, Small), tenant: "team-b"));
        Assert.Equal((ErrorCode.PermissionDenied, DenyReason.OtherTenant), (ex.Code, ex.Reason));
        ex = await Assert.ThrowsAsync<AgentRequestException>(() => c.SubmitJobAsync(new JobSpec(new JobId(602), default, 0, 1, Small), tenant: "no-such-team"));
        Assert.Equal(ErrorCode.PermissionDenied, ex.Code);
        Assert.Equal(jobs, w.Fx.Engine.JobCount);
        Assert.False(w.Fx.Engine.TryGetJob(new JobId(601), out _));

        ex = await Assert.ThrowsAsync<AgentRequestException>(() => c.QueryJobAsync(new JobId(600)));
        Assert.Equal(DenyReason.OtherTenant, ex.Reason);
        ex = await Assert.ThrowsAsync<AgentRequestException>(() => c.ExplainAsync(new TaskId(600, 0)));
        Assert.Equal(DenyReason.OtherTenant, ex.Reason);
        Assert.True((await c.QueryJobAsync(new JobId(500))).Found);

        // Reads are scoped: its jobs and its tenant only; other inspect targets are refused.
        var (total, lines) = await c.InspectAsync(InspectTarget.Jobs);
        Assert.Equal(1, total);
        Assert.Single(lines, l => l.StartsWith("j500 ", StringComparison.Ordinal));
        var (tenants, tlines) = await c.InspectAsync(InspectTarget.Tenants);
        Assert.Equal(1, tenants);
        Assert.StartsWith("team-a ", tlines[0], StringComparison.Ordinal);
        ex = await Assert.ThrowsAsync<AgentRequestException>(() => c.InspectAsync(InspectTarget.Allocations));
        Assert.Equal(DenyReason.ScopeMissing, ex.Reason);

        // An empty tenant is its own tenant.
        Assert.Equal(0, (await c.SubmitJobAsync(new JobSpec(new JobId(603), default, 0, 1, Small))).Status);
        Assert.True(w.Fx.Engine.TryGetJob(new JobId(603), out var st) && st.Job.Tenant == w.TeamA);

        // Every denial is in the audit log.
        var (_, audit) = w.Fx.Server.Auth.ReadAudit(100);
        Assert.Contains(audit, a => a.Action == "SubmitJob" && a.Target == "team-b" && a.Result == "denied: OtherTenant" && a.Who.StartsWith("submitter:team-a", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_revoked_credential_is_refused_and_its_open_connections_are_closed()
    {
        await using var w = await StartAsync();
        string token = w.Fx.Server.Auth.CreateCredential(CredentialRole.Agent, "node-r");
        using var agent = await RawClient.ConnectAsync(w.Fx.EndPoint);
        await agent.RegisterAsync("node-r", Cap, token: token);

        await using var admin = await ControlClient.ConnectAsync(w.Fx.EndPoint, w.Fx.ClientTransport(), "admin", w.Fx.AdminToken);
        Assert.Equal(1, await admin.RevokeTokenAsync(AuthService.TokenId(token)!));
        var e = await agent.ReadErrorAsync();
        Assert.Equal(ErrorCode.CredentialRevoked, e!.Value.Code);
        Assert.True(await agent.WaitClosedAsync());

        using var again = await RawClient.ConnectAsync(w.Fx.EndPoint);
        await again.SendAsync(1, new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Agent, Name = "node-r", Token = token });
        Assert.Equal(ErrorCode.CredentialRevoked, (await again.ReadErrorAsync())!.Value.Code);
        Assert.True(await again.WaitClosedAsync());
        var list = (await admin.ListTokensAsync()).Credentials;
        Assert.True(list.Single(c => c.Id == AuthService.TokenId(token)).Revoked);
        Assert.Contains((await admin.ReadAuditAsync()).Entries, a => a.Action == "RevokeToken" && a.Result.StartsWith("ok: 1 connection", StringComparison.Ordinal));

        // Unknown, malformed, missing tokens: Unauthenticated, and the connection is closed.
        foreach (var bad in new[] { null, "", "omega1.0000000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", w.Fx.AdminToken[..^1] + "x", "not-a-token" })
        {
            using var u = await RawClient.ConnectAsync(w.Fx.EndPoint);
            await u.SendAsync(1, new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Scheduler, Name = "u", Token = bad });
            Assert.Equal(ErrorCode.Unauthenticated, (await u.ReadErrorAsync())!.Value.Code);
            Assert.True(await u.WaitClosedAsync());
        }
    }

    [Fact]
    public async Task An_expired_credential_is_refused_at_the_next_request_and_the_sweep_closes_idle_connections()
    {
        await using var w = await StartAsync();
        string token = w.Fx.Server.Auth.CreateCredential(CredentialRole.Operator, "temp", ttl: TimeSpan.FromMinutes(5));
        using var busy = await RawClient.ConnectAsync(w.Fx.EndPoint);
        using var idle = await RawClient.ConnectAsync(w.Fx.EndPoint);
        Assert.NotEqual(0, (await busy.HandshakeAsync(PeerRole.Scheduler, "busy", token)).CredentialExpiresUnixMs);
        await idle.HandshakeAsync(PeerRole.Scheduler, "idle", token);
        await busy.SendAsync(2, new Inspect { Target = InspectTarget.Stats, Limit = 10 });
        await busy.ExpectAsync<InspectReply>();

        w.Fx.Fake!.Advance(TimeSpan.FromMinutes(6));
        await busy.SendAsync(3, new Inspect { Target = InspectTarget.Stats, Limit = 10 });
        Assert.Equal(ErrorCode.CredentialExpired, (await busy.ReadErrorAsync())!.Value.Code);
        Assert.True(await busy.WaitClosedAsync());

        w.Fx.Server.Auth.SweepExpired();
        Assert.Equal(ErrorCode.CredentialExpired, (await idle.ReadErrorAsync())!.Value.Code);
        Assert.True(await idle.WaitClosedAsync());

        using var late = await RawClient.ConnectAsync(w.Fx.EndPoint);
        await late.SendAsync(1, new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Scheduler, Name = "late", Token = token });
        Assert.Equal(ErrorCode.CredentialExpired, (await late.ReadErrorAsync())!.Value.Code);
    }

    [Fact]
    public async Task A_join_token_gives_each_agent_its_own_credential_a_bounded_number_of_times()
    {
        await using var fx = ServerFixture.Start(tls: true, auth: true);
        await using var admin = await ControlClient.ConnectAsync(fx.EndPoint, fx.ClientTransport(), "admin", fx.AdminToken);
        var (joinId, join, _) = await admin.CreateTokenAsync(CredentialRole.Join, "rack-1", ttl: TimeSpan.FromMinutes(10), uses: 2);

        var issued = new List<string>();
        var agents = new List<AgentClient>();
        for (int i = 0; i < 2; i++)
        {
            var agent = new AgentClient(new AgentOptions
            {
                Server = fx.EndPoint, NodeName = $"joined-{i}", Capacity = Cap, Transport = fx.ClientTransport(), JoinToken = join, Seed = i,
                OnCredential = t => { lock (issued) issued.Add(t); },
            });
            agents.Add(agent);
            await agent.StartAsync().WaitAsync(TimeSpan.FromSeconds(15));
        }
        Assert.Equal(2, issued.Distinct().Count());
        var creds = (await admin.ListTokensAsync()).Credentials;
        Assert.Equal(0, creds.Single(c => c.Id == joinId).UsesLeft);
        Assert.Equal(["joined-0", "joined-1"], creds.Where(c => c.Role == CredentialRole.Agent).Select(c => c.Subject).Order());

        // The join token is spent: a third agent is refused for good; the two joined agents reconnect with their own
        // credentials (the join token is not needed again).
        await using (var third = new AgentClient(new AgentOptions { Server = fx.EndPoint, NodeName = "joined-2", Capacity = Cap, Transport = fx.ClientTransport(), JoinToken = join, Seed = 3 }))
        {
            var ex = await Assert.ThrowsAsync<AgentRequestException>(() => third.StartAsync().WaitAsync(TimeSpan.FromSeconds(15)));
            Assert.Equal(ErrorCode.JoinTokenExhausted, ex.Code);
        }
        agents[0].DropConnection();
        await Wait.UntilAsync(() => agents[0].Registrations == 2 && agents[0].IsConnected, "the joined agent re-registers with its own credential");

        // A join token cannot take over a node that has a credential: PD:6.
        var (_, join2, _) = await admin.CreateTokenAsync(CredentialRole.Join, "rack-2", ttl: TimeSpan.FromMinutes(10), uses: 5);
        using var raw = await RawClient.ConnectAsync(fx.EndPoint);
        await raw.HandshakeAsync(PeerRole.Agent, "thief", join2);
        await raw.SendAsync(2, new Join { Node = "joined-1" });
        var err = await raw.ReadErrorAsync();
        Assert.Equal((ErrorCode.PermissionDenied, DenyReason.NodeHasCredential), (err!.Value.Code, err.Value.Reason));
        foreach (var a in agents) await a.DisposeAsync();
    }

    // ------------------------------------------------------------------ control-plane objects (0x40-0x4B)

    private static Workload Workload(string tenant, string name, int replicas = 1)
    {
        var w = new Workload();
        w.Metadata.Name = name;
        w.Metadata.Tenant = tenant;
        w.Spec.Replicas = replicas;
        w.Spec.Resources = new ResourceRequest { CpuMillis = 100, MemoryBytes = 1 << 20 };
        return w;
    }

    private static (ServerFixture Fx, ObjectStore Store) StartWithObjects()
    {
        ObjectStore? store = null;
        var fx = ServerFixture.Start(o => o.Objects = store, tls: true, auth: true, seed: cell =>
        {
            cell.CreateTenant("team-a");
            cell.CreateTenant("team-b");
            store = new ObjectStore(cell);
        });
        return (fx, store!);
    }

    [Fact]
    public async Task A_submitter_writing_another_tenants_Workload_is_denied_and_nothing_changes()
    {
        var (fx, store) = StartWithObjects();
        await using var fixture = fx;
        using var storeScope = store;
        var theirs = Workload("team-b", "web", replicas: 2);
        await using (var op = await ControlClient.ConnectAsync(fx.EndPoint, fx.ClientTransport(), "op", fx.AdminToken))
            await op.CreateAsync(theirs);
        long version = store.ResourceVersion;
        await using var c = await ControlClient.ConnectAsync(fx.EndPoint, fx.ClientTransport(), "team-a", fx.Server.Auth.CreateCredential(CredentialRole.Submitter, "team-a"));

        // Create, update and delete in team-b, each by the document's metadata.tenant or the request's tenant.
        var ex = await Assert.ThrowsAsync<AgentRequestException>(() => c.CreateAsync(Workload("team-b", "api")));
        Assert.Equal((ErrorCode.PermissionDenied, DenyReason.OtherTenant), (ex.Code, ex.Reason));
        var scaled = Workload("team-b", "web", replicas: 50);
        scaled.Metadata.ResourceVersion = version;
        ex = await Assert.ThrowsAsync<AgentRequestException>(() => c.UpdateAsync(scaled));
        Assert.Equal((ErrorCode.PermissionDenied, DenyReason.OtherTenant), (ex.Code, ex.Reason));
        ex = await Assert.ThrowsAsync<AgentRequestException>(() => c.DeleteAsync(theirs.Key));
        Assert.Equal((ErrorCode.PermissionDenied, DenyReason.OtherTenant), (ex.Code, ex.Reason));
        // Reads too: another tenant's object, and a list of every tenant (empty tenant).
        ex = await Assert.ThrowsAsync<AgentRequestException>(() => c.GetAsync(theirs.Key));
        Assert.Equal((ErrorCode.PermissionDenied, DenyReason.OtherTenant), (ex.Code, ex.Reason));
        ex = await Assert.ThrowsAsync<AgentRequestException>(() => c.ListAsync("Workload"));
        Assert.Equal((ErrorCode.PermissionDenied, DenyReason.OtherTenant), (ex.Code, ex.Reason));

        // Nothing changed: the store's version, team-b's workload as created, no team-b/api.
        Assert.Equal(version, store.ResourceVersion);
        Assert.Equal(2, store.Get<Workload>("team-b", "web")!.Spec.Replicas);
        Assert.Null(store.Get<Workload>("team-b", "api"));
    }

    [Fact]
    public async Task A_submitter_manages_Workloads_in_its_own_tenant_while_other_roles_need_the_right_scope()
    {
        var (fx, store) = StartWithObjects();
        await using var fixture = fx;
        using var storeScope = store;
        var auth = fx.Server.Auth;
        await using var c = await ControlClient.ConnectAsync(fx.EndPoint, fx.ClientTransport(), "team-a", auth.CreateCredential(CredentialRole.Submitter, "team-a"));

        var created = (Workload)await c.CreateAsync(Workload("team-a", "web"));
        created.Spec.Replicas = 3;
        var updated = (Workload)await c.UpdateAsync(created);
        Assert.Equal(3, updated.Spec.Replicas);
        Assert.Equal(3, ((Workload)(await c.GetAsync(updated.Key))!).Spec.Replicas);
        Assert.Single((await c.ListAsync("Workload", "team-a")).Items);
        // Status is the controllers' to write, even in its own tenant.
        var ex = await Assert.ThrowsAsync<AgentRequestException>(() => c.UpdateStatusAsync(updated));
        Assert.Equal((ErrorCode.PermissionDenied, DenyReason.ScopeMissing), (ex.Code, ex.Reason));
        Assert.True((await c.DeleteAsync(updated.Key)).IsOk);
        Assert.Null(store.Get<Workload>("team-a", "web"));

        // A scheduler never touches objects; an operator reads without a scope and writes with override.
        await using (var sched = await ControlClient.ConnectAsync(fx.EndPoint, fx.ClientTransport(), "sched-a", auth.CreateCredential(CredentialRole.Scheduler, "sched-a")))
        {
            ex = await Assert.ThrowsAsync<AgentRequestException>(() => sched.ListAsync("Workload", "team-a"));
            Assert.Equal((ErrorCode.PermissionDenied, DenyReason.RoleNotAllowed), (ex.Code, ex.Reason));
        }
        await using (var reader = await ControlClient.ConnectAsync(fx.EndPoint, fx.ClientTransport(), "reader", auth.CreateCredential(CredentialRole.Operator, "reader")))
        {
            Assert.Empty((await reader.ListAsync("Workload")).Items);
            ex = await Assert.ThrowsAsync<AgentRequestException>(() => reader.CreateAsync(Workload("team-b", "api")));
            Assert.Equal((ErrorCode.PermissionDenied, DenyReason.ScopeMissing), (ex.Code, ex.Reason));
        }
        await using (var op = await ControlClient.ConnectAsync(fx.EndPoint, fx.ClientTransport(), "overrider", auth.CreateCredential(CredentialRole.Operator, "overrider", OperatorScopes.Override)))
            Assert.Equal("team-b", (await op.CreateAsync(Workload("team-b", "api"))).Key.Tenant);
        Assert.NotNull(store.Get<Workload>("team-b", "api"));
    }

    [Fact]
    public async Task Apply_without_a_resourceVersion_wins_over_status_writes_made_between_its_read_and_its_update()
    {
        // `omega apply` reads the object and updates it with the version it read. A controller writing status in between
        // made that update fail with ObjectConflict; apply now reads again. A status writer runs on the server's store
        // while the client applies 40 spec changes: each must land, and the last spec must be the stored one.
        var (fx, store) = StartWithObjects();
        await using var fixture = fx;
        using var storeScope = store;
        var auth = fx.Server.Auth;
        await using var c = await ControlClient.ConnectAsync(fx.EndPoint, fx.ClientTransport(), "team-a", auth.CreateCredential(CredentialRole.Submitter, "team-a"));
        await c.CreateAsync(Workload("team-a", "web"));

        using var stop = new CancellationTokenSource();
        long statusWrites = 0;
        var writer = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                var w = store.Get<Workload>("team-a", "web")!;
                w.Status.ObservedGeneration = Interlocked.Read(ref statusWrites) + 1; // a change on every write, so each bumps the version
                if ((await store.UpdateStatusAsync(w)).IsOk) Interlocked.Increment(ref statusWrites);
                // About one write per millisecond, a busy controller's pace: often enough that nearly every apply's
                // read-to-update window sees one, not so often that every retry does too.
                await Task.Delay(1);
            }
        });
        try
        {
            for (int i = 1; i <= 40; i++)
            {
                var (applied, created) = await c.ApplyAsync(Workload("team-a", "web", replicas: i));
                Assert.False(created);
                Assert.Equal(i, ((Workload)applied).Spec.Replicas);
            }
        }
        finally
        {
            stop.Cancel();
            await writer;
        }
        Assert.Equal(40, store.Get<Workload>("team-a", "web")!.Spec.Replicas);
        Assert.True(Interlocked.Read(ref statusWrites) > 0, "the status writer never wrote");

        // A manifest that pins a stale version is the caller's own precondition: refused at once, not retried.
        var stale = Workload("team-a", "web", replicas: 7);
        stale.Metadata.ResourceVersion = 1;
        var ex = await Assert.ThrowsAsync<AgentRequestException>(() => c.ApplyAsync(stale));
        Assert.Equal(ErrorCode.ObjectConflict, ex.Code);
        Assert.Equal(40, store.Get<Workload>("team-a", "web")!.Spec.Replicas);
    }
}
