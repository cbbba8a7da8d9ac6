namespace Omega.Hosting;

/// <summary>
/// The names an embedder needs to export Omega's telemetry (an OpenTelemetry <c>MeterProviderBuilder.AddMeter(...)</c>,
/// <c>dotnet-counters --counters ...</c>): every meter Omega's assemblies publish. Each meter carries the tag
/// <c>cell</c> = the cell's name, so two engines in one process stay apart; with a host's
/// <see cref="System.Diagnostics.Metrics.IMeterFactory"/> (<see cref="OmegaServiceCollectionExtensions.AddOmega"/>
/// passes it) the meters belong to the host's container and are disposed with it.
/// </summary>
public static class OmegaTelemetry
{
    /// <summary>The conventional <c>service.name</c> resource attribute of an Omega server.</summary>
    public const string ServiceName = "omega";

    /// <summary>
    /// Every Omega meter: cell outcomes, scheduling, storage, transport, the server's requests, authentication and
    /// node lifecycle, and the control plane's controllers. A test checks that a scrape of <c>omega serve</c> holds each.
    /// </summary>
    public static IReadOnlyList<string> MeterNames { get; } =
    [
        "Omega.Cell", "Omega.Scheduling", "Omega.Storage", "Omega.Transport",
        "Omega.Server", "Omega.Server.Auth", "Omega.Server.Lifecycle", "Omega.ControlPlane",
    ];

    /// <summary>
    /// The .NET runtime's own meters (built into .NET 9 and later: GC, JIT, thread pool, exceptions, process CPU time and
    /// memory), exported beside Omega's so a dashboard shows the process as well as the scheduler.
    /// </summary>
    public static IReadOnlyList<string> RuntimeMeterNames { get; } = ["System.Runtime"];
}
