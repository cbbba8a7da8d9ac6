using System.CommandLine;
using System.Globalization;
using Omega.Agent;
using Omega.Protocol;

namespace Omega.Cli.Run;

/// <summary>
/// <c>omega quota set</c> and <c>omega quota list</c> (issue 12): a tenant's hard limit and guarantee (protected capacity)
/// on a running server, over SetQuota/ListQuotas (docs/protocol.md, "Quotas and protected capacity").
/// </summary>
internal static class QuotaCommands
{
    public static Command Create()
    {
        var cmd = new Command("quota", "Set and list tenant quotas: a hard limit and a guarantee (protected capacity), enforced at commit.");
        cmd.Subcommands.Add(Set());
        cmd.Subcommands.Add(List());
        return cmd;
    }


    private static Command Set()
    {
        var connect = ControlCommands.ConnectOption();
        var tenant = new Argument<string>("tenant") { Description = "The tenant's name." };
        var cores = new Option<double?>("--cores") { Description = "Hard limit: cores (with --memory-gib)." };
        var memory = new Option<double?>("--memory-gib") { Description = "Hard limit: memory, GiB (with --cores)." };
        var gCores = new Option<double?>("--guaranteed-cores") { Description = "Guarantee (protected capacity): cores (with --guaranteed-memory-gib)." };
        var gMemory = new Option<double?>("--guaranteed-memory-gib") { Description = "Guarantee (protected capacity): memory, GiB (with --guaranteed-cores)." };
        var noLimit = new Option<bool>("--no-limit") { Description = "Clear the hard limit." };
        var noGuarantee = new Option<bool>("--no-guarantee") { Description = "Clear the guarantee." };
        var output = Output.Option();
        var set = new Command("set", "Set a tenant's hard limit and/or guarantee; what is not given is kept. Answered once durable.")
        {
            connect, tenant, cores, memory, gCores, gMemory, noLimit, noGuarantee, output,
        };
        var tls = ClientTls.AddTo(set);
        set.SetAction((r, cancel) =>
        {
            if (!Output.TryParse("quota set", r.GetValue(output), out var format)) return Task.FromResult(2);
            string name = r.GetValue(tenant)!;
            if (!TryField(r.GetValue(cores), r.GetValue(memory), r.GetValue(noLimit), "--cores", "--memory-gib", "--no-limit", out var limit, out var error)
                || !TryField(r.GetValue(gCores), r.GetValue(gMemory), r.GetValue(noGuarantee), "--guaranteed-cores", "--guaranteed-memory-gib", "--no-guarantee", out var guaranteed, out error))
            {
                Console.Error.WriteLine($"omega quota set: {error}");
                return Task.FromResult(2);
            }
            if (!limit.Present && !guaranteed.Present)
            {
                Console.Error.WriteLine("omega quota set: nothing to set: give --cores/--memory-gib, --guaranteed-cores/--guaranteed-memory-gib, --no-limit or --no-guarantee");
                return Task.FromResult(2);
            }
            return ControlCommands.WithClientAsync("quota set", r.GetValue(connect)!, tls, r, async c =>
            {
                var (id, version) = await c.SetQuotaAsync(name, limit, guaranteed, cancel).ConfigureAwait(false);
                Output.Emit(format, "QuotaSet", w =>
                {
                    w.WriteString("tenant", name);
                    w.WriteNumber("id", id);
                    Field(w, "limit", limit);
                    Field(w, "guaranteed", guaranteed);
                    w.WriteNumber("cellVersion", version);
                }, _ => Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"tenant '{name}' (t{id}): limit {Describe(limit)}, guarantee {Describe(guaranteed)} (cell version {version}, durable)")));
                return 0;
            }, cancel);
        });
        return set;
    }

    private static Command List()
    {
        var connect = ControlCommands.ConnectOption();
        var output = Output.Option();
        var list = new Command("list", "List every tenant's usage (bindings + reservations), hard limit, guarantee and unmet guarantee.") { connect, output };
        var tls = ClientTls.AddTo(list);
        list.SetAction((r, cancel) => !Output.TryParse("quota list", r.GetValue(output), out var format) ? Task.FromResult(2) : ControlCommands.WithClientAsync("quota list", r.GetValue(connect)!, tls, r, async c =>
        {
            var (tenants, free, unmetTotal) = await c.ListQuotasAsync(cancel).ConfigureAwait(false);
            if (format.IsDocument())
            {
                Output.Print(Output.Document("QuotaList", w =>
                {
                    Output.Resources(w, "free", free);
                    Output.Resources(w, "unmetTotal", unmetTotal);
                    w.WriteStartArray("items");
                    foreach (var t in tenants)
                    {
                        w.WriteStartObject();
                        w.WriteString("tenant", t.Name);
                        w.WriteNumber("id", t.Id);
                        Output.Resources(w, "used", t.Usage);
                        if (t.Limit is { } l) Output.Resources(w, "limit", l); else w.WriteNull("limit");
                        if (t.Guaranteed is { } g) Output.Resources(w, "guaranteed", g); else w.WriteNull("guaranteed");
                        Output.Resources(w, "unmet", t.Unmet);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                }), format);
                return 0;
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"TENANT",-20} {"ID",4} {"USED",-22} {"LIMIT",-22} {"GUARANTEED",-22} {"UNMET",-22}"));
            foreach (var t in tenants)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{t.Name,-20} {t.Id,4} {Short(t.Usage),-22} {(t.Limit is { } l ? Short(l) : "-"),-22} {(t.Guaranteed is { } g ? Short(g) : "-"),-22} {Short(t.Unmet),-22}"));
            Console.WriteLine($"free schedulable {Short(free)}; unmet guarantees {Short(unmetTotal)}");
            return 0;
        }, cancel));
        return list;
    }

    private static bool TryField(double? cores, double? gib, bool clear, string coresName, string gibName, string clearName, out QuotaField field, out string error)
    {
        field = QuotaField.Keep;
        error = "";
        bool any = cores is not null || gib is not null;
        if (clear && any)
        {
            error = $"{clearName} cannot be combined with {coresName}/{gibName}";
            return false;
        }
        if (clear)
        {
            field = QuotaField.Clear;
            return true;
        }
        if (!any) return true;
        if (cores is not { } c || gib is not { } g || !ResourceVector.TryFromCoresAndGiB(c, g, out var v))
        {
            error = $"{coresName} and {gibName} go together, finite and not negative";
            return false;
        }
        field = QuotaField.Set(v);
        return true;
    }

    // A field of quota set's answer: absent when kept, null when cleared, else the vector.
    private static void Field(System.Text.Json.Utf8JsonWriter w, string name, QuotaField f)
    {
        if (!f.Present) return;
        if (f.Value is { } v) Output.Resources(w, name, v);
        else w.WriteNull(name);
    }

    private static string Describe(QuotaField f) => !f.Present ? "unchanged" : f.Value is { } v ? Short(v) : "none";

    private static string Short(ResourceVector v)
        => string.Create(CultureInfo.InvariantCulture, $"{v.CpuMillis / 1000.0:0.###}c/{v.MemoryBytes / (1024.0 * 1024 * 1024):0.###}GiB");
}
