using MessagePack;

namespace Omega.Protocol;

// Message bodies. Each is one MessagePack map; the integer keys are the field numbers of docs/protocol.md.
// Unknown keys are skipped (forward compatibility); missing keys keep their defaults.

internal struct Hello : IWireMessage<Hello>
{
    public int Version;
    public PeerRole Role;
    public string Name;
    public string? Token;

    /// <summary>Longest token accepted in a Hello (a well-formed one has 67 characters).</summary>
    public const int MaxTokenBytes = 256;

    public static MessageType Type => MessageType.Hello;

    public readonly void Write(ref MessagePackWriter w)
    {
        bool token = !string.IsNullOrEmpty(Token);
        w.WriteMapHeader(token ? 4 : 3);
        w.Write(0); w.Write(Version);
        w.Write(1); w.Write((byte)Role);
        w.Write(2); w.Write(Name ?? "");
        if (token) { w.Write(3); w.Write(Token); }
    }

    public static Hello Read(ref MessagePackReader r)
    {
        var m = new Hello { Name = "", Version = -1 };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Version = r.ReadInt32(); break;
                case 1: m.Role = (PeerRole)r.ReadByte(); break;
                case 2: m.Name = Codec.ReadString(ref r); break;
                case 3: m.Token = Codec.ReadString(ref r, MaxTokenBytes); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct Welcome : IWireMessage<Welcome>
{
    public int Version;
    public string Server;
    public int MaxFrameLength;
    public int MaxInFlight;
    public int IdleTimeoutMs;
    public long CellVersion;
    public string? Principal;
    public long CredentialExpiresUnixMs;
    public bool AuthRequired;

    public static MessageType Type => MessageType.Welcome;

    public readonly void Write(ref MessagePackWriter w)
    {
        // Keys 6-8 (version 2, authentication) are written only when there is something to say, so a Welcome of a
        // server without authentication keeps its version-1 bytes.
        bool auth = Principal is not null;
        w.WriteMapHeader(auth ? 9 : 6);
        w.Write(0); w.Write(Version);
        w.Write(1); w.Write(Server ?? "");
        w.Write(2); w.Write(MaxFrameLength);
        w.Write(3); w.Write(MaxInFlight);
        w.Write(4); w.Write(IdleTimeoutMs);
        w.Write(5); w.Write(CellVersion);
        if (auth)
        {
            w.Write(6); w.Write(Principal);
            w.Write(7); w.Write(CredentialExpiresUnixMs);
            w.Write(8); w.Write(AuthRequired);
        }
    }

    public static Welcome Read(ref MessagePackReader r)
    {
        var m = new Welcome { Server = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Version = r.ReadInt32(); break;
                case 1: m.Server = Codec.ReadString(ref r); break;
                case 2: m.MaxFrameLength = r.ReadInt32(); break;
                case 3: m.MaxInFlight = r.ReadInt32(); break;
                case 4: m.IdleTimeoutMs = r.ReadInt32(); break;
                case 5: m.CellVersion = r.ReadInt64(); break;
                case 6: m.Principal = Codec.ReadString(ref r, 1024); break;
                case 7: m.CredentialExpiresUnixMs = r.ReadInt64(); break;
                case 8: m.AuthRequired = r.ReadBoolean(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct ErrorMessage : IWireMessage<ErrorMessage>
{
    public ErrorCode Code;
    public string Message;
    public DenyReason Reason;
    // Version 4, only with NotLeader: the leader's advertised client address and its fencing epoch (keys 3 and 4).
    public string? Leader;
    public long Epoch;

    public static MessageType Type => MessageType.Error;

    public readonly void Write(ref MessagePackWriter w)
    {
        bool reason = Reason != DenyReason.None;
        bool leader = !string.IsNullOrEmpty(Leader);
        w.WriteMapHeader(2 + (reason ? 1 : 0) + (leader ? 2 : 0));
        w.Write(0); w.Write((ushort)Code);
        w.Write(1); w.Write(Message ?? "");
        if (reason) { w.Write(2); w.Write((byte)Reason); }
        if (leader) { w.Write(3); w.Write(Leader); w.Write(4); w.Write(Epoch); }
    }

    public static ErrorMessage Read(ref MessagePackReader r)
    {
        var m = new ErrorMessage { Message = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Code = (ErrorCode)r.ReadUInt16(); break;
                case 1: m.Message = Codec.ReadString(ref r, 4096); break;
                case 2: m.Reason = (DenyReason)r.ReadByte(); break;
                case 3: m.Leader = Codec.ReadString(ref r, 1024); break;
                case 4: m.Epoch = r.ReadInt64(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct Register : IWireMessage<Register>
{
    public string Node;
    public ResourceVector Capacity;
    public Dictionary<string, string>? Labels;
    public string FailureDomain;
    public long ResumeFrom;
    public string? Region;
    public string? Zone;
    // Version 4, optional: the tasks the agent runs with their generations (reconciled at registration; Registered key 5).
    public HeldTask[]? Held;

    public static MessageType Type => MessageType.Register;

    public readonly void Write(ref MessagePackWriter w)
    {
        // Keys 5/6 (version 3) are omitted when empty, so a node without topology encodes as before; key 7 likewise.
        bool topo = !string.IsNullOrEmpty(Region) || !string.IsNullOrEmpty(Zone);
        bool held = Held is { Length: > 0 };
        w.WriteMapHeader((topo ? 7 : 5) + (held ? 1 : 0));
        w.Write(0); w.Write(Node ?? "");
        w.Write(1); Codec.WriteResources(ref w, Capacity);
        w.Write(2); Codec.WriteLabels(ref w, Labels);
        w.Write(3); w.Write(FailureDomain ?? "");
        w.Write(4); w.Write(ResumeFrom);
        if (topo)
        {
            w.Write(5); w.Write(Region ?? "");
            w.Write(6); w.Write(Zone ?? "");
        }
        if (held) { w.Write(7); HeldTask.WriteAll(ref w, Held!); }
    }

    public static Register Read(ref MessagePackReader r)
    {
        var m = new Register { Node = "", FailureDomain = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Node = Codec.ReadString(ref r); break;
                case 1: m.Capacity = Codec.ReadResources(ref r); break;
                case 2: m.Labels = Codec.ReadLabels(ref r); break;
                case 3: m.FailureDomain = Codec.ReadString(ref r); break;
                case 4: m.ResumeFrom = r.ReadInt64(); break;
                case 5: m.Region = Codec.ReadString(ref r); break;
                case 6: m.Zone = Codec.ReadString(ref r); break;
                case 7: m.Held = HeldTask.ReadAll(ref r); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct Registered : IWireMessage<Registered>
{
    public int NodeId;
    public int LeaseMs;
    public int HeartbeatMs;
    public long ResumeFrom;
    public long CellVersion;
    // Version 4: held tasks (Register key 7) this node has no live binding for at the held generation: stop them.
    public HeldTask[]? Stop;

    public static MessageType Type => MessageType.Registered;

    public readonly void Write(ref MessagePackWriter w)
    {
        bool stop = Stop is { Length: > 0 };
        w.WriteMapHeader(stop ? 6 : 5);
        w.Write(0); w.Write(NodeId);
        w.Write(1); w.Write(LeaseMs);
        w.Write(2); w.Write(HeartbeatMs);
        w.Write(3); w.Write(ResumeFrom);
        w.Write(4); w.Write(CellVersion);
        if (stop) { w.Write(5); HeldTask.WriteAll(ref w, Stop!); }
    }

    public static Registered Read(ref MessagePackReader r)
    {
        var m = default(Registered);
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.NodeId = r.ReadInt32(); break;
                case 1: m.LeaseMs = r.ReadInt32(); break;
                case 2: m.HeartbeatMs = r.ReadInt32(); break;
                case 3: m.ResumeFrom = r.ReadInt64(); break;
                case 4: m.CellVersion = r.ReadInt64(); break;
                case 5: m.Stop = HeldTask.ReadAll(ref r); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>A task an agent runs and the generation of the binding it runs (Register key 7, Registered key 5; version 4).</summary>
internal readonly record struct HeldTask(TaskId Task, long Generation)
{
    /// <summary>At most this many entries in one list (the claims bound of a commit).</summary>
    public const int MaxEntries = 100_000;

    public static void WriteAll(ref MessagePackWriter w, HeldTask[] all)
    {
        w.WriteArrayHeader(all.Length);
        foreach (var h in all)
        {
            w.WriteArrayHeader(2);
            Codec.WriteTask(ref w, h.Task);
            w.Write(h.Generation);
        }
    }

    public static HeldTask[] ReadAll(ref MessagePackReader r)
    {
        int n = Codec.ReadArray(ref r, MaxEntries);
        var all = new HeldTask[n];
        for (int i = 0; i < n; i++)
        {
            if (Codec.ReadArray(ref r, 2) != 2) throw new ProtocolViolationException("a held task is [task, generation]");
            var task = Codec.ReadTask(ref r);
            long generation = r.ReadInt64();
            Codec.EndContainer(ref r);
            all[i] = new HeldTask(task, generation);
        }
        Codec.EndContainer(ref r);
        return all;
    }
}

internal struct Heartbeat : IWireMessage<Heartbeat>
{
    public int NodeId;
    public long LastVersion;

    public static MessageType Type => MessageType.Heartbeat;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(2);
        w.Write(0); w.Write(NodeId);
        w.Write(1); w.Write(LastVersion);
    }

    public static Heartbeat Read(ref MessagePackReader r)
    {
        var m = new Heartbeat { NodeId = -1 };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.NodeId = r.ReadInt32(); break;
                case 1: m.LastVersion = r.ReadInt64(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct HeartbeatAck : IWireMessage<HeartbeatAck>
{
    public int LeaseMs;
    public NodeStatus Status;

    public static MessageType Type => MessageType.HeartbeatAck;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(2);
        w.Write(0); w.Write(LeaseMs);
        w.Write(1); w.Write((byte)Status);
    }

    public static HeartbeatAck Read(ref MessagePackReader r)
    {
        var m = default(HeartbeatAck);
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.LeaseMs = r.ReadInt32(); break;
                case 1: m.Status = (NodeStatus)r.ReadByte(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>One entry of a Bindings push.</summary>
internal readonly record struct BindingEntry(BindingKind Kind, TaskId Task, long Generation, ResourceVector Resources, int Tenant, int Priority);

internal struct Bindings : IWireMessage<Bindings>
{
    public const int MaxEntries = 100_000;

    public int NodeId;
    public long Version;
    public ReadOnlyMemory<BindingEntry> Entries;

    public static MessageType Type => MessageType.Bindings;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(3);
        w.Write(0); w.Write(NodeId);
        w.Write(1); w.Write(Version);
        w.Write(2);
        var span = Entries.Span;
        w.WriteArrayHeader(span.Length);
        foreach (ref readonly var e in span)
        {
            w.WriteMapHeader(6);
            w.Write(0); w.Write((byte)e.Kind);
            w.Write(1); Codec.WriteTask(ref w, e.Task);
            w.Write(2); w.Write(e.Generation);
            w.Write(3); Codec.WriteResources(ref w, e.Resources);
            w.Write(4); w.Write(e.Tenant);
            w.Write(5); w.Write(e.Priority);
        }
    }

    public static Bindings Read(ref MessagePackReader r) => Read(ref r, null);

    /// <summary>
    /// Decodes a Bindings body into <paramref name="scratch"/> when its entries fit (the result's
    /// <see cref="Entries"/> then aliases it: valid until the caller reuses the array), otherwise into a new array. The
    /// agent library decodes every push this way, so a frame costs no entry array (it was ~200 bytes per binding).
    /// </summary>
    public static bool TryDecodeInto(in System.Buffers.ReadOnlySequence<byte> body, BindingEntry[]? scratch, out Bindings message)
    {
        try
        {
            var r = new MessagePackReader(body);
            message = Read(ref r, scratch);
            if (!r.End) throw new ProtocolViolationException("trailing bytes after the body");
            return true;
        }
        // The same decode failures Codec.TryDecode turns into a typed refusal.
        catch (Exception ex) when (ex is MessagePackSerializationException or EndOfStreamException or ArgumentOutOfRangeException
                                       or OverflowException or InvalidOperationException or ProtocolViolationException or FormatException
                                       or ArgumentException or InsufficientExecutionStackException)
        {
            message = default;
            return false;
        }
    }

    private static Bindings Read(ref MessagePackReader r, BindingEntry[]? scratch)
    {
        var m = default(Bindings);
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.NodeId = r.ReadInt32(); break;
                case 1: m.Version = r.ReadInt64(); break;
                case 2:
                {
                    int c = Codec.ReadArray(ref r, MaxEntries);
                    var list = scratch is not null && c <= scratch.Length ? scratch : new BindingEntry[c];
                    for (int j = 0; j < c; j++)
                    {
                        BindingKind kind = default; TaskId task = default; long gen = 0; ResourceVector res = default; int tenant = 0, prio = 0;
                        int f = Codec.ReadMap(ref r);
                        for (int k = 0; k < f; k++)
                        {
                            switch (Codec.ReadKey(ref r))
                            {
                                case 0: kind = (BindingKind)r.ReadByte(); break;
                                case 1: task = Codec.ReadTask(ref r); break;
                                case 2: gen = r.ReadInt64(); break;
                                case 3: res = Codec.ReadResources(ref r); break;
                                case 4: tenant = r.ReadInt32(); break;
                                case 5: prio = r.ReadInt32(); break;
                                default: Codec.Skip(ref r); break;
                            }
                        }
                        Codec.EndContainer(ref r);
                        list[j] = new BindingEntry(kind, task, gen, res, tenant, prio);
                    }
                    Codec.EndContainer(ref r);
                    m.Entries = list.AsMemory(0, c);
                    break;
                }
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct TaskReport : IWireMessage<TaskReport>
{
    public int NodeId;
    public TaskId Task;
    public long Generation;
    public TaskState State;
    public string Reason;

    public static MessageType Type => MessageType.TaskReport;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(5);
        w.Write(0); w.Write(NodeId);
        w.Write(1); Codec.WriteTask(ref w, Task);
        w.Write(2); w.Write(Generation);
        w.Write(3); w.Write((byte)State);
        w.Write(4); w.Write(Reason ?? "");
    }

    public static TaskReport Read(ref MessagePackReader r)
    {
        var m = new TaskReport { NodeId = -1, Reason = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.NodeId = r.ReadInt32(); break;
                case 1: m.Task = Codec.ReadTask(ref r); break;
                case 2: m.Generation = r.ReadInt64(); break;
                case 3: m.State = (TaskState)r.ReadByte(); break;
                case 4: m.Reason = Codec.ReadString(ref r, 1024); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>One report inside a TaskReports frame.</summary>
internal readonly record struct ReportEntry(TaskId Task, long Generation, TaskState State, string Reason);

internal struct TaskReports : IWireMessage<TaskReports>
{
    public const int MaxReports = 65_536;

    public int NodeId;
    public ReadOnlyMemory<ReportEntry> Reports;

    public static MessageType Type => MessageType.TaskReports;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(2);
        w.Write(0); w.Write(NodeId);
        w.Write(1);
        var span = Reports.Span;
        w.WriteArrayHeader(span.Length);
        foreach (ref readonly var e in span)
        {
            bool reason = !string.IsNullOrEmpty(e.Reason);
            w.WriteMapHeader(reason ? 4 : 3);
            w.Write(0); Codec.WriteTask(ref w, e.Task);
            w.Write(1); w.Write(e.Generation);
            w.Write(2); w.Write((byte)e.State);
            if (reason) { w.Write(3); w.Write(e.Reason); }
        }
    }

    public static TaskReports Read(ref MessagePackReader r) => Read(ref r, null);

    /// <summary>
    /// Decodes a TaskReports body into <paramref name="scratch"/> when its reports fit (the result's
    /// <see cref="Reports"/> then aliases it: valid until the caller reuses the array), otherwise into a new array, as
    /// <see cref="Bindings.TryDecodeInto"/> does for pushes. A server processing loop that keeps one such array per
    /// connection decodes an ack frame without allocating (the report array is 24 bytes plus 40 per report otherwise); the
    /// caller must be done with every report before the next frame, and must not keep a reason string it does not need.
    /// </summary>
    public static bool TryDecodeInto(in System.Buffers.ReadOnlySequence<byte> body, ReportEntry[]? scratch, out TaskReports message)
    {
        try
        {
            var r = new MessagePackReader(body);
            message = Read(ref r, scratch);
            if (!r.End) throw new ProtocolViolationException("trailing bytes after the body");
            return true;
        }
        // The same decode failures Codec.TryDecode turns into a typed refusal.
        catch (Exception ex) when (ex is MessagePackSerializationException or EndOfStreamException or ArgumentOutOfRangeException
                                       or OverflowException or InvalidOperationException or ProtocolViolationException or FormatException
                                       or ArgumentException or InsufficientExecutionStackException)
        {
            message = default;
            return false;
        }
    }

    private static TaskReports Read(ref MessagePackReader r, ReportEntry[]? scratch)
    {
        var m = new TaskReports { NodeId = -1 };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.NodeId = r.ReadInt32(); break;
                case 1:
                {
                    int c = Codec.ReadArray(ref r, MaxReports);
                    var list = scratch is not null && c <= scratch.Length ? scratch : new ReportEntry[c];
                    for (int j = 0; j < c; j++)
                    {
                        TaskId task = default; long gen = 0; TaskState st = default; string reason = "";
                        int f = Codec.ReadMap(ref r);
                        for (int k = 0; k < f; k++)
                        {
                            switch (Codec.ReadKey(ref r))
                            {
                                case 0: task = Codec.ReadTask(ref r); break;
                                case 1: gen = r.ReadInt64(); break;
                                case 2: st = (TaskState)r.ReadByte(); break;
                                case 3: reason = Codec.ReadString(ref r, 1024); break;
                                default: Codec.Skip(ref r); break;
                            }
                        }
                        Codec.EndContainer(ref r);
                        list[j] = new ReportEntry(task, gen, st, reason);
                    }
                    Codec.EndContainer(ref r);
                    m.Reports = list.AsMemory(0, c);
                    break;
                }
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct TaskReportsAck : IWireMessage<TaskReportsAck>
{
    public ReadOnlyMemory<TaskReportStatus> Statuses;

    public static MessageType Type => MessageType.TaskReportsAck;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(1);
        w.Write(0);
        var s = Statuses.Span;
        w.WriteArrayHeader(s.Length);
        foreach (var x in s) w.Write((byte)x);
    }

    public static TaskReportsAck Read(ref MessagePackReader r)
    {
        var m = default(TaskReportsAck);
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0:
                {
                    int c = Codec.ReadArray(ref r, TaskReports.MaxReports);
                    var a = new TaskReportStatus[c];
                    for (int j = 0; j < c; j++) a[j] = (TaskReportStatus)r.ReadByte();
                    Codec.EndContainer(ref r);
                    m.Statuses = a;
                    break;
                }
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>A body with a single integer status (TaskReportAck, DrainAck) or a single node id (Drain).</summary>
internal struct StatusOnly : IWireMessage<StatusOnly>
{
    public int Value;

    public static MessageType Type => MessageType.TaskReportAck;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(1);
        w.Write(0); w.Write(Value);
    }

    public static StatusOnly Read(ref MessagePackReader r)
    {
        var m = new StatusOnly { Value = -1 };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Value = r.ReadInt32(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct TaskReportAck : IWireMessage<TaskReportAck>
{
    public StatusOnly Body;

    public static MessageType Type => MessageType.TaskReportAck;

    public readonly void Write(ref MessagePackWriter w) => Body.Write(ref w);

    public static TaskReportAck Read(ref MessagePackReader r) => new() { Body = StatusOnly.Read(ref r) };
}

internal struct Drain : IWireMessage<Drain>
{
    public StatusOnly Body;

    public static MessageType Type => MessageType.Drain;

    public readonly void Write(ref MessagePackWriter w) => Body.Write(ref w);

    public static Drain Read(ref MessagePackReader r) => new() { Body = StatusOnly.Read(ref r) };
}

internal struct DrainAck : IWireMessage<DrainAck>
{
    public StatusOnly Body;

    public static MessageType Type => MessageType.DrainAck;

    public readonly void Write(ref MessagePackWriter w) => Body.Write(ref w);

    public static DrainAck Read(ref MessagePackReader r) => new() { Body = StatusOnly.Read(ref r) };
}

internal struct QueryJob : IWireMessage<QueryJob>
{
    public long JobId;

    public static MessageType Type => MessageType.QueryJob;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(1);
        w.Write(0); w.Write(JobId);
    }

    public static QueryJob Read(ref MessagePackReader r)
    {
        var m = default(QueryJob);
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.JobId = r.ReadInt64(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}
