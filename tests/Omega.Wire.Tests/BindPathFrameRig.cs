using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using Omega.Agent;
using Omega.Protocol;
using Omega.Server;
using Omega.Transport;

// Shared by the per-frame allocation budget tests (tests/Omega.Wire.Tests, BindPathFrameBudgetTests) and the
// BenchmarkDotNet class (bench/Omega.Benchmarks, BindPathFrameBenchmarks), which links this file: the test asserts the
// budget on exactly the work the benchmark times.
namespace Omega.BindPathFrames;

/// <summary>
/// Issue 15's allocation budgets, in bytes per frame once warm, one per step of the bind path. Each is asserted by
/// BindPathFrameBudgetTests over many frames and reported by BindPathFrameBenchmarks ("Allocated" column).
/// </summary>
internal static class BindPathFrameBudget
{
    /// <summary>Server: one Bindings frame (1 or 16 entries) from a node's outbox into its connection's output buffer.</summary>
    public const long ServerEncode = 0;

    /// <summary>Agent: a Bindings frame read off the connection, decoded, applied, the callback's acks queued and encoded as one TaskReports frame.</summary>
    public const long AgentReceive = 0;

    /// <summary>
    /// Agent, per binding of a task it has not seen and keeps holding (the fleet's case), measured over 131,072 such
    /// tasks from an empty agent: the amortised growth of its per-task maps (the running map, ~230 bytes, and the
    /// generation map, ~83), which hold what it must remember. 470 bytes when a third map held the lifecycle phase and
    /// the running map held whole AgentBinding values (128-byte entries).
    /// </summary>
    public const long AgentNewTask = 330;

    /// <summary>Agent: reports queued with Report and sent as one TaskReports frame by Flush.</summary>
    public const long AgentAckEncode = 0;

    /// <summary>Server: a TaskReports frame decoded into a per-connection array (TaskReports.TryDecodeInto).</summary>
    public const long ServerAckDecodeInto = 0;

    /// <summary>
    /// Server: a TaskReports frame decoded as ProtocolHandler decodes it today (Codec.TryDecode: a new report array per
    /// frame). Not zero: the array header (24 bytes) and 40 bytes per report (ReportEntry).
    /// </summary>
    public static long ServerAckDecode(int reports) => 24 + 40L * reports;
}

/// <summary>A frame handler that ignores everything (the server side of the encode rig has no peer).</summary>
internal sealed class SilentHandler : IFrameHandler
{
    public void OnConnected(FrameConnection connection) => connection.HandshakeCompleted = true;

    public void OnFrame(FrameConnection connection, in Frame frame) { }

    public void OnDisconnected(FrameConnection connection, DisconnectReason reason) { }
}

/// <summary>
/// The server's encode step: a node's outbox (NodeState, the dispatcher's per-node state) holding one version of
/// <c>entries</c> bindings sends it as one Bindings frame into a detached connection's output pipe (the same pipe and
/// block pool a socket connection uses), the dispatcher's flush follows, and the bytes are dropped as a send loop would
/// take them. The outbox is trimmed as the agent's acknowledgement would, so it stays small.
/// </summary>
internal sealed class ServerEncodeRig : IDisposable
{
    private readonly FrameConnection _connection;
    private readonly NodeState _node = new(new NodeId(3));
    // The dispatcher's scratch array (Dispatcher._scratch has the same size).
    private readonly BindingEntry[] _scratch = new BindingEntry[256];
    private readonly BindingEntry[] _entries;
    private long _version;

    public ServerEncodeRig(int entries)
    {
        _connection = FrameConnection.CreateDetached(1, new SilentHandler(), new TransportOptions(), new TransportMetrics("bindpath-frames-server"));
        _node.Connection = _connection;
        _entries = new BindingEntry[entries];
        for (int i = 0; i < entries; i++) _entries[i] = new BindingEntry(BindingKind.Run, new TaskId(7, i), 1, new ResourceVector(100, 1 << 20), 1, 2);
    }

    public FrameConnection Connection => _connection;

    /// <summary>One frame: append, send, flush, drop the output. Returns the bytes the frame took on the wire.</summary>
    public long Frame() => Send(true);

    /// <summary>One frame, left in the output (for a test to read).</summary>
    public void FrameKeepingOutput() => Send(false);

    private long Send(bool discard)
    {
        long v = ++_version;
        lock (_node.Sync)
        {
            foreach (ref readonly var e in _entries.AsSpan()) _node.Append(e, v);
            _node.SendPending(_scratch);
            _node.Trim(v);
        }
        _connection.Flush();
        return discard ? _connection.DiscardDetached() : 0;
    }

    public void Dispose() => _connection.FinishDetached(DisconnectReason.LocalClose);
}

/// <summary>
/// The agent's receive step: a Bindings frame of <c>entries</c> Run entries (as the server encodes it) is delivered to a
/// detached connection whose handler is a real <see cref="AgentClient"/>, which parses the frame, decodes it, applies it
/// (generation fencing, the running-task map), calls the binding callback (which acknowledges each Run with a Running
/// report, as the bind-path bench's fleet does) and sends the acks as one TaskReports frame; the processing loop's
/// flush follows. Every frame carries the next version and a higher generation of the same tasks, so each is accepted
/// and the agent's maps keep their size (a fleet whose tasks are new each time also grows those maps: not counted here).
/// </summary>
internal sealed class AgentReceiveRig : IAsyncDisposable
{
    private const long Base = 1L << 40;
    private readonly AgentClient _agent;
    private readonly FrameConnection _connection;
    private readonly byte[] _frame;
    private readonly int _versionAt;
    private readonly int[] _generationAt;
    private readonly int[] _jobAt;
    private readonly bool _newTasks;
    private long _next = Base;

    /// <summary>
    /// <paramref name="newTasks"/>: every frame binds tasks the agent has never seen (a new job id), as in the bind-path
    /// bench's fleet, instead of a higher generation of the same tasks; the agent's per-task maps then grow with the frames.
    /// </summary>
    public AgentReceiveRig(int entries, bool newTasks = false)
    {
        _newTasks = newTasks;
        _agent = new AgentClient(new AgentOptions
        {
            // Never dialled: the rig attaches a detached connection instead of starting the agent.
            Server = new IPEndPoint(IPAddress.Loopback, 1),
            NodeName = "frames",
            Capacity = new ResourceVector(1_000_000, 1L << 40),
            FenceOnLeaseLoss = false,
            OnBinding = static (a, b) =>
            {
                if (b.Kind == BindingKind.Run) a.Report(b.Task, b.Generation, TaskState.Running);
            },
        });
        _connection = FrameConnection.CreateDetached(2, _agent, new TransportOptions(), new TransportMetrics("bindpath-frames-agent"));
        _agent.AttachDetached(_connection, 3);
        // Encoded once by the production codec with marker values in the version and generation fields (each above
        // 2^32, so each takes the fixed 8-byte form); every frame then writes the next values over the markers.
        const long versionMark = 0x0A0B0C0D0E0F1011;
        const long generationMark = 0x1A1B1C1D1E1F0000;
        const long jobMark = 0x2A2B2C2D2E2F0000;
        var list = new BindingEntry[entries];
        for (int i = 0; i < entries; i++) list[i] = new BindingEntry(BindingKind.Run, new TaskId(jobMark + i, i), generationMark + i, new ResourceVector(100, 1 << 20), 1, 2);
        _frame = Codec.FrameBytes(0, new Bindings { NodeId = 3, Version = versionMark, Entries = list });
        _versionAt = Find(_frame, versionMark);
        _generationAt = new int[entries];
        for (int i = 0; i < entries; i++) _generationAt[i] = Find(_frame, generationMark + i);
        _jobAt = new int[entries];
        for (int i = 0; i < entries; i++) _jobAt[i] = Find(_frame, jobMark + i);
    }

    public AgentClient Agent => _agent;

    public FrameConnection Connection => _connection;

    /// <summary>The version the next frame carries.</summary>
    public long NextVersion => _next + 1;

    private static int Find(byte[] frame, long mark)
    {
        Span<byte> pattern = stackalloc byte[8];
        BinaryPrimitives.WriteInt64BigEndian(pattern, mark);
        int at = frame.AsSpan().IndexOf(pattern);
        if (at < 0 || frame.AsSpan(at + 1).IndexOf(pattern) >= 0) throw new InvalidOperationException($"marker {mark:X} not found exactly once");
        return at;
    }

    /// <summary>Delivers the next frame; returns the bytes the agent sent back (its TaskReports frame).</summary>
    public long Frame() => Deliver(true);

    /// <summary>Delivers the next frame and leaves the agent's reply in the output (for a test to read).</summary>
    public void FrameKeepingReply() => Deliver(false);

    private long Deliver(bool discard)
    {
        long v = ++_next;
        BinaryPrimitives.WriteInt64BigEndian(_frame.AsSpan(_versionAt), v);
        foreach (int at in _generationAt) BinaryPrimitives.WriteInt64BigEndian(_frame.AsSpan(at), v);
        if (_newTasks)
            foreach (int at in _jobAt) BinaryPrimitives.WriteInt64BigEndian(_frame.AsSpan(at), v);
        _connection.DeliverDetached(_frame);
        return discard ? _connection.DiscardDetached() : 0;
    }

    public async ValueTask DisposeAsync()
    {
        _connection.FinishDetached(DisconnectReason.LocalClose);
        await _agent.DisposeAsync();
    }
}

/// <summary>
/// The agent's ack encode alone: <c>reports</c> reports queued with <see cref="AgentClient.Report"/> and sent by
/// <see cref="AgentClient.Flush"/> as one TaskReports frame into the connection's output.
/// </summary>
internal sealed class AgentAckRig : IAsyncDisposable
{
    private readonly AgentClient _agent;
    private readonly FrameConnection _connection;
    private readonly int _reports;
    private long _generation;

    public AgentAckRig(int reports)
    {
        _reports = reports;
        _agent = new AgentClient(new AgentOptions { Server = new IPEndPoint(IPAddress.Loopback, 1), NodeName = "frames-ack", FenceOnLeaseLoss = false });
        _connection = FrameConnection.CreateDetached(3, _agent, new TransportOptions(), new TransportMetrics("bindpath-frames-ack"));
        _agent.AttachDetached(_connection, 3);
    }

    public long Frame()
    {
        long g = ++_generation;
        for (int i = 0; i < _reports; i++) _agent.Report(new TaskId(7, i), g, TaskState.Completed);
        _agent.Flush();
        return _connection.DiscardDetached();
    }

    public async ValueTask DisposeAsync()
    {
        _connection.FinishDetached(DisconnectReason.LocalClose);
        await _agent.DisposeAsync();
    }
}

/// <summary>The server's ack decode alone: one TaskReports body of <c>reports</c> Running reports, as an agent sends it.</summary>
internal sealed class ServerAckDecodeRig
{
    private readonly ReadOnlySequence<byte> _body;
    // One per connection, as ProtocolHandler keeps in its session (Session.ReportScratch); the reports are used before the next frame is read.
    private readonly ReportEntry[] _scratch = new ReportEntry[256];

    public ServerAckDecodeRig(int reports)
    {
        var list = new ReportEntry[reports];
        for (int i = 0; i < reports; i++) list[i] = new ReportEntry(new TaskId(7, i), 40 + i, TaskState.Running, "");
        var frame = Codec.FrameBytes(0, new TaskReports { NodeId = 3, Reports = list });
        _body = new ReadOnlySequence<byte>(frame, Protocol.Frame.PrefixLength + Protocol.Frame.HeaderLength, frame.Length - Protocol.Frame.PrefixLength - Protocol.Frame.HeaderLength);
    }

    /// <summary>As ProtocolHandler.HandleTaskReports decodes today (Codec.TryDecode). Returns a checksum of the reports.</summary>
    public long Decode()
    {
        if (!Codec.TryDecode<TaskReports>(_body, out var m, out _)) return -1;
        return Sum(m.Reports.Span);
    }

    /// <summary>Into the per-connection array. Returns a checksum of the reports.</summary>
    public long DecodeInto()
    {
        if (!TaskReports.TryDecodeInto(_body, _scratch, out var m, out _)) return -1;
        return Sum(m.Reports.Span);
    }

    private static long Sum(ReadOnlySpan<ReportEntry> reports)
    {
        long s = 0;
        foreach (ref readonly var r in reports) s += r.Generation + (int)r.State;
        return s;
    }
}
