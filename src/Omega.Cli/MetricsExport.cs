using System.Diagnostics.Metrics;
using Omega.Hosting;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace Omega.Cli;

/// <summary>
/// Production metrics export: an OpenTelemetry meter provider over every Omega meter and the runtime's, with a
/// Prometheus scrape endpoint. The same meters are readable without any of this by <c>dotnet-counters</c>
/// (System.Diagnostics.Metrics publishes them through EventPipe; docs/metrics.md shows how with several processes).
/// </summary>
internal static class MetricsExport
{
    /// <summary>Every meter exported: Omega's (<see cref="OmegaTelemetry.MeterNames"/>) and the runtime's.</summary>
    public static readonly string[] Meters = [.. OmegaTelemetry.MeterNames, .. OmegaTelemetry.RuntimeMeterNames];

    /// <summary>
    /// Starts a Prometheus endpoint at <c>http://{host}:{port}/metrics</c>; null when <paramref name="port"/> is null
    /// (opt-in). Loopback by default: exposing it wider is a deployment decision.
    /// </summary>
    public static MeterProvider? StartPrometheus(int? port, string host = "localhost")
    {
        if (port is null) return null;
        return Sdk.CreateMeterProviderBuilder()
            // service.name (and a per-process instance id) reach Prometheus as target_info: two omega processes scraped
            // by one Prometheus are told apart by instance, and a dashboard can select the service.
            .ConfigureResource(r => r.AddService(OmegaTelemetry.ServiceName, serviceInstanceId: $"{Environment.MachineName}-{Environment.ProcessId}"))
            .AddMeter(Meters)
            // Every Omega instrument advises LatencyBuckets (seconds, 10 µs to 60 s); a latency histogram in seconds that
            // does not (a future one, or a library's) gets the same boundaries here rather than OpenTelemetry's
            // millisecond defaults, which would put every observation in the first bucket.
            .AddView(static instrument => IsUnadvisedSecondsHistogram(instrument)
                ? new ExplicitBucketHistogramConfiguration { Boundaries = [.. Omega.Cells.LatencyBuckets.Seconds] }
                : null)
            .AddPrometheusHttpListener(o => { o.Host = host; o.Port = port.Value; })
            .Build();
    }

    private static bool IsUnadvisedSecondsHistogram(Instrument instrument)
        => instrument is Histogram<double> { Unit: "s", Advice: null } && instrument.Meter.Name.StartsWith("Omega.", StringComparison.Ordinal);

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
