using MessagePack;

namespace Omega.Protocol;

internal struct AcquireLease : IWireMessage<AcquireLease>
{
    public string Name;
    public long DurationMs;

    public static MessageType Type => MessageType.AcquireLease;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(2);
        w.Write(0); w.Write(Name ?? "");
        w.Write(1); w.Write(DurationMs);
    }

    public static AcquireLease Read(ref MessagePackReader r)
    {
        var m = new AcquireLease { Name = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Name = Codec.ReadString(ref r); break;
                case 1: m.DurationMs = r.ReadInt64(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct RenewLease : IWireMessage<RenewLease>
{
    public int SchedulerId;
    public string Name;
    public long Token;
    public long DurationMs;

    public static MessageType Type => MessageType.RenewLease;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(4);
        w.Write(0); w.Write(SchedulerId);
        w.Write(1); w.Write(Name ?? "");
        w.Write(2); w.Write(Token);
        w.Write(3); w.Write(DurationMs);
    }

    public static RenewLease Read(ref MessagePackReader r)
    {
        var m = new RenewLease { Name = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.SchedulerId = r.ReadInt32(); break;
                case 1: m.Name = Codec.ReadString(ref r); break;
                case 2: m.Token = r.ReadInt64(); break;
                case 3: m.DurationMs = r.ReadInt64(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct LeaseReply : IWireMessage<LeaseReply>
{
    public byte Status;
    public int SchedulerId;
    public long Token;
    public long ExpiresUnixMs;

    public static MessageType Type => MessageType.LeaseReply;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(4);
        w.Write(0); w.Write(Status);
        w.Write(1); w.Write(SchedulerId);
        w.Write(2); w.Write(Token);
        w.Write(3); w.Write(ExpiresUnixMs);
    }

    public static LeaseReply Read(ref MessagePackReader r)
    {
        var m = default(LeaseReply);
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Status = r.ReadByte(); break;
                case 1: m.SchedulerId = r.ReadInt32(); break;
                case 2: m.Token = r.ReadInt64(); break;
                case 3: m.ExpiresUnixMs = r.ReadInt64(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct Sync : IWireMessage<Sync>
{
    public long Since;
    public int StartNode;
    public int MaxNodes;

    public static MessageType Type => MessageType.Sync;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(3);
        w.Write(0); w.Write(Since);
        w.Write(1); w.Write(StartNode);
        w.Write(2); w.Write(MaxNodes);
    }

    public static Sync Read(ref MessagePackReader r)
    {
        var m = default(Sync);
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Since = r.ReadInt64(); break;
                case 1: m.StartNode = r.ReadInt32(); break;
                case 2: m.MaxNodes = r.ReadInt32(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal readonly record struct NodeRecord(int Id, string Name, NodeStatus Status, long NodeVersion, ResourceVector Capacity, ResourceVector Allocated,
    int TaskCount, string FailureDomain, long ChangedAt);

internal struct SyncReply : IWireMessage<SyncReply>
{
    public const int MaxNodes = 1_000_000;

    public long Version;
    public bool Full;
    public int NextNode;
    public IReadOnlyList<NodeRecord> Nodes;

    public static MessageType Type => MessageType.SyncReply;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(4);
        w.Write(0); w.Write(Version);
        w.Write(1); w.Write(Full);
        w.Write(2); w.Write(NextNode);
        w.Write(3);
        w.WriteArrayHeader(Nodes.Count);
        foreach (var x in Nodes)
        {
            w.WriteMapHeader(9);
            w.Write(0); w.Write(x.Id);
            w.Write(1); w.Write(x.Name);
            w.Write(2); w.Write((byte)x.Status);
            w.Write(3); w.Write(x.NodeVersion);
            w.Write(4); Codec.WriteResources(ref w, x.Capacity);
            w.Write(5); Codec.WriteResources(ref w, x.Allocated);
            w.Write(6); w.Write(x.TaskCount);
            w.Write(7); w.Write(x.FailureDomain);
            w.Write(8); w.Write(x.ChangedAt);
        }
    }

    public static SyncReply Read(ref MessagePackReader r)
    {
        var m = new SyncReply { Nodes = Array.Empty<NodeRecord>(), NextNode = -1 };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Version = r.ReadInt64(); break;
                case 1: m.Full = r.ReadBoolean(); break;
                case 2: m.NextNode = r.ReadInt32(); break;
                case 3:
                {
                    int c = Codec.ReadArray(ref r, MaxNodes);
                    var list = new NodeRecord[c];
                    for (int j = 0; j < c; j++)
                    {
                        int id = 0, tasks = 0; string name = "", fd = ""; NodeStatus st = default; long nv = 0, ch = 0; ResourceVector cap = default, alloc = default;
                        int f = Codec.ReadMap(ref r);
                        for (int k = 0; k < f; k++)
                        {
                            switch (Codec.ReadKey(ref r))
                            {
                                case 0: id = r.ReadInt32(); break;
                                case 1: name = Codec.ReadString(ref r); break;
                                case 2: st = (NodeStatus)r.ReadByte(); break;
                                case 3: nv = r.ReadInt64(); break;
                                case 4: cap = Codec.ReadResources(ref r); break;
                                case 5: alloc = Codec.ReadResources(ref r); break;
                                case 6: tasks = r.ReadInt32(); break;
                                case 7: fd = Codec.ReadString(ref r); break;
                                case 8: ch = r.ReadInt64(); break;
                                default: Codec.Skip(ref r); break;
                            }
                        }
                        Codec.EndContainer(ref r);
                        list[j] = new NodeRecord(id, name, st, nv, cap, alloc, tasks, fd, ch);
                    }
                    Codec.EndContainer(ref r);
                    m.Nodes = list;
                    break;
                }
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal readonly record struct WireClaim(TaskId Task, int Node, ResourceVector Resources, long ExpectedNodeVersion, int Tenant, int Priority, TaskId[]? Victims);

internal struct Commit : IWireMessage<Commit>
{
    public const int MaxClaims = 100_000;
    public const int MaxVictims = 1_024;

    public int SchedulerId;
    public long Token;
    public byte Mode;
    public byte Detection;
    public ulong KeyHigh;
    public ulong KeyLow;
    public IReadOnlyList<WireClaim> Claims;

    public static MessageType Type => MessageType.Commit;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(6);
        w.Write(0); w.Write(SchedulerId);
        w.Write(1); w.Write(Token);
        w.Write(2); w.Write(Mode);
        w.Write(3); w.Write(Detection);
        w.Write(4); w.WriteArrayHeader(2); w.Write(KeyHigh); w.Write(KeyLow);
        w.Write(5);
        w.WriteArrayHeader(Claims.Count);
        foreach (var c in Claims)
        {
            int fields = c.Victims is { Length: > 0 } ? 7 : 6;
            w.WriteMapHeader(fields);
            w.Write(0); Codec.WriteTask(ref w, c.Task);
            w.Write(1); w.Write(c.Node);
            w.Write(2); Codec.WriteResources(ref w, c.Resources);
            w.Write(3); w.Write(c.ExpectedNodeVersion);
            w.Write(4); w.Write(c.Tenant);
            w.Write(5); w.Write(c.Priority);
            if (fields == 7)
            {
                w.Write(6);
                w.WriteArrayHeader(c.Victims!.Length);
                foreach (var v in c.Victims) Codec.WriteTask(ref w, v);
            }
        }
    }

    public static Commit Read(ref MessagePackReader r)
    {
        var m = new Commit { Claims = Array.Empty<WireClaim>() };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.SchedulerId = r.ReadInt32(); break;
                case 1: m.Token = r.ReadInt64(); break;
                case 2: m.Mode = r.ReadByte(); break;
                case 3: m.Detection = r.ReadByte(); break;
                case 4:
                {
                    int k = Codec.ReadArray(ref r, 2);
                    if (k != 2) throw new ProtocolViolationException("idempotency key is [high, low]");
                    m.KeyHigh = r.ReadUInt64();
                    m.KeyLow = r.ReadUInt64();
                    Codec.EndContainer(ref r);
                    break;
                }
                case 5:
                {
                    int c = Codec.ReadArray(ref r, MaxClaims);
                    var list = new WireClaim[c];
                    for (int j = 0; j < c; j++)
                    {
                        TaskId task = default; int node = 0, tenant = 0, prio = 0; ResourceVector res = default; long ev = 0; TaskId[]? victims = null;
                        int f = Codec.ReadMap(ref r);
                        for (int k = 0; k < f; k++)
                        {
                            switch (Codec.ReadKey(ref r))
                            {
                                case 0: task = Codec.ReadTask(ref r); break;
                                case 1: node = r.ReadInt32(); break;
                                case 2: res = Codec.ReadResources(ref r); break;
                                case 3: ev = r.ReadInt64(); break;
                                case 4: tenant = r.ReadInt32(); break;
                                case 5: prio = r.ReadInt32(); break;
                                case 6:
                                {
                                    int vc = Codec.ReadArray(ref r, MaxVictims);
                                    victims = new TaskId[vc];
                                    for (int v = 0; v < vc; v++) victims[v] = Codec.ReadTask(ref r);
                                    Codec.EndContainer(ref r);
                                    break;
                                }
                                default: Codec.Skip(ref r); break;
                            }
                        }
                        Codec.EndContainer(ref r);
                        list[j] = new WireClaim(task, node, res, ev, tenant, prio, victims);
                    }
                    Codec.EndContainer(ref r);
                    m.Claims = list;
                    break;
                }
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct CommitReply : IWireMessage<CommitReply>
{
    public TransactionStatus Status;
    public long Version;
    public int Applied;
    public bool Replayed;
    public ReadOnlyMemory<ClaimStatus> ClaimStatuses;

    public static MessageType Type => MessageType.CommitReply;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(5);
        w.Write(0); w.Write((byte)Status);
        w.Write(1); w.Write(Version);
        w.Write(2); w.Write(Applied);
        w.Write(3); w.Write(Replayed);
        w.Write(4);
        var s = ClaimStatuses.Span;
        w.WriteArrayHeader(s.Length);
        foreach (var c in s) w.Write((byte)c);
    }

    public static CommitReply Read(ref MessagePackReader r)
    {
        var m = default(CommitReply);
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Status = (TransactionStatus)r.ReadByte(); break;
                case 1: m.Version = r.ReadInt64(); break;
                case 2: m.Applied = r.ReadInt32(); break;
                case 3: m.Replayed = r.ReadBoolean(); break;
                case 4:
                {
                    int c = Codec.ReadArray(ref r, Commit.MaxClaims);
                    var a = new ClaimStatus[c];
                    for (int j = 0; j < c; j++) a[j] = (ClaimStatus)r.ReadByte();
                    Codec.EndContainer(ref r);
                    m.ClaimStatuses = a;
                    break;
                }
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct SubmitJob : IWireMessage<SubmitJob>
{
    public long JobId;
    public string Tenant;   // the tenant's name (version 2); empty = "default"
    public int Priority;
    public int TaskCount;
    public ResourceVector PerTask;
    public bool Gang;
    public Dictionary<string, string>? RequiredLabels;
    public string Scheduler;
    public byte AntiAffinity;   // version 2, key 8: 0 none, 1 node, 2 failure domain (between the job's own tasks)
    public byte Spread;         // version 2, key 9: same values, a soft preference

    public static MessageType Type => MessageType.SubmitJob;

    public readonly void Write(ref MessagePackWriter w)
    {
        // Keys 8 and 9 are written only when set, so a job without constraints encodes as before.
        int extra = (AntiAffinity != 0 ? 1 : 0) + (Spread != 0 ? 1 : 0);
        w.WriteMapHeader(8 + extra);
        w.Write(0); w.Write(JobId);
        w.Write(1); w.Write(Tenant ?? "");
        w.Write(2); w.Write(Priority);
        w.Write(3); w.Write(TaskCount);
        w.Write(4); Codec.WriteResources(ref w, PerTask);
        w.Write(5); w.Write(Gang);
        w.Write(6); Codec.WriteLabels(ref w, RequiredLabels);
        w.Write(7); w.Write(Scheduler ?? "");
        if (AntiAffinity != 0) { w.Write(8); w.Write(AntiAffinity); }
        if (Spread != 0) { w.Write(9); w.Write(Spread); }
    }

    public static SubmitJob Read(ref MessagePackReader r)
    {
        var m = new SubmitJob { Scheduler = "", Tenant = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.JobId = r.ReadInt64(); break;
                case 1: m.Tenant = Codec.ReadString(ref r, 256); break;
                case 2: m.Priority = r.ReadInt32(); break;
                case 3: m.TaskCount = r.ReadInt32(); break;
                case 4: m.PerTask = Codec.ReadResources(ref r); break;
                case 5: m.Gang = r.ReadBoolean(); break;
                case 6: m.RequiredLabels = Codec.ReadLabels(ref r); break;
                case 7: m.Scheduler = Codec.ReadString(ref r); break;
                case 8: m.AntiAffinity = r.ReadByte(); break;
                case 9: m.Spread = r.ReadByte(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct SubmitJobReply : IWireMessage<SubmitJobReply>
{
    public int Status;
    public string Reason;

    public static MessageType Type => MessageType.SubmitJobReply;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(2);
        w.Write(0); w.Write(Status);
        w.Write(1); w.Write(Reason ?? "");
    }

    public static SubmitJobReply Read(ref MessagePackReader r)
    {
        var m = new SubmitJobReply { Reason = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Status = r.ReadInt32(); break;
                case 1: m.Reason = Codec.ReadString(ref r, 4096); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct JobStatusReply : IWireMessage<JobStatusReply>
{
    public bool Found;
    public int Phase;
    public int Pending;
    public int Bound;
    public int Completed;
    public int Attempts;
    public int Generation;
    public string Reason;

    /// <summary>Version 2: bound tasks whose node is unreachable (lease overdue, fenced, down or removed).</summary>
    public int Unreachable;

    /// <summary>Version 2: true when <see cref="Unreachable"/> is above 0: the job is not healthy, whatever its phase says.</summary>
    public bool Degraded;

    public static MessageType Type => MessageType.JobStatusReply;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(10);
        w.Write(0); w.Write(Found);
        w.Write(1); w.Write(Phase);
        w.Write(2); w.Write(Pending);
        w.Write(3); w.Write(Bound);
        w.Write(4); w.Write(Completed);
        w.Write(5); w.Write(Attempts);
        w.Write(6); w.Write(Generation);
        w.Write(7); w.Write(Reason ?? "");
        w.Write(8); w.Write(Unreachable);
        w.Write(9); w.Write(Degraded);
    }

    public static JobStatusReply Read(ref MessagePackReader r)
    {
        var m = new JobStatusReply { Reason = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Found = r.ReadBoolean(); break;
                case 1: m.Phase = r.ReadInt32(); break;
                case 2: m.Pending = r.ReadInt32(); break;
                case 3: m.Bound = r.ReadInt32(); break;
                case 4: m.Completed = r.ReadInt32(); break;
                case 5: m.Attempts = r.ReadInt32(); break;
                case 6: m.Generation = r.ReadInt32(); break;
                case 7: m.Reason = Codec.ReadString(ref r, 4096); break;
                case 8: m.Unreachable = r.ReadInt32(); break;
                case 9: m.Degraded = r.ReadBoolean(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}
