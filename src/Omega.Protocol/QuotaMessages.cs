using MessagePack;

namespace Omega.Protocol;

/// <summary>
/// A value a SetQuota may carry for the limit or the guarantee: absent (keep), nil (clear) or a vector (set).
/// </summary>
/// <param name="Present">The key was sent.</param>
/// <param name="Value">The vector, or null for nil (clear).</param>
public readonly record struct QuotaField(bool Present, ResourceVector? Value)
{
    /// <summary>Keep the current value.</summary>
    public static QuotaField Keep => default;

    /// <summary>Clear the value.</summary>
    public static QuotaField Clear => new(true, null);

    /// <summary>Set the value.</summary>
    public static QuotaField Set(ResourceVector value) => new(true, value);
}

/// <summary>SetQuota (<c>0x60</c>): key 0 tenant name, key 1 limit, key 2 guaranteed (each absent = keep, nil = clear).</summary>
internal struct SetQuota : IWireMessage<SetQuota>
{
    public string Tenant;
    public QuotaField Limit;
    public QuotaField Guaranteed;

    public static MessageType Type => MessageType.SetQuota;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(1 + (Limit.Present ? 1 : 0) + (Guaranteed.Present ? 1 : 0));
        w.Write(0); w.Write(Tenant ?? "");
        if (Limit.Present) { w.Write(1); WriteField(ref w, Limit.Value); }
        if (Guaranteed.Present) { w.Write(2); WriteField(ref w, Guaranteed.Value); }
    }

    private static void WriteField(ref MessagePackWriter w, ResourceVector? v)
    {
        if (v is { } x) Codec.WriteResources(ref w, x);
        else w.WriteNil();
    }

    private static QuotaField ReadField(ref MessagePackReader r)
        => r.TryReadNil() ? QuotaField.Clear : QuotaField.Set(Codec.ReadResources(ref r));

    public static SetQuota Read(ref MessagePackReader r)
    {
        var m = new SetQuota { Tenant = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Tenant = Codec.ReadString(ref r, 256); break;
                case 1: m.Limit = ReadField(ref r); break;
                case 2: m.Guaranteed = ReadField(ref r); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>SetQuotaReply (<c>0x61</c>): key 0 tenant id, key 1 cell version.</summary>
internal struct SetQuotaReply : IWireMessage<SetQuotaReply>
{
    public int TenantId;
    public long CellVersion;

    public static MessageType Type => MessageType.SetQuotaReply;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(2);
        w.Write(0); w.Write(TenantId);
        w.Write(1); w.Write(CellVersion);
    }

    public static SetQuotaReply Read(ref MessagePackReader r)
    {
        var m = default(SetQuotaReply);
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.TenantId = r.ReadInt32(); break;
                case 1: m.CellVersion = r.ReadInt64(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>ListQuotas (<c>0x62</c>): an empty map.</summary>
internal struct ListQuotas : IWireMessage<ListQuotas>
{
    public static MessageType Type => MessageType.ListQuotas;

    public readonly void Write(ref MessagePackWriter w) => w.WriteMapHeader(0);

    public static ListQuotas Read(ref MessagePackReader r)
    {
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            Codec.ReadKey(ref r);
            Codec.Skip(ref r);
        }
        Codec.EndContainer(ref r);
        return default;
    }
}

/// <summary>One tenant's line of a <see cref="QuotasReply"/>.</summary>
/// <param name="Name">The tenant's name.</param>
/// <param name="Id">Its id.</param>
/// <param name="Usage">Bindings plus reservations.</param>
/// <param name="Limit">Its hard limit, or null for none.</param>
/// <param name="Guaranteed">Its guarantee (protected capacity), or null for none.</param>
/// <param name="Unmet">Guarantee minus usage, floored at zero.</param>
public readonly record struct TenantQuotaInfo(string Name, int Id, ResourceVector Usage, ResourceVector? Limit, ResourceVector? Guaranteed, ResourceVector Unmet);

/// <summary>QuotasReply (<c>0x63</c>): key 0 tenants, key 1 free schedulable capacity, key 2 sum of unmet guarantees.</summary>
internal struct QuotasReply : IWireMessage<QuotasReply>
{
    /// <summary>The most entries a reply may carry (the cell's tenant bound, with room).</summary>
    public const int MaxTenants = 4096;

    public List<TenantQuotaInfo> Tenants;
    public ResourceVector Free;
    public ResourceVector UnmetTotal;

    public static MessageType Type => MessageType.QuotasReply;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(3);
        w.Write(0);
        var list = Tenants ?? new List<TenantQuotaInfo>();
        w.WriteArrayHeader(list.Count);
        foreach (var t in list)
        {
            w.WriteMapHeader(6);
            w.Write(0); w.Write(t.Name);
            w.Write(1); w.Write(t.Id);
            w.Write(2); Codec.WriteResources(ref w, t.Usage);
            w.Write(3); if (t.Limit is { } l) Codec.WriteResources(ref w, l); else w.WriteNil();
            w.Write(4); if (t.Guaranteed is { } g) Codec.WriteResources(ref w, g); else w.WriteNil();
            w.Write(5); Codec.WriteResources(ref w, t.Unmet);
        }
        w.Write(1); Codec.WriteResources(ref w, Free);
        w.Write(2); Codec.WriteResources(ref w, UnmetTotal);
    }

    public static QuotasReply Read(ref MessagePackReader r)
    {
        var m = new QuotasReply { Tenants = new List<TenantQuotaInfo>() };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0:
                {
                    int count = Codec.ReadArray(ref r, MaxTenants);
                    for (int j = 0; j < count; j++) m.Tenants.Add(ReadTenant(ref r));
                    Codec.EndContainer(ref r);
                    break;
                }
                case 1: m.Free = Codec.ReadResources(ref r); break;
                case 2: m.UnmetTotal = Codec.ReadResources(ref r); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }

    private static TenantQuotaInfo ReadTenant(ref MessagePackReader r)
    {
        string name = "";
        int id = 0;
        ResourceVector usage = default, unmet = default;
        ResourceVector? limit = null, guaranteed = null;
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: name = Codec.ReadString(ref r, 256); break;
                case 1: id = r.ReadInt32(); break;
                case 2: usage = Codec.ReadResources(ref r); break;
                case 3: limit = r.TryReadNil() ? null : Codec.ReadResources(ref r); break;
                case 4: guaranteed = r.TryReadNil() ? null : Codec.ReadResources(ref r); break;
                case 5: unmet = Codec.ReadResources(ref r); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return new TenantQuotaInfo(name, id, usage, limit, guaranteed, unmet);
    }
}
