using System.CommandLine;
using Omega.Cli;

var root = new RootCommand("Omega: a shared-state, optimistic cluster scheduler engine.");
root.Subcommands.Add(Omega.Cli.Run.RunCommand.Create());
root.Subcommands.Add(Omega.Cli.Run.ServeCommand.Create());
root.Subcommands.Add(Omega.Cli.Run.ServeCommand.CreateAgents());
foreach (var c in Omega.Cli.Run.ControlCommands.Create()) root.Subcommands.Add(c);
root.Subcommands.Add(Omega.Cli.Run.NodeCommands.Create());
root.Subcommands.Add(DemoCommand.Create());
root.Subcommands.Add(Omega.Cli.Load.LoadgenCommand.Create());
root.Subcommands.Add(SimCommand.Create());

// Expected user errors (bad options) are reported by System.CommandLine as one clear line with a non-zero exit code.
// On Ctrl+C or SIGTERM, System.CommandLine cancels the action's token and, after ProcessTerminationTimeout, kills the
// process (exit 130/143). Its default of 2 s is shorter than a clean shutdown under load (stop the server and workers,
// checkpoint the FASTER store), which was seen cut off in tests; allow a minute.
var invocation = new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromMinutes(1) };
return await root.Parse(args).InvokeAsync(invocation).ConfigureAwait(false);
