using System.CommandLine;
using System.Globalization;
using Omega.Agent;

namespace Omega.Cli.Run;

/// <summary>
/// <c>omega job status ID</c> and <c>omega job stop ID</c> (issue 17; nomad's <c>job status</c>/<c>job stop</c>): a job of
/// a running server, read with QueryJob and stopped with StopJob (protocol version 4, docs/protocol.md "Job verbs").
/// </summary>
internal static class JobCommands
{
    /// <summary>Job phases by their wire number (docs/protocol.md, QueryJob and "Job verbs").</summary>
    internal static readonly string[] PhaseNames = ["queued", "scheduling", "placed", "parked", "completed", "stopped"];

    internal static string PhaseOf(RemoteJobStatus s) => !s.Found ? "unknown" : s.Phase >= 0 && s.Phase < PhaseNames.Length ? PhaseNames[s.Phase] : s.Phase.ToString(CultureInfo.InvariantCulture);

    public static Command Create()
    {
        var cmd = new Command("job", "Read and stop jobs of a running server: status, stop.");
        cmd.Subcommands.Add(Status());
        cmd.Subcommands.Add(Stop());
        return cmd;
    }

    /// <summary>Parses a job id: <c>42</c> or <c>j42</c>, not negative.</summary>
    internal static bool TryParseJob(string? text, out JobId job)
    {
        job = default;
        if (string.IsNullOrEmpty(text)) return false;
        var digits = text[0] is 'j' or 'J' ? text.AsSpan(1) : text.AsSpan();
        if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long id)) return false;
        job = new JobId(id);
        return true;
    }

    private static Command Status()
    {
        var connect = ControlCommands.ConnectOption();
        var id = new Argument<string>("job") { Description = "The job id: 42 or j42." };
        var output = Output.Option();
        var cmd = new Command("status", "Show a job's phase and task counts (placed, pending, completed, unreachable); exit 5 when the server does not know it.") { connect, id, output };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) =>
        {
            if (!Output.TryParse("job status", r.GetValue(output), out var format)) return Task.FromResult(2);
            if (!TryParseJob(r.GetValue(id), out var job)) return Usage("job status", $"'{r.GetValue(id)}' is not a job id (42 or j42)");
            return ControlCommands.WithClientAsync("job status", r.GetValue(connect)!, tls, r, async c =>
            {
                var s = await c.QueryJobAsync(job, cancel).ConfigureAwait(false);
                if (!s.Found)
                {
                    Console.Error.WriteLine($"omega job status: no job {job} is known to the server (never submitted, completed and forgotten, or submitted before a restart)");
                    return ResourceCommands.ExitNotFound;
                }
                Output.Emit(format, "JobStatus", w =>
                {
                    w.WriteString("job", job.ToString());
                    w.WriteNumber("jobId", job.Value);
                    w.WriteString("phase", PhaseOf(s));
                    w.WriteNumber("pending", s.Pending);
                    w.WriteNumber("bound", s.Bound);
                    w.WriteNumber("completed", s.Completed);
                    w.WriteNumber("unreachable", s.Unreachable);
                    w.WriteBoolean("degraded", s.Degraded);
                    if (s.Reason.Length > 0) w.WriteString("parkedReason", s.Reason);
                }, wide =>
                {
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{job} {PhaseOf(s)}: {s.Bound} bound, {s.Pending} pending, {s.Completed} completed{(s.Degraded ? $", DEGRADED ({s.Unreachable} on unreachable nodes)" : "")}"));
                    if (s.Reason.Length > 0) Console.WriteLine("  parked: " + s.Reason);
                    if (wide) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  unreachable={s.Unreachable} degraded={s.Degraded}"));
                });
                return 0;
            }, cancel);
        });
        return cmd;
    }

    private static Command Stop()
    {
        var connect = ControlCommands.ConnectOption();
        var id = new Argument<string>("job") { Description = "The job id: 42 or j42." };
        var reason = new Option<string?>("--reason") { Description = "Why (written to the audit log; at most 1,024 characters)." };
        var output = Output.Option();
        var cmd = new Command("stop", "Stop a job: its pending tasks are not placed and its bindings are released (agents stop the tasks); audited, answered once durable.") { connect, id, reason, output };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) =>
        {
            if (!Output.TryParse("job stop", r.GetValue(output), out var format)) return Task.FromResult(2);
            if (!TryParseJob(r.GetValue(id), out var job)) return Usage("job stop", $"'{r.GetValue(id)}' is not a job id (42 or j42)");
            if (r.GetValue(reason) is { Length: > 1024 }) return Usage("job stop", "--reason is at most 1,024 characters");
            return ControlCommands.WithClientAsync("job stop", r.GetValue(connect)!, tls, r, async c =>
            {
                var o = await c.StopJobAsync(job, r.GetValue(reason), cancel).ConfigureAwait(false);
                Output.Emit(format, "JobStopResult", w =>
                {
                    w.WriteString("job", job.ToString());
                    w.WriteNumber("jobId", job.Value);
                    w.WriteString("outcome", o.Outcome switch { 0 => "stopped", 1 => "alreadyStopped", _ => "alreadyCompleted" });
                    w.WriteNumber("dequeued", o.Dequeued);
                    w.WriteNumber("released", o.Released);
                    w.WriteString("message", o.Message);
                }, _ => Console.WriteLine(o.Message));
                return 0;
            }, cancel);
        });
        return cmd;
    }

    private static Task<int> Usage(string command, string message)
    {
        Console.Error.WriteLine($"omega {command}: {message}");
        return Task.FromResult(2);
    }
}
