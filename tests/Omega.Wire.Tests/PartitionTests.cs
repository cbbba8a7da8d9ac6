using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Omega.Agent;
using Omega.Cells;
using Omega.Protocol;
using Xunit.Abstractions;

namespace Omega.Wire.Tests;

/// <summary>
/// Partitions, not only losses (issue 13, item 6; seed 003): an agent cut off from the server by a loopback proxy that
/// drops traffic (connections stay open, nothing arrives) fences itself when it cannot renew its lease, so while the
/// server evicts it and re-places its replicas elsewhere there are never more serving replicas than desired (+ surge,
/// 0 for a plain job); after the partition heals the agent reconciles with the server and does not resume the replaced
/// replicas.
/// </summary>
public sealed class PartitionTests(ITestOutputHelper output)
{
    private static readonly ResourceVector Shape = new(4000, 16L << 30);

    /// <summary>A TCP proxy on loopback that can drop every byte in both directions (a partition) and heal.</summary>
    private sealed class DroppingProxy : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly IPEndPoint _target;
        private readonly ConcurrentBag<Socket> _sockets = new();
        private readonly CancellationTokenSource _stop = new();
        private volatile bool _dropping;

        public DroppingProxy(IPEndPoint target)
        {
            _target = target;
            _listener.Start();
            _ = AcceptLoopAsync();
        }

        public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndpoint;

        /// <summary>From now on every byte is read and thrown away; no connection is closed (no RST, no FIN).</summary>
        public void Partition() => _dropping = true;

        /// <summary>Traffic flows again; the connections that lost bytes are closed (their framing is broken), as their TCP timeouts would.</summary>
        public void Heal()
        {
            _dropping = false;
            while (_sockets.TryTake(out var s)) s.Dispose();
        }

        private async Task AcceptLoopAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket client;
                try { client = await _listener.AcceptSocketAsync(_stop.Token); }
                catch (Exception) { return; }
                var upstream = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                try { await upstream.ConnectAsync(_target, _stop.Token); }
                catch (Exception) { client.Dispose(); upstream.Dispose(); continue; }
                _sockets.Add(client);
                _sockets.Add(upstream);
                _ = PumpAsync(client, upstream);
                _ = PumpAsync(upstream, client);
            }
        }

        private async Task PumpAsync(Socket from, Socket to)
        {
            var buffer = new byte[64 * 1024];
            try
            {
                while (true)
                {
                    int n = await from.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                    if (n == 0) break;
                    if (_dropping) continue;
                    await to.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, _stop.Token);
                }
            }
            catch (Exception) { }
            from.Dispose();
            to.Dispose();
        }

        public ValueTask DisposeAsync()
        {
            _stop.Cancel();
            _listener.Stop();
            while (_sockets.TryTake(out var s)) s.Dispose();
            _stop.Dispose();
            return ValueTask.CompletedTask;
        }
    }

    private sealed class ServingAgent
    {
        public readonly ConcurrentDictionary<TaskId, long> Serving = new();
        public AgentClient Client = null!;

        public void OnBinding(AgentClient _, AgentBinding b)
        {
            if (b.Kind == BindingKind.Run) Serving[b.Task] = b.Generation;
            else Serving.TryRemove(b.Task, out long _);
        }
    }

    [Fact]
    public async Task A_partitioned_agent_fences_itself_so_replaced_replicas_never_serve_twice_and_it_reconciles_after_healing()
    {
        await using var fx = ServerFixture.Start(o => { o.NodeLease = TimeSpan.FromMilliseconds(1500); }, engine: true);
        await using var proxy = new DroppingProxy(fx.EndPoint);
        ServingAgent Make(string name, EndPoint via)
        {
            var a = new ServingAgent();
            a.Client = new AgentClient(new AgentOptions
            {
                // FenceOnLeaseLoss is left at its default: the partition guarantee must hold with the shipped defaults.
                Server = via, NodeName = name, Capacity = Shape, FailureDomain = name, OnBinding = a.OnBinding,
                ReconnectBase = TimeSpan.FromMilliseconds(50), ReconnectMax = TimeSpan.FromMilliseconds(200),
            });
            return a;
        }
        // The agent behind the proxy registers alone, so the job's two replicas land on it.
        var cut = Make("cut-0", proxy.EndPoint);
        await cut.Client.StartAsync();
        Assert.True(fx.Engine!.Submit(new JobSpec(new JobId(7), default, 100, 2, new ResourceVector(1000, 1L << 30))).Accepted);
        await Until(() => cut.Serving.Count == 2, "both replicas serve on the agent behind the proxy");
        var others = new List<ServingAgent>();
        for (int i = 0; i < 4; i++)
        {
            var a = Make($"ok-{i}", fx.EndPoint);
            await a.Client.StartAsync();
            others.Add(a);
        }

        // Partition. Sample serving replicas until the job serves again elsewhere; read the healthy agents first (their
        // count only grows by re-placement, which happens after the cut agent fenced), so a sample never over-counts.
        proxy.Partition();
        const int desired = 2, maxSurge = 0;
        int most = 0, samples = 0;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            int elsewhere = 0;
            foreach (var a in others) elsewhere += a.Serving.Count;
            int total = elsewhere + cut.Serving.Count;
            most = Math.Max(most, total);
            samples++;
            Assert.True(total <= desired + maxSurge, $"{total} serving replicas > desired {desired} + surge {maxSurge} (cut agent: {cut.Serving.Count}, fenced {cut.Client.IsFenced})");
            if (elsewhere == desired) break;
            await Task.Delay(5);
        }
        output.WriteLine($"{samples} samples, at most {most} serving; cut agent fenced {cut.Client.Fences} time(s)");
        Assert.True(cut.Client.IsFenced);
        Assert.Empty(cut.Serving);
        Assert.Equal(desired, others.Sum(a => a.Serving.Count));

        // Heal: the agent reconnects, reconciles (both replicas were replaced: the server says NotBound) and serves nothing.
        proxy.Heal();
        await Until(() => !cut.Client.IsFenced && cut.Client.IsConnected, "the healed agent re-registers and reconciles");
        Assert.Empty(cut.Serving);
        Assert.Equal(desired, others.Sum(a => a.Serving.Count));
        Assert.Empty(fx.Cell.Audit());
        foreach (var a in others) await a.Client.DisposeAsync();
        await cut.Client.DisposeAsync();
    }

    [Fact]
    public async Task A_fenced_agent_whose_tasks_are_still_bound_serves_them_again_after_the_partition_heals()
    {
        // The agent serving the job goes silent while the mass-silence brake is engaged, so the server keeps its binding;
        // after the heal the agent, fenced meanwhile, serves it again. The brake needs more than one tracked node
        // (a lone node's silence is that node's failure, and it is evicted), so a second, healthy node is connected
        // directly and the fraction is lowered so that one silent node of two engages it. (This test used to rely on
        // "the only node of the cell" engaging the brake; it does not, and the binding survived only while the test
        // looked before the server's own lease judged the node: on a loaded machine the eviction came first, twice in
        // two full-suite runs: "Assert.Single() Failure: The collection was empty".)
        await using var fx = ServerFixture.Start(o => { o.NodeLease = TimeSpan.FromMilliseconds(1500); o.MassSilenceFraction = 0.4; }, engine: true);
        await using var proxy = new DroppingProxy(fx.EndPoint);
        var a = new ServingAgent();
        a.Client = new AgentClient(new AgentOptions
        {
            Server = proxy.EndPoint, NodeName = "solo", Capacity = Shape, FailureDomain = "solo", FenceOnLeaseLoss = true, OnBinding = a.OnBinding,
            ReconnectBase = TimeSpan.FromMilliseconds(50), ReconnectMax = TimeSpan.FromMilliseconds(200),
        });
        await a.Client.StartAsync();
        Assert.True(fx.Engine!.Submit(new JobSpec(new JobId(8), default, 100, 1, new ResourceVector(1000, 1L << 30))).Accepted);
        await Until(() => a.Serving.Count == 1, "the replica serves");
        // The healthy node registers after the placement, so the replica is on the agent behind the proxy.
        var healthy = new ServingAgent();
        healthy.Client = new AgentClient(new AgentOptions { Server = fx.EndPoint, NodeName = "healthy", Capacity = Shape, FailureDomain = "healthy", OnBinding = healthy.OnBinding });
        await healthy.Client.StartAsync();
        await Until(() => healthy.Client.IsConnected, "the healthy agent registers");
        // One processed heartbeat from each node before the cut: a registration not yet heartbeated is pending, which
        // the brake does not count (and which is removed outright when it times out), so without these the brake could
        // see one tracked node, or the silent one could be dropped as a registration that never heartbeated.
        Assert.Equal(NodeStatus.Schedulable, await a.Client.HeartbeatAsync());
        Assert.Equal(NodeStatus.Schedulable, await healthy.Client.HeartbeatAsync());
        proxy.Partition();
        // IsFenced turns true inside the agent's state lock and the Stop callbacks run just after it is released, so
        // the stop is awaited too (reading Serving right after IsFenced failed 3 times in 10 under load: still serving).
        await Until(() => a.Client.IsFenced && a.Serving.IsEmpty, "the agent fences itself once its lease lapses and stops serving");
        // Wait for the server's own verdict on the silent node (not just the agent's), then check the brake kept the binding.
        await Until(() => fx.Server.Lifecycle.HeldBack >= 1, "the server judges the silent node and the mass-silence brake holds it back");
        Assert.Single(fx.Cell.GetAllocations());
        Assert.Equal(0, fx.Server.Lifecycle.EvictedCount);
        Assert.Empty(healthy.Serving);
        proxy.Heal();
        await Until(() => !a.Client.IsFenced && a.Serving.Count == 1, "still bound: served again after the reconcile");
        Assert.Equal(1, a.Client.Fences);
        Assert.Empty(healthy.Serving);
        await healthy.Client.DisposeAsync();
        await a.Client.DisposeAsync();
    }

    private static async Task Until(Func<bool> done, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!done())
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"timed out: {what}");
            await Task.Delay(10);
        }
    }
}
