using System.CommandLine;
using Omega.Agent;

namespace Omega.Cli.Run;

/// <summary>
/// SchedulerPolicy revisions and decision reconstruction from the command line (issue 12): <c>omega rollout history</c>,
/// <c>omega rollout undo [--to-revision N]</c>, <c>omega policy apply -f FILE [--stage-only]</c>, <c>omega policy promote
/// N</c>, and <c>omega explain workload/NAME --generation G</c> (routed here by <c>explain</c>). Each is one request over
/// the wire (Policy 0x68, ExplainWorkload 0x6A); also the helpers <c>omega submit</c> uses for its placement flags.
/// </summary>
internal static class PolicyCommands
{
    public static IEnumerable<Command> Create()
    {
        yield return Rollout();
        yield return Policy();
    }

    // $OMEGA_ADDR applies here as to every command with --connect (docs/cli.md, "Environment").
    private static Option<string> ConnectOption() => ControlCommands.ConnectOption();

    private static Command Rollout()
    {
        var cmd = new Command("rollout", "SchedulerPolicy revisions: history and undo.");
        var connect = ConnectOption();
        var output = Output.Option();
        var history = new Command("history", "List the policy's revisions (active, staged, superseded) and its promotions.") { connect, output };
        var tls = ClientTls.AddTo(history);
        history.SetAction((r, cancel) => !Output.TryParse("rollout history", r.GetValue(output), out var format) ? Task.FromResult(2)
            : ControlCommands.WithClientAsync("rollout history", r.GetValue(connect)!, tls, r, c => RunAsync("rollout history", c, 4, null, 0, format, cancel), cancel));
        cmd.Subcommands.Add(history);

        var connect2 = ConnectOption();
        var to = new Option<int>("--to-revision") { Description = "The revision to return to (default: the one active before the current)." };
        var output2 = Output.Option();
        var undo = new Command("undo", "Roll the policy back to the previous (or the given) revision.") { connect2, to, output2 };
        var tls2 = ClientTls.AddTo(undo);
        undo.SetAction((r, cancel) =>
        {
            if (!Output.TryParse("rollout undo", r.GetValue(output2), out var format)) return Task.FromResult(2);
            if (r.GetValue(to) < 0) return Usage("rollout undo", "--to-revision must be a revision number (1 or more)");
            return ControlCommands.WithClientAsync("rollout undo", r.GetValue(connect2)!, tls2, r, c => RunAsync("rollout undo", c, 3, null, r.GetValue(to), format, cancel), cancel);
        });
        cmd.Subcommands.Add(undo);
        return cmd;
    }

    private static Command Policy()
    {
        var cmd = new Command("policy", "SchedulerPolicy: apply (stage and promote) a policy document, or promote a staged revision.");
        var connect = ConnectOption();
        var file = new Option<string>("--file", "-f") { Description = "The policy document (JSON: a SchedulerPolicy object or its spec); '-' reads stdin.", Required = true };
        var stageOnly = new Option<bool>("--stage-only") { Description = "Stage the revision without making it active (promote it later)." };
        var output = Output.Option();
        var apply = new Command("apply", "Stage the document as a new revision and promote it (or only stage it).") { connect, file, stageOnly, output };
        var tls = ClientTls.AddTo(apply);
        apply.SetAction((r, cancel) =>
        {
            if (!Output.TryParse("policy apply", r.GetValue(output), out var format)) return Task.FromResult(2);
            string path = r.GetValue(file)!;
            string text;
            try
            {
                text = path == "-" ? Console.In.ReadToEnd() : File.ReadAllText(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return Usage("policy apply", $"cannot read '{path}': {e.Message}");
            }
            // Validated here too, so a bad document is a usage error (exit 2) before connecting; the server validates again.
            if (!Omega.ControlPlane.PolicyRevisions.TryParse(text, out _, out var error)) return Usage("policy apply", $"invalid policy: {error}");
            int op = r.GetValue(stageOnly) ? 1 : 5;
            return ControlCommands.WithClientAsync("policy apply", r.GetValue(connect)!, tls, r, c => RunAsync("policy apply", c, op, text, 0, format, cancel), cancel);
        });
        cmd.Subcommands.Add(apply);

        var connect2 = ConnectOption();
        var revision = new Argument<int>("revision") { Description = "The staged revision to make active." };
        var output2 = Output.Option();
        var promote = new Command("promote", "Make a staged revision active.") { connect2, revision, output2 };
        var tls2 = ClientTls.AddTo(promote);
        promote.SetAction((r, cancel) =>
        {
            if (!Output.TryParse("policy promote", r.GetValue(output2), out var format)) return Task.FromResult(2);
            if (r.GetValue(revision) < 1) return Usage("policy promote", "the revision must be 1 or more");
            return ControlCommands.WithClientAsync("policy promote", r.GetValue(connect2)!, tls2, r, c => RunAsync("policy promote", c, 2, null, r.GetValue(revision), format, cancel), cancel);
        });
        cmd.Subcommands.Add(promote);
        return cmd;
    }

    private static readonly string[] OperationNames = ["", "stage", "promote", "undo", "history", "apply"];

    private static async Task<int> RunAsync(string command, ControlClient c, int op, string? document, int revision, OutputFormat format, CancellationToken cancel)
    {
        var (status, rev, message, lines) = await c.PolicyAsync(op, document, revision, cancellationToken: cancel).ConfigureAwait(false);
        if (status != 0)
        {
            var name = Enum.IsDefined(typeof(Omega.ControlPlane.PolicyStatus), (byte)status) ? ((Omega.ControlPlane.PolicyStatus)status).ToString() : status.ToString(System.Globalization.CultureInfo.InvariantCulture);
            Console.Error.WriteLine($"omega {command}: {name}: {message}");
            return status == (int)Omega.ControlPlane.PolicyStatus.Conflict ? 6 : 1;
        }
        // The revisions come as lines on the wire (PolicyReply); the document carries them so a script gets one
        // parseable answer with the revision number the operation produced or made active.
        Output.Emit(format, "PolicyResult", w =>
        {
            w.WriteString("operation", OperationNames[op]);
            w.WriteString("status", "Ok");
            w.WriteNumber("revision", rev);
            w.WriteString("message", message);
            w.WriteStartArray("lines");
            foreach (var l in lines) w.WriteStringValue(l);
            w.WriteEndArray();
        }, _ =>
        {
            Console.WriteLine(message);
            foreach (var l in lines) Console.WriteLine(l);
        });
        return 0;
    }

    private static Task<int> Usage(string command, string message)
    {
        Console.Error.WriteLine($"omega {command}: {message}");
        return Task.FromResult(2);
    }

    // ---------------------------------------------------------------- explain workload/NAME

    /// <summary>The <c>--generation</c> option of <c>omega explain</c> (workload targets only).</summary>
    public static Option<long> GenerationOption() => new("--generation") { Description = "explain workload/NAME: the workload generation (default: every kept one)." };

    /// <summary>The <c>--tenant</c> option of <c>omega explain</c> (workload targets only).</summary>
    public static Option<string> TenantOption() => new("--tenant") { Description = "explain workload/NAME: the workload's tenant.", DefaultValueFactory = _ => Omega.Cells.Cell.DefaultTenantName };

    /// <summary>True when <c>explain</c>'s target names a workload (<c>workload/NAME</c>).</summary>
    public static bool IsWorkloadTarget(string? target) => target is not null && target.StartsWith("workload/", StringComparison.OrdinalIgnoreCase);

    /// <summary>Runs <c>omega explain workload/NAME [--generation G] [--tenant T]</c>.</summary>
    public static Task<int> ExplainWorkload(ParseResult r, string target, string connect, ClientTls tls, Option<long> generation, Option<string> tenant, CancellationToken cancel, OutputFormat format = OutputFormat.Text)
    {
        string name = target["workload/".Length..];
        if (name.Length == 0) return Usage("explain", "workload/NAME needs a name");
        long g = r.GetValue(generation);
        if (g < 0) return Usage("explain", "--generation must be 1 or more");
        return ControlCommands.WithClientAsync("explain", connect, tls, r, async c =>
        {
            var (found, text) = await c.ExplainWorkloadAsync(r.GetValue(tenant)!, name, g, cancel).ConfigureAwait(false);
            if (format.IsDocument() && found)
            {
                // The workload's kept decisions come as text on the wire (ExplainWorkloadReply); the document carries
                // its lines so a script gets one parseable answer for every explain.
                var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
                Output.Print(Output.Lines("WorkloadExplanation", lines.Length, lines, w =>
                {
                    w.WriteString("tenant", r.GetValue(tenant));
                    w.WriteString("workload", name);
                    w.WriteNumber("generation", g);
                }), format);
            }
            else Console.Write(text);
            return found ? 0 : 1;
        }, cancel);
    }

    // ---------------------------------------------------------------- submit's placement flags

    /// <summary>Parses <c>--selector KEY=VALUE</c> values; false with a one-line reason on a malformed one.</summary>
    public static bool TryParseSelectors(string[]? values, out Dictionary<string, string>? labels, out string? error)
    {
        labels = null;
        error = null;
        if (values is null || values.Length == 0) return true;
        labels = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var v in values)
        {
            int eq = v.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || eq == v.Length - 1) { error = $"--selector must be KEY=VALUE, not '{v}'"; return false; }
            string key = v[..eq], value = v[(eq + 1)..];
            if (labels.TryGetValue(key, out var other) && other != value) { error = $"--selector gives '{key}' twice ('{other}' and '{value}')"; return false; }
            labels[key] = value;
        }
        return true;
    }

    /// <summary>Parses <c>--anti-affinity node|domain</c> (null: none).</summary>
    public static bool TryParseScope(string? text, out PlacementScope scope)
    {
        scope = PlacementScope.None;
        if (text is null) return true;
        switch (text.ToLowerInvariant())
        {
            case "node": scope = PlacementScope.Node; return true;
            case "domain" or "failure-domain": scope = PlacementScope.FailureDomain; return true;
            case "none": return true;
            default: return false;
        }
    }
}
