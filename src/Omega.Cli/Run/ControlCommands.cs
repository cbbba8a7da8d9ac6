using System.CommandLine;
using System.Globalization;
using System.Net;
using Omega.Agent;
using Omega.Protocol;
using Omega.Transport;

namespace Omega.Cli.Run;

/// <summary>
/// Operator commands against a running server (<c>omega serve</c>): submit, explain, inspect, stats, drain, checkpoint.
/// Each opens one connection in the scheduler role; an unreachable server is one line on stderr and exit code 1.
/// </summary>
internal static class ControlCommands
{
    public static IEnumerable<Command> Create()
    {
        yield return Submit();
        yield return Explain();
        yield return Inspect();
        yield return Stats();
        yield return Drain();
        yield return Checkpoint();
        yield return Tenant();
    }

    /// <summary>The environment variable that sets <c>--connect</c>'s default (docs/cli.md).</summary>
    public const string AddressVariable = "OMEGA_ADDR";

    /// <summary>
    /// <c>--connect HOST:PORT[,HOST:PORT...]</c> (alias <c>--addr</c>): the server, or every replica of a highly available
    /// deployment (the command follows the leader); its default is <c>$OMEGA_ADDR</c> (commas allowed too), else 127.0.0.1:7077.
    /// </summary>
    internal static Option<string> ConnectOption() => new("--connect", "--addr")
    {
        Description = $"The server's HOST:PORT or ADDRESS:PORT; several replicas separated by commas, the command follows the leader (default: ${AddressVariable}, else 127.0.0.1:7077).",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable(AddressVariable) is { Length: > 0 } a ? a : "127.0.0.1:7077",
    };

    /// <summary>A usage error found before connecting: one line on stderr and exit code 2, whether or not a server is reachable.</summary>
    private static Task<int> UsageAsync(string command, string message)
    {
        Console.Error.WriteLine($"omega {command}: {message}");
        return Task.FromResult(2);
    }

    /// <summary>Connects, runs <paramref name="body"/>, and turns connection failures into one line and exit code 1.</summary>
    internal static async Task<int> WithClientAsync(string command, string connect, ClientTls tls, ParseResult r, Func<ControlClient, Task<int>> body, CancellationToken cancel)
    {
        if (!FrameClient.TryParseEndPoints(connect, out var endpoints))
        {
            Console.Error.WriteLine($"omega {command}: --connect must be HOST:PORT or ADDRESS:PORT (several separated by commas), not '{connect}'");
            return 2;
        }
        if (!tls.TryResolve(r, out var transport, out var tlsError) || !tls.TryResolveToken(r, out var token, out tlsError))
        {
            Console.Error.WriteLine($"omega {command}: {tlsError}");
            return 2;
        }
        ControlClient client;
        try
        {
            // One address: as before (10 s in all). Several replicas: follow the leader, a few seconds per replica so a paused
            // one (it accepts TCP but never answers) does not eat the whole budget.
            client = endpoints.Count == 1
                ? await ControlClient.ConnectAsync(endpoints[0], transport, $"omega-{command}", token, cancel).WaitAsync(TimeSpan.FromSeconds(10), cancel).ConfigureAwait(false)
                : await ControlClient.ConnectAsync(endpoints, transport, $"omega-{command}", token, TimeSpan.FromSeconds(3), maxRounds: 3, cancel).WaitAsync(TimeSpan.FromSeconds(30), cancel).ConfigureAwait(false);
        }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or TimeoutException or AgentRequestException or IOException)
        {
            Console.Error.WriteLine($"omega {command}: {ClientTls.Explain(e, connect)}");
            return 1;
        }
        await using (client)
        {
            try
            {
                return await body(client).ConfigureAwait(false);
            }
            catch (AgentRequestException e)
            {
                Console.Error.WriteLine(e.Code == ErrorCode.PermissionDenied
                    ? $"omega {command}: the server refused: PermissionDenied ({e.Reason}): {e.Message}"
                    : $"omega {command}: the server refused: {e.Code}: {e.Message}");
                // Scripts branch on these two (docs/cli.md): "is it there" and "someone else wrote first".
                return e.Code switch
                {
                    ErrorCode.ObjectNotFound or ErrorCode.UnknownJob => ResourceCommands.ExitNotFound,
                    ErrorCode.ObjectConflict or ErrorCode.ObjectExists => ResourceCommands.ExitConflict,
                    _ => 1,
                };
            }
        }
    }

    private static Command Submit()
    {
        var connect = ConnectOption();
        var job = new Option<long>("--job") { Description = "Job id (unique in the cell).", Required = true };
        var tasks = new Option<int>("--tasks") { Description = "Tasks.", DefaultValueFactory = _ => 1 };
        var cores = new Option<double>("--cores") { Description = "Cores per task.", DefaultValueFactory = _ => 1 };
        var memory = new Option<double>("--memory-gib") { Description = "Memory per task, GiB.", DefaultValueFactory = _ => 1 };
        var priority = new Option<int>("--priority") { Description = "Priority (higher preempts lower).", DefaultValueFactory = _ => 0 };
        var tenant = new Option<string>("--tenant") { Description = "The tenant's name (created with 'omega tenant create').", DefaultValueFactory = _ => Omega.Cells.Cell.DefaultTenantName };
        var gang = new Option<bool>("--gang") { Description = "All-or-nothing." };
        var scheduler = new Option<string?>("--scheduler") { Description = "Scheduler kind (default: the server's first)." };
        var selector = new Option<string[]>("--selector") { Description = "A label the node must carry, KEY=VALUE (repeatable).", AllowMultipleArgumentsPerToken = false };
        var anti = new Option<string?>("--anti-affinity") { Description = "Hard anti-affinity between the job's tasks: node or domain." };
        var wait = new Option<bool>("--wait") { Description = $"Wait until the job is placed (exit 0) or parked (exit {ExitParked}); exit {ExitWaitTimeout} after --timeout." };
        var timeout = new Option<double>("--timeout") { Description = "With --wait: give up after this many seconds.", DefaultValueFactory = _ => 60 };
        var output = Output.Option();
        var cmd = new Command("submit", "Submit a job to a running server's scheduler workers.") { connect, job, tasks, cores, memory, priority, tenant, gang, scheduler, selector, anti, wait, timeout, output };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) =>
        {
            if (!Output.TryParse("submit", r.GetValue(output), out var format)) return Task.FromResult(2);
            if (!double.IsFinite(r.GetValue(timeout)) || r.GetValue(timeout) is <= 0 or > 86_400) return UsageAsync("submit", $"--timeout must be between 0 and 86,400 seconds, not {r.GetValue(timeout)}");
            // Task ids are written j{job}/{index} with unsigned digits: a negative job id could never be named by explain.
            if (r.GetValue(job) < 0) return UsageAsync("submit", $"--job must not be negative, not {r.GetValue(job)}");
            // Usage errors are found before connecting: one line, exit 2 (docs/cli.md). NaN, infinities, negative values
            // and values beyond 2^53 units have no resource vector; a plain cast would have turned NaN into 0.
            if (!ResourceVector.TryFromCoresAndGiB(r.GetValue(cores), r.GetValue(memory), out var perTask))
            {
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"omega submit: --cores and --memory-gib must be finite, not negative, and at most {ResourceVector.MaxQuantity / 1000:N0} cores / {ResourceVector.MaxQuantity >> 30:N0} GiB (got {r.GetValue(cores)}, {r.GetValue(memory)})"));
                return Task.FromResult(2);
            }
            if (!PolicyCommands.TryParseSelectors(r.GetValue(selector), out var labels, out var badSelector)) return UsageAsync("submit", badSelector!);
            if (!PolicyCommands.TryParseScope(r.GetValue(anti), out var scope)) return UsageAsync("submit", $"--anti-affinity must be node or domain, not '{r.GetValue(anti)}'");
            var spec = new JobSpec(new JobId(r.GetValue(job)), default, r.GetValue(priority), r.GetValue(tasks), perTask, r.GetValue(gang), labels)
            {
                Group = new PlacementGroup(0, scope),
            };
            if (spec.Validate() is { } invalid)
            {
                Console.Error.WriteLine($"omega submit: invalid job: {invalid}");
                return Task.FromResult(2);
            }
            if (!Omega.Cells.Cell.IsValidTenantName(r.GetValue(tenant)))
            {
                Console.Error.WriteLine($"omega submit: --tenant must be 1-{Omega.Cells.Cell.MaxTenantNameLength} letters, digits, '.', '_' or '-', not '{r.GetValue(tenant)}'");
                return Task.FromResult(2);
            }
            return WithClientAsync("submit", r.GetValue(connect)!, tls, r, c => SubmitAsync(c, spec, r.GetValue(scheduler), r.GetValue(tenant)!, r.GetValue(wait) ? TimeSpan.FromSeconds(r.GetValue(timeout)) : null, format, cancel), cancel);
        });
        return cmd;
    }

    /// <summary>Exit code of <c>submit --wait</c> when the job parked: it will not be placed without help (docs/cli.md).</summary>
    public const int ExitParked = 7;

    /// <summary>Exit code of <c>submit --wait</c> when the job neither placed nor parked within <c>--timeout</c>.</summary>
    public const int ExitWaitTimeout = 8;


    private static async Task<int> SubmitAsync(ControlClient c, JobSpec spec, string? scheduler, string tenant, TimeSpan? wait, OutputFormat format, CancellationToken cancel)
    {
        var (status, reason) = await c.SubmitJobAsync(spec, scheduler, tenant, cancel).ConfigureAwait(false);
        if (status != 0)
        {
            Console.Error.WriteLine($"omega submit: rejected ({status}): {reason}");
            return 1;
        }
        if (wait is null)
        {
            if (format.IsDocument()) Output.Print(SubmitDocument(spec, tenant, null), format);
            else Console.WriteLine($"submitted {spec.Id}: {spec.TaskCount} task(s) of {spec.PerTask}, tenant {tenant}");
            return 0;
        }
        RemoteJobStatus settled;
        using (var limit = CancellationTokenSource.CreateLinkedTokenSource(cancel))
        {
            limit.CancelAfter(wait.Value);
            try
            {
                settled = await c.WaitForJobAsync(spec.Id, cancellationToken: limit.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
            {
                var now = await c.QueryJobAsync(spec.Id, cancel).ConfigureAwait(false);
                if (format.IsDocument()) Output.Print(SubmitDocument(spec, tenant, now), format);
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"omega submit: {spec.Id} not settled after {wait.Value.TotalSeconds:0.#} s: {PhaseOf(now)}, {now.Bound} of {spec.TaskCount} task(s) bound"));
                return ExitWaitTimeout;
            }
        }
        if (format.IsDocument()) Output.Print(SubmitDocument(spec, tenant, settled), format);
        if (!settled.Found)
        {
            // Completed and forgotten between two reads, or the server restarted (a SubmitJob is not durable intent).
            Console.Error.WriteLine($"omega submit: {spec.Id} is no longer known to the server (completed and forgotten, or the server restarted)");
            return 1;
        }
        if (settled.Phase == 3)
        {
            Console.Error.WriteLine($"omega submit: {spec.Id} parked: {settled.Reason}");
            return ExitParked;
        }
        if (settled.Phase == ControlClient.PhaseStopped)
        {
            Console.Error.WriteLine($"omega submit: {spec.Id} was stopped (omega job stop) before it was placed");
            return 1;
        }
        if (!format.IsDocument())
            Console.WriteLine($"submitted {spec.Id}: {PhaseOf(settled)}, {settled.Bound} of {spec.TaskCount} task(s) bound, tenant {tenant}");
        return 0;
    }

    private static string PhaseOf(RemoteJobStatus s) => JobCommands.PhaseOf(s);

    private static byte[] SubmitDocument(JobSpec spec, string tenant, RemoteJobStatus? status) => Output.Document("SubmitResult", w =>
    {
        w.WriteString("job", spec.Id.ToString());
        w.WriteNumber("jobId", spec.Id.Value);
        w.WriteString("tenant", tenant);
        w.WriteNumber("tasks", spec.TaskCount);
        w.WriteNumber("cpuMillisPerTask", spec.PerTask.CpuMillis);
        w.WriteNumber("memoryBytesPerTask", spec.PerTask.MemoryBytes);
        w.WriteBoolean("accepted", true);
        if (status is { } s)
        {
            w.WriteString("phase", PhaseOf(s));
            w.WriteNumber("pending", s.Pending);
            w.WriteNumber("bound", s.Bound);
            w.WriteNumber("completed", s.Completed);
            w.WriteNumber("unreachable", s.Unreachable);
            if (s.Phase == 3) w.WriteString("parkedReason", s.Reason);
        }
    });

    private static Command Explain()
    {
        var connect = ConnectOption();
        var task = new Argument<string>("task") { Description = "The task, as j{job}/{index} (for example j42/0) or {job}/{index}; or workload/NAME." };
        var generation = PolicyCommands.GenerationOption();
        var wtenant = PolicyCommands.TenantOption();
        var output = Output.Option();
        var cmd = new Command("explain", "Show the decision record of a task's placement (or why it is not placed), or a workload generation's kept decisions, from a running server.") { connect, task, generation, wtenant, output };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) =>
        {
            if (!Output.TryParse("explain", r.GetValue(output), out var format)) return Task.FromResult(2);
            if (PolicyCommands.IsWorkloadTarget(r.GetValue(task)))
                return PolicyCommands.ExplainWorkload(r, r.GetValue(task)!, r.GetValue(connect)!, tls, generation, wtenant, cancel, format);
            if (!TaskId.TryParse(r.GetValue(task), out var id))
            {
                Console.Error.WriteLine($"omega explain: '{r.GetValue(task)}' is not a task id (j{{job}}/{{index}})");
                return Task.FromResult(2);
            }
            return WithClientAsync("explain", r.GetValue(connect)!, tls, r, async c =>
            {
                // The structured form is the server's own document (protocol version 3), not this tool's parse of the text.
                var (found, text, document) = format.IsDocument()
                    ? await c.ExplainDocumentAsync(id, cancel).ConfigureAwait(false)
                    : (await c.ExplainAsync(id, cancel).ConfigureAwait(false) is { } t ? (true, t, null) : (false, "", null));
                if (!found)
                {
                    Console.Error.WriteLine($"omega explain: no decision record is kept for {id} (never scheduled here, or aged out of the ring)");
                    return 1;
                }
                if (format.IsDocument())
                {
                    if (document is null)
                    {
                        Console.Error.WriteLine("omega explain: the server sent no JSON document (it does not speak protocol version 3)");
                        return 1;
                    }
                    Output.Print(document, format);
                }
                else Console.WriteLine(text);
                return 0;
            }, cancel);
        });
        return cmd;
    }

    private static Command Inspect()
    {
        var connect = ConnectOption();
        var what = new Argument<InspectTarget>("what") { Description = "Nodes, Allocations, Jobs, Stats or Liveness." };
        var limit = new Option<int>("--limit") { Description = "At most this many lines.", DefaultValueFactory = _ => 100 };
        var output = Output.Option();
        var cmd = new Command("inspect", "List nodes, live bindings, jobs or statistics of a running server.") { connect, what, limit, output };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) =>
        {
            if (!Output.TryParse("inspect", r.GetValue(output), out var format)) return Task.FromResult(2);
            if (r.GetValue(limit) is < 1 or > 10_000)
            {
                Console.Error.WriteLine("omega inspect: --limit must be between 1 and 10,000");
                return Task.FromResult(2);
            }
            return WithClientAsync("inspect", r.GetValue(connect)!, tls, r, async c =>
            {
                if (format.IsDocument() && r.GetValue(what) == InspectTarget.Stats)
                {
                    Output.Print(await c.StatsDocumentAsync(cancel).ConfigureAwait(false), format);
                    return 0;
                }
                var (total, lines) = await c.InspectAsync(r.GetValue(what), r.GetValue(limit), cancel).ConfigureAwait(false);
                if (format.IsDocument())
                {
                    // The other targets' lines are the listing (docs/protocol.md): the document carries them as they are.
                    Output.Print(Output.Lines("InspectResult", total, lines, w => w.WriteString("target", r.GetValue(what).ToString())), format);
                    return 0;
                }
                foreach (var l in lines) Console.WriteLine(l);
                if (total > lines.Count) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"... {total - lines.Count:N0} more"));
                return 0;
            }, cancel);
        });
        return cmd;
    }

    private static Command Stats()
    {
        var connect = ConnectOption();
        var watch = new Option<int>("--watch") { Description = "Repeat every second this many times (0: once).", DefaultValueFactory = _ => 0 };
        var output = Output.Option();
        var cmd = new Command("stats", "Live scheduler and cell statistics from a running server: outcome counters, queue depth, busyness.") { connect, watch, output };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) => !Output.TryParse("stats", r.GetValue(output), out var format) ? Task.FromResult(2) : WithClientAsync("stats", r.GetValue(connect)!, tls, r, async c =>
        {
            if (format.IsDocument())
            {
                // One document per reading: with --watch, JSON Lines (one compact document a line) or YAML documents
                // separated by ---, so a script can stream them.
                bool stream = r.GetValue(watch) > 0;
                for (int i = 0; ; i++)
                {
                    var document = await c.StatsDocumentAsync(cancel).ConfigureAwait(false);
                    if (stream && format == OutputFormat.Yaml && i > 0) Console.WriteLine("---");
                    Output.Print(document, format, compact: stream);
                    if (i >= r.GetValue(watch) || cancel.IsCancellationRequested) return 0;
                    await Task.Delay(1000, cancel).ConfigureAwait(false);
                }
            }
            Dictionary<string, Omega.Cli.Load.RemoteLoadRun.Kind>? previous = null;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            double previousAt = 0;
            for (int i = 0; ; i++)
            {
                var (_, lines) = await c.InspectAsync(InspectTarget.Stats, 10_000, cancel).ConfigureAwait(false);
                var kinds = await Omega.Cli.Load.RemoteLoadRun.ReadStatsAsync(c).ConfigureAwait(false);
                double now = clock.Elapsed.TotalSeconds;
                Console.WriteLine($"--- {DateTime.UtcNow:HH:mm:ss} UTC");
                foreach (var l in lines) Console.WriteLine(l);
                // Rates need two readings: with --watch, each reading after the first shows the last interval's rates.
                if (previous is not null)
                    foreach (var (name, k) in kinds)
                    {
                        var p = previous.GetValueOrDefault(name);
                        long dClean = k.Clean - p.Clean, dConflicted = k.Conflicted - p.Conflicted;
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"rate {name} placements/s={(k.Placed - p.Placed) / (now - previousAt):0} conflict_fraction={Omega.Cli.Load.SchedulerTally.Fraction(dClean, dConflicted):0.0000}"));
                    }
                previous = kinds;
                previousAt = now;
                if (i >= r.GetValue(watch) || cancel.IsCancellationRequested) return 0;
                await Task.Delay(1000, cancel).ConfigureAwait(false);
            }
        }, cancel));
        return cmd;
    }

    private static Command Drain()
    {
        var connect = ConnectOption();
        var node = new Argument<string>("node") { Description = "The node's name." };
        var output = Output.Option();
        var cmd = new Command("drain", "Drain a node of a running server: no new bindings; running tasks stay.") { connect, node, output };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) => !Output.TryParse("drain", r.GetValue(output), out var format) ? Task.FromResult(2) : WithClientAsync("drain", r.GetValue(connect)!, tls, r, async c =>
        {
            var (status, message) = await c.OperateAsync(OperateKind.DrainNode, r.GetValue(node)!, cancellationToken: cancel).ConfigureAwait(false);
            return Output.PrintOperate("drain", nameof(OperateKind.DrainNode), r.GetValue(node)!, status, message, format);
        }, cancel));
        return cmd;
    }

    /// <summary><c>omega node remove NAME</c>: the operator's way to drop a node for good (junk registrations, retired hosts).</summary>
    internal static Command NodeRemove()
    {
        var connect = ConnectOption();
        var node = new Argument<string>("name") { Description = "The node's name." };
        var output = Output.Option();
        var remove = new Command("remove", "Remove a node from a running server: its bindings are released and their tasks requeued; acknowledged once durable. Stop its agent first, or it registers again as a new node.") { connect, node, output };
        var removeTls = ClientTls.AddTo(remove);
        remove.SetAction((r, cancel) => !Output.TryParse("node remove", r.GetValue(output), out var format) ? Task.FromResult(2) : WithClientAsync("node remove", r.GetValue(connect)!, removeTls, r, async c =>
        {
            var (status, message) = await c.OperateAsync(OperateKind.RemoveNode, r.GetValue(node)!, cancellationToken: cancel).ConfigureAwait(false);
            return Output.PrintOperate("node remove", nameof(OperateKind.RemoveNode), r.GetValue(node)!, status, message, format);
        }, cancel));
        return remove;
    }

    private static Command Checkpoint()
    {
        var connect = ConnectOption();
        var output = Output.Option();
        var cmd = new Command("checkpoint", "Ask a running server to checkpoint its FASTER store now (and truncate its journal).") { connect, output };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) => !Output.TryParse("checkpoint", r.GetValue(output), out var format) ? Task.FromResult(2) : WithClientAsync("checkpoint", r.GetValue(connect)!, tls, r, async c =>
        {
            var (status, message) = await c.OperateAsync(OperateKind.Checkpoint, cancellationToken: cancel).ConfigureAwait(false);
            return Output.PrintOperate("checkpoint", nameof(OperateKind.Checkpoint), "", status, message, format);
        }, cancel));
        return cmd;
    }

    private static Command Tenant()
    {
        var cmd = new Command("tenant", "Create and list tenants (quota holders) of a running server. Jobs name their tenant; an unknown one is refused.");
        {
            var connect = ConnectOption();
            var name = new Argument<string>("name") { Description = "The tenant's name: 1-64 letters, digits, '.', '_' or '-'." };
            var quotaCores = new Option<double?>("--quota-cores") { Description = "Hard quota: cores (with --quota-memory-gib)." };
            var quotaMemory = new Option<double?>("--quota-memory-gib") { Description = "Hard quota: memory, GiB (with --quota-cores)." };
            var createOutput = Output.Option();
            var create = new Command("create", "Create a tenant, optionally with a hard quota; answered once the creation is durable.") { connect, name, quotaCores, quotaMemory, createOutput };
            var createTls = ClientTls.AddTo(create);
            create.SetAction((r, cancel) =>
            {
                if (!Output.TryParse("tenant create", r.GetValue(createOutput), out var format)) return Task.FromResult(2);
                string n = r.GetValue(name)!;
                if (!Omega.Cells.Cell.IsValidTenantName(n))
                {
                    Console.Error.WriteLine($"omega tenant create: the name must be 1-{Omega.Cells.Cell.MaxTenantNameLength} letters, digits, '.', '_' or '-', not '{n}'");
                    return Task.FromResult(2);
                }
                ResourceVector? quota = null;
                if (r.GetValue(quotaCores) is not null || r.GetValue(quotaMemory) is not null)
                {
                    if (r.GetValue(quotaCores) is not { } qc || r.GetValue(quotaMemory) is not { } qm || !ResourceVector.TryFromCoresAndGiB(qc, qm, out var q))
                    {
                        Console.Error.WriteLine("omega tenant create: a quota needs both --quota-cores and --quota-memory-gib, finite and not negative");
                        return Task.FromResult(2);
                    }
                    quota = q;
                }
                return WithClientAsync("tenant create", r.GetValue(connect)!, createTls, r, async c =>
                {
                    int id = await c.CreateTenantAsync(n, quota, cancel).ConfigureAwait(false);
                    if (format.IsDocument())
                        Output.Print(Output.Document("Tenant", w =>
                        {
                            w.WriteString("name", n);
                            w.WriteNumber("id", id);
                            if (quota is { } q3)
                            {
                                w.WriteStartObject("quota");
                                w.WriteNumber("cpuMillis", q3.CpuMillis);
                                w.WriteNumber("memoryBytes", q3.MemoryBytes);
                                w.WriteEndObject();
                            }
                        }), format);
                    else Console.WriteLine($"tenant '{n}' created as t{id}{(quota is { } q2 ? $" with quota {q2}" : "")}");
                    return 0;
                }, cancel);
            });
            cmd.Subcommands.Add(create);
        }
        {
            var connect = ConnectOption();
            var listOutput = Output.Option();
            var list = new Command("list", "List the tenants: name, id, quota and usage.") { connect, listOutput };
            var listTls = ClientTls.AddTo(list);
            list.SetAction((r, cancel) => !Output.TryParse("tenant list", r.GetValue(listOutput), out var format) ? Task.FromResult(2) : WithClientAsync("tenant list", r.GetValue(connect)!, listTls, r, async c =>
            {
                var (total, lines) = await c.InspectAsync(InspectTarget.Tenants, 10_000, cancel).ConfigureAwait(false);
                if (format.IsDocument())
                {
                    Output.Print(Output.Lines("TenantList", total, lines), format);
                    return 0;
                }
                foreach (var l in lines) Console.WriteLine(l);
                if (total > lines.Count) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"... {total - lines.Count:N0} more"));
                return 0;
            }, cancel));
            cmd.Subcommands.Add(list);
        }
        return cmd;
    }
}
