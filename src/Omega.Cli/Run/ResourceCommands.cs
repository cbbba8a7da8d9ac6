using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Omega.Agent;
using Omega.ControlPlane;
using Omega.Protocol;

namespace Omega.Cli.Run;

/// <summary>
/// The CLI's one grammar (docs/cli.md, "Resources"): kubectl-style verbs over resources, <c>omega VERB RESOURCE [NAME]</c>:
/// <c>apply -f</c>, <c>get</c>, <c>describe</c>, <c>delete</c> over the control plane's objects (the object messages of
/// docs/protocol.md), <c>get nodes|jobs|tenants</c> over the engine's listings, and the node verbs <c>cordon</c>,
/// <c>drain</c>, <c>undrain</c>.
/// </summary>
internal static class ResourceCommands
{
    /// <summary>Exit code: the object named does not exist.</summary>
    public const int ExitNotFound = 5;

    /// <summary>Exit code: a resourceVersion precondition failed, or a create found the name taken.</summary>
    public const int ExitConflict = 6;

    public static IEnumerable<Command> Create()
    {
        yield return Apply();
        yield return Get();
        yield return Describe();
        yield return Delete();
        yield return NodeVerb("cordon", OperateKind.DrainNode, "Mark a node unschedulable: no new bindings; its tasks keep running (same as drain).");
        yield return NodeVerb("undrain", OperateKind.UndrainNode, "Make a draining (cordoned) node schedulable again; answered once durable.");
    }

    private enum Listing : byte { None, Nodes, Jobs, Tenants }

    private readonly record struct Resource(string Kind, Listing Listing, string Singular);

    private static readonly Dictionary<string, Resource> Resources = new(StringComparer.OrdinalIgnoreCase)
    {
        ["workloads"] = new(Workload.KindName, Listing.None, "workload"),
        ["workload"] = new(Workload.KindName, Listing.None, "workload"),
        ["wl"] = new(Workload.KindName, Listing.None, "workload"),
        ["requests"] = new(SchedulingRequest.KindName, Listing.None, "schedulingrequest"),
        ["schedulingrequests"] = new(SchedulingRequest.KindName, Listing.None, "schedulingrequest"),
        ["schedulingrequest"] = new(SchedulingRequest.KindName, Listing.None, "schedulingrequest"),
        ["reservations"] = new(Reservation.KindName, Listing.None, "reservation"),
        ["reservation"] = new(Reservation.KindName, Listing.None, "reservation"),
        ["policies"] = new(SchedulerPolicy.KindName, Listing.None, "schedulerpolicy"),
        ["schedulerpolicies"] = new(SchedulerPolicy.KindName, Listing.None, "schedulerpolicy"),
        ["schedulerpolicy"] = new(SchedulerPolicy.KindName, Listing.None, "schedulerpolicy"),
        ["bindings"] = new(Binding.KindName, Listing.None, "binding"),
        ["binding"] = new(Binding.KindName, Listing.None, "binding"),
        ["quotas"] = new(Quota.KindName, Listing.None, "quota"),
        ["quota"] = new(Quota.KindName, Listing.None, "quota"),
        ["overrides"] = new(Override.KindName, Listing.None, "override"),
        ["override"] = new(Override.KindName, Listing.None, "override"),
        ["nodepools"] = new(NodePool.KindName, Listing.None, "nodepool"),
        ["nodepool"] = new(NodePool.KindName, Listing.None, "nodepool"),
        ["recoverybudgets"] = new(RecoveryBudget.KindName, Listing.None, "recoverybudget"),
        ["recoverybudget"] = new(RecoveryBudget.KindName, Listing.None, "recoverybudget"),
        ["regionalbudgets"] = new(RegionalBudget.KindName, Listing.None, "regionalbudget"),
        ["regionalbudget"] = new(RegionalBudget.KindName, Listing.None, "regionalbudget"),
        ["nodes"] = new("", Listing.Nodes, "node"),
        ["node"] = new("", Listing.Nodes, "node"),
        ["jobs"] = new("", Listing.Jobs, "job"),
        ["job"] = new("", Listing.Jobs, "job"),
        ["tenants"] = new("", Listing.Tenants, "tenant"),
        ["tenant"] = new("", Listing.Tenants, "tenant"),
    };

    private const string ResourceNames = "workloads, bindings, requests, reservations, policies, quotas, overrides, nodepools, recoverybudgets, regionalbudgets, nodes, jobs, tenants";

    private static Option<string> TenantOption() => new("--tenant") { Description = "The object's tenant (its namespace; empty for policies).", DefaultValueFactory = _ => Omega.Cells.Cell.DefaultTenantName };

    private static bool TryResource(string command, string word, out Resource resource, out int exit)
    {
        exit = 0;
        if (Resources.TryGetValue(word, out resource)) return true;
        Console.Error.WriteLine($"omega {command}: unknown resource '{word}' (one of: {ResourceNames})");
        exit = 2;
        return false;
    }

    // Cluster-scoped kinds have no tenant: --tenant's default does not apply to them.
    private static string TenantFor(string kind, string tenant) => kind is SchedulerPolicy.KindName or Override.KindName or NodePool.KindName ? "" : tenant;

    // ------------------------------------------------------------------ apply

    private static Command Apply()
    {
        var connect = ControlCommands.ConnectOption();
        var file = new Option<string>("--filename", "-f") { Description = "A YAML or JSON manifest (several YAML documents separated by ---); '-' reads stdin.", Required = true };
        var output = new Option<string?>("--output", "-o") { Description = "Print each applied object: json or yaml." };
        var cmd = new Command("apply", "Create each object of a manifest, or update it (with its current resourceVersion) when it exists.") { connect, file, output };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) =>
        {
            string path = r.GetValue(file)!;
            string? format = r.GetValue(output);
            if (format is not (null or "json" or "yaml")) return Usage("apply", $"-o must be json or yaml, not '{format}'");
            string text;
            try
            {
                text = path == "-" ? Console.In.ReadToEnd() : File.ReadAllText(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return Usage("apply", $"cannot read '{path}': {e.Message}");
            }
            var objects = new List<ApiObject>();
            try
            {
                foreach (var json in Manifests.ToJsonDocuments(text))
                    objects.Add(ObjectCodec.Deserialize(json, out var error) ?? throw new FormatException(error));
            }
            catch (FormatException e)
            {
                return Usage("apply", $"'{path}' is not a valid manifest: {e.Message}");
            }
            if (objects.Count == 0) return Usage("apply", $"'{path}' holds no object");
            return ControlCommands.WithClientAsync("apply", r.GetValue(connect)!, tls, r, async c =>
            {
                foreach (var obj in objects)
                {
                    var (stored, created) = await c.ApplyAsync(obj, cancel).ConfigureAwait(false);
                    if (format is null)
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{stored.Kind.ToLowerInvariant()}/{stored.Metadata.Name} {(created ? "created" : "configured")} (resourceVersion {stored.Metadata.ResourceVersion}, generation {stored.Metadata.Generation})"));
                    else Print(ObjectCodec.Serialize(stored), format);
                }
                return 0;
            }, cancel);
        });
        return cmd;
    }

    // ------------------------------------------------------------------ get

    private static Command Get()
    {
        var connect = ControlCommands.ConnectOption();
        var what = new Argument<string>("resource") { Description = ResourceNames + "." };
        var name = new Argument<string?>("name") { Description = "One object's name (default: list them).", Arity = ArgumentArity.ZeroOrOne };
        var output = new Option<string?>("--output", "-o") { Description = "json, yaml or wide (default: a table)." };
        var tenant = TenantOption();
        var all = new Option<bool>("--all-tenants", "-A") { Description = "List the objects of every tenant." };
        var cmd = new Command("get", "List objects of a resource, or show one (also nodes, jobs and tenants of the engine).") { connect, what, name, output, tenant, all };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) =>
        {
            if (!TryResource("get", r.GetValue(what)!, out var res, out int exit)) return Task.FromResult(exit);
            string? format = r.GetValue(output);
            if (format is not (null or "json" or "yaml" or "wide")) return Usage("get", $"-o must be json, yaml or wide, not '{format}'");
            string? one = r.GetValue(name);
            return ControlCommands.WithClientAsync("get", r.GetValue(connect)!, tls, r, c => res.Listing != Listing.None
                ? GetListingAsync(c, res, one, format)
                : GetObjectsAsync(c, res, one, TenantFor(res.Kind, r.GetValue(tenant)!), r.GetValue(all), format, cancel), cancel);
        });
        return cmd;
    }

    private static async Task<int> GetObjectsAsync(ControlClient c, Resource res, string? name, string tenant, bool allTenants, string? format, CancellationToken cancel)
    {
        var items = new List<ApiObject>();
        long version;
        if (name is not null)
        {
            var obj = await c.GetAsync(new ObjectKey(res.Kind, tenant, name), cancel).ConfigureAwait(false);
            if (obj is null)
            {
                Console.Error.WriteLine($"omega get: {res.Singular} '{name}' not found in tenant '{tenant}'");
                return ExitNotFound;
            }
            if (format is "json" or "yaml")
            {
                Print(ObjectCodec.Serialize(obj), format);
                return 0;
            }
            items.Add(obj);
            version = obj.Metadata.ResourceVersion;
        }
        else
        {
            string? next = null;
            version = -1;
            do
            {
                var page = await c.ListAsync(res.Kind, allTenants ? null : tenant, null, 1000, next, cancel).ConfigureAwait(false);
                if (version < 0) version = page.ResourceVersion;
                items.AddRange(page.Items);
                next = page.Continue;
            }
            while (next is not null);
        }
        if (format is "json" or "yaml")
        {
            // A Kubernetes-style List: machine-parseable, and its resourceVersion is where a watch would continue.
            var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                w.WriteString("apiVersion", ApiObject.CurrentApiVersion);
                w.WriteString("kind", "List");
                w.WriteNumber("resourceVersion", version);
                w.WriteStartArray("items");
                foreach (var item in items) w.WriteRawValue(ObjectCodec.Serialize(item), skipInputValidation: true);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            Print(buffer.ToArray(), format);
            return 0;
        }
        PrintTable(res, items, wide: format == "wide");
        return 0;
    }

    private static void PrintTable(Resource res, List<ApiObject> items, bool wide)
    {
        var rows = new List<string[]>();
        var now = DateTimeOffset.UtcNow;
        if (res.Kind == Workload.KindName)
        {
            rows.Add(wide
                ? ["NAME", "TENANT", "TYPE", "REPLICAS", "BOUND", "READY", "SERVING", "GENERATION", "OBSERVED", "AVAILABLE", "CPU", "MEMORY", "RESOURCEVERSION", "AGE", "PENDING"]
                : ["NAME", "TENANT", "TYPE", "REPLICAS", "BOUND", "READY", "GENERATION", "OBSERVED", "AGE"]);
            foreach (Workload w in items.Cast<Workload>())
            {
                var ci = CultureInfo.InvariantCulture;
                string age = Age(now, w.Metadata.CreationTimestamp);
                rows.Add(wide
                    ? [w.Metadata.Name, w.Metadata.Tenant, w.Spec.Type.ToString(), w.Spec.Replicas.ToString(ci), w.Status.Bound.ToString(ci), w.Status.Ready.ToString(ci), w.Status.Serving.ToString(ci),
                       w.Metadata.Generation.ToString(ci), w.Status.ObservedGeneration.ToString(ci), Conditions.Find(w.Status.Conditions, "Available")?.Status.ToString() ?? "Unknown",
                       w.Spec.Resources.CpuMillis.ToString(ci) + "m", (w.Spec.Resources.MemoryBytes >> 20).ToString(ci) + "Mi", w.Metadata.ResourceVersion.ToString(ci), age, w.Status.PendingReason ?? ""]
                    : [w.Metadata.Name, w.Metadata.Tenant, w.Spec.Type.ToString(), w.Spec.Replicas.ToString(ci), w.Status.Bound.ToString(ci), w.Status.Ready.ToString(ci),
                       w.Metadata.Generation.ToString(ci), w.Status.ObservedGeneration.ToString(ci), age]);
            }
        }
        else if (KindTable(res.Kind, items, wide, now) is { } table) rows = table;
        else
        {
            rows.Add(["NAME", "TENANT", "KIND", "GENERATION", "RESOURCEVERSION", "AGE"]);
            foreach (var o in items)
                rows.Add([o.Metadata.Name, o.Metadata.Tenant, o.Kind, o.Metadata.Generation.ToString(CultureInfo.InvariantCulture), o.Metadata.ResourceVersion.ToString(CultureInfo.InvariantCulture), Age(now, o.Metadata.CreationTimestamp)]);
        }
        if (rows.Count == 1)
        {
            Console.Error.WriteLine($"no {res.Singular} objects");
            return;
        }
        WriteColumns(rows);
    }

    private static string Cpu(ResourceRequest r) => r.CpuMillis.ToString(CultureInfo.InvariantCulture) + "m";

    private static string Mem(ResourceRequest r) => (r.MemoryBytes >> 20).ToString(CultureInfo.InvariantCulture) + "Mi";

    private static string Res(ResourceRequest r) => r.CpuMillis == 0 && r.MemoryBytes == 0 && r.Gpus == 0 && r.DiskBytes == 0 ? "-"
        : string.Create(CultureInfo.InvariantCulture, $"{Cpu(r)}/{Mem(r)}{(r.Gpus > 0 ? $"/{r.Gpus}gpu" : "")}");

    // The per-kind tables of get (the views of the cell, quotas, policies, scheduling requests); null: the generic one.
    private static List<string[]>? KindTable(string kind, List<ApiObject> items, bool wide, DateTimeOffset now)
    {
        var ci = CultureInfo.InvariantCulture;
        var rows = new List<string[]>();
        switch (kind)
        {
            case Reservation.KindName:
                rows.Add(wide ? ["NAME", "TENANT", "NODE", "CPU", "MEMORY", "GPUS", "PHASE", "EXPIRES", "GENERATION", "HOLDER"] : ["NAME", "TENANT", "NODE", "CPU", "MEMORY", "EXPIRES", "HOLDER"]);
                foreach (Reservation r in items.Cast<Reservation>())
                {
                    var left = r.Spec.ExpiresAt - now;
                    string expires = left <= TimeSpan.Zero ? "expired" : "in " + Age(r.Spec.ExpiresAt, now);
                    rows.Add(wide
                        ? [r.Metadata.Name, r.Metadata.Tenant, r.Spec.Node, Cpu(r.Spec.Resources), Mem(r.Spec.Resources), r.Spec.Resources.Gpus.ToString(ci), r.Status.Phase, r.Spec.ExpiresAt.ToString("O", ci), r.Metadata.Generation.ToString(ci), r.Spec.Purpose]
                        : [r.Metadata.Name, r.Metadata.Tenant, r.Spec.Node, Cpu(r.Spec.Resources), Mem(r.Spec.Resources), expires, r.Spec.Purpose]);
                }
                return rows;
            case Binding.KindName:
                rows.Add(wide ? ["NAME", "TENANT", "NODE", "CPU", "MEMORY", "GPUS", "PHASE", "GENERATION", "PRIORITY", "TASK", "HOLDER"] : ["NAME", "TENANT", "NODE", "CPU", "MEMORY", "PHASE", "HOLDER"]);
                foreach (Binding b in items.Cast<Binding>())
                    rows.Add(wide
                        ? [b.Metadata.Name, b.Metadata.Tenant, b.Spec.Node, Cpu(b.Spec.Resources), Mem(b.Spec.Resources), b.Spec.Resources.Gpus.ToString(ci), b.Status.Phase, b.Spec.Generation.ToString(ci), b.Spec.Priority.ToString(ci), b.Spec.Task, b.Spec.Holder]
                        : [b.Metadata.Name, b.Metadata.Tenant, b.Spec.Node, Cpu(b.Spec.Resources), Mem(b.Spec.Resources), b.Status.Phase, b.Spec.Holder]);
                return rows;
            case Quota.KindName:
                rows.Add(wide ? ["NAME", "TENANT", "LIMIT", "PROTECTED", "USED", "UNMET", "APPLIED", "GENERATION", "OBSERVED", "AGE"] : ["NAME", "TENANT", "LIMIT", "PROTECTED", "USED", "APPLIED", "AGE"]);
                foreach (Quota q in items.Cast<Quota>())
                {
                    string applied = Conditions.Find(q.Status.Conditions, "Applied") is { } a ? $"{a.Status} ({a.Reason})" : "Unknown";
                    rows.Add(wide
                        ? [q.Metadata.Name, q.Metadata.Tenant, Res(q.Spec.Limit), Res(q.Spec.Protected), Res(q.Status.Used), Res(q.Status.Unmet), applied, q.Metadata.Generation.ToString(ci), q.Status.ObservedGeneration.ToString(ci), Age(now, q.Metadata.CreationTimestamp)]
                        : [q.Metadata.Name, q.Metadata.Tenant, Res(q.Spec.Limit), Res(q.Spec.Protected), Res(q.Status.Used), applied, Age(now, q.Metadata.CreationTimestamp)]);
                }
                return rows;
            case SchedulerPolicy.KindName:
                rows.Add(wide ? ["NAME", "REVISION", "ROLE", "RESOURCEVERSION", "AGE", "SETTINGS"] : ["NAME", "REVISION", "ROLE", "AGE"]);
                foreach (SchedulerPolicy p in items.Cast<SchedulerPolicy>())
                {
                    string role = p.Metadata.Name.Contains(".r", StringComparison.Ordinal) ? "revision" : "active pointer";
                    rows.Add(wide
                        ? [p.Metadata.Name, p.Spec.Revision.ToString(ci), role, p.Metadata.ResourceVersion.ToString(ci), Age(now, p.Metadata.CreationTimestamp), PolicyRevisions.Summarize(p.Spec)]
                        : [p.Metadata.Name, p.Spec.Revision.ToString(ci), role, Age(now, p.Metadata.CreationTimestamp)]);
                }
                return rows;
            case SchedulingRequest.KindName:
                rows.Add(wide ? ["NAME", "TENANT", "WORKLOAD", "GENERATION", "SLOTS", "PLACED", "RESOURCEVERSION", "AGE", "PENDING"] : ["NAME", "TENANT", "WORKLOAD", "SLOTS", "PLACED", "AGE"]);
                foreach (SchedulingRequest q in items.Cast<SchedulingRequest>())
                    rows.Add(wide
                        ? [q.Metadata.Name, q.Metadata.Tenant, q.Spec.Workload, q.Spec.WorkloadGeneration.ToString(ci), q.Spec.Slots.Count.ToString(ci), q.Status.Placed.ToString(ci), q.Metadata.ResourceVersion.ToString(ci), Age(now, q.Metadata.CreationTimestamp), q.Status.PendingReason ?? ""]
                        : [q.Metadata.Name, q.Metadata.Tenant, q.Spec.Workload, q.Spec.Slots.Count.ToString(ci), q.Status.Placed.ToString(ci), Age(now, q.Metadata.CreationTimestamp)]);
                return rows;
            default:
                return null;
        }
    }

    private static void WriteColumns(List<string[]> rows)
    {
        var widths = new int[rows[0].Length];
        foreach (var row in rows)
            for (int i = 0; i < row.Length; i++) widths[i] = Math.Max(widths[i], row[i].Length);
        var sb = new StringBuilder();
        foreach (var row in rows)
        {
            sb.Clear();
            for (int i = 0; i < row.Length; i++)
            {
                if (i > 0) sb.Append("   ");
                sb.Append(i == row.Length - 1 ? row[i] : row[i].PadRight(widths[i]));
            }
            Console.WriteLine(sb.ToString().TrimEnd());
        }
    }

    private static string Age(DateTimeOffset now, DateTimeOffset? at)
    {
        if (at is not { } t) return "";
        var d = now - t;
        if (d < TimeSpan.Zero) d = TimeSpan.Zero;
        return d.TotalDays >= 1 ? $"{(int)d.TotalDays}d" : d.TotalHours >= 1 ? $"{(int)d.TotalHours}h" : d.TotalMinutes >= 1 ? $"{(int)d.TotalMinutes}m" : $"{(int)d.TotalSeconds}s";
    }

    /// <summary>nodes, jobs, tenants: the engine's Inspect listings (they are not objects). JSON items carry the first field as name and the whole line.</summary>
    private static async Task<int> GetListingAsync(ControlClient c, Resource res, string? name, string? format)
    {
        var target = res.Listing switch { Listing.Nodes => InspectTarget.Nodes, Listing.Jobs => InspectTarget.Jobs, _ => InspectTarget.Tenants };
        var (total, lines) = await c.InspectAsync(target, 10_000).ConfigureAwait(false);
        var chosen = new List<string>();
        foreach (var l in lines)
        {
            string first = l.Split(' ', 2)[0];
            if (name is null || string.Equals(first, name, StringComparison.Ordinal)) chosen.Add(l);
        }
        if (name is not null && chosen.Count == 0)
        {
            Console.Error.WriteLine($"omega get: {res.Singular} '{name}' not found");
            return ExitNotFound;
        }
        if (format is "json" or "yaml")
        {
            var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                w.WriteString("kind", res.Singular switch { "node" => "NodeList", "job" => "JobList", _ => "TenantList" });
                w.WriteNumber("total", name is null ? total : chosen.Count);
                w.WriteStartArray("items");
                foreach (var l in chosen)
                {
                    w.WriteStartObject();
                    w.WriteString("name", l.Split(' ', 2)[0]);
                    w.WriteString("line", l);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            Print(buffer.ToArray(), format);
            return 0;
        }
        foreach (var l in chosen) Console.WriteLine(l);
        if (name is null && total > lines.Count) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"... {total - lines.Count:N0} more"));
        return 0;
    }

    private static void Print(byte[] json, string format)
        => Console.Write(format == "yaml" ? Manifests.JsonToYaml(json) : Manifests.Indent(json) + Environment.NewLine);

    // ------------------------------------------------------------------ describe

    private static Command Describe()
    {
        var connect = ControlCommands.ConnectOption();
        var what = new Argument<string>("resource") { Description = "workload (or another object resource)." };
        var name = new Argument<string>("name") { Description = "The object's name." };
        var tenant = TenantOption();
        var cmd = new Command("describe", "Show one object for people: metadata, spec, status, conditions, and whether the controller has caught up (observedGeneration vs generation).") { connect, what, name, tenant };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) =>
        {
            if (!TryResource("describe", r.GetValue(what)!, out var res, out int exit)) return Task.FromResult(exit);
            if (res.Listing != Listing.None) return Usage("describe", $"{r.GetValue(what)} are not objects: use 'omega get {r.GetValue(what)}'");
            string n = r.GetValue(name)!, t = TenantFor(res.Kind, r.GetValue(tenant)!);
            return ControlCommands.WithClientAsync("describe", r.GetValue(connect)!, tls, r, async c =>
            {
                var obj = await c.GetAsync(new ObjectKey(res.Kind, t, n), cancel).ConfigureAwait(false);
                if (obj is null)
                {
                    Console.Error.WriteLine($"omega describe: {res.Singular} '{n}' not found in tenant '{t}'");
                    return ExitNotFound;
                }
                DescribeObject(obj);
                // regops (issue 13): the live overrides that change what this object gets (seed 001: overrides must not be invisible).
                var overrides = await c.ListAsync(Override.KindName, null, null, cancellationToken: cancel).ConfigureAwait(false);
                var now = DateTimeOffset.UtcNow;
                var affecting = overrides.Items.OfType<Override>().Where(o => o.IsLive(now) && o.Affects(obj)).ToList();
                Console.WriteLine("Overrides:");
                if (affecting.Count == 0) Console.WriteLine("  <none>");
                foreach (var o in affecting)
                    Console.WriteLine($"  override/{o.Metadata.Name}: {o.Spec.Type} {o.Spec.Target} until {o.ExpiresAt?.ToString("O", CultureInfo.InvariantCulture)} by {o.Spec.Author}: {o.Spec.Reason}");
                return 0;
            }, cancel);
        });
        return cmd;
    }

    private static void DescribeObject(ApiObject obj)
    {
        var m = obj.Metadata;
        var ci = CultureInfo.InvariantCulture;
        Console.WriteLine($"Name:              {m.Name}");
        Console.WriteLine($"Tenant:            {m.Tenant}");
        Console.WriteLine($"Kind:              {obj.Kind} ({obj.ApiVersion})");
        Console.WriteLine(string.Create(ci, $"UID:               {m.Uid}"));
        Console.WriteLine(string.Create(ci, $"ResourceVersion:   {m.ResourceVersion}"));
        Console.WriteLine($"Created:           {m.CreationTimestamp?.ToString("O", ci) ?? "-"}");
        if (m.DeletionTimestamp is { } del) Console.WriteLine($"Deleting since:    {del.ToString("O", ci)} (waiting for finalizers)");
        Console.WriteLine($"Labels:            {(m.Labels.Count == 0 ? "<none>" : string.Join(", ", m.Labels.Select(kv => $"{kv.Key}={kv.Value}")))}");
        Console.WriteLine($"Finalizers:        {(m.Finalizers.Count == 0 ? "<none>" : string.Join(", ", m.Finalizers))}");
        long observed = obj is Workload wl ? wl.Status.ObservedGeneration : -1;
        Console.WriteLine(string.Create(ci, $"Generation:        {m.Generation}"));
        if (observed >= 0)
            Console.WriteLine(string.Create(ci, $"ObservedGeneration: {observed} ({(observed == m.Generation ? "the controller has reconciled the current spec" : observed < m.Generation ? $"behind: generation {m.Generation} not reconciled yet" : "ahead")})"));

        using var doc = JsonDocument.Parse(ObjectCodec.Serialize(obj));
        if (doc.RootElement.TryGetProperty("spec", out var spec))
        {
            Console.WriteLine("Spec:");
            Console.Write(Indent(Manifests.JsonToYaml(Encoding.UTF8.GetBytes(spec.GetRawText())), "  "));
        }
        if (obj is Workload w)
        {
            var s = w.Status;
            Console.WriteLine("Status:");
            Console.WriteLine(string.Create(ci, $"  Replicas:        desired {s.Desired}, bound {s.Bound}, ready {s.Ready}, serving {s.Serving}, succeeded {s.Succeeded}"));
            Console.WriteLine($"  Pending reason:  {s.PendingReason ?? "<none>"}");
            if (w.Spec.Type == WorkloadType.Service && s.Rollout is { } ro)
            {
                Console.WriteLine(string.Create(ci, $"  Rollout:         {ro.Phase}: revision {ro.Revision} (stable {ro.StableRevision}), updated {ro.Updated} bound, {ro.UpdatedReady} ready, {ro.UpdatedServing} serving; maxSurge {w.Spec.MaxSurge}, maxUnavailable {w.Spec.MaxUnavailable}, deadline {w.Spec.ProgressDeadlineSeconds} s"));
                if (ro.FailedRevision != 0) Console.WriteLine(string.Create(ci, $"  Rolled back:     revision {ro.FailedRevision}: {ro.Reason}"));
            }
            Console.WriteLine("Conditions:");
            if (s.Conditions.Count == 0) Console.WriteLine("  <none> (not reconciled yet)");
            else
            {
                var rows = new List<string[]> { ConditionHeader };
                foreach (var c in s.Conditions)
                    rows.Add(["  " + c.Type, c.Status.ToString(), c.Reason, c.ObservedGeneration.ToString(ci), c.LastTransitionTime.ToString("O", ci), c.Message]);
                WriteColumns(rows);
            }
        }
        else if (doc.RootElement.TryGetProperty("status", out var status))
        {
            Console.WriteLine("Status:");
            Console.Write(Indent(Manifests.JsonToYaml(Encoding.UTF8.GetBytes(status.GetRawText())), "  "));
        }
    }

    private static readonly string[] ConditionHeader = ["  TYPE", "STATUS", "REASON", "GENERATION", "SINCE", "MESSAGE"];

    private static string Indent(string text, string prefix)
    {
        var sb = new StringBuilder();
        foreach (var line in text.Split('\n'))
            if (line.Length > 0) sb.Append(prefix).Append(line.TrimEnd('\r')).Append('\n');
        return sb.ToString();
    }

    // ------------------------------------------------------------------ delete

    private static Command Delete()
    {
        var connect = ControlCommands.ConnectOption();
        var what = new Argument<string>("resource") { Description = "workload (or another object resource)." };
        var name = new Argument<string>("name") { Description = "The object's name." };
        var tenant = TenantOption();
        var version = new Option<long>("--resource-version") { Description = "Delete only if the object is still at this resourceVersion (0: unconditional).", DefaultValueFactory = _ => 0 };
        var cmd = new Command("delete", "Delete an object. One with finalizers is marked terminating and goes once its controller has cleaned up.") { connect, what, name, tenant, version };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) =>
        {
            if (!TryResource("delete", r.GetValue(what)!, out var res, out int exit)) return Task.FromResult(exit);
            if (res.Listing != Listing.None) return Usage("delete", $"{r.GetValue(what)} are not objects (nodes are removed with 'omega node remove')");
            if (r.GetValue(version) < 0) return Usage("delete", "--resource-version must not be negative");
            string n = r.GetValue(name)!, t = TenantFor(res.Kind, r.GetValue(tenant)!);
            return ControlCommands.WithClientAsync("delete", r.GetValue(connect)!, tls, r, async c =>
            {
                var result = await c.DeleteAsync(new ObjectKey(res.Kind, t, n), r.GetValue(version), cancel).ConfigureAwait(false);
                Console.WriteLine(result.Removed
                    ? $"{res.Singular}/{n} deleted"
                    : $"{res.Singular}/{n} marked for deletion: waiting for finalizers {string.Join(", ", result.Object!.Metadata.Finalizers)}");
                return 0;
            }, cancel);
        });
        return cmd;
    }

    // ------------------------------------------------------------------ node verbs

    /// <summary><c>omega cordon|undrain NODE</c> (and <c>drain</c>, in ControlCommands): an Operate on the node named.</summary>
    private static Command NodeVerb(string verb, OperateKind kind, string description)
    {
        var connect = ControlCommands.ConnectOption();
        var node = new Argument<string>("node") { Description = "The node's name." };
        var output = Output.Option();
        var cmd = new Command(verb, description) { connect, node, output };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) => !Output.TryParse(verb, r.GetValue(output), out var format) ? Task.FromResult(2) : ControlCommands.WithClientAsync(verb, r.GetValue(connect)!, tls, r, async c =>
        {
            var (status, message) = await c.OperateAsync(kind, r.GetValue(node)!, cancellationToken: cancel).ConfigureAwait(false);
            return Output.PrintOperate(verb, kind.ToString(), r.GetValue(node)!, status, message, format);
        }, cancel));
        return cmd;
    }

    private static Task<int> Usage(string command, string message)
    {
        Console.Error.WriteLine($"omega {command}: {message}");
        return Task.FromResult(2);
    }
}
