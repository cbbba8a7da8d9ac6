using Omega.Reporting;

namespace Omega.Cli.Tests;

/// <summary>
/// Issue 17: latency charts on a log scale (on a linear axis a p99.9 of hundreds of milliseconds flattened p10-p95, tens of
/// microseconds, onto zero). The axis has a tick at every power of ten the data spans.
/// </summary>
public sealed class ChartTests
{
    [Theory]
    [InlineData(0.013, 87, new[] { 0.01, 0.1, 1, 10, 100 })]
    [InlineData(0.1, 1, new[] { 0.1, 1 })]
    [InlineData(2, 3, new[] { 1.0, 10 })]
    [InlineData(5, 5, new[] { 1.0, 10 })]
    public void Log_ticks_are_the_powers_of_ten_around_the_data(double min, double max, double[] expected)
    {
        var ticks = Charts.LogTicks(min, max);
        Assert.Equal(expected.Length, ticks.Count);
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], ticks[i], 9);
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(-1, 1)]
    [InlineData(2, 1)]
    [InlineData(1, double.PositiveInfinity)]
    public void Log_ticks_refuse_a_range_without_logarithms(double min, double max)
        => Assert.Throws<ArgumentOutOfRangeException>(() => Charts.LogTicks(min, max));

    [Fact]
    public void A_log_scale_latency_chart_with_zeros_and_four_decades_is_written()
    {
        string path = Path.Combine(Path.GetTempPath(), "omega-chart-" + Guid.NewGuid().ToString("N") + ".png");
        try
        {
            double[] pct = [10, 50, 90, 99, 99.9];
            // A zero (an empty histogram's percentile) has no logarithm: it is left out, not drawn at -infinity.
            Charts.WriteLineChart(path, "Latency distribution", "percentile", "milliseconds",
                [new Series("commit (p50 0.02 ms)", pct, [0, 0.02, 0.05, 0.4, 3]), new Series("bind (p50 2 ms)", pct, [1, 2, 9, 40, 250])], logY: true);
            Assert.True(new FileInfo(path).Length > 1000);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
