using System.CommandLine;
using Omega.Cli;

var root = new RootCommand("Omega: a shared-state, optimistic cluster scheduler engine.");
root.Subcommands.Add(Omega.Cli.Run.RunCommand.Create());
root.Subcommands.Add(Omega.Cli.Run.ServeCommand.Create());
root.Subcommands.Add(Omega.Cli.Run.ServeCommand.CreateAgents());
foreach (var c in Omega.Cli.Run.ControlCommands.Create()) root.Subcommands.Add(c);
root.Subcommands.Add(DemoCommand.Create());
root.Subcommands.Add(Omega.Cli.Load.LoadgenCommand.Create());
root.Subcommands.Add(SimCommand.Create());

// Expected user errors (bad options) are reported by System.CommandLine as one clear line with a non-zero exit code.
return await root.Parse(args).InvokeAsync().ConfigureAwait(false);
