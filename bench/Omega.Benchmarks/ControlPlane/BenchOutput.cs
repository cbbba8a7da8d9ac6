using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Omega.Benchmarks.ControlPlane;

/// <summary>
/// Latencies of one measurement, kept exactly (every sample, in microseconds) so the percentiles are the samples
/// themselves: nearest-rank, p = the ceil(q·n)-th smallest. Runs here record at most a few hundred thousand samples, so
/// exact storage costs a few MB and avoids the bucketing error of a histogram at the tail that the claims are about.
/// </summary>
internal sealed class LatencyRecorder
{
    private long[] _us = new long[1024];
    private int _count;
    private readonly Lock _lock = new();

    public int Count { get { lock (_lock) return _count; } }

    /// <summary>Adds one sample in microseconds (thread-safe).</summary>
    public void Add(long microseconds)
    {
        lock (_lock)
        {
            if (_count == _us.Length) Array.Resize(ref _us, _us.Length * 2);
            _us[_count++] = microseconds;
        }
    }

    /// <summary>Adds one sample given as a Stopwatch tick interval.</summary>
    public void AddTicks(long ticks) => Add(ticks * 1_000_000 / Stopwatch.Frequency);

    /// <summary>Count, p50, p99, max (microseconds; zeros when empty).</summary>
    public LatencySummary Summarize()
    {
        long[] s;
        lock (_lock) s = _us[.._count];
        Array.Sort(s);
        return new LatencySummary(s.Length, Rank(s, 0.50), Rank(s, 0.99), s.Length == 0 ? 0 : s[^1]);
    }

    /// <summary>Nearest-rank percentile of sorted samples: the ceil(q·n)-th smallest (1-based).</summary>
    internal static long Rank(long[] sorted, double q)
    {
        if (sorted.Length == 0) return 0;
        long rank = (long)Math.Ceiling(q * sorted.Length);
        return sorted[Math.Clamp(rank, 1, sorted.Length) - 1];
    }
}

/// <summary>Latency percentiles in microseconds.</summary>
internal readonly record struct LatencySummary(int Count, long P50Us, long P99Us, long MaxUs)
{
    public string Ms(long us) => (us / 1000.0).ToString("F1", CultureInfo.InvariantCulture);

    public string Human => Count == 0 ? "no samples" : $"n={Count} p50 {Ms(P50Us)} ms  p99 {Ms(P99Us)} ms  max {Ms(MaxUs)} ms";

    public Dictionary<string, object> Json => new() { ["n"] = Count, ["p50_us"] = P50Us, ["p99_us"] = P99Us, ["max_us"] = MaxUs };
}

/// <summary>What every runner prints first (machine facts and the quiet check) and last (one JSON line).</summary>
internal static class BenchOutput
{
    /// <summary>The prefix of the one machine-readable line: <c>grep '^BENCH_JSON ' | cut -d' ' -f2-</c>.</summary>
    public const string JsonPrefix = "BENCH_JSON ";

    /// <summary>
    /// Prints nproc and the load, then runs quiet-check (3 s) and prints its output. Returns the facts for the JSON line.
    /// The runner goes on when the machine is busy: the check is a record for whoever reads the numbers, not a gate.
    /// </summary>
    public static Dictionary<string, object> Environment(string runner)
    {
        var facts = new Dictionary<string, object>
        {
            ["bench"] = runner,
            ["utc"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            ["nproc"] = System.Environment.ProcessorCount,
            ["loadavg"] = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "",
        };
        Console.WriteLine($"== {runner}  {facts["utc"]}  nproc={facts["nproc"]}  loadavg {facts["loadavg"]}");
        string? tool = FindQuietCheck();
        if (tool is null)
        {
            Console.WriteLine("quiet-check: not found (looked for $OMEGA_QUIET_CHECK, ../shared/tools/quiet-check, /work/shared/tools/quiet-check)");
            facts["quiet_check"] = "not found";
            return facts;
        }
        var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        Console.WriteLine($"quiet-check ({tool}) exit {p.ExitCode}{(p.ExitCode == 0 ? " (quiet)" : " (NOT quiet: numbers are not publishable)")}:");
        foreach (var line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries)) Console.WriteLine("  " + line);
        facts["quiet"] = p.ExitCode == 0;
        facts["quiet_check"] = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "";
        return facts;
    }

    private static string? FindQuietCheck()
    {
        var candidates = new List<string>();
        if (System.Environment.GetEnvironmentVariable("OMEGA_QUIET_CHECK") is { Length: > 0 } env) candidates.Add(env);
        // The repository root is an ancestor of the bench's output directory; the shared tools sit beside it.
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            candidates.Add(Path.Combine(d.FullName, "..", "shared", "tools", "quiet-check"));
        candidates.Add("/work/shared/tools/quiet-check");
        string? found = candidates.FirstOrDefault(File.Exists);
        return found is null ? null : Path.GetFullPath(found);
    }

    /// <summary>Prints the one machine-readable summary line.</summary>
    public static void Json(Dictionary<string, object> summary)
        => Console.WriteLine(JsonPrefix + JsonSerializer.Serialize(summary, s_json));

    private static readonly JsonSerializerOptions s_json = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>A fixed-width table: a header row and rows, columns padded to the widest cell.</summary>
    public static void Table(string[] header, List<string[]> rows)
    {
        var width = new int[header.Length];
        foreach (var r in rows.Prepend(header))
            for (int i = 0; i < r.Length; i++) width[i] = Math.Max(width[i], r[i].Length);
        string Line(string[] r) => string.Join("  ", r.Select((c, i) => i == 0 ? c.PadRight(width[i]) : c.PadLeft(width[i])));
        Console.WriteLine(Line(header));
        Console.WriteLine(string.Join("  ", width.Select(w => new string('-', w))));
        foreach (var r in rows) Console.WriteLine(Line(r));
    }

    /// <summary>Parses <c>--key value</c> pairs (and bare flags as "true").</summary>
    public static Dictionary<string, string> Options(string[] args)
    {
        var o = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal)) continue;
            string k = args[i][2..];
            if (i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal)) o[k] = args[++i];
            else o[k] = "true";
        }
        return o;
    }

    public static int Int(this Dictionary<string, string> o, string k, int d) => o.TryGetValue(k, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : d;

    public static double Double(this Dictionary<string, string> o, string k, double d) => o.TryGetValue(k, out var v) ? double.Parse(v, CultureInfo.InvariantCulture) : d;

    public static string F(double v, string format = "F1") => v.ToString(format, CultureInfo.InvariantCulture);
}
