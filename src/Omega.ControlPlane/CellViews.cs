using System.Globalization;
using Omega.Cells;
using Omega.ControlPlane.Controllers;

namespace Omega.ControlPlane;

/// <summary>The placement a <see cref="Binding"/> view shows (the cell's allocation).</summary>
public sealed class BindingSpec
{
    /// <summary>The task, <c>JOB/INDEX</c>.</summary>
    public string Task { get; set; } = "";

    /// <summary>The node's name.</summary>
    public string Node { get; set; } = "";

    /// <summary>The resources the binding holds.</summary>
    public ResourceRequest Resources { get; set; } = new();

    /// <summary>The binding's generation (its fencing value; a rebind of the same task gets a newer one).</summary>
    public long Generation { get; set; }

    /// <summary>The priority it was placed at.</summary>
    public int Priority { get; set; }

    /// <summary>Who it is for: <c>workload TENANT/NAME serial S</c> for a workload replica, else <c>job ID</c>.</summary>
    public string Holder { get; set; } = "";
}

/// <summary>Where a <see cref="Binding"/> is in its lifecycle (as its agent reported it).</summary>
public sealed class BindingStatus
{
    /// <summary>Bound, Started or Ready.</summary>
    public string Phase { get; set; } = "";

    /// <summary>Conditions (none: a view).</summary>
    public List<Condition> Conditions { get; set; } = new();
}

/// <summary>
/// A read-only view of one of the cell's bindings (docs/control-plane.md, "Views of the cell"): answered from the cell
/// for GetObject/ListObjects, never stored; a write of this kind is refused.
/// </summary>
public sealed class Binding : ApiObject<BindingSpec, BindingStatus>
{
    /// <summary>The kind name.</summary>
    public const string KindName = "Binding";

    /// <inheritdoc />
    protected override string KindOf() => KindName;

    /// <inheritdoc />
    public override string? ValidateSpec() => CellViews.ReadOnly(KindName);
}

/// <summary>
/// Read-only views of the cell as objects (docs/control-plane.md, "Views of the cell"): the kinds
/// <see cref="Reservation"/> (the cell's live reservations) and <see cref="Binding"/> (its bindings). Bindings and
/// reservations are the cell's own state, written at the engine's rate by commits; copying them into the object store
/// would put a second durable write on the hot path, so a list or get of these kinds is computed from the cell when
/// asked. They have no watch (nothing is stored; a watch of them sees no events) and their resourceVersion is the
/// cell version read.
/// </summary>
public static class CellViews
{
    /// <summary>True for the kinds answered from the cell.</summary>
    public static bool IsView(string? kind) => kind is Reservation.KindName or Binding.KindName;

    /// <summary>The validation message that makes every write of a view kind <see cref="ObjectStatus.Invalid"/>.</summary>
    public static string ReadOnly(string kind) => $"{kind} is a read-only view of the cell (bindings and reservations are made by scheduler commits, not object writes)";

    /// <summary>
    /// The view objects of <paramref name="kind"/> (null tenant: every tenant), sorted by tenant then name, starting after
    /// the key <paramref name="after"/> (a continue token: <c>tenant/name</c>), at most <paramref name="limit"/>.
    /// Returns the objects and the continue token of the next page (null at the end). <paramref name="now"/> tells an expired reservation (still held until the reservation controller releases it) from a live one.
    /// </summary>
    public static (List<ApiObject> Items, string? Continue, long Version) List(Cell cell, ObjectStore? store, string kind, string? tenant, int limit, string? after, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(cell);
        var all = Build(cell, store, kind, tenant, name: null, now, out long version);
        all.Sort(static (a, b) => string.CompareOrdinal(Cursor(a), Cursor(b)));
        var page = new List<ApiObject>(Math.Min(Math.Max(limit, 0), all.Count));
        int i = 0;
        if (after is not null)
            while (i < all.Count && string.CompareOrdinal(Cursor(all[i]), after) <= 0) i++;
        for (; i < all.Count && page.Count < limit; i++) page.Add(all[i]);
        return (page, i < all.Count && page.Count > 0 ? Cursor(page[^1]) : null, version);
    }

    /// <summary>One view object, or null (<paramref name="now"/> as in <see cref="List"/>).</summary>
    public static ApiObject? Get(Cell cell, ObjectStore? store, string kind, string tenant, string name, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(cell);
        var found = Build(cell, store, kind, tenant, name, now, out _);
        return found.Count == 0 ? null : found[0];
    }

    /// <summary>The continue cursor of a view object: <c>tenant/name</c>.</summary>
    public static string Cursor(ApiObject o)
    {
        ArgumentNullException.ThrowIfNull(o);
        return o.Metadata.Tenant + "/" + o.Metadata.Name;
    }

    private static List<ApiObject> Build(Cell cell, ObjectStore? store, string kind, string? tenant, string? name, DateTimeOffset now, out long version)
    {
        version = cell.Version;
        var tenants = new Dictionary<TenantId, string>();
        foreach (var t in cell.GetTenants()) tenants[t.Id] = t.Name;
        // Workload uids → names, to name a control-plane task by its workload and serial.
        var workloads = new Dictionary<long, (string Tenant, string Name)>();
        if (store is not null)
        {
            string? next = null;
            do
            {
                var page = store.List(new ObjectFilter(Workload.KindName), 1000, next);
                foreach (var o in page.Items) workloads[o.Metadata.Uid] = (o.Metadata.Tenant, o.Metadata.Name);
                next = page.Continue;
            }
            while (next is not null);
        }
        var snapshot = cell.Snapshot();
        var nodes = new Dictionary<NodeId, string>();
        string NodeName(NodeId id)
        {
            if (nodes.TryGetValue(id, out var n)) return n;
            n = snapshot.TryGetNode(id, out var view) == SnapshotRead.Ok ? view.Spec.Name : id.ToString();
            nodes[id] = n;
            return n;
        }
        var result = new List<ApiObject>();
        if (kind == Reservation.KindName)
        {
            foreach (var r in cell.GetReservations())
            {
                string t = tenants.TryGetValue(r.Tenant, out var tn) ? tn : "";
                if (tenant is not null && t != tenant) continue;
                var (objectName, holder) = Describe(r.Task, workloads);
                if (name is not null && objectName != name) continue;
                result.Add(new Reservation
                {
                    Metadata = new ObjectMeta { Name = objectName, Tenant = t, ResourceVersion = version, Generation = r.Generation },
                    Spec = new ReservationSpec { Node = NodeName(r.Node), Resources = From(r.Resources), ExpiresAt = r.ExpiresAt, Purpose = holder },
                    Status = new ReservationStatus { Phase = r.ExpiresAt <= now ? "Expired" : "Reserved" },
                });
            }
        }
        else if (kind == Binding.KindName)
        {
            foreach (var a in cell.GetAllocations())
            {
                string t = tenants.TryGetValue(a.Tenant, out var tn) ? tn : "";
                if (tenant is not null && t != tenant) continue;
                var (objectName, holder) = Describe(a.Task, workloads);
                if (name is not null && objectName != name) continue;
                var life = cell.GetBindingLifecycle(a.Task, a.Generation);
                result.Add(new Binding
                {
                    Metadata = new ObjectMeta { Name = objectName, Tenant = t, ResourceVersion = version, Generation = a.Generation },
                    Spec = new BindingSpec
                    {
                        Task = string.Create(CultureInfo.InvariantCulture, $"{a.Task.Job.Value}/{a.Task.Index}"), Node = NodeName(a.Node),
                        Resources = From(a.Resources), Generation = a.Generation, Priority = a.Priority, Holder = holder,
                    },
                    Status = new BindingStatus { Phase = life.Phase switch { BindingPhase.Started => "Started", BindingPhase.Ready => "Ready", _ => "Bound" } },
                });
            }
        }
        return result;
    }

    // A workload replica's task is named after its workload and serial ("web.r3"); any other task after its job ("job42.t0").
    private static (string Name, string Holder) Describe(TaskId task, Dictionary<long, (string Tenant, string Name)> workloads)
    {
        long job = task.Job.Value;
        if ((job & WorkloadController.JobIdSpace) != 0)
        {
            long uid = (job & ~WorkloadController.JobIdSpace) >> WorkloadController.SerialBits;
            long serial = job & ((1L << WorkloadController.SerialBits) - 1);
            if (workloads.TryGetValue(uid, out var w))
                return (string.Create(CultureInfo.InvariantCulture, $"{w.Name}.r{serial}"), string.Create(CultureInfo.InvariantCulture, $"workload {w.Tenant}/{w.Name} serial {serial}"));
            return (string.Create(CultureInfo.InvariantCulture, $"uid{uid}.r{serial}"), string.Create(CultureInfo.InvariantCulture, $"workload uid {uid} (deleted) serial {serial}"));
        }
        return (string.Create(CultureInfo.InvariantCulture, $"job{job}.t{task.Index}"), string.Create(CultureInfo.InvariantCulture, $"job {job}"));
    }

    private static ResourceRequest From(ResourceVector v) => new() { CpuMillis = v.CpuMillis, MemoryBytes = v.MemoryBytes, Gpus = v.Gpus, DiskBytes = v.DiskBytes };
}
