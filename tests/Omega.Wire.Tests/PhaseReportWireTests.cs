using System.Buffers;
using Omega.Cells;
using Omega.Protocol;

namespace Omega.Wire.Tests;

/// <summary>
/// Issue 15: an agent's Running and Ready acknowledgements of its own live binding do not wait for the cell's commit
/// lock. Through the TCP protocol: while a commit holds the lock (a binding listener parks inside it), both reports are
/// answered Ok and the phase is readable; a report about a binding that is not live is still answered (typed) once the
/// lock is free.
/// </summary>
public sealed class PhaseReportWireTests
{
    private static readonly ResourceVector Shape = new(4000, 16L << 30);

    // Holds the commit lock from inside a binding listener (the cell calls listeners under it) until released.
    private sealed class CommitLockBlocker : IBindingListener
    {
        private readonly ManualResetEventSlim _entered = new(), _release = new();
        public volatile bool Armed;

        public void OnBindingChanged(BindingChange change, in Allocation allocation, long version)
        {
            if (!Armed) return;
            Armed = false;
            _entered.Set();
            _release.Wait(TimeSpan.FromSeconds(90));
        }

        public void OnVersionComplete(long version) { }

        public Task HoldAsync(Cell cell, NodeId node)
        {
            Armed = true;
            var lease = cell.AcquireLease("blocker", TimeSpan.FromHours(1)).Lease;
            var commit = Task.Factory.StartNew(() => cell.Commit(new Transaction(lease).Add(new Claim(new TaskId(777, 0), node, new ResourceVector(1, 1), 0))),
                CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            Assert.True(_entered.Wait(TimeSpan.FromSeconds(30)), "the blocker never held the commit lock");
            return commit;
        }

        public void Release() => _release.Set();
    }

    // The next TaskReportAck for rid, past binding pushes. A generous timeout: a liveness check (without the feature the
    // reply waits for the lock, which is held until the test releases it), not a timing.
    private static async Task<TaskReportStatus> ReportAsync(RawClient agent, uint rid, int node, TaskId task, long generation, TaskState state)
    {
        await agent.SendAsync(rid, new TaskReport { NodeId = node, Task = task, Generation = generation, State = state, Reason = "" });
        while (true)
        {
            var f = await agent.ReadFrameAsync(timeoutMs: 30_000);
            Assert.NotNull(f);
            if (f.Value.Type == MessageType.Bindings) continue;
            Assert.Equal(MessageType.TaskReportAck, f.Value.Type);
            Assert.Equal(rid, f.Value.Rid);
            Assert.True(Codec.TryDecode<TaskReportAck>(new ReadOnlySequence<byte>(f.Value.Body), out var ack, out var err), err);
            return (TaskReportStatus)ack.Body.Value;
        }
    }

    [Fact]
    public async Task Running_and_ready_reports_of_a_live_binding_are_answered_while_a_commit_holds_the_lock()
    {
        await using var fx = ServerFixture.Start();
        var blocker = new CommitLockBlocker();
        fx.Cell.AddBindingListener(blocker);
        using var agent = await RawClient.ConnectAsync(fx.EndPoint);
        var reg = await agent.RegisterAsync("phase", Shape);
        var node = new NodeId(reg.NodeId);
        var other = fx.Cell.AddNode(new NodeSpec("other", Shape));
        var lease = fx.Cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        var task = new TaskId(1, 0);
        Assert.True(fx.Cell.Commit(new Transaction(lease).Add(new Claim(task, node, new ResourceVector(100, 100), 0))).IsCommitted);
        Assert.True(fx.Cell.TryGetAllocation(task, out var a));
        var push = await agent.ExpectAsync<Bindings>();
        Assert.Equal(task, Assert.Single(push.Entries.ToArray()).Task);

        var held = blocker.HoldAsync(fx.Cell, other);
        try
        {
            Assert.Equal(TaskReportStatus.Ok, await ReportAsync(agent, 7, reg.NodeId, task, a.Generation, TaskState.Running));
            Assert.Equal(BindingPhase.Started, fx.Cell.GetBindingLifecycle(task, a.Generation).Phase);
            Assert.Equal(TaskReportStatus.Ok, await ReportAsync(agent, 8, reg.NodeId, task, a.Generation, TaskState.Ready));
            Assert.Equal(BindingPhase.Ready, fx.Cell.GetBindingLifecycle(task, a.Generation).Phase);
            Assert.False(held.IsCompleted, "the commit holding the lock ended early: the reports proved nothing");
        }
        finally
        {
            blocker.Release();
        }
        await held;
        // Reports about bindings that are not live are confirmed under the lock, and typed.
        Assert.Equal(TaskReportStatus.GenerationMismatch, await ReportAsync(agent, 9, reg.NodeId, task, a.Generation + 1, TaskState.Running));
        Assert.Equal(TaskReportStatus.NotBound, await ReportAsync(agent, 10, reg.NodeId, new TaskId(2, 0), 1, TaskState.Ready));
        Assert.Equal(2, fx.Server.TaskReports(TaskState.Running) + fx.Server.TaskReports(TaskState.Ready));
    }
}
