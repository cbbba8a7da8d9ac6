using System.Net;
using Omega.Cells;
using Omega.Protocol;
using Omega.Server;
using Xunit.Abstractions;

namespace Omega.Wire.Tests;

/// <summary>
/// Issue 15: with a publisher that notifies (the durable store's group commit), the bind path's pass runs on the
/// publisher's thread when the watermark advances, instead of waking the dispatcher loop through the thread pool: one
/// hop fewer between the durable point and the agent's pipe. The durability gate is unchanged.
/// </summary>
public sealed class BindPathHopTests(ITestOutputHelper output)
{
    // A watermark that notifies like the durable store does, and records whether the server read it from inside the
    // notification (the only way a pass can run there: the pass starts by reading the publishable version).
    private sealed class NotifyingWatermark(Cell cell) : IPublishableVersion
    {
        [ThreadStatic] private static bool t_inCallback;
        private Action? _onAdvance;
        public long Held;
        public int ReadsInsideCallback;

        public long PublishableVersion
        {
            get
            {
                if (t_inCallback) Interlocked.Increment(ref ReadsInsideCallback);
                return Math.Min(Volatile.Read(ref Held), cell.Version);
            }
        }

        public long PublishableSequence => cell.JournalSequence;

        public IDisposable? Subscribe(Action onAdvance)
        {
            _onAdvance = onAdvance;
            return new Unsubscribe(this);
        }

        /// <summary>Advances the watermark and notifies on the calling thread, as the group-commit thread does.</summary>
        public void Advance(long to)
        {
            Volatile.Write(ref Held, to);
            t_inCallback = true;
            try { Volatile.Read(ref _onAdvance)?.Invoke(); }
            finally { t_inCallback = false; }
        }

        private sealed class Unsubscribe(NotifyingWatermark w) : IDisposable
        {
            public void Dispose() => Volatile.Write(ref w._onAdvance, null);
        }
    }

    [Fact]
    public async Task A_newly_durable_binding_is_routed_on_the_notifying_thread_before_the_notification_returns()
    {
        using var cell = new Cell();
        var mark = new NotifyingWatermark(cell) { Held = long.MaxValue };
        await using var server = new OmegaServer(cell, null, new IPEndPoint(IPAddress.Loopback, 0), new ServerOptions { Publisher = mark });
        server.Start();
        using var agent = await RawClient.ConnectAsync(server.EndPoint);
        var reg = await agent.RegisterAsync("inline", new ResourceVector(4000, 1 << 30));
        Volatile.Write(ref mark.Held, cell.Version); // everything so far is durable; the next commit is not

        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        var result = cell.Commit(new Transaction(lease).Add(new Claim(new TaskId(1, 0), new NodeId(reg.NodeId), new ResourceVector(100, 100), 0)));
        Assert.True(result.IsCommitted);
        // Not durable: round trips through the server route nothing (the gate).
        for (uint i = 0; i < 5; i++)
        {
            await agent.SendAsync(10 + i, new Heartbeat { NodeId = reg.NodeId, LastVersion = 0 });
            Assert.Equal(MessageType.HeartbeatAck, (await agent.ReadFrameAsync())!.Value.Type);
        }
        Assert.Equal(0, server.BindingsRouted);

        Volatile.Write(ref mark.ReadsInsideCallback, 0);
        mark.Advance(result.CellVersion);
        // Deterministic, no waiting: the pass ran inside Advance (a wake-up of the loop would route it later, elsewhere).
        Assert.True(Volatile.Read(ref mark.ReadsInsideCallback) > 0, "the server did not read the watermark inside the notification");
        Assert.Equal(1, server.BindingsRouted);
        var push = await agent.ExpectAsync<Bindings>();
        Assert.Equal(result.CellVersion, push.Version);
        Assert.Equal(new TaskId(1, 0), Assert.Single(push.Entries.ToArray()).Task);
    }

    [Fact]
    public async Task Inline_passes_racing_the_dispatcher_loop_push_every_binding_once_in_order_and_none_early()
    {
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        using var cell = new Cell();
        var mark = new NotifyingWatermark(cell) { Held = long.MaxValue };
        await using var server = new OmegaServer(cell, null, new IPEndPoint(IPAddress.Loopback, 0), new ServerOptions { Publisher = mark });
        server.Start();
        using var agent = await RawClient.ConnectAsync(server.EndPoint);
        var reg = await agent.RegisterAsync("race", new ResourceVector(1_000_000, 1L << 40));
        Volatile.Write(ref mark.Held, cell.Version);
        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        const int commits = 300;
        long durable = cell.Version;
        // A dedicated thread plays the group commit: it advances the watermark to a random committed version and
        // notifies, while the loop also runs passes (every commit signals it) and the server pumps on request.
        using var stop = new CancellationTokenSource();
        var committer = new Thread(() =>
        {
            var r = new Random(seed + 1);
            while (!stop.IsCancellationRequested)
            {
                long v = cell.Version;
                long to = Math.Max(Volatile.Read(ref durable), v - r.Next(3));
                Volatile.Write(ref durable, to);
                mark.Advance(to);
                Thread.Yield();
            }
        }) { IsBackground = true, Name = "test-group-commit" };
        committer.Start();
        var versions = new long[commits];
        for (int i = 0; i < commits; i++)
        {
            var r = cell.Commit(new Transaction(lease).Add(new Claim(new TaskId(100 + i, 0), new NodeId(reg.NodeId), new ResourceVector(1, 1), 0)));
            Assert.True(r.IsCommitted);
            versions[i] = r.CellVersion;
            if (rng.Next(8) == 0) server.PumpBindings();
        }
        var seen = new HashSet<TaskId>();
        long last = 0;
        while (seen.Count < commits)
        {
            var push = await agent.ExpectAsync<Bindings>();
            Assert.True(push.Version > last, $"seed {seed}: push of version {push.Version} after {last}");
            Assert.True(push.Version <= Volatile.Read(ref mark.Held), $"seed {seed}: version {push.Version} pushed above the watermark {mark.Held}");
            last = push.Version;
            foreach (var e in push.Entries.ToArray()) Assert.True(seen.Add(e.Task), $"seed {seed}: {e.Task} pushed twice");
        }
        await stop.CancelAsync();
        Assert.True(committer.Join(TimeSpan.FromSeconds(60)));
        Assert.Equal(commits, server.BindingsRouted);
        Assert.True(Volatile.Read(ref mark.ReadsInsideCallback) > 0);
    }
    [Fact]
    public async Task A_newly_durable_binding_is_written_to_the_agents_socket_before_the_notification_returns()
    {
        // Issue 15, the second hop: the pass used to hand each connection's batch to its send loop through the thread
        // pool. Now a flush into an idle connection writes the socket on the flushing thread, so by the time the
        // notification returns the socket has accepted the push. Counted over rounds: each round waits until the agent
        // read the previous push, so the connection's send loop is idle when the next pass flushes.
        using var cell = new Cell();
        var mark = new NotifyingWatermark(cell) { Held = long.MaxValue };
        await using var server = new OmegaServer(cell, null, new IPEndPoint(IPAddress.Loopback, 0), new ServerOptions { Publisher = mark });
        server.Start();
        using var agent = await RawClient.ConnectAsync(server.EndPoint);
        var reg = await agent.RegisterAsync("inline-write", new ResourceVector(1_000_000, 1L << 40));
        Volatile.Write(ref mark.Held, cell.Version);
        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        const int Rounds = 20;
        int written = 0;
        long inlineBefore = server.TransportMetrics.WritesInline;
        for (int i = 0; i < Rounds; i++)
        {
            var result = cell.Commit(new Transaction(lease).Add(new Claim(new TaskId(1, i), new NodeId(reg.NodeId), new ResourceVector(1, 1), 0)));
            Assert.True(result.IsCommitted);
            long before = server.TransportMetrics.BytesSent;
            mark.Advance(result.CellVersion);
            // Read on the notifying thread right after the pass: no waiting, no sleep.
            if (server.TransportMetrics.BytesSent > before) written++;
            var push = await agent.ExpectAsync<Bindings>();
            Assert.Equal(new TaskId(1, i), Assert.Single(push.Entries.ToArray()).Task);
        }
        output.WriteLine($"{written}/{Rounds} pushes on the socket when the notification returned; inline writes {server.TransportMetrics.WritesInline - inlineBefore}, pooled {server.TransportMetrics.WritesPooled}");
        // Every round should be written inline; half leaves room for a loaded machine's rare exception and still cannot
        // pass with a pool hop (the flushing thread would have to lose a race to a pool thread's whole socket write).
        Assert.True(written >= Rounds / 2, $"only {written} of {Rounds} pushes had reached the socket when the pass returned: the write hopped to another thread");
        Assert.Equal(Rounds, server.BindingsRouted);
    }
}
