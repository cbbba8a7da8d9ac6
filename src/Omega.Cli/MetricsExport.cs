using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace Omega.Cli;

/// <summary>
/// Production metrics export: an OpenTelemetry meter provider over Omega's meters with a Prometheus scrape endpoint.
/// The same meters are readable without any of this by <c>dotnet-counters monitor -n omega --counters Omega.Scheduling,Omega.Cell</c>
/// (System.Diagnostics.Metrics publishes them through EventPipe).
/// </summary>
internal static class MetricsExport
{
    /// <summary>Every meter Omega's assemblies publish.</summary>
    public static readonly string[] Meters = ["Omega.Cell", "Omega.Scheduling", "Omega.Transport", "Omega.Server", "Omega.Storage", "Omega.ControlPlane"];

    /// <summary>
    /// Starts a Prometheus endpoint at <c>http://{host}:{port}/metrics</c>; null when <paramref name="port"/> is null
    /// (opt-in). Loopback by default: exposing it wider is a deployment decision.
    /// </summary>
    public static MeterProvider? StartPrometheus(int? port, string host = "localhost")
    {
        if (port is null) return null;
        return Sdk.CreateMeterProviderBuilder()
            .AddMeter(Meters)
            .AddPrometheusHttpListener(o => { o.Host = host; o.Port = port.Value; })
            .Build();
    }

    /// <summary>
    /// <see cref="StartPrometheus"/> for a command: a port that cannot be listened on (in use, not permitted) is one line
    /// on stderr naming <paramref name="command"/> and the port, and false (the caller exits 1); the range is checked by
    /// the caller as a usage error before this.
    /// </summary>
    public static bool TryStartPrometheus(string command, int? port, out MeterProvider? provider)
    {
        try
        {
            provider = StartPrometheus(port);
            return true;
        }
        // The exporter wraps the listener's failure (HttpListenerException: address in use, access denied).
        catch (InvalidOperationException e)
        {
            Console.Error.WriteLine($"omega {command}: cannot serve metrics on port {port}: {(e.InnerException ?? e).Message}");
            provider = null;
            return false;
        }
    }
}
