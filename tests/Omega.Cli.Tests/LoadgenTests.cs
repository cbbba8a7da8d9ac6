namespace Omega.Cli.Tests;

public sealed class LoadgenTests
{
    [Fact]
    public async Task Embedded_loadgen_places_work_prints_a_summary_and_writes_a_report()
    {
        string dir = Path.Combine(Path.GetTempPath(), "omega-loadgen-" + Guid.NewGuid().ToString("N"));
        try
        {
            var r = await OmegaProcess.RunAsync(TimeSpan.FromMinutes(2),
                "loadgen", "--nodes", "500", "--seconds", "3", "--load", "0.2", "--seed", "11", "--report", dir);
            Assert.True(r.ExitCode == 0, $"exit {r.ExitCode}\n{r.Stdout}\n{r.Stderr}");
            Assert.Contains("seed 11", r.Stdout, StringComparison.Ordinal);
            Assert.Contains("placements/s", r.Stdout, StringComparison.Ordinal);
            Assert.Contains("conflict", r.Stdout, StringComparison.Ordinal);
            Assert.Contains("invariants", r.Stdout, StringComparison.Ordinal);
            Assert.DoesNotContain("VIOLATED", r.Stdout, StringComparison.Ordinal);

            string readme = await File.ReadAllTextAsync(Path.Combine(dir, "README.md"));
            Assert.Contains("loadgen --nodes 500", readme, StringComparison.Ordinal);
            Assert.Contains("logical cores", readme, StringComparison.Ordinal);
            Assert.Contains("Same-run baseline", readme, StringComparison.Ordinal);
            Assert.Matches(@"\| FASTER RMW \| 2 \| [\d,]+ \|", readme);
            foreach (var png in new[] { "throughput.png", "latency.png", "conflicts.png" })
            {
                var bytes = await File.ReadAllBytesAsync(Path.Combine(dir, png));
                Assert.True(bytes.Length > 1000 && bytes[1] == (byte)'P' && bytes[2] == (byte)'N' && bytes[3] == (byte)'G', $"{png} is not a PNG");
                Assert.Contains($"({png})", readme, StringComparison.Ordinal);
            }
            var rows = (await File.ReadAllLinesAsync(Path.Combine(dir, "samples.csv"))).Skip(1).ToArray();
            Assert.True(rows.Length >= 2, $"expected a sample per second, got {rows.Length}");
            // Work was actually placed: some second shows a non-zero placement rate.
            Assert.Contains(rows, row => double.Parse(row.Split(',')[1], System.Globalization.CultureInfo.InvariantCulture) > 0);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_trace_replays_to_its_end_without_seconds_and_says_so_when_seconds_cut_it()
    {
        // Six jobs over 600 recorded seconds: 3 s at --speedup 200.
        string trace = Path.Combine(Path.GetTempPath(), "omega-trace-" + Guid.NewGuid().ToString("N") + ".csv");
        var rows = new List<string> { "job_id,submit_time_s,tasks,cpu_per_task,mem_per_task,priority,scheduling_class,different_machine_constraint,duration_s,finished,killed,failed,evicted,lost" };
        for (int i = 0; i < 6; i++) rows.Add(FormattableString.Invariant($"{100 + i},{i * 120},2,0.01,0.01,0,1,0,30,1,0,0,0,0"));
        await File.WriteAllLinesAsync(trace, rows);
        try
        {
            var full = await OmegaProcess.RunAsync(TimeSpan.FromMinutes(2), "loadgen", "--nodes", "50", "--trace", trace, "--speedup", "200", "--plain", "--seed", "3");
            Assert.True(full.ExitCode == 0, full.Stdout + full.Stderr);
            Assert.Contains("until the trace ends", full.Stdout, StringComparison.Ordinal);
            Assert.Matches(@"jobs submitted / placed / parked\s*│\s*6 / 6 / 0", full.Stdout);
            Assert.DoesNotContain("cut at", full.Stdout, StringComparison.Ordinal);

            var cut = await OmegaProcess.RunAsync(TimeSpan.FromMinutes(2), "loadgen", "--nodes", "50", "--trace", trace, "--speedup", "200", "--plain", "--seconds", "1", "--seed", "3");
            Assert.True(cut.ExitCode == 0, cut.Stdout + cut.Stderr);
            Assert.Matches(@"trace replay cut at --seconds 1: [1-5] trace jobs were not submitted", cut.Stdout);
        }
        finally
        {
            File.Delete(trace);
        }
    }

    [Theory]
    [InlineData("--nodes", "0", "--nodes must be")]
    [InlineData("--load", "-1", "--load must be")]
    [InlineData("--seconds", "abc", "abc")]
    public async Task A_bad_option_gives_one_clear_line_and_a_non_zero_exit(string option, string value, string expected)
    {
        var r = await OmegaProcess.RunAsync(TimeSpan.FromMinutes(1), "loadgen", option, value);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains(expected, r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal); // no stack trace
    }

    [Fact]
    public async Task An_unknown_command_is_an_error_not_a_crash()
    {
        var r = await OmegaProcess.RunAsync(TimeSpan.FromMinutes(1), "no-such-command");
        Assert.NotEqual(0, r.ExitCode);
        Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
    }
}

public sealed class MetricsExportTests
{
    [Fact]
    public async Task Loadgen_serves_the_engine_meters_on_a_prometheus_endpoint_when_asked()
    {
        int port = FreePort();
        var run = OmegaProcess.RunAsync(TimeSpan.FromMinutes(2), "loadgen", "--nodes", "200", "--seconds", "8", "--load", "0.1", "--seed", "5",
            "--metrics-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        string? body = null;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (DateTime.UtcNow < deadline && !run.IsCompleted)
        {
            try
            {
                body = await http.GetStringAsync(new Uri($"http://localhost:{port}/metrics"));
                if (body.Contains("omega_sched_placements", StringComparison.Ordinal)) break;
            }
            catch (HttpRequestException) { }
            catch (TaskCanceledException) { }
            await Task.Delay(200);
        }
        var r = await run;
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.NotNull(body);
        Assert.Contains("omega_sched_placements", body, StringComparison.Ordinal);
        Assert.Contains("omega_cell_transactions", body, StringComparison.Ordinal);
    }

    private static int FreePort()
    {
        var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        int port = ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }
}

public sealed class LoadgenTraceTests
{
    private const string Header = "job_id,submit_time_s,tasks,cpu_per_task,mem_per_task,priority,scheduling_class,different_machine_constraint,duration_s,finished,killed,failed,evicted,lost";

    [Fact]
    public async Task A_trace_is_replayed_through_the_engine()
    {
        string file = Path.GetTempFileName();
        try
        {
            // 40 jobs over 4 s of trace time, replayed 2x faster: all arrive within the 3 s run.
            var lines = new List<string> { Header };
            for (int i = 0; i < 40; i++)
                lines.Add(FormattableString.Invariant($"{1000 + i},{i * 0.1:0.0},{1 + i % 5},0.01,0.01,{(i % 10 == 0 ? 9 : 0)},1,0,{0.5 + i % 3},1,0,0,0,0"));
            await File.WriteAllLinesAsync(file, lines);
            var r = await OmegaProcess.RunAsync(TimeSpan.FromMinutes(2), "loadgen", "--nodes", "100", "--seconds", "3", "--trace", file, "--speedup", "2", "--seed", "1");
            Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
            Assert.Contains("40 jobs", r.Stdout, StringComparison.Ordinal);
            // Every job of the trace was submitted and placed (the cell is nearly empty).
            Assert.Matches(@"jobs submitted / placed / parked\s*│\s*40 / 40 / 0", r.Stdout);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task A_malformed_trace_is_a_clear_error_naming_the_line()
    {
        string file = Path.GetTempFileName();
        try
        {
            await File.WriteAllLinesAsync(file, [Header, "1,0.5,2,0.01,0.01,0,1,0,10,1,0,0,0,0", "2,zero,2,0.01,0.01,0,1,0,10,1,0,0,0,0"]);
            var r = await OmegaProcess.RunAsync(TimeSpan.FromMinutes(1), "loadgen", "--trace", file);
            Assert.Equal(2, r.ExitCode);
            Assert.Contains("line 3", r.Stderr, StringComparison.Ordinal);
            Assert.Contains("submit_time_s", r.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);

            var missing = await OmegaProcess.RunAsync(TimeSpan.FromMinutes(1), "loadgen", "--trace", file + ".does-not-exist");
            Assert.Equal(2, missing.ExitCode);
            Assert.Contains("not found", missing.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }
    }
}
