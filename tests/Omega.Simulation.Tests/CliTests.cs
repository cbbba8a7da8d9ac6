using System.Diagnostics;

namespace Omega.Simulation.Tests;

/// <summary>Runs the real <c>omega</c> executable as a child process.</summary>
public class CliTests
{
    private static (int Exit, string Out, string Err) Omega(params string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "omega.dll");
        Assert.True(File.Exists(dll), $"omega.dll not found next to the tests: {dll}");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(2)), "omega sim did not finish in 2 minutes");
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void Omega_sim_runs_a_tiny_preset_prints_its_table_and_writes_a_report_with_charts()
    {
        string dir = Path.Combine(Path.GetTempPath(), "omega-sim-test-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (exit, stdout, stderr) = Omega("sim", "--preset", "vary-service-tjob", "--hours", "0.1", "--machines", "500",
                "--service-tjob", "0.1,10", "--variants", "Fine/Incremental,Coarse/AllOrNothing", "--seed", "5", "--out", dir);
            Assert.True(exit == 0, $"exit {exit}: {stderr}");
            Assert.Contains("| detection | mode | t_job(service) s |", stdout);
            Assert.Contains("| Coarse | AllOrNothing | 10 |", stdout);
            string report = Path.Combine(dir, "vary-service-tjob");
            string readme = File.ReadAllText(Path.Combine(report, "README.md"));
            Assert.Contains("## Machine", readme);
            Assert.Contains("--service-tjob 0.1,10", readme);
            foreach (var png in new[] { "service-conflict-fraction.png", "service-busyness.png", "service-wait-placed.png" })
            {
                var bytes = File.ReadAllBytes(Path.Combine(report, png));
                Assert.True(bytes.Length > 1000, png);
                Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);
                Assert.Contains($"]({png})", readme);
            }
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Omega_sim_scale_preset_subset_runs()
    {
        string dir = Path.Combine(Path.GetTempPath(), "omega-sim-test-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (exit, stdout, stderr) = Omega("sim", "--preset", "scale-batch-schedulers", "--hours", "0.1", "--machines", "500",
                "--batch-schedulers", "1,4", "--batch-rates", "2", "--no-charts", "--out", dir);
            Assert.True(exit == 0, $"exit {exit}: {stderr}");
            Assert.Contains("| 4 | 2 |", stdout);
            Assert.True(File.Exists(Path.Combine(dir, "scale-batch-schedulers", "README.md")));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("--hours", "-1", "--hours")]
    [InlineData("--preset", "nope", "--preset")]
    [InlineData("--service-tjob", "1,x", "--service-tjob")]
    [InlineData("--variants", "Fine/Sideways", "--variants")]
    [InlineData("--trace", "/nonexistent/trace.csv", "--trace")]
    public void Bad_options_give_one_clear_line_and_a_nonzero_exit(string option, string value, string mentioned)
    {
        var (exit, stdout, stderr) = Omega("sim", option, value, "--out", Path.GetTempPath());
        Assert.NotEqual(0, exit);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("omega sim: ", lines[0]);
        Assert.Contains(mentioned, lines[0]);
        Assert.DoesNotContain("Exception", stderr);
        Assert.DoesNotContain("omega sim", stdout);
    }

    [Fact]
    public void A_malformed_trace_is_reported_with_its_line()
    {
        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, "job_id,submit_time_s,tasks,cpu_per_task,mem_per_task,priority,scheduling_class,different_machine_constraint,duration_s\n1,0.5,x,0.1,0.1,1,1,0,10\n");
            var (exit, _, stderr) = Omega("sim", "--trace", file);
            Assert.Equal(2, exit);
            Assert.Contains("line 2", stderr);
            Assert.Contains("tasks", stderr);
        }
        finally
        {
            File.Delete(file);
        }
    }
}
