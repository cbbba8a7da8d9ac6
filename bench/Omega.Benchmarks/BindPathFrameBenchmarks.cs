using BenchmarkDotNet.Attributes;
using Omega.BindPathFrames;

namespace Omega.Benchmarks;

/// <summary>
/// The bind path per frame, each side and each step on the production code (issue 15, "allocation budgets per frame on
/// the server and agent paths"), with no socket: connections are detached FrameConnections (the simulation seam), so a
/// frame goes through the same pipes, block pool, framing, codec and handlers as on a socket, and the send loop's part is
/// replaced by dropping the output bytes. One operation is one frame. The rigs are shared with
/// tests/Omega.Wire.Tests (BindPathFrameRig.cs), whose BindPathFrameBudgetTests assert the budgets below.
/// <para>Budgets, bytes allocated per frame once warm ("Allocated" column; exact even on a loaded machine):</para>
/// <list type="bullet">
/// <item><see cref="ServerEncode"/>: 0 B, 1 and 16 entries. A node's outbox sends one version as one Bindings frame
/// into the connection's output pipe (NodeState.SendPending with the dispatcher's scratch array), then the flush.</item>
/// <item><see cref="AgentReceive"/>: 0 B, 1 and 16 entries. The agent's handler parses the frame, decodes it into its
/// reused entry array, applies it (generation fencing, the running-task map), runs the binding callback, which acks each
/// Run with a Running report, and encodes the acks as one TaskReports frame; then the flush. Same tasks at a higher
/// generation each frame: an agent whose tasks are all new also grows its per-task maps, which this does not count.</item>
/// <item><see cref="AgentAckEncode"/>: 0 B, 1 and 16 reports. Report × n, then Flush: one TaskReports frame.</item>
/// <item><see cref="ServerAckDecode"/>: 24 + 40 × n B (64 B for 1 report, 664 B for 16). The generic decode
/// (Codec.TryDecode: a new report array per frame), kept as the reference; decode only, not the cell apply.</item>
/// <item><see cref="ServerAckDecodeInto"/>: 0 B. The same frame decoded into a per-connection array
/// (TaskReports.TryDecodeInto), which is how ProtocolHandler.HandleTaskReports decodes acks (session scratch array).</item>
/// </list>
/// <para>Run: <c>dotnet bench/Omega.Benchmarks/bin/Release/net10.0/Omega.Benchmarks.dll --filter '*BindPathFrame*'</c>
/// (bench/README.md).</para>
/// </summary>
[MemoryDiagnoser]
public class BindPathFrameBenchmarks
{
    private ServerEncodeRig _server = null!;
    private AgentReceiveRig _agent = null!;
    private AgentAckRig _ack = null!;
    private ServerAckDecodeRig _decode = null!;

    /// <summary>Binding entries per frame (server encode, agent receive) or reports per ack frame.</summary>
    [Params(1, 16)]
    public int Entries { get; set; }

    /// <summary>Builds one rig of each kind for <see cref="Entries"/>.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _server = new ServerEncodeRig(Entries);
        _agent = new AgentReceiveRig(Entries);
        _ack = new AgentAckRig(Entries);
        _decode = new ServerAckDecodeRig(Entries);
    }

    /// <summary>Closes the rigs' connections.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _server.Dispose();
        _agent.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _ack.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    /// <summary>Server: one Bindings frame from the node's outbox into the connection's output buffer. Returns its bytes.</summary>
    [Benchmark]
    public long ServerEncode() => _server.Frame();

    /// <summary>Agent: one Bindings frame received, decoded, applied and acknowledged. Returns the ack frame's bytes.</summary>
    [Benchmark]
    public long AgentReceive() => _agent.Frame();

    /// <summary>Agent: <see cref="Entries"/> reports queued and sent as one TaskReports frame. Returns its bytes.</summary>
    [Benchmark]
    public long AgentAckEncode() => _ack.Frame();

    /// <summary>Server: one TaskReports frame decoded as the protocol handler does today (a new report array).</summary>
    [Benchmark]
    public long ServerAckDecode() => _decode.Decode();

    /// <summary>Server: one TaskReports frame decoded into a reused per-connection array.</summary>
    [Benchmark]
    public long ServerAckDecodeInto() => _decode.DecodeInto();
}
