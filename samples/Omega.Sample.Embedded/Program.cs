// Omega embedded in an application: a generic host with AddOmega (a FASTER-durable cell, its TCP server, and two
// scheduler workers, one batch and one service, committing optimistically against the one shared cell), a workload of
// the application's own (SampleWorkload) that places jobs and waits for their placement, logs through ILogger, and a
// shutdown that checkpoints the store. Run it twice with the same --data: the second run recovers the first one's cell.
//
//   dotnet run --project samples/Omega.Sample.Embedded -- --data /tmp/omega-sample
//
// Configuration comes from the usual host sources (appsettings.json, OMEGA__... environment variables, command line):
// for example --Omega:BatchWorkers=2. The code below only sets what this sample needs.
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Omega.Hosting;
using Omega.Sample.Embedded;

string data = ArgumentAfter(args, "--data") ?? Path.Combine(Path.GetTempPath(), "omega-sample");
int jobs = int.Parse(ArgumentAfter(args, "--jobs") ?? "20", System.Globalization.CultureInfo.InvariantCulture);

var builder = Host.CreateApplicationBuilder(args);
builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
builder.Services.AddOmega(o =>
{
    o.DataDirectory = data;             // durable: FASTER journal, store of record and checkpoints live here
    o.Listen = "127.0.0.1:0";           // the TCP server for remote agents and tools, on a free port
    o.BatchWorkers = 1;                 // two scheduler workers, of two kinds, sharing one cell (Omega's point)
    o.ServiceWorkers = 1;
    // This sample's nodes are added in process, with no agent to heartbeat them; a long node lease keeps the lifecycle
    // controller from declaring them lost. A real deployment keeps the default and runs an agent per node.
    o.Server.NodeLease = TimeSpan.FromMinutes(30);
});
builder.Services.AddSingleton(new SampleWorkloadOptions(jobs));
builder.Services.AddHostedService<SampleWorkload>();

using var host = builder.Build();
// Resolved before running: RunAsync disposes the host's services when it returns.
var runtime = host.Services.GetRequiredService<OmegaRuntime>();
var log = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Omega.Sample.Embedded");
await host.RunAsync();   // returns after SampleWorkload asks the host to stop: Omega stops, checkpoints and closes
if (runtime.CheckpointedVersion is { } v) SampleLog.Done(log, v, data);
return 0;

static string? ArgumentAfter(string[] args, string name)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}
