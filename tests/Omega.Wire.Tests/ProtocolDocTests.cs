using System.Text;
using System.Text.RegularExpressions;
using Omega.Protocol;

namespace Omega.Wire.Tests;

/// <summary>
/// The byte-level examples in docs/protocol.md are produced by the real encoder: this test re-encodes each one and
/// compares. Run with OMEGA_UPDATE_PROTOCOL_DOC=1 to rewrite the blocks after a deliberate wire change.
/// </summary>
public sealed partial class ProtocolDocTests
{
    internal static readonly (string Name, byte[] Bytes)[] Examples =
    [
        ("hello", Codec.FrameBytes(1, new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Agent, Name = "node-17" })),
        ("welcome", Codec.FrameBytes(1, new Welcome { Version = Frame.ProtocolVersion, Server = "omega", MaxFrameLength = 1 << 20, MaxInFlight = 256, IdleTimeoutMs = 60_000, CellVersion = 42 })),
        ("register", Codec.FrameBytes(2, new Register { Node = "node-17", Capacity = new ResourceVector(4000, 8L << 30), Labels = new() { ["zone"] = "a" }, FailureDomain = "rack-3", ResumeFrom = 0 })),
        ("registered", Codec.FrameBytes(2, new Registered { NodeId = 17, LeaseMs = 10_000, HeartbeatMs = 3_333, ResumeFrom = 0, CellVersion = 42 })),
        ("heartbeat", Codec.FrameBytes(3, new Heartbeat { NodeId = 17, LastVersion = 57 })),
        ("heartbeat-ack", Codec.FrameBytes(3, new HeartbeatAck { LeaseMs = 10_000, Status = NodeStatus.Schedulable })),
        ("bindings", Codec.FrameBytes(0, new Bindings { NodeId = 17, Version = 58, Entries = new[] { new BindingEntry(BindingKind.Run, new TaskId(500, 0), 58, new ResourceVector(1000, 256L << 20), 0, 1) } })),
        ("task-report", Codec.FrameBytes(4, new TaskReport { NodeId = 17, Task = new TaskId(500, 0), Generation = 58, State = TaskState.Running, Reason = "" })),
        ("task-report-ack", Codec.FrameBytes(4, new TaskReportAck { Body = new StatusOnly { Value = 0 } })),
        ("task-reports", Codec.FrameBytes(0, new TaskReports { NodeId = 17, Reports = new[] { new ReportEntry(new TaskId(500, 0), 58, TaskState.Running, ""), new ReportEntry(new TaskId(500, 1), 58, TaskState.Failed, "exit 1") } })),
        ("task-reports-ack", Codec.FrameBytes(8, new TaskReportsAck { Statuses = new[] { TaskReportStatus.Ok, TaskReportStatus.Ok } })),
        ("drain", Codec.FrameBytes(5, new Drain { Body = new StatusOnly { Value = 17 } })),
        ("drain-ack", Codec.FrameBytes(5, new DrainAck { Body = new StatusOnly { Value = 0 } })),
        ("acquire-lease", Codec.FrameBytes(1, new AcquireLease { Name = "batch-2", DurationMs = 15_000 })),
        ("lease-reply", Codec.FrameBytes(1, new LeaseReply { Status = 0, SchedulerId = 3, Token = 9, ExpiresUnixMs = 1_796_083_200_000 })),
        ("renew-lease", Codec.FrameBytes(2, new RenewLease { SchedulerId = 3, Name = "batch-2", Token = 9, DurationMs = 15_000 })),
        ("sync", Codec.FrameBytes(3, new Sync { Since = 40, StartNode = 0, MaxNodes = 0 })),
        ("sync-reply", Codec.FrameBytes(3, new SyncReply { Version = 58, Full = false, NextNode = -1, Nodes = [new NodeRecord(17, "node-17", NodeStatus.Schedulable, 5, new ResourceVector(4000, 8L << 30), new ResourceVector(1000, 256L << 20), 1, "rack-3", 58)] })),
        ("commit", Codec.FrameBytes(4, new Commit { SchedulerId = 3, Token = 9, Mode = 0, Detection = 0, KeyHigh = 0, KeyLow = 7, Claims = [new WireClaim(new TaskId(501, 0), 17, new ResourceVector(500, 128L << 20), 5, 0, 1, null)] })),
        ("commit-reply", Codec.FrameBytes(4, new CommitReply { Status = TransactionStatus.Committed, Version = 59, Applied = 1, Replayed = false, ClaimStatuses = new[] { ClaimStatus.Applied } })),
        ("submit-job", Codec.FrameBytes(5, new SubmitJob { JobId = 502, Tenant = "batch-team", Priority = 1, TaskCount = 3, PerTask = new ResourceVector(250, 64L << 20), Gang = false, Scheduler = "" })),
        ("submit-job-reply", Codec.FrameBytes(5, new SubmitJobReply { Status = 0, Reason = "" })),
        ("query-job", Codec.FrameBytes(6, new QueryJob { JobId = 502 })),
        ("job-status-reply", Codec.FrameBytes(6, new JobStatusReply { Found = true, Phase = 2, Pending = 0, Bound = 3, Completed = 0, Attempts = 1, Generation = 0, Reason = "" })),
        ("explain", Codec.FrameBytes(7, new Explain { Task = new TaskId(42, 0) })),
        ("inspect", Codec.FrameBytes(8, new Inspect { Target = InspectTarget.Nodes, Limit = 100 })),
        ("operate-drain", Codec.FrameBytes(9, new Operate { Kind = OperateKind.DrainNode, Target = "node-17" })),
        ("operate-confirm-lost", Codec.FrameBytes(10, new Operate { Kind = OperateKind.ConfirmDomainLost, Target = "rack-3", Reason = "PDU failed", Author = "alice" })),
        ("operate-create-tenant", Codec.FrameBytes(10, new Operate { Kind = OperateKind.CreateTenant, Target = "batch-team", Quota = new ResourceVector(64_000, 256L << 30) })),
        ("operate-create-tenant-reply", Codec.FrameBytes(10, new OperateReply { Status = OperateStatus.Ok, Message = "", TenantId = 3 })),
        ("set-quota", Codec.FrameBytes(5, new SetQuota { Tenant = "a", Limit = QuotaField.Set(new ResourceVector(4000, 8L << 30)), Guaranteed = QuotaField.Clear })),
        ("error", Codec.FrameBytes(7, new ErrorMessage { Code = ErrorCode.HandshakeRequired, Message = "the first frame must be Hello" })),
        ("hello-token", Codec.FrameBytes(1, new Hello { Version = Frame.ProtocolVersion, Role = PeerRole.Agent, Name = "node-17", Token = "omega1.3fa85f6457174562.qL0Y3pTz8mB2cR7vN4kJ9wX1sA6dF5gH0jK2lZ8xC3v" })),
        ("join", Codec.FrameBytes(2, new Join { Node = "node-17" })),
        ("join-reply", Codec.FrameBytes(2, new JoinReply { Token = "omega1.9c1e5a7b3d2f4e60.Zx8Cv7Bn6Mm5Ll4Kk3Jj2Hh1Gg0Ff9Ee8Dd7Cc6Bb5A", CredentialId = "9c1e5a7b3d2f4e60", ExpiresUnixMs = 0 })),
        ("create-token-join", Codec.FrameBytes(3, new CreateToken { Role = CredentialRole.Join, Subject = "rack-3", TtlMs = 900_000, Uses = 1000 })),
        ("error-permission-denied", Codec.FrameBytes(4, new ErrorMessage { Code = ErrorCode.PermissionDenied, Message = "node 17 only", Reason = DenyReason.OtherNode })),
        ("create-object", Codec.FrameBytes(11, new CreateObject { Body = new ObjectWrite { Object = Encoding.UTF8.GetBytes(WorkloadJson) } })),
        ("get-object", Codec.FrameBytes(12, new GetObject { Kind = "Workload", Tenant = "default", Name = "web" })),
        ("delete-object", Codec.FrameBytes(13, new DeleteObject { Kind = "Workload", Tenant = "default", Name = "web", ResourceVersion = 58 })),
        ("list-objects", Codec.FrameBytes(14, new ListObjects { Kind = "Workload", Tenant = "default", LabelSelector = new() { ["app"] = "web" }, Limit = 100, Continue = "" })),
        ("watch-objects", Codec.FrameBytes(15, new WatchObjects { FromResourceVersion = 58, Kind = "", Tenant = "" })),
        ("watch-event", Codec.FrameBytes(15, new WatchEventMessage { EventType = WireWatchEventType.Deleted, ResourceVersion = 61, Object = Encoding.UTF8.GetBytes(DeletedJson) })),
        ("stop-watch", Codec.FrameBytes(16, new StopWatch { Watch = 15 })),
        ("watch-stopped", Codec.FrameBytes(16, new WatchStopped { Watch = 15, LastResourceVersion = 61, Stopped = true })),
        ("error-conflict", Codec.FrameBytes(12, new ErrorMessage { Code = ErrorCode.ObjectConflict, Message = "stale" })),
        ("submit-job-anti-affinity", Codec.FrameBytes(5, new SubmitJob { JobId = 503, Tenant = "", Priority = 0, TaskCount = 3, PerTask = new ResourceVector(250, 64L << 20), Gang = false, RequiredLabels = new() { ["zone"] = "a" }, Scheduler = "", AntiAffinity = 1 })),
        ("policy-apply", Codec.FrameBytes(11, new PolicyRequest { Operation = 5, Policy = "", Document = "{\"weights\":{\"bin-packing\":2}}", Revision = 0 })),
        ("policy-undo", Codec.FrameBytes(12, new PolicyRequest { Operation = 3, Policy = "", Document = "", Revision = 0 })),
        ("policy-reply", Codec.FrameBytes(12, new PolicyReply { Status = 0, Revision = 1, Message = "ok", Lines = [] })),
        ("error-not-leader", Codec.FrameBytes(1, new ErrorMessage { Code = ErrorCode.NotLeader, Message = "not the leader", Leader = "10.0.0.2:7077", Epoch = 1234 })),
        ("explain-workload", Codec.FrameBytes(13, new ExplainWorkload { Tenant = "default", Workload = "web", Generation = 3 })),
        ("stop-job", Codec.FrameBytes(17, new StopJob { JobId = 502, Reason = "load test over" })),
        ("stop-job-reply", Codec.FrameBytes(17, new StopJobReply { Outcome = 0, Dequeued = 1, Released = 2, Message = "" })),
        ("watch-job", Codec.FrameBytes(18, new WatchJob { JobId = 502 })),
        ("snapshot-request", Codec.FrameBytes(20, new SnapshotRequest { Replica = "c", AppliedSequence = 0 })),
        ("snapshot-begin", Codec.FrameBytes(20, new SnapshotBegin { Snapshot = 1, Sequence = 61, CellVersion = 58, TotalBytes = 4_211, Sha256 = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray(), ChunkBytes = 524_288, Format = 1, Epoch = 1234 })),
        ("snapshot-read", Codec.FrameBytes(21, new SnapshotReadRequest { Snapshot = 1, Offset = 0 })),
        ("snapshot-chunk", Codec.FrameBytes(21, new SnapshotChunk { Snapshot = 1, Offset = 0, Data = "OMEGASN1"u8.ToArray() })),
        ("job-event", Codec.FrameBytes(18, new JobEventMessage { Status = new JobStatusReply { Found = true, Phase = 2, Pending = 0, Bound = 3, Completed = 0, Attempts = 1, Generation = 0, Reason = "" }, Final = true })),
    ];

    private const string WorkloadJson = "{\"apiVersion\":\"omega/v1\",\"kind\":\"Workload\",\"metadata\":{\"name\":\"web\",\"tenant\":\"default\"},\"spec\":{\"replicas\":2,\"resources\":{\"cpuMillis\":500,\"memoryBytes\":268435456}}}";

    // Abridged to its metadata for the example; the server sends the whole canonical document.
    private const string DeletedJson = "{\"apiVersion\":\"omega/v1\",\"kind\":\"Workload\",\"metadata\":{\"name\":\"web\",\"tenant\":\"default\",\"resourceVersion\":61}}";

    internal static string Hex(byte[] bytes)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < bytes.Length; i++)
        {
            if (i > 0) sb.Append(i % 16 == 0 ? '\n' : ' ');
            sb.Append(bytes[i].ToString("x2"));
        }
        return sb.ToString();
    }

    internal static string DocPath()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Omega.sln"))) dir = dir.Parent;
        Assert.NotNull(dir);
        return Path.Combine(dir.FullName, "docs", "protocol.md");
    }

    [GeneratedRegex(@"<!-- example: (?<name>[a-z\-]+) -->\n```\n(?<hex>[0-9a-f \n]*?)\n```", RegexOptions.CultureInvariant)]
    private static partial Regex Block();

    [Fact]
    public void Byte_examples_in_protocol_doc_match_the_encoder()
    {
        var path = DocPath();
        var text = File.ReadAllText(path).Replace("\r\n", "\n");
        var expected = Examples.ToDictionary(e => e.Name, e => Hex(e.Bytes));
        if (Environment.GetEnvironmentVariable("OMEGA_UPDATE_PROTOCOL_DOC") == "1")
        {
            text = Block().Replace(text, m => $"<!-- example: {m.Groups["name"].Value} -->\n```\n{expected[m.Groups["name"].Value]}\n```");
            File.WriteAllText(path, text);
        }
        var found = new HashSet<string>();
        foreach (Match m in Block().Matches(text))
        {
            var name = m.Groups["name"].Value;
            Assert.True(expected.ContainsKey(name), $"docs/protocol.md has an example '{name}' the test does not know");
            Assert.Equal(expected[name], m.Groups["hex"].Value);
            found.Add(name);
        }
        Assert.Equal(expected.Keys.Order(), found.Order());
    }

    [Fact]
    public void Every_example_decodes_back_to_its_frame()
    {
        foreach (var (name, bytes) in Examples)
        {
            var seq = new System.Buffers.ReadOnlySequence<byte>(bytes);
            Assert.Equal(FrameReadStatus.Ok, Frame.TryRead(ref seq, 1 << 20, out var f));
            Assert.True(seq.IsEmpty, name);
            var r = new MessagePack.MessagePackReader(f.Body);
            Codec.Skip(ref r);
            Assert.True(r.End, name);
        }
        // Round trip of the richest message.
        var commit = Examples.First(e => e.Name == "commit").Bytes;
        var s2 = new System.Buffers.ReadOnlySequence<byte>(commit);
        Frame.TryRead(ref s2, 1 << 20, out var cf);
        Assert.True(Codec.TryDecode<Commit>(cf.Body, out var c, out var err), err);
        var claim = Assert.Single(c.Claims);
        Assert.Equal(new TaskId(501, 0), claim.Task);
        Assert.Equal(new ResourceVector(500, 128L << 20), claim.Resources);
        Assert.Equal(7ul, c.KeyLow);
    }
}
