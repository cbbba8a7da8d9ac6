using Omega.Agent;
using Omega.Protocol;
using Omega.Scheduling;

namespace Omega.Wire.Tests;

/// <summary>The agent library against a real server and engine over loopback.</summary>
public sealed class AgentIntegrationTests
{
    private static AgentClient NewAgent(ServerFixture fx, string name, long cpu = 8000, Action<AgentClient, AgentBinding>? onBinding = null, bool heartbeats = true, int seed = 7)
        => new(new AgentOptions
        {
            Server = fx.EndPoint,
            NodeName = name,
            Capacity = new ResourceVector(cpu, 64L << 30),
            FailureDomain = "rack-1",
            Labels = new Dictionary<string, string> { ["zone"] = "a" },
            OnBinding = onBinding,
            SendHeartbeats = heartbeats,
            Seed = seed,
            ReconnectBase = TimeSpan.FromMilliseconds(5),
            ReconnectMax = TimeSpan.FromMilliseconds(50),
        });

    private static async Task SubmitOverWireAsync(ServerFixture fx, long jobId, int tasks, long cpu)
    {
        using var s = await RawClient.ConnectAsync(fx.EndPoint);
        await s.HandshakeAsync(PeerRole.Scheduler, "submitter");
        await s.SendAsync(2, new SubmitJob { JobId = jobId, Priority = 1, TaskCount = tasks, PerTask = new ResourceVector(cpu, 1 << 20), Scheduler = "" });
        var r = await s.ExpectAsync<SubmitJobReply>();
        Assert.Equal((int)EnqueueStatus.Accepted, r.Status);
    }

    [Fact]
    public async Task Register_schedule_bind_run_complete()
    {
        await using var fx = ServerFixture.Start(engine: true);
        await using var agent = NewAgent(fx, "worker-1");
        await agent.StartAsync();
        Assert.True(fx.Cell.TryGetNodeId("worker-1", out var nodeId));
        Assert.Equal(nodeId.Value, agent.NodeId);

        await SubmitOverWireAsync(fx, jobId: 500, tasks: 3, cpu: 1000);
        var got = new List<AgentBinding>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        while (got.Count < 3) got.Add(await agent.Bindings.ReadAsync(cts.Token));
        Assert.All(got, b => Assert.Equal(BindingKind.Run, b.Kind));
        Assert.Equal(3, got.Select(b => b.Task).Distinct().Count());
        foreach (var b in got)
        {
            Assert.True(fx.Cell.TryGetAllocation(b.Task, out var a));
            Assert.Equal(a.Generation, b.Generation);
            Assert.Equal(nodeId, a.Node);
            Assert.Equal(TaskReportStatus.Ok, await agent.ReportAsync(b.Task, b.Generation, TaskState.Accepted));
            Assert.Equal(TaskReportStatus.Ok, await agent.ReportAsync(b.Task, b.Generation, TaskState.Running));
        }
        foreach (var b in got) Assert.Equal(TaskReportStatus.Ok, await agent.ReportAsync(b.Task, b.Generation, TaskState.Completed, "exit 0"));
        Assert.Equal(0, fx.Cell.AllocationCount);
        Assert.True(fx.Engine!.TryGetJob(new JobId(500), out var st));
        Assert.Equal(JobPhase.Completed, st.Phase);
        Assert.Equal(3, fx.Server.TaskReports(TaskState.Running));
        Assert.Equal(3, fx.Server.TaskReports(TaskState.Completed));
        // The releases come back as Stop entries for the generations the agent ran.
        var stops = new List<AgentBinding>();
        while (stops.Count < 3) stops.Add(await agent.Bindings.ReadAsync(cts.Token));
        Assert.All(stops, s => Assert.Equal(BindingKind.Stop, s.Kind));
        Assert.Equal(got.Select(b => (b.Task, b.Generation)).OrderBy(x => x.Task.Index), stops.Select(b => (b.Task, b.Generation)).OrderBy(x => x.Task.Index));
        // A report for the superseded generation is refused.
        Assert.Equal(TaskReportStatus.NotBound, await agent.ReportAsync(got[0].Task, got[0].Generation, TaskState.Completed));
        Assert.Equal(0, agent.Duplicates);
    }

    [Fact]
    public async Task Reconnect_mid_stream_resumes_with_nothing_lost_or_duplicated()
    {
        await using var fx = ServerFixture.Start(engine: true);
        var seen = new System.Collections.Concurrent.ConcurrentQueue<AgentBinding>();
        await using var agent = NewAgent(fx, "worker-r", cpu: 1_000_000, onBinding: (_, b) => seen.Enqueue(b));
        await agent.StartAsync();
        const int jobs = 40, tasksPerJob = 5;
        for (int j = 0; j < jobs; j++)
        {
            await SubmitOverWireAsync(fx, 1000 + j, tasksPerJob, 100);
            if (j == jobs / 2)
            {
                // Cut the connection while bindings are flowing; the next jobs commit while the agent is away.
                await Wait.UntilAsync(() => !seen.IsEmpty, "some bindings before the cut");
                agent.DropConnection();
            }
        }
        await Wait.UntilAsync(() => seen.Count >= jobs * tasksPerJob, $"all {jobs * tasksPerJob} bindings (have {seen.Count})");
        Assert.True(agent.Reconnects >= 1);
        Assert.True(agent.Registrations >= 2);
        var list = seen.ToList();
        Assert.Equal(jobs * tasksPerJob, list.Count);
        Assert.Equal(list.Count, list.Select(b => b.Task).Distinct().Count());
        // Version order is preserved across the reconnect.
        for (int i = 1; i < list.Count; i++) Assert.True(list[i].Version >= list[i - 1].Version);
        foreach (var b in list)
        {
            Assert.True(fx.Cell.TryGetAllocation(b.Task, out var a));
            Assert.Equal(a.Generation, b.Generation);
        }
        Assert.Equal(0, agent.Duplicates);
        Assert.Equal(fx.Cell.AllocationCount, list.Count);
    }

    [Fact]
    public async Task Agent_rejects_a_binding_older_than_the_generation_it_holds()
    {
        // Feed frames straight into the agent's handler: a newer generation, then an older one for the same task.
        await using var fx = ServerFixture.Start();
        await using var agent = NewAgent(fx, "fenced");
        await agent.StartAsync();
        var handler = (Omega.Transport.IFrameHandler)agent;
        var task = new TaskId(9, 0);
        void Push(long version, long gen, BindingKind kind)
        {
            var bytes = Codec.FrameBytes(0, new Bindings { NodeId = agent.NodeId, Version = version, Entries = new[] { new BindingEntry(kind, task, gen, new ResourceVector(1, 1), 0, 0) } });
            var seq = new System.Buffers.ReadOnlySequence<byte>(bytes);
            Assert.Equal(FrameReadStatus.Ok, Frame.TryRead(ref seq, 1 << 20, out var f));
            handler.OnFrame(null!, f);
        }
        Push(1_000, 900, BindingKind.Run);
        Push(1_001, 800, BindingKind.Run);   // older generation: rejected
        Push(1_002, 850, BindingKind.Stop);  // stop of an older generation: rejected
        Push(1_001, 1_000, BindingKind.Run); // version already processed: duplicate, ignored
        Assert.Equal(2, agent.RejectedStale);
        Assert.Equal(1, agent.Duplicates);
        Assert.Equal(900, agent.RunningTasks[task]);
        Assert.True(agent.Bindings.TryRead(out var b));
        Assert.Equal(900, b.Generation);
        Assert.False(agent.Bindings.TryRead(out _));
    }

    [Fact]
    public async Task Acks_made_in_the_binding_callback_reach_the_server_batched()
    {
        await using var fx = ServerFixture.Start(engine: true);
        await using var agent = NewAgent(fx, "acker", cpu: 1_000_000, onBinding: (a, b) => a.Report(b.Task, b.Generation, TaskState.Running));
        await agent.StartAsync();
        await SubmitOverWireAsync(fx, 900, 50, 100);
        // >= rather than ==: an overshoot (an ack counted twice) must fail on the equality below with its count, not time out.
        await Wait.UntilAsync(() => fx.Server.TaskReports(TaskState.Running) >= 50,
            () => $"50 running acks (server counted {fx.Server.TaskReports(TaskState.Running)}, cell holds {fx.Cell.AllocationCount} bindings, agent received {agent.RunningTasks.Count}, frames received {fx.Server.TransportMetrics.FramesReceived})", 60_000);
        Assert.Equal(50, fx.Server.TaskReports(TaskState.Running));
        // Fewer ack frames than acks: the agent batches the acks of one binding frame.
        Assert.True(fx.Server.TransportMetrics.FramesReceived < 50 + 10, $"frames received {fx.Server.TransportMetrics.FramesReceived}");
        Assert.Equal(50, fx.Cell.AllocationCount);
    }

    [Fact]
    public async Task Drain_stops_new_bindings_to_the_node()
    {
        await using var fx = ServerFixture.Start(engine: true);
        await using var agent = NewAgent(fx, "draining");
        await agent.StartAsync();
        Assert.Equal(0, await agent.DrainAsync());
        Assert.Equal(NodeStatus.Draining, await agent.HeartbeatAsync());
        Assert.True(fx.Cell.Snapshot().TryGetNode(new NodeId(agent.NodeId), out var v) == Omega.Cells.SnapshotRead.Ok && v.Status == NodeStatus.Draining);
        await SubmitOverWireAsync(fx, 77, 1, 100);
        await Wait.UntilAsync(() => fx.Engine!.TryGetJob(new JobId(77), out var s) && s.Attempts > 0, "the engine tried the job");
        Assert.Equal(0, fx.Cell.AllocationCount);
    }
}
