using System.Diagnostics.Metrics;

namespace Omega.Cells;

/// <summary>
/// The histogram bucket boundaries every Omega latency histogram advises (seconds, 10 µs to 60 s, about three per
/// decade). OpenTelemetry's default boundaries (0, 5, 10, 25, ... 10,000) assume milliseconds: recorded in seconds, as
/// the semantic conventions ask, every commit (tens of microseconds) and every bind (milliseconds) fell into the first
/// bucket, so a Prometheus <c>histogram_quantile</c> could say nothing. The boundaries travel with the instrument as
/// <see cref="InstrumentAdvice{T}"/>, so any exporter or listener that honours advice (the OpenTelemetry SDK does) gets
/// them without a View.
/// </summary>
public static class LatencyBuckets
{
    /// <summary>The boundaries, in seconds, ascending: 10 µs, 25 µs, 50 µs, 100 µs, ... 10 s, 30 s, 60 s.</summary>
    public static IReadOnlyList<double> Seconds { get; } =
    [
        0.00001, 0.000025, 0.00005,
        0.0001, 0.00025, 0.0005,
        0.001, 0.0025, 0.005,
        0.01, 0.025, 0.05,
        0.1, 0.25, 0.5,
        1, 2.5, 5,
        10, 30, 60,
    ];

    /// <summary>Advice carrying <see cref="Seconds"/>, for <see cref="Meter.CreateHistogram{T}(string, string?, string?, IEnumerable{KeyValuePair{string, object?}}?, InstrumentAdvice{T}?)"/>.</summary>
    public static InstrumentAdvice<double> Advice { get; } = new() { HistogramBucketBoundaries = Seconds };
}
