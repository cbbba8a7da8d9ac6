namespace Omega.Reporting;

/// <summary>One line of a chart: a name and its points.</summary>
/// <param name="Name">The legend entry.</param>
/// <param name="X">X values.</param>
/// <param name="Y">Y values (same length as <paramref name="X"/>).</param>
public sealed record Series(string Name, IReadOnlyList<double> X, IReadOnlyList<double> Y);

/// <summary>Writes line charts as PNG files.</summary>
public static class Charts
{
    /// <summary>Writes a line chart with markers to <paramref name="path"/> (PNG, 800x500).</summary>
    /// <param name="path">The output file.</param>
    /// <param name="title">The chart title.</param>
    /// <param name="xLabel">The x axis label.</param>
    /// <param name="yLabel">The y axis label.</param>
    /// <param name="series">The lines.</param>
    /// <param name="logX">Plot x on a log10 scale (tick labels show the real values).</param>
    /// <param name="logY">
    /// Plot y on a log10 scale, with a tick at every power of ten the data spans (labels show the real values). For
    /// latency distributions: on a linear axis a p99.9 of 200 ms flattens p10 to p95 (tens of microseconds) onto zero.
    /// Values that are zero or negative have no logarithm and are left out of their line.
    /// </param>
    public static void WriteLineChart(string path, string title, string xLabel, string yLabel, IReadOnlyList<Series> series, bool logX = false, bool logY = false)
    {
        ArgumentNullException.ThrowIfNull(series);
        var plot = new ScottPlot.Plot();
        var ticks = new SortedSet<double>();
        double minY = double.PositiveInfinity, maxY = double.NegativeInfinity;
        foreach (var s in series)
        {
            var xs = new double[s.X.Count];
            var ys = new double[s.Y.Count];
            for (int i = 0; i < xs.Length; i++)
            {
                xs[i] = logX ? Math.Log10(s.X[i]) : s.X[i];
                double y = s.Y[i];
                if (!double.IsFinite(y) || (logY && y <= 0)) ys[i] = double.NaN;
                else
                {
                    minY = Math.Min(minY, y);
                    maxY = Math.Max(maxY, y);
                    ys[i] = logY ? Math.Log10(y) : y;
                }
                ticks.Add(s.X[i]);
            }
            var line = plot.Add.Scatter(xs, ys);
            line.LegendText = s.Name;
            line.MarkerSize = 7;
            line.LineWidth = 2;
        }
        if (logX)
        {
            var gen = new ScottPlot.TickGenerators.NumericManual();
            foreach (double t in ticks) gen.AddMajor(Math.Log10(t), t.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture));
            plot.Axes.Bottom.TickGenerator = gen;
        }
        if (logY && minY <= maxY)
        {
            var decades = LogTicks(minY, maxY);
            var gen = new ScottPlot.TickGenerators.NumericManual();
            foreach (double t in decades) gen.AddMajor(Math.Log10(t), t.ToString("0.####", System.Globalization.CultureInfo.InvariantCulture));
            // Minor ticks at 2x and 5x each decade, so a reader can place a point between two labels.
            for (int i = 0; i + 1 < decades.Count; i++)
            {
                gen.AddMinor(Math.Log10(decades[i] * 2));
                gen.AddMinor(Math.Log10(decades[i] * 5));
            }
            plot.Axes.Left.TickGenerator = gen;
            plot.Axes.SetLimitsY(Math.Log10(decades[0]), Math.Log10(decades[^1]));
            plot.Grid.MajorLineColor = ScottPlot.Colors.Black.WithOpacity(0.15);
        }
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(logY ? yLabel + " (log scale)" : yLabel);
        // Readable legend: larger type on an opaque box, so it stays legible over the lines it may cover.
        plot.Legend.FontSize = 14;
        plot.Legend.BackgroundColor = ScottPlot.Colors.White;
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        plot.SavePng(path, 800, 500);
    }

    /// <summary>
    /// The powers of ten of a log axis that shows every value in [<paramref name="min"/>, <paramref name="max"/>]: from
    /// the largest power of ten at or below <paramref name="min"/> to the smallest at or above <paramref name="max"/>
    /// (at least two, so a flat series still gets an axis).
    /// </summary>
    /// <param name="min">The smallest positive value plotted.</param>
    /// <param name="max">The largest value plotted (at least <paramref name="min"/>).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="min"/> is not positive and finite, or <paramref name="max"/> is below it or not finite.</exception>
    public static IReadOnlyList<double> LogTicks(double min, double max)
    {
        if (!double.IsFinite(min) || min <= 0) throw new ArgumentOutOfRangeException(nameof(min), min, "must be positive and finite");
        if (!double.IsFinite(max) || max < min) throw new ArgumentOutOfRangeException(nameof(max), max, "must be finite and at least min");
        // A small tolerance so that 0.1 (0.1000000001 in binary) is its own decade, not the one above.
        int low = (int)Math.Floor(Math.Log10(min) + 1e-9), high = (int)Math.Ceiling(Math.Log10(max) - 1e-9);
        if (high <= low) high = low + 1;
        var result = new List<double>(high - low + 1);
        for (int e = low; e <= high; e++) result.Add(Math.Pow(10, e));
        return result;
    }
}
