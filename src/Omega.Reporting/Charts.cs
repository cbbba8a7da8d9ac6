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
    public static void WriteLineChart(string path, string title, string xLabel, string yLabel, IReadOnlyList<Series> series, bool logX = false)
    {
        ArgumentNullException.ThrowIfNull(series);
        var plot = new ScottPlot.Plot();
        var ticks = new SortedSet<double>();
        foreach (var s in series)
        {
            var xs = new double[s.X.Count];
            var ys = new double[s.Y.Count];
            for (int i = 0; i < xs.Length; i++)
            {
                xs[i] = logX ? Math.Log10(s.X[i]) : s.X[i];
                ys[i] = double.IsFinite(s.Y[i]) ? s.Y[i] : double.NaN;
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
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        plot.SavePng(path, 800, 500);
    }
}
