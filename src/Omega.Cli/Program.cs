using System.CommandLine;
using Omega.Cli;

var root = new RootCommand("Omega: a shared-state, optimistic cluster scheduler engine.");
root.Subcommands.Add(Omega.Cli.Run.RunCommand.Create());
root.Subcommands.Add(Omega.Cli.Run.ServeCommand.Create());
root.Subcommands.Add(Omega.Cli.Run.ServeCommand.CreateAgents());
foreach (var c in Omega.Cli.Run.ControlCommands.Create()) root.Subcommands.Add(c);
foreach (var c in Omega.Cli.Run.ResourceCommands.Create()) root.Subcommands.Add(c);
foreach (var c in Omega.Cli.Run.PolicyCommands.Create()) root.Subcommands.Add(c);
root.Subcommands.Add(Omega.Cli.Run.NodeCommands.Create());
root.Subcommands.Add(Omega.Cli.Run.JobCommands.Create());
root.Subcommands.Add(Omega.Cli.Run.QuotaCommands.Create());
foreach (var c in Omega.Cli.Run.TokenCommands.Create()) root.Subcommands.Add(c);
foreach (var c in Omega.Cli.Run.OpsCommands.Create()) root.Subcommands.Add(c);
root.Subcommands.Add(DemoCommand.Create());
root.Subcommands.Add(DstCommand.Create());
root.Subcommands.Add(ReplayCommand.Create());
root.Subcommands.Add(Omega.Cli.Load.LoadgenCommand.Create());
root.Subcommands.Add(SimCommand.Create());
root.Subcommands.Add(Omega.Cli.Drill.RegionLossDrill.Create());

// Bare `omega` is a request for the command list, not a mistake.
if (args.Length == 0) args = ["--help"];
var parsed = root.Parse(args);
// Usage errors (unknown command or option, a value of the wrong type, a missing argument) are one line on stderr and
// exit code 2 (docs/cli.md). System.CommandLine's own error action prints the whole help and exits 1; a script then
// cannot tell a typo from a failed run, and a person has to scroll up to find what was wrong. The first error names the
// problem; the hint names where the options are listed.
if (parsed.Errors.Count > 0)
{
    var names = new List<string>();
    for (var r = parsed.CommandResult; r is not null && r.Command != root; r = r.Parent as System.CommandLine.Parsing.CommandResult)
        names.Insert(0, r.Command.Name);
    string path = names.Count == 0 ? "omega" : "omega " + string.Join(' ', names);
    // An unknown word explains the other errors it causes (a mistyped command also leaves "no command given"): name it first.
    string problem = parsed.UnmatchedTokens.Count > 0 ? $"unknown command or option '{parsed.UnmatchedTokens[0]}'" : parsed.Errors[0].Message;
    Console.Error.WriteLine($"{path}: {problem} (see '{path} --help')");
    return 2;
}

// On Ctrl+C or SIGTERM, System.CommandLine cancels the action's token and, after ProcessTerminationTimeout, kills the
// process (exit 130/143). Its default of 2 s is shorter than a clean shutdown under load (stop the server and workers,
// checkpoint the FASTER store), which was seen cut off in tests; allow a minute.
var invocation = new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromMinutes(1) };
return await parsed.InvokeAsync(invocation).ConfigureAwait(false);
