using MessagePack;

namespace Omega.Protocol;

/// <summary>What an <see cref="MessageType.Inspect"/> request reads.</summary>
public enum InspectTarget : byte
{
    /// <summary>One line per node: name, status, allocated and capacity, task count.</summary>
    Nodes = 0,

    /// <summary>One line per live binding: task, node, resources, generation.</summary>
    Allocations = 1,

    /// <summary>Scheduler and cell statistics: outcome counters, queue depth, busyness per scheduler kind.</summary>
    Stats = 2,

    /// <summary>One line per job the engine knows: id, scheduler, phase, task counts, attempts, parked reason.</summary>
    Jobs = 3,

    /// <summary>
    /// Node liveness (protocol version 2): the lease, whether the mass-silence brake is engaged and what it holds back,
    /// evictions by reason, the domain-loss confirmations in effect, then one line per node that is suspect (lease
    /// overdue) or was declared lost.
    /// </summary>
    Liveness = 5,

    /// <summary>
    /// Protocol version 2: the cell's invariant audit, run now (an O(cell) read under the commit lock): first line
    /// <c>ok</c> or <c>violations=N</c>, then one line per violation.
    /// </summary>
    Audit = 6,

    /// <summary>One line per tenant in id order: name, id, quota, usage.</summary>
    Tenants = 10,

    /// <summary>
    /// Version 3 (regops, issue 13): one line per cell reservation (capacity held before bind):
    /// <c>{task} {node} {resources} tenant={t} expires={ISO 8601} expired={true|false}</c>. An expired hold still listed
    /// is one the reservation controller has not released yet (<c>omega doctor</c> reports it as leaked).
    /// </summary>
    Reservations = 21,
}

/// <summary>What an <see cref="MessageType.Operate"/> request does.</summary>
public enum OperateKind : byte
{
    /// <summary>Apply the journal to the store and take a checkpoint (a no-op on an in-memory cell).</summary>
    Checkpoint = 0,

    /// <summary>Set the node named by the target to draining: no new bindings; its tasks keep running.</summary>
    DrainNode = 1,

    /// <summary>
    /// Remove the node named by the target: its bindings are released (their tasks requeued) and the node id is never
    /// reused; the reply comes once the removal is durable. An agent still running re-registers as a new node.
    /// </summary>
    RemoveNode = 2,

    /// <summary>
    /// Protocol version 2: confirm that the failure domain named by the target is lost, so its silent nodes are evicted
    /// even while the mass-silence brake holds (reason required, author recorded). Acknowledged once durable.
    /// </summary>
    ConfirmDomainLost = 5,

    /// <summary>Protocol version 2: withdraw a domain-loss confirmation (reason required, author recorded). Acknowledged once durable.</summary>
    WithdrawDomainLoss = 6,

    /// <summary>Create the tenant named by the target, with the optional quota; acknowledged once durable.</summary>
    CreateTenant = 10,

    /// <summary>Protocol version 2: make the draining node named by the target schedulable again (<c>omega undrain</c>); acknowledged once durable.</summary>
    UndrainNode = 15,
}

/// <summary>The outcome of an <see cref="MessageType.Operate"/> request.</summary>
public enum OperateStatus : byte
{
    /// <summary>Done.</summary>
    Ok = 0,

    /// <summary>No node of that name.</summary>
    UnknownNode = 1,

    /// <summary>This server cannot do it (for example no store to checkpoint).</summary>
    Unsupported = 2,

    /// <summary>It was tried and failed; the message says why.</summary>
    Failed = 3,
}

/// <summary>Explain: key 0 task id [job, index]; key 1 format (version 3: 0 text, 1 also a JSON document).</summary>
internal struct Explain : IWireMessage<Explain>
{
    public TaskId Task;
    public byte Format;

    public static MessageType Type => MessageType.Explain;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(Format == 0 ? 1 : 2);
        w.Write(0); Codec.WriteTask(ref w, Task);
        if (Format != 0) { w.Write(1); w.Write(Format); }
    }

    public static Explain Read(ref MessagePackReader r)
    {
        var m = default(Explain);
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Task = Codec.ReadTask(ref r); break;
                case 1: m.Format = r.ReadByte(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>ExplainReply: key 0 found (bool), key 1 text (the decision record, multi-line), key 2 the record as a JSON document (bin, version 3, when asked).</summary>
internal struct ExplainReply : IWireMessage<ExplainReply>
{
    public bool Found;
    public string Text;
    public byte[]? Document;

    public static MessageType Type => MessageType.ExplainReply;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(Document is null ? 2 : 3);
        w.Write(0); w.Write(Found);
        w.Write(1); w.Write(Text ?? "");
        if (Document is not null) { w.Write(2); ObjectFields.WriteDocument(ref w, Document); }
    }

    public static ExplainReply Read(ref MessagePackReader r)
    {
        var m = new ExplainReply { Text = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Found = r.ReadBoolean(); break;
                case 1: m.Text = Codec.ReadString(ref r, 64 * 1024); break;
                case 2: m.Document = ObjectFields.ReadDocument(ref r); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>Inspect: key 0 target (<see cref="InspectTarget"/>), key 1 maximum lines (1-10,000), key 2 format (version 3: 0 text, 1 also a JSON document for Stats).</summary>
internal struct Inspect : IWireMessage<Inspect>
{
    public InspectTarget Target;
    public int Limit;
    public byte Format;

    public static MessageType Type => MessageType.Inspect;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(Format == 0 ? 2 : 3);
        w.Write(0); w.Write((byte)Target);
        w.Write(1); w.Write(Limit);
        if (Format != 0) { w.Write(2); w.Write(Format); }
    }

    public static Inspect Read(ref MessagePackReader r)
    {
        var m = default(Inspect);
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Target = (InspectTarget)r.ReadByte(); break;
                case 1: m.Limit = r.ReadInt32(); break;
                case 2: m.Format = r.ReadByte(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>InspectReply: key 0 total (how many lines exist), key 1 lines (array of strings, at most the limit).</summary>
internal struct InspectReply : IWireMessage<InspectReply>
{
    /// <summary>Most lines a reply carries, whatever the limit asked (bounds the reply frame).</summary>
    public const int MaxLines = 10_000;

    /// <summary>
    /// The most line text (UTF-8 bytes, summed over the lines) one reply carries: 10,000 long lines would not fit the
    /// 1 MiB frame every peer accepts, so the server stops adding lines at this size (and <see cref="Total"/> still
    /// counts every line that exists). 896 KiB leaves room for the framing and the JSON document.
    /// </summary>
    public const int MaxLineBytes = 896 * 1024;

    public int Total;
    public IReadOnlyList<string> Lines;
    public byte[]? Document;

    public static MessageType Type => MessageType.InspectReply;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(Document is null ? 2 : 3);
        w.Write(0); w.Write(Total);
        var lines = Lines ?? Array.Empty<string>();
        w.Write(1); w.WriteArrayHeader(lines.Count);
        foreach (var l in lines) w.Write(l);
        if (Document is not null) { w.Write(2); ObjectFields.WriteDocument(ref w, Document); }
    }

    public static InspectReply Read(ref MessagePackReader r)
    {
        var m = new InspectReply { Lines = Array.Empty<string>() };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Total = r.ReadInt32(); break;
                case 1:
                    int count = Codec.ReadArray(ref r, MaxLines);
                    var lines = new string[count];
                    for (int j = 0; j < count; j++) lines[j] = Codec.ReadString(ref r, 4096);
                    Codec.EndContainer(ref r);
                    m.Lines = lines;
                    break;
                case 2: m.Document = ObjectFields.ReadDocument(ref r); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>
/// Operate: key 0 kind (<see cref="OperateKind"/>), key 1 target (a node name for DrainNode, a failure domain for the
/// domain-loss kinds, a tenant name for CreateTenant; empty otherwise), key 2 reason and key 3 author (the domain-loss
/// kinds), key 4 quota (resources; CreateTenant only, absent = no quota). Keys 2-4 are written only when set, so older
/// requests encode byte for byte as before.
/// </summary>
internal struct Operate : IWireMessage<Operate>
{
    public OperateKind Kind;
    public string Target;
    public string Reason;
    public string Author;
    public ResourceVector? Quota;

    public static MessageType Type => MessageType.Operate;

    public readonly void Write(ref MessagePackWriter w)
    {
        bool reason = !string.IsNullOrEmpty(Reason), author = !string.IsNullOrEmpty(Author);
        w.WriteMapHeader(2 + (reason ? 1 : 0) + (author ? 1 : 0) + (Quota.HasValue ? 1 : 0));
        w.Write(0); w.Write((byte)Kind);
        w.Write(1); w.Write(Target ?? "");
        if (reason) { w.Write(2); w.Write(Reason); }
        if (author) { w.Write(3); w.Write(Author); }
        if (Quota is { } q) { w.Write(4); Codec.WriteResources(ref w, q); }
    }

    public static Operate Read(ref MessagePackReader r)
    {
        var m = new Operate { Target = "", Reason = "", Author = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Kind = (OperateKind)r.ReadByte(); break;
                case 1: m.Target = Codec.ReadString(ref r, 256); break;
                case 2: m.Reason = Codec.ReadString(ref r, 1024); break;
                case 3: m.Author = Codec.ReadString(ref r, 256); break;
                case 4: m.Quota = Codec.ReadResources(ref r); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>OperateReply: key 0 status (<see cref="OperateStatus"/>), key 1 message, key 2 tenant id (CreateTenant only).</summary>
internal struct OperateReply : IWireMessage<OperateReply>
{
    public OperateStatus Status;
    public string Message;
    public int? TenantId;

    public static MessageType Type => MessageType.OperateReply;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(TenantId.HasValue ? 3 : 2);
        w.Write(0); w.Write((byte)Status);
        w.Write(1); w.Write(Message ?? "");
        if (TenantId is { } t) { w.Write(2); w.Write(t); }
    }

    public static OperateReply Read(ref MessagePackReader r)
    {
        var m = new OperateReply { Message = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Status = (OperateStatus)r.ReadByte(); break;
                case 1: m.Message = Codec.ReadString(ref r, 4096); break;
                case 2: m.TenantId = r.ReadInt32(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>
/// Policy (version 2): key 0 operation (1 stage, 2 promote, 3 undo, 4 history, 5 apply = stage and promote), key 1 policy
/// name (str, empty = default), key 2 document (str, JSON; stage and apply), key 3 revision (int; promote: the revision,
/// undo: the revision to return to, 0 = the one before the current).
/// </summary>
internal struct PolicyRequest : IWireMessage<PolicyRequest>
{
    public byte Operation;
    public string Policy;
    public string Document;
    public int Revision;

    public static MessageType Type => MessageType.Policy;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(4);
        w.Write(0); w.Write(Operation);
        w.Write(1); w.Write(Policy ?? "");
        w.Write(2); w.Write(Document ?? "");
        w.Write(3); w.Write(Revision);
    }

    public static PolicyRequest Read(ref MessagePackReader r)
    {
        var m = new PolicyRequest { Policy = "", Document = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Operation = r.ReadByte(); break;
                case 1: m.Policy = Codec.ReadString(ref r, 253); break;
                case 2: m.Document = Codec.ReadString(ref r, 64 * 1024); break;
                case 3: m.Revision = r.ReadInt32(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>PolicyReply (version 2): key 0 status (uint8), key 1 revision (int), key 2 message (str), key 3 lines (array of str).</summary>
internal struct PolicyReply : IWireMessage<PolicyReply>
{
    public byte Status;
    public int Revision;
    public string Message;
    public string[]? Lines;

    public static MessageType Type => MessageType.PolicyReply;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(4);
        w.Write(0); w.Write(Status);
        w.Write(1); w.Write(Revision);
        w.Write(2); w.Write(Message ?? "");
        w.Write(3);
        var lines = Lines ?? [];
        w.WriteArrayHeader(lines.Length);
        foreach (var l in lines) w.Write(l);
    }

    public static PolicyReply Read(ref MessagePackReader r)
    {
        var m = new PolicyReply { Message = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Status = r.ReadByte(); break;
                case 1: m.Revision = r.ReadInt32(); break;
                case 2: m.Message = Codec.ReadString(ref r, 4096); break;
                case 3:
                    int c = r.ReadArrayHeader();
                    if (c > 10_000) throw new MessagePackSerializationException("too many lines");
                    m.Lines = new string[c];
                    for (int j = 0; j < c; j++) m.Lines[j] = Codec.ReadString(ref r, 4096);
                    break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>ExplainWorkload (version 2): key 0 tenant (str, empty = default), key 1 workload name (str), key 2 generation (int, 0 = every kept one).</summary>
internal struct ExplainWorkload : IWireMessage<ExplainWorkload>
{
    public string Tenant;
    public string Workload;
    public long Generation;

    public static MessageType Type => MessageType.ExplainWorkload;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(3);
        w.Write(0); w.Write(Tenant ?? "");
        w.Write(1); w.Write(Workload ?? "");
        w.Write(2); w.Write(Generation);
    }

    public static ExplainWorkload Read(ref MessagePackReader r)
    {
        var m = new ExplainWorkload { Tenant = "", Workload = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Tenant = Codec.ReadString(ref r, 256); break;
                case 1: m.Workload = Codec.ReadString(ref r, 253); break;
                case 2: m.Generation = r.ReadInt64(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>ExplainWorkloadReply (version 2): key 0 found (bool), key 1 text (str, multi-line).</summary>
internal struct ExplainWorkloadReply : IWireMessage<ExplainWorkloadReply>
{
    public bool Found;
    public string Text;

    public static MessageType Type => MessageType.ExplainWorkloadReply;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(2);
        w.Write(0); w.Write(Found);
        w.Write(1); w.Write(Text ?? "");
    }

    public static ExplainWorkloadReply Read(ref MessagePackReader r)
    {
        var m = new ExplainWorkloadReply { Text = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Found = r.ReadBoolean(); break;
                case 1: m.Text = Codec.ReadString(ref r, 1024 * 1024); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}
