using System.Buffers;
using Omega.BindPathFrames;
using Omega.Protocol;

namespace Omega.Wire.Tests;

/// <summary>
/// Issue 15's per-frame allocation budgets on the bind path (BindPathFrameBudget), on the same rigs the
/// BindPathFrameBenchmarks time: after a warm-up, the bytes this thread allocates over many frames, divided by the
/// frames, must not exceed the budget. A zero budget is checked as "below one byte per frame on average": that still
/// fails for any allocation made per frame (the smallest object is 24 bytes), and tolerates the one-off 8 KiB pipe block
/// the shared block pool may have to allocate when tests running beside this one hold its free blocks.
/// </summary>
public sealed class BindPathFrameBudgetTests
{
    private const int Warm = 2_000;
    private const int Frames = 20_000;

    private static long Measure(Func<long> frame, out long wireBytes)
    {
        for (int i = 0; i < Warm; i++) frame();
        long bytes = 0;
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Frames; i++) bytes += frame();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        wireBytes = bytes;
        return allocated;
    }

    private static void AssertBudget(long budget, long allocated, string what)
    {
        long limit = budget == 0 ? Frames - 1 : budget * Frames;
        Assert.True(allocated <= limit, $"{what}: {allocated} bytes over {Frames} frames ({(double)allocated / Frames:F1} B/frame), budget {budget} B/frame");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(16)]
    public void Server_encode_of_a_binding_frame_stays_within_its_budget(int entries)
    {
        using var rig = new ServerEncodeRig(entries);
        // The rig sends what it should: one Bindings frame with every entry, at the outbox's version.
        rig.FrameKeepingOutput();
        var frames = new List<byte[]>();
        Assert.Equal(1, rig.Connection.DrainDetached(frames));
        Assert.Equal(MessageType.Bindings, (MessageType)frames[0][Frame.PrefixLength]);
        var body = new ReadOnlySequence<byte>(frames[0], Frame.PrefixLength + Frame.HeaderLength, frames[0].Length - Frame.PrefixLength - Frame.HeaderLength);
        Assert.True(Codec.TryDecode<Bindings>(body, out var b, out _));
        Assert.Equal(1, b.Version);
        Assert.Equal(entries, b.Entries.Length);

        long allocated = Measure(rig.Frame, out long wire);
        Assert.True(wire >= (long)Frames * entries * 20, $"only {wire} bytes sent");
        AssertBudget(BindPathFrameBudget.ServerEncode, allocated, $"server encode, {entries} entries");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(16)]
    public async Task Agent_receive_of_a_binding_frame_up_to_its_ack_stays_within_its_budget(int entries)
    {
        await using var rig = new AgentReceiveRig(entries);
        // The agent applies the frame and acknowledges every entry in one TaskReports frame.
        long v = rig.NextVersion;
        rig.FrameKeepingReply();
        Assert.Equal(v, rig.Agent.LastVersion);
        Assert.Equal(entries, rig.Agent.RunningTasks.Count);
        var frames = new List<byte[]>();
        Assert.Equal(1, rig.Connection.DrainDetached(frames));
        Assert.Equal(MessageType.TaskReports, (MessageType)frames[0][Frame.PrefixLength]);
        var body = new ReadOnlySequence<byte>(frames[0], Frame.PrefixLength + Frame.HeaderLength, frames[0].Length - Frame.PrefixLength - Frame.HeaderLength);
        Assert.True(Codec.TryDecode<TaskReports>(body, out var reports, out _));
        Assert.Equal(entries, reports.Reports.Length);
        Assert.All(reports.Reports.ToArray(), r => Assert.Equal((v, TaskState.Running), (r.Generation, r.State)));

        long allocated = Measure(rig.Frame, out long wire);
        Assert.Equal(v + Warm + Frames, rig.Agent.LastVersion);
        Assert.Equal(0, rig.Agent.RejectedStale);
        Assert.Equal(0, rig.Agent.Duplicates);
        Assert.True(wire >= (long)Frames * entries * 10, $"only {wire} bytes of acks");
        AssertBudget(BindPathFrameBudget.AgentReceive, allocated, $"agent receive, {entries} entries");
    }

    [Fact]
    public async Task Agent_receiving_new_tasks_grows_one_map_per_held_task_beside_the_generation_map()
    {
        // The fleet's case: every binding is a task the agent has not seen, held (never completed). The agent must keep
        // each (binding, generation, phase), so its maps grow; the budget bounds that growth per task, which the phase
        // map that stood beside the running map exceeded (a third table growing per binding).
        await using var rig = new AgentReceiveRig(16, newTasks: true);
        const int frames = 8_192;
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < frames; i++) rig.Frame();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(frames * 16, rig.Agent.RunningTasks.Count);
        Assert.Equal(0, rig.Agent.RejectedStale);
        double perTask = (double)allocated / (frames * 16);
        Console.WriteLine($"agent, new tasks: {allocated} bytes for {frames * 16} tasks = {perTask:F1} B/task");
        Assert.True(perTask <= BindPathFrameBudget.AgentNewTask, $"{perTask:F1} B per new task, budget {BindPathFrameBudget.AgentNewTask}");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(16)]
    public async Task Agent_encode_of_a_TaskReports_frame_stays_within_its_budget(int reports)
    {
        await using var rig = new AgentAckRig(reports);
        long allocated = Measure(rig.Frame, out long wire);
        Assert.True(wire >= (long)Frames * reports * 10, $"only {wire} bytes of acks");
        AssertBudget(BindPathFrameBudget.AgentAckEncode, allocated, $"agent ack encode, {reports} reports");
    }

    [Fact]
    public void TaskReports_decoded_into_a_reused_array_read_every_report_and_bad_bytes_are_refused()
    {
        static ReadOnlySequence<byte> Body(int n)
        {
            var list = new ReportEntry[n];
            for (int i = 0; i < n; i++) list[i] = new ReportEntry(new TaskId(9, i), 5 + i, TaskState.Failed, i == 1 ? "oom" : "");
            var frame = Codec.FrameBytes(0, new TaskReports { NodeId = 4, Reports = list });
            return new ReadOnlySequence<byte>(frame, Frame.PrefixLength + Frame.HeaderLength, frame.Length - Frame.PrefixLength - Frame.HeaderLength);
        }
        var scratch = new ReportEntry[8];
        Assert.True(TaskReports.TryDecodeInto(Body(3), scratch, out var m, out _));
        Assert.Equal(4, m.NodeId);
        Assert.Equal(3, m.Reports.Length);
        Assert.Equal(new ReportEntry(new TaskId(9, 1), 6, TaskState.Failed, "oom"), m.Reports.Span[1]);
        Assert.Same(scratch, System.Runtime.InteropServices.MemoryMarshal.TryGetArray(m.Reports, out var seg) ? seg.Array : null);
        // More reports than the array holds: decoded whole into an array of their own.
        Assert.True(TaskReports.TryDecodeInto(Body(20), scratch, out var big, out _));
        Assert.Equal(20, big.Reports.Length);
        Assert.Equal(24, big.Reports.Span[19].Generation);
        // Hostile bytes: a typed refusal, as Codec.TryDecode gives.
        Assert.False(TaskReports.TryDecodeInto(new ReadOnlySequence<byte>(new byte[] { 0x82, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff }), scratch, out _, out _));
        Assert.False(TaskReports.TryDecodeInto(new ReadOnlySequence<byte>(new byte[] { 0x81 }), scratch, out _, out _));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(16)]
    public void Server_decode_of_a_TaskReports_frame_stays_within_its_budget(int reports)
    {
        var rig = new ServerAckDecodeRig(reports);
        long expected = 0;
        for (int i = 0; i < reports; i++) expected += 40 + i + (int)TaskState.Running;
        Assert.Equal(expected, rig.Decode());
        Assert.Equal(expected, rig.DecodeInto());

        long allocated = Measure(rig.DecodeInto, out long sum);
        Assert.Equal(expected * Frames, sum);
        AssertBudget(BindPathFrameBudget.ServerAckDecodeInto, allocated, $"server ack decode into, {reports} reports");

        // Today's decode (a new array per frame) costs exactly its stated budget: the figure the benchmark's baseline shows.
        allocated = Measure(rig.Decode, out _);
        Assert.Equal(BindPathFrameBudget.ServerAckDecode(reports) * Frames, allocated);
    }
}
