using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.Time.Testing;
using Omega.Agent;
using Omega.Cells;
using Omega.Protocol;
using Omega.Server;
using Omega.Transport;

namespace Omega.Wire.Tests;

/// <summary>An <see cref="ILeaderGate"/> a test flips by hand (the replication layer's election, without etcd).</summary>
internal sealed class FakeGate : ILeaderGate
{
    private volatile bool _leader;
    private volatile string? _address;
    private long _epoch;

    public bool IsLeader => _leader;

    public string? LeaderAddress => _address;

    public long Epoch => Volatile.Read(ref _epoch);

    public event Action? Changed;

    /// <summary>Sets the view and raises <see cref="Changed"/>, as an election watcher would.</summary>
    public void Set(bool leader, string? address, long epoch)
    {
        _address = address;
        Volatile.Write(ref _epoch, epoch);
        _leader = leader;
        Changed?.Invoke();
    }
}

/// <summary>
/// Two replicas of one cell in one process: two <see cref="OmegaServer"/>s on loopback over the SAME in-memory cell (the
/// state the replicated log keeps identical on every replica), each behind its own <see cref="FakeGate"/>. Replica A
/// starts as the leader.
/// </summary>
internal sealed class ReplicaPair : IAsyncDisposable
{
    public required Cell Cell { get; init; }
    public required OmegaServer A { get; init; }
    public required OmegaServer B { get; init; }
    public required FakeGate GateA { get; init; }
    public required FakeGate GateB { get; init; }

    public string AddressA => A.EndPoint.ToString();
    public string AddressB => B.EndPoint.ToString();

    public static ReplicaPair Start(FakeTimeProvider? fake = null, Action<Cell>? seed = null)
    {
        TimeProvider time = fake is null ? TimeProvider.System : fake;
        var cell = new Cell(new CellOptions { Time = time, Name = "ha-test" });
        seed?.Invoke(cell);
        var gateA = new FakeGate();
        var gateB = new FakeGate();
        gateA.Set(true, null, 1);
        OmegaServer Make(string name, FakeGate gate)
        {
            var o = new ServerOptions { Name = name, Time = time, Leadership = gate };
            o.Transport.Time = time;
            if (fake is not null)
            {
                o.Transport.SweepInterval = TimeSpan.FromDays(1);
                o.LifecyclePeriod = null;
            }
            return new OmegaServer(cell, null, new IPEndPoint(IPAddress.Loopback, 0), o);
        }
        var a = Make("replica-a", gateA);
        var b = Make("replica-b", gateB);
        gateA.Set(true, a.EndPoint.ToString(), 1);
        gateB.Set(false, a.EndPoint.ToString(), 1);
        a.Start();
        b.Start();
        return new ReplicaPair { Cell = cell, A = a, B = b, GateA = gateA, GateB = gateB };
    }

    /// <summary>The election moves to B: A steps down first (knowing no leader), then B wins at epoch 2 and A learns it.</summary>
    public void FailOverToB()
    {
        GateA.Set(false, null, 1);
        GateB.Set(true, AddressB, 2);
        GateA.Set(false, AddressB, 2);
    }

    public async ValueTask DisposeAsync()
    {
        await A.DisposeAsync();
        await B.DisposeAsync();
        Cell.Dispose();
    }
}

/// <summary>
/// Issue 16, the client half: a follower redirects (NotLeader naming the leader, NoLeader when none is known), a replica
/// that loses the leadership turns its clients away, clients given several addresses follow the leader, an agent resumes
/// its binding stream on the new leader from its last version, and the new leader gives every node a fresh lease.
/// </summary>
public sealed class LeaderRedirectTests
{
    [Fact]
    public async Task Follower_answers_Hello_with_NotLeader_naming_the_leader_or_NoLeader_and_closes()
    {
        await using var ha = ReplicaPair.Start();
        using (var c = await RawClient.ConnectAsync(ha.B.EndPoint))
        {
            await c.SendAsync(1, new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Agent, Name = "n1" });
            var e = await c.ReadErrorAsync();
            Assert.Equal(ErrorCode.NotLeader, e?.Code);
            Assert.Equal(ha.AddressA, e?.Leader);
            Assert.Equal(1, e?.Epoch);
            Assert.True(await c.WaitClosedAsync());
        }
        // No leader known (an election in progress): NoLeader, no address.
        ha.GateB.Set(false, null, 0);
        using (var c = await RawClient.ConnectAsync(ha.B.EndPoint))
        {
            await c.SendAsync(1, new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Scheduler, Name = "s1" });
            var e = await c.ReadErrorAsync();
            Assert.Equal(ErrorCode.NoLeader, e?.Code);
            Assert.Null(e?.Leader);
            Assert.True(await c.WaitClosedAsync());
        }
        // A client of an older version is refused for its version, not redirected (it may not know the redirect).
        using (var c = await RawClient.ConnectAsync(ha.B.EndPoint))
        {
            await c.SendAsync(1, new Hello { Version = Frame.ProtocolVersion - 1, Role = PeerRole.Agent, Name = "old" });
            Assert.Equal(ErrorCode.UnsupportedVersion, (await c.ReadErrorAsync())?.Code);
        }
        Assert.Equal(2, ha.B.Redirects);
        Assert.Equal(1, ha.B.TransportMetrics.ErrorsSent(ErrorCode.NotLeader));
        Assert.Equal(1, ha.B.TransportMetrics.ErrorsSent(ErrorCode.NoLeader));
        // The leader is untouched: nothing registered anywhere.
        Assert.False(ha.Cell.TryGetNodeId("n1", out _));
    }

    [Fact]
    public async Task Losing_the_leadership_turns_open_connections_away_with_the_new_leaders_address()
    {
        await using var ha = ReplicaPair.Start();
        using var c = await RawClient.ConnectAsync(ha.A.EndPoint);
        await c.HandshakeAsync(PeerRole.Scheduler, "sched");
        ha.FailOverToB();
        // The unprompted redirect (request id 0): first NoLeader (A stepped down before B won), or NotLeader naming B.
        var e = await c.ReadErrorAsync();
        Assert.True(e?.Code is ErrorCode.NotLeader or ErrorCode.NoLeader, $"got {e?.Code}");
        Assert.True(await c.WaitClosedAsync());
        Assert.Equal(1, ha.A.LeadershipLosses);
        // A request arriving at the deposed replica on a connection opened while it led gets the redirect too.
        using var raw = await RawClient.ConnectAsync(ha.A.EndPoint);
        await raw.SendAsync(1, new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Scheduler, Name = "late" });
        var r = await raw.ReadErrorAsync();
        Assert.Equal(ErrorCode.NotLeader, r?.Code);
        Assert.Equal(ha.AddressB, r?.Leader);
        Assert.Equal(2, r?.Epoch);
    }

    [Fact]
    public async Task Control_client_given_only_a_follower_follows_the_redirect_to_the_leader()
    {
        await using var ha = ReplicaPair.Start();
        await using (var client = await ControlClient.ConnectAsync([ha.B.EndPoint], null, "ctl", null, TimeSpan.FromSeconds(5)))
        {
            Assert.Equal(ha.A.EndPoint, client.ConnectedTo);
            Assert.Equal(1, client.RedirectsFollowed);
            var (total, _) = await client.InspectAsync(InspectTarget.Nodes);
            Assert.Equal(0, total);
        }
        ha.FailOverToB();
        await using (var client = await ControlClient.ConnectAsync([ha.A.EndPoint], null, "ctl", null, TimeSpan.FromSeconds(5)))
            Assert.Equal(ha.B.EndPoint, client.ConnectedTo);
        // Nobody leads: every replica says NoLeader; the client gives up after its rounds with that typed error.
        ha.GateB.Set(false, null, 2);
        ha.GateA.Set(false, null, 2);
        var ex = await Assert.ThrowsAsync<AgentRequestException>(() => ControlClient.ConnectAsync([ha.A.EndPoint, ha.B.EndPoint], null, "ctl", null, TimeSpan.FromSeconds(5), maxRounds: 2));
        Assert.Equal(ErrorCode.NoLeader, ex.Code);
    }

    [Fact]
    public async Task Agent_moves_to_the_new_leader_and_resumes_its_binding_stream_with_no_gap_and_no_duplicate()
    {
        await using var ha = ReplicaPair.Start();
        var seen = new ConcurrentQueue<AgentBinding>();
        await using var agent = new AgentClient(new AgentOptions
        {
            Servers = [ha.A.EndPoint, ha.B.EndPoint],
            NodeName = "ha-node",
            Capacity = new ResourceVector(1_000_000, 64L << 30),
            OnBinding = (_, b) => seen.Enqueue(b),
            Seed = 16,
            ReconnectBase = TimeSpan.FromMilliseconds(5),
            ReconnectMax = TimeSpan.FromMilliseconds(50),
        });
        await agent.StartAsync();
        Assert.Equal(ha.A.EndPoint, agent.ConnectedTo);
        Assert.True(ha.Cell.TryGetNodeId("ha-node", out var node));
        // The scheduler's commits go to the shared cell (what the leader's engine and the replicated log do).
        var lease = ha.Cell.AcquireLease("ha-sched", TimeSpan.FromHours(1)).Lease;
        int next = 0;
        void CommitSome(int n)
        {
            for (int i = 0; i < n; i++)
                Assert.Equal(TransactionStatus.Committed, ha.Cell.Commit(new Transaction(lease).Add(new Claim(new TaskId(1600, next++), node, new ResourceVector(100, 1 << 20), 0))).Status);
        }
        CommitSome(10);
        await Wait.UntilAsync(() => seen.Count == 10, $"10 bindings from A (have {seen.Count})");
        long before = agent.LastVersion;

        ha.FailOverToB();
        // Bindings committed while the agent is between replicas.
        CommitSome(5);
        await Wait.UntilAsync(() => agent.IsConnected && Equals(agent.ConnectedTo, ha.B.EndPoint), "the agent registered with B");
        CommitSome(10);
        await Wait.UntilAsync(() => seen.Count >= 25, $"25 bindings in all (have {seen.Count})");

        var list = seen.ToList();
        Assert.Equal(25, list.Count);
        Assert.Equal(Enumerable.Range(0, 25), list.Select(b => b.Task.Index).Order());
        for (int i = 1; i < list.Count; i++) Assert.True(list[i].Version > list[i - 1].Version, $"versions out of order at {i}");
        Assert.True(list[10].Version > before);
        foreach (var b in list)
        {
            Assert.True(ha.Cell.TryGetAllocation(b.Task, out var a));
            Assert.Equal(a.Generation, b.Generation);
        }
        Assert.Equal(0, agent.Duplicates);
        Assert.True(agent.Registrations >= 2);
        Assert.True(ha.A.Redirects >= 1);
        // The node is alive on the new leader: no eviction because the leader changed.
        Assert.Equal(0, ha.B.Lifecycle.EvictedCount);
        Assert.Equal(NodeStatus.Schedulable, await agent.HeartbeatAsync());
    }

    [Fact]
    public async Task A_release_the_agent_never_heard_of_before_the_failover_is_stopped_at_registration_on_the_new_leader()
    {
        // The replication layer builds the new leader's server from the replicated state at takeover: its outboxes are
        // seeded from the live bindings, so a release committed after the agent's resume point and before the takeover
        // left no Stop entry anywhere. The agent's held tasks (Register key 7) are reconciled instead (Registered key 5).
        using var cell = new Cell(new CellOptions { Name = "ha-seeded" });
        var gateA = new FakeGate();
        await using var a = new OmegaServer(cell, null, new IPEndPoint(IPAddress.Loopback, 0), new ServerOptions { Name = "a", Leadership = gateA });
        gateA.Set(true, a.EndPoint.ToString(), 1);
        a.Start();
        int portB;
        using (var probe = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            portB = ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        var addressB = new IPEndPoint(IPAddress.Loopback, portB);
        var seen = new ConcurrentQueue<AgentBinding>();
        await using var agent = new AgentClient(new AgentOptions
        {
            Servers = [a.EndPoint, addressB],
            NodeName = "seeded-node",
            Capacity = new ResourceVector(100_000, 64L << 30),
            OnBinding = (_, b) => seen.Enqueue(b),
            Seed = 17,
            ReconnectBase = TimeSpan.FromMilliseconds(5),
            ReconnectMax = TimeSpan.FromMilliseconds(50),
        });
        await agent.StartAsync();
        Assert.True(cell.TryGetNodeId("seeded-node", out var node));
        var lease = cell.AcquireLease("sched", TimeSpan.FromHours(1)).Lease;
        var t1 = new TaskId(1700, 0);
        var t2 = new TaskId(1700, 1);
        Assert.Equal(TransactionStatus.Committed, cell.Commit(new Transaction(lease).Add(new Claim(t1, node, new ResourceVector(100, 1 << 20), 0))).Status);
        Assert.Equal(TransactionStatus.Committed, cell.Commit(new Transaction(lease).Add(new Claim(t2, node, new ResourceVector(100, 1 << 20), 0))).Status);
        await Wait.UntilAsync(() => agent.RunningTasks.Count == 2, "both tasks running on the agent");

        // A steps down (no leader known); while the agent knocks at A and at the address where B will be, t1's binding
        // is released (preempted, its node drained by an operator...) and B is built from the cell as it is now.
        gateA.Set(false, null, 1);
        await Wait.UntilAsync(() => !agent.IsConnected, "the agent left A");
        Assert.Equal(ReleaseStatus.Released, cell.Release(t1));
        var gateB = new FakeGate();
        gateB.Set(true, addressB.ToString(), 2);
        await using var b = new OmegaServer(cell, null, addressB, new ServerOptions { Name = "b", Leadership = gateB });
        b.Start();
        gateA.Set(false, addressB.ToString(), 2);

        await Wait.UntilAsync(() => agent.IsConnected && Equals(agent.ConnectedTo, addressB), "the agent registered with B");
        await Wait.UntilAsync(() => agent.RunningTasks.Count == 1, "t1 stopped on the agent");
        Assert.Equal([t2], agent.RunningTasks.Keys);
        Assert.Equal(1, agent.ReconciledStops);
        var stops = seen.Where(x => x.Kind == BindingKind.Stop).ToList();
        Assert.Equal(t1, Assert.Single(stops).Task);
        Assert.Equal(0, agent.Duplicates);
    }

    [Fact]
    public async Task New_leader_judges_no_lease_while_following_and_gives_every_node_one_lease_from_the_takeover()
    {
        var fake = new FakeTimeProvider(new DateTimeOffset(2026, 12, 6, 0, 0, 0, TimeSpan.Zero));
        // One node known when B started, one B learns later (from the replicated log, while following).
        await using var ha = ReplicaPair.Start(fake, seed: c => c.AddNode(new NodeSpec("early", new ResourceVector(1000, 1 << 30)), out _));
        var lease = ha.B.Options.NodeLease;
        fake.Advance(lease / 2);
        ha.Cell.AddNode(new NodeSpec("learned", new ResourceVector(1000, 1 << 30)), out _);

        // Following: however long the agents talk only to the leader, B judges nothing.
        fake.Advance(lease * 3);
        var t = ha.B.Lifecycle.Tick();
        Assert.True(t.InGrace);
        Assert.Equal(0, t.Expired);

        // Takeover: every node gets one full lease from now, including the one learned while following.
        ha.FailOverToB();
        fake.Advance(lease - TimeSpan.FromSeconds(1));
        t = ha.B.Lifecycle.Tick();
        Assert.True(t.InGrace);
        Assert.Equal(0, ha.B.Lifecycle.EvictedCount);

        // After that lease, agents that never came back are judged like any silent agent: both nodes.
        fake.Advance(TimeSpan.FromSeconds(2));
        t = ha.B.Lifecycle.Tick();
        Assert.False(t.InGrace);
        Assert.Equal(2, t.Expired);
    }
}
