using Omega.Agent;
using Omega.Cells;
using Omega.Protocol;
using Omega.Scheduling;

namespace Omega.Wire.Tests;

/// <summary>Node lifecycle with injected time (FakeTimeProvider): nothing sleeps, ticks are explicit.</summary>
public sealed class LifecycleTests
{
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(10);

    private static AgentClient Agent(ServerFixture fx, string name, Action<AgentClient, AgentBinding>? onBinding = null)
        => new(new AgentOptions
        {
            Server = fx.EndPoint,
            NodeName = name,
            Capacity = new ResourceVector(4000, 16L << 30),
            SendHeartbeats = false,
            OnBinding = onBinding,
            Seed = 1,
            ReconnectBase = TimeSpan.FromMilliseconds(5),
        });

    private static void SeedNodes(Cell cell, int n)
    {
        for (int i = 0; i < n; i++) cell.AddNode(new NodeSpec($"n{i}", new ResourceVector(4000, 16L << 30)));
    }

    private static NodeStatus StatusOf(Cell cell, NodeId id)
        => cell.Snapshot().TryGetNode(id, out var v) == SnapshotRead.Ok ? v.Status : NodeStatus.Removed;

    [Fact]
    public async Task Lease_expiry_fences_the_node_and_requeues_its_tasks_at_a_higher_generation_and_the_returning_agent_stops_them()
    {
        await using var fx = ServerFixture.Start(o => { o.NodeLease = Lease; o.EvictionsPerSecond = 100; }, engine: true, fakeTime: true, startWorkers: false);
        var aSeen = new System.Collections.Concurrent.ConcurrentQueue<AgentBinding>();
        var bSeen = new System.Collections.Concurrent.ConcurrentQueue<AgentBinding>();
        await using var a = Agent(fx, "a", (_, x) => aSeen.Enqueue(x));
        await a.StartAsync();
        Assert.Equal(EnqueueStatus.Accepted, fx.Engine!.Submit(new JobSpec(new JobId(1), default, 1, 2, new ResourceVector(1000, 1 << 20))).Status);
        fx.Engine.RunUntilIdle();
        await Wait.UntilAsync(() => aSeen.Count == 2, "a receives both bindings");
        var first = aSeen.ToDictionary(x => x.Task, x => x.Generation);

        await using var b = Agent(fx, "b", (_, x) => bSeen.Enqueue(x));
        await b.StartAsync();
        fx.Fake!.Advance(Lease + TimeSpan.FromSeconds(1));
        await b.HeartbeatAsync(); // b is alive; a is silent
        var tick = fx.Server.Lifecycle.Tick();
        Assert.Equal(1, tick.Evicted);
        Assert.Equal(NodeStatus.Fenced, StatusOf(fx.Cell, new NodeId(a.NodeId)));
        Assert.Empty(fx.Cell.GetAllocationsOnNode(new NodeId(a.NodeId)));

        // Requeued and rebound on b, each at a higher generation than a held.
        fx.Engine.RunUntilIdle();
        await Wait.UntilAsync(() => bSeen.Count == 2, "b receives the rescheduled tasks");
        foreach (var x in bSeen)
        {
            Assert.Equal(BindingKind.Run, x.Kind);
            Assert.True(x.Generation > first[x.Task], $"{x.Task}: generation {x.Generation} not above {first[x.Task]}");
        }
        // The fenced node accepts no new claims.
        var lease = fx.Cell.AcquireLease("probe", TimeSpan.FromMinutes(1)).Lease;
        var r = fx.Cell.Commit(new Transaction(lease).Add(new Claim(new TaskId(99, 0), new NodeId(a.NodeId), new ResourceVector(1, 1), 0)));
        Assert.Equal(ClaimStatus.NodeFenced, r[0]);

        // a comes back: it is told to stop exactly the superseded generations, and its stale reports are refused.
        Assert.Equal(NodeStatus.Schedulable, await a.HeartbeatAsync());
        await Wait.UntilAsync(() => aSeen.Count == 4, "a receives the stops");
        var stops = aSeen.Skip(2).ToList();
        Assert.All(stops, s => Assert.Equal(BindingKind.Stop, s.Kind));
        Assert.Equal(first.OrderBy(k => k.Key.Index), stops.Select(s => KeyValuePair.Create(s.Task, s.Generation)).OrderBy(k => k.Key.Index));
        Assert.Empty(a.RunningTasks);
        Assert.Equal(TaskReportStatus.NotBound, await a.ReportAsync(stops[0].Task, stops[0].Generation, TaskState.Running));
        Assert.Equal(1, fx.Server.Lifecycle.ReturnedCount);
        Assert.Empty(fx.Cell.Audit());
    }

    [Fact]
    public async Task After_a_restart_nodes_get_one_lease_period_of_grace()
    {
        // The cell as recovered after a restart: four nodes, none of whose agents has reconnected yet.
        await using var fx = ServerFixture.Start(o => { o.NodeLease = Lease; o.EvictionsPerSecond = 100; }, fakeTime: true, seed: c => SeedNodes(c, 4));
        var lc = fx.Server.Lifecycle;
        fx.Fake!.Advance(TimeSpan.FromSeconds(9));
        var t1 = lc.Tick();
        Assert.True(t1.InGrace);
        Assert.Equal(0, t1.Evicted);
        // Three agents come back within the grace period.
        var clients = new List<RawClient>();
        for (int i = 0; i < 3; i++)
        {
            var c = await RawClient.ConnectAsync(fx.EndPoint);
            await c.RegisterAsync($"n{i}", new ResourceVector(4000, 16L << 30));
            clients.Add(c);
        }
        fx.Fake.Advance(TimeSpan.FromSeconds(2));
        var t2 = lc.Tick();
        Assert.False(t2.InGrace);
        Assert.Equal(1, t2.Evicted);
        Assert.Equal(NodeStatus.Fenced, StatusOf(fx.Cell, new NodeId(3)));
        for (int i = 0; i < 3; i++) Assert.Equal(NodeStatus.Schedulable, StatusOf(fx.Cell, new NodeId(i)));
        foreach (var c in clients) c.Dispose();
    }

    [Fact]
    public async Task When_most_nodes_go_silent_at_once_nothing_is_evicted()
    {
        await using var fx = ServerFixture.Start(o => { o.NodeLease = Lease; o.EvictionsPerSecond = 100; }, fakeTime: true, seed: c => SeedNodes(c, 10));
        var lc = fx.Server.Lifecycle;
        fx.Fake!.Advance(Lease + TimeSpan.FromSeconds(1));
        var t = lc.Tick();
        Assert.True(t.MassSilence);
        Assert.Equal(10, t.Expired);
        Assert.Equal(0, t.Evicted);
        Assert.Equal(1, lc.MassSilenceCount);
        // Not evicted (no stops, no fencing), only suspect: marked Down so that nothing new is placed there meanwhile.
        for (int i = 0; i < 10; i++) Assert.Equal(NodeStatus.Down, StatusOf(fx.Cell, new NodeId(i)));
        // The network heals for eight of them: they are schedulable again, and the two really silent ones are evicted.
        var clients = new List<RawClient>();
        for (int i = 0; i < 8; i++)
        {
            var c = await RawClient.ConnectAsync(fx.EndPoint);
            await c.RegisterAsync($"n{i}", new ResourceVector(4000, 16L << 30));
            clients.Add(c);
        }
        for (int i = 0; i < 8; i++) Assert.Equal(NodeStatus.Schedulable, StatusOf(fx.Cell, new NodeId(i)));
        var t2 = lc.Tick();
        Assert.False(t2.MassSilence);
        Assert.Equal(2, t2.Evicted);
        Assert.Equal(NodeStatus.Fenced, StatusOf(fx.Cell, new NodeId(8)));
        Assert.Equal(NodeStatus.Fenced, StatusOf(fx.Cell, new NodeId(9)));
        foreach (var c in clients) c.Dispose();
    }

    [Fact]
    public async Task Evictions_are_rate_limited()
    {
        await using var fx = ServerFixture.Start(o => { o.NodeLease = Lease; o.EvictionsPerSecond = 2; }, fakeTime: true, seed: c => SeedNodes(c, 20));
        var lc = fx.Server.Lifecycle;
        void RenewLive() { for (int i = 0; i < 14; i++) lc.Renew(new NodeId(i)); }
        fx.Fake!.Advance(Lease + TimeSpan.FromSeconds(1));
        RenewLive();
        var t1 = lc.Tick();
        Assert.Equal(6, t1.Expired);
        Assert.Equal(2, t1.Evicted);
        Assert.Equal(4, t1.Deferred);
        var t1b = lc.Tick(); // no time passed: no tokens
        Assert.Equal(0, t1b.Evicted);
        fx.Fake.Advance(TimeSpan.FromSeconds(1));
        RenewLive();
        Assert.Equal(2, lc.Tick().Evicted);
        fx.Fake.Advance(TimeSpan.FromSeconds(1));
        RenewLive();
        Assert.Equal(2, lc.Tick().Evicted);
        Assert.Equal(6, lc.EvictedCount);
        for (int i = 14; i < 20; i++) Assert.Equal(NodeStatus.Fenced, StatusOf(fx.Cell, new NodeId(i)));
        for (int i = 0; i < 14; i++) Assert.Equal(NodeStatus.Schedulable, StatusOf(fx.Cell, new NodeId(i)));
    }
}
