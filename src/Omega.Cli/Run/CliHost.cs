using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Omega.Hosting;

namespace Omega.Cli.Run;

/// <summary>
/// The generic host that <c>omega serve</c> and <c>omega run</c> are thin shells over: <see cref="OmegaServiceCollectionExtensions.AddOmega"/>
/// with the command's flags as options. The commands print their own lines (the user-visible output is theirs); the log
/// shows only warnings and errors of Omega's own categories, on stderr, one line each (a storage warning, for example).
/// </summary>
internal static class CliHost
{
    public static IHost Build(Action<OmegaOptions> configure)
    {
        // No default configuration sources: the flags are the configuration, and a stray appsettings.json or DOTNET_
        // variable in the working directory must not change what a command does.
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true, Args = [] });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        // The host's own failure report repeats, with a stack trace, the one line the command prints.
        builder.Logging.AddFilter("Microsoft", LogLevel.None);
        builder.Services.Configure<ConsoleLifetimeOptions>(o => o.SuppressStatusMessages = true);
        // A clean stop under load (stop the server and workers, checkpoint FASTER) can take longer than the default 30 s;
        // System.CommandLine allows the command a minute after a signal (Program.cs).
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromMinutes(1));
        builder.Services.AddOmega(configure);
        return builder.Build();
    }
}
