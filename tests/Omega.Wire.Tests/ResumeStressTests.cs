using System.Collections.Concurrent;
using Omega.Agent;
using Omega.Protocol;
using Xunit.Abstractions;

namespace Omega.Wire.Tests;

/// <summary>Seeded stress: many agents, connections cut at random while the engine binds; every stream stays exact.</summary>
public sealed class ResumeStressTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Random_disconnects_never_lose_or_duplicate_a_binding()
    {
        int seed = Environment.GetEnvironmentVariable("OMEGA_STRESS_SEED") is { } s ? int.Parse(s) : Random.Shared.Next();
        output.WriteLine($"stress seed {seed} (rerun with OMEGA_STRESS_SEED={seed})");
        var rng = new Random(seed);
        await using var fx = ServerFixture.Start(engine: true);
        const int agents = 8, jobs = 80, tasks = 4;
        var seen = new ConcurrentDictionary<int, ConcurrentQueue<AgentBinding>>();
        var clients = new List<AgentClient>();
        for (int i = 0; i < agents; i++)
        {
            var q = new ConcurrentQueue<AgentBinding>();
            var a = new AgentClient(new AgentOptions
            {
                Server = fx.EndPoint,
                NodeName = $"stress-{i}",
                Capacity = new ResourceVector(1_000_000, 1L << 40),
                OnBinding = (_, b) => q.Enqueue(b),
                Seed = seed + i,
                ReconnectBase = TimeSpan.FromMilliseconds(2),
                ReconnectMax = TimeSpan.FromMilliseconds(20),
            });
            await a.StartAsync();
            seen[a.NodeId] = q;
            clients.Add(a);
        }
        using var submitter = await RawClient.ConnectAsync(fx.EndPoint);
        await submitter.HandshakeAsync(PeerRole.Scheduler, "stress");
        int drops = 0;
        for (int j = 0; j < jobs; j++)
        {
            await submitter.SendAsync((uint)(10 + j), new SubmitJob { JobId = 10_000 + j, TaskCount = tasks, PerTask = new ResourceVector(10, 10), Priority = 1, Scheduler = "" });
            Assert.Equal(0, (await submitter.ExpectAsync<SubmitJobReply>()).Status);
            // Invariant after every step: no agent has seen a version twice or out of order.
            foreach (var a in clients) Assert.Equal(0, a.Duplicates);
            if (rng.Next(3) == 0) { clients[rng.Next(agents)].DropConnection(); drops++; }
            if (rng.Next(4) == 0) await Task.Delay(rng.Next(3));
        }
        await Wait.UntilAsync(() => fx.Cell.AllocationCount == jobs * tasks, "every task bound");
        await Wait.UntilAsync(() => seen.Values.Sum(q => q.Count) >= jobs * tasks && clients.All(c => c.IsConnected), "every binding delivered");
        output.WriteLine($"{drops} drops, reconnects {clients.Sum(c => c.Reconnects)}");
        foreach (var a in clients)
        {
            var got = seen[a.NodeId].ToList();
            Assert.Equal(0, a.Duplicates);
            Assert.Equal(got.Count, got.Select(b => b.Task).Distinct().Count());
            for (int i = 1; i < got.Count; i++) Assert.True(got[i].Version >= got[i - 1].Version);
            var expected = fx.Cell.GetAllocationsOnNode(new NodeId(a.NodeId)).Select(x => (x.Task, x.Generation)).OrderBy(x => x.Task.Job.Value).ThenBy(x => x.Task.Index);
            Assert.Equal(expected, got.Select(b => (b.Task, b.Generation)).OrderBy(x => x.Task.Job.Value).ThenBy(x => x.Task.Index));
        }
        foreach (var a in clients) await a.DisposeAsync();
        Assert.Empty(fx.Cell.Audit());
    }
}
