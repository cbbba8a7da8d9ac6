using System.Diagnostics;
using System.Globalization;
using Cells = Omega.Cells;

namespace Omega.Dst.Tests;

/// <summary><c>omega dst</c> as a child process: a seed replays to the same hash in another process, a failing seed prints its replay.</summary>
public sealed class ReplayCliTests
{
    private static (int Exit, string Out, string Err) Omega(params string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "omega.dll");
        Assert.True(File.Exists(dll), $"omega.dll not found next to the tests: {dll}");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(2)), "omega dst did not finish in 2 minutes");
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void Omega_dst_seed_replays_the_in_process_run_exactly_and_a_failing_seed_prints_its_trace_and_replay_command()
    {
        var inProcess = DstSimulation.RunSeed(7);
        var (exit, stdout, stderr) = Omega("dst", "--seed", "7");
        Assert.True(exit == 0, $"exit {exit}: {stdout} {stderr}");
        Assert.Contains($"seed 7 hash {inProcess.TraceHash.ToString("x16", CultureInfo.InvariantCulture)} ok", stdout, StringComparison.Ordinal);

        // A broken variant: the seed that fails in process fails the same way in the child, with its events.
        var o = new DstOptions { Buggify = Cells.Buggify.AckBeforeDurable, FaultRate = 2 };
        long bad = 1;
        while (DstSimulation.RunSeed(bad, o).Ok) bad++;
        var failing = DstSimulation.RunSeed(bad, o);
        var (exit2, out2, _) = Omega("dst", "--seed", bad.ToString(CultureInfo.InvariantCulture), "--buggify", "AckBeforeDurable", "--fault-rate", "2", "--trace");
        Assert.Equal(1, exit2);
        Assert.Contains($"hash {failing.TraceHash.ToString("x16", CultureInfo.InvariantCulture)} VIOLATION: acked-write-lost", out2, StringComparison.Ordinal);
        Assert.Contains($"replay: omega dst --seed {bad} --trace", out2, StringComparison.Ordinal);
        Assert.Contains("CRASH process", out2, StringComparison.Ordinal);

        var (exit3, out3, _) = Omega("dst", "--seeds", "1..3");
        Assert.Equal(0, exit3);
        Assert.Contains("seeds 1..3: 3 run, 0 violation(s)", out3, StringComparison.Ordinal);
        Assert.Contains("seeds/s", out3, StringComparison.Ordinal);
        Assert.Contains("faults: Crash ", out3, StringComparison.Ordinal);

        var (exit4, _, err4) = Omega("dst", "--seeds", "9..3");
        Assert.Equal(2, exit4);
        Assert.Contains("--seeds must be A..B", err4, StringComparison.Ordinal);
    }
}
