using System.Net;
using Omega.Agent;

namespace Omega.Wire.Tests;

/// <summary>Jitter of heartbeats and reconnect back-off (seeded), and heartbeats driven by an injected clock.</summary>
public sealed class AgentTimingTests
{
    private static AgentClient Agent(IPEndPoint ep, int seed, TimeProvider? time = null, bool heartbeats = false) => new(new AgentOptions
    {
        Server = ep,
        NodeName = $"timing-{seed}",
        Capacity = new ResourceVector(1000, 1 << 20),
        Seed = seed,
        ReconnectBase = TimeSpan.FromMilliseconds(100),
        ReconnectMax = TimeSpan.FromSeconds(5),
        HeartbeatJitter = 0.2,
        SendHeartbeats = heartbeats,
        Time = time ?? TimeProvider.System,
    });

    [Fact]
    public async Task Reconnect_backoff_doubles_to_the_cap_with_full_jitter()
    {
        await using var a = Agent(new IPEndPoint(IPAddress.Loopback, 1), seed: 11);
        for (int attempt = 0; attempt < 12; attempt++)
        {
            double cap = Math.Min(5000, 100 * Math.Pow(2, attempt));
            var samples = Enumerable.Range(0, 200).Select(_ => a.NextReconnectDelay(attempt).TotalMilliseconds).ToArray();
            Assert.All(samples, d => Assert.InRange(d, cap / 2, cap));
            // Jittered, not constant: the spread covers most of [cap/2, cap].
            Assert.True(samples.Max() - samples.Min() > cap * 0.4, $"attempt {attempt}: spread {samples.Max() - samples.Min()}");
        }
    }

    [Fact]
    public async Task Heartbeats_are_jittered_around_the_server_interval_and_keep_the_lease()
    {
        await using var fx = ServerFixture.Start(o => o.NodeLease = TimeSpan.FromSeconds(3), fakeTime: true);
        await using var a = Agent(fx.EndPoint, seed: 5, time: fx.Fake, heartbeats: true);
        await a.StartAsync();
        var samples = Enumerable.Range(0, 500).Select(_ => a.NextHeartbeatDelay().TotalMilliseconds).ToArray();
        Assert.All(samples, d => Assert.InRange(d, 800, 1200));
        Assert.True(samples.Max() - samples.Min() > 300);
        // Drive the agent's heartbeat timer with the fake clock in 100 ms steps (yielding so its continuations run):
        // over 6 s of fake time, an interval of at most 1.2 s lets at least 4 heartbeats out.
        long before = fx.Server.TransportMetrics.FramesReceived;
        for (int step = 0; step < 60; step++)
        {
            fx.Fake!.Advance(TimeSpan.FromMilliseconds(100));
            await Task.Delay(2);
        }
        await Wait.UntilAsync(() => fx.Server.TransportMetrics.FramesReceived - before >= 4, "at least 4 heartbeats in 6 s of agent time");
        Assert.InRange(fx.Server.TransportMetrics.FramesReceived - before, 4, 8);
        // 6 s of fake time with a 3 s lease: still alive because the heartbeats renewed it.
        Assert.Equal(0, fx.Server.Lifecycle.Tick().Evicted);
        Assert.False(fx.Server.Lifecycle.IsDead(new NodeId(a.NodeId)));
    }
}
