namespace Omega.Cells;

/// <summary>The outcome of a tenant operation.</summary>
public enum TenantOpStatus : byte
{
    /// <summary>Done.</summary>
    Ok = 0,

    /// <summary>No tenant has that id or name.</summary>
    UnknownTenant = 1,

    /// <summary>A tenant of that name already exists (its id is returned).</summary>
    DuplicateName = 2,

    /// <summary>The cell already holds <see cref="CellOptions.MaxTenants"/> tenants.</summary>
    LimitReached = 3,

    /// <summary>The name is not 1-64 characters of letters, digits, '.', '_' or '-'.</summary>
    InvalidName = 4,

    /// <summary>The quota is not a valid vector (a negative quantity or one above <see cref="ResourceVector.MaxQuantity"/>).</summary>
    InvalidQuota = 5,
}

/// <summary>A tenant as the registry holds it.</summary>
/// <param name="Id">The tenant's dense id, assigned by the cell, never reused.</param>
/// <param name="Name">Its unique name.</param>
/// <param name="Usage">The resources its live bindings and reservations hold.</param>
/// <param name="Quota">Its hard quota, or null for none.</param>
/// <param name="Guaranteed">Its protected capacity (guaranteed share), or null for none.</param>
public readonly record struct TenantInfo(TenantId Id, string Name, ResourceVector Usage, ResourceVector? Quota, ResourceVector? Guaranteed = null);

// The tenant registry (issue 10, defect 2). Before it, per-tenant arrays were sized by whatever tenant id a claim or a
// job named, so one `--tenant 2000000000` allocated gigabytes and killed the server. Now a tenant exists only once it
// was created (durably: a TenantCreated journal record), ids are dense and assigned here, the count is bounded by
// CellOptions.MaxTenants, and every surface that names an unknown tenant gets a typed error instead of an allocation.
// Dense ids keep the commit path's quota lookup an array index; the name index is used only at admission.
public sealed partial class Cell
{
    /// <summary>The name of tenant 0, which every cell has from the start (it needs no creation and no journal record).</summary>
    public const string DefaultTenantName = "default";

    /// <summary>The longest tenant name.</summary>
    public const int MaxTenantNameLength = 64;

    // Guarded by _lock; _tenantCount is also read without it (ids below it never become invalid).
    private string[] _tenantNames = new string[16];
    private readonly Dictionary<string, TenantId> _tenantByName = new(StringComparer.Ordinal);
    private int _tenantCount;

    private void InitTenants()
    {
        _tenantNames[0] = DefaultTenantName;
        _tenantByName.Add(DefaultTenantName, new TenantId(0));
        _tenantCount = 1;
    }

    /// <summary>The number of tenants (the default tenant included); ids are 0 to this minus one.</summary>
    public int TenantCount => Volatile.Read(ref _tenantCount);

    /// <summary>True when <paramref name="tenant"/> was created in this cell (tenant 0 always exists).</summary>
    public bool TenantExists(TenantId tenant) => (uint)tenant.Value < (uint)Volatile.Read(ref _tenantCount);

    /// <summary>True when <paramref name="name"/> is a legal tenant name: 1-64 ASCII letters, digits, '.', '_' or '-'.</summary>
    public static bool IsValidTenantName(string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > MaxTenantNameLength) return false;
        foreach (char ch in name)
            if (!(char.IsAsciiLetterOrDigit(ch) || ch is '.' or '_' or '-')) return false;
        return true;
    }

    /// <summary>
    /// Creates a tenant with an optional hard quota. The cell assigns the next dense id. On a durable cell the creation is
    /// a journal record: acknowledge it to anyone only once <see cref="JournalSequence"/> (read after this returns) is
    /// durable. A name that exists returns <see cref="TenantOpStatus.DuplicateName"/> with the existing id, unchanged.
    /// </summary>
    public TenantOpStatus CreateTenant(string name, ResourceVector? quota, out TenantId id)
    {
        id = default;
        if (!IsValidTenantName(name)) return TenantOpStatus.InvalidName;
        if (quota is { } q && !q.IsValidRequest) return TenantOpStatus.InvalidQuota;
        using (Serial())
        {
            if (_tenantByName.TryGetValue(name, out id)) return TenantOpStatus.DuplicateName;
            if (_tenantCount >= _options.MaxTenants) return TenantOpStatus.LimitReached;
            int t = _tenantCount;
            EnsureTenant(t);
            _tenantNames[t] = name;
            _tenantQuota[t] = quota;
            _tenantGuarantee[t] = null;
            _tenantUnmet[t] = default;
            _tenantUsage[t] = default;
            PublishTenant(t);
            _tenantByName.Add(name, new TenantId(t));
            // A new tenant is a state change with its own cell version, like a lease grant: a server acknowledges the
            // creation once that version is durable, through the same watermark as commits.
            Volatile.Write(ref _vw.Published, _vw.Published + 1);
            Volatile.Write(ref _tenantCount, t + 1);
            JournalTenant(t);
            id = new TenantId(t);
            return TenantOpStatus.Ok;
        }
    }

    /// <summary>Creates a tenant; throws if the name is invalid or taken or the limit is reached. Convenient for setup code.</summary>
    public TenantId CreateTenant(string name, ResourceVector? quota = null)
    {
        var s = CreateTenant(name, quota, out var id);
        return s == TenantOpStatus.Ok ? id : throw new InvalidOperationException($"CreateTenant({name}) failed: {s}");
    }

    /// <summary>Looks a tenant up by name.</summary>
    public bool TryGetTenant(string name, out TenantId id)
    {
        using (Serial()) return _tenantByName.TryGetValue(name, out id);
    }

    /// <summary>Every tenant in id order, with usage and quota (a control-plane read).</summary>
    public IReadOnlyList<TenantInfo> GetTenants()
    {
        using (Serial())
        {
            var list = new List<TenantInfo>(_tenantCount);
            for (int t = 0; t < _tenantCount; t++) list.Add(new TenantInfo(new TenantId(t), _tenantNames[t], _tenantUsage[t], _tenantQuota[t], _tenantGuarantee[t]));
            return list;
        }
    }

    /// <summary>The tenant's name, or null when it does not exist.</summary>
    public string? TenantName(TenantId tenant)
    {
        using (Serial()) return (uint)tenant.Value < (uint)_tenantCount ? _tenantNames[tenant.Value] : null;
    }

    private void JournalTenant(int t)
    {
        if (_journal is null) return;
        var w = BeginRecord(CellRecordKind.TenantCreated, _vw.Published);
        w.I32(t);
        w.String(_tenantNames[t]);
        var q = _tenantQuota[t];
        w.U8(q.HasValue ? (byte)1 : (byte)0);
        w.Resources(q ?? default);
        EndRecord(_vw.Published);
    }
}
