using System.Diagnostics;

namespace Omega.Hosting.Tests;

/// <summary>
/// samples/Omega.Sample.Embedded, built by the solution, run as the application it is (a child process): a generic
/// host with AddOmega, two scheduler workers, durable storage, logs through ILogger, and a stop with a checkpoint; run
/// again over the same data, it recovers the first run's cell.
/// </summary>
public sealed class EmbeddingSampleTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task The_embedding_sample_places_jobs_through_both_schedulers_stops_with_a_checkpoint_and_recovers_it()
    {
        string data = Path.Combine(Path.GetTempPath(), "omega-sample-" + Guid.NewGuid().ToString("N"));
        try
        {
            var first = await RunSampleAsync(data);
            Assert.True(first.ExitCode == 0, first.Output);
            // ILogger lines (the console logger's "category[event id]"), from the sample and from Omega.Hosting.
            Assert.Contains("Omega.Sample.Embedded.SampleWorkload[2]", first.Output, StringComparison.Ordinal);
            Assert.Contains("placed by the batch scheduler", first.Output, StringComparison.Ordinal);
            Assert.Contains("placed by the service scheduler", first.Output, StringComparison.Ordinal);
            Assert.Contains("all 8 jobs placed", first.Output, StringComparison.Ordinal);
            Assert.Contains("Omega.Hosting.OmegaHostedService[1006]", first.Output, StringComparison.Ordinal); // Checkpointed
            Assert.Contains("stopped with a checkpoint at cell v", first.Output, StringComparison.Ordinal);

            // Durable: the second run opens the checkpoint and finds the first run's bindings (8 jobs, 1-3 tasks each).
            var second = await RunSampleAsync(data);
            Assert.True(second.ExitCode == 0, second.Output);
            Assert.Matches(@"from checkpoint True", second.Output);
            var recovered = System.Text.RegularExpressions.Regex.Match(second.Output, @"(\d+) bindings recovered");
            Assert.True(recovered.Success, second.Output);
            Assert.True(int.Parse(recovered.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) >= 8, second.Output);
        }
        finally
        {
            if (Directory.Exists(data)) Directory.Delete(data, recursive: true);
        }
    }

    private static async Task<(int ExitCode, string Output)> RunSampleAsync(string data)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Omega.Sample.Embedded.dll"));
        psi.ArgumentList.Add("--data");
        psi.ArgumentList.Add(data);
        psi.ArgumentList.Add("--jobs");
        psi.ArgumentList.Add("8");
        psi.Environment["DOTNET_NOLOGO"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(Timeout);
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"the sample did not finish within {Timeout}: {await stdout}");
        }
        return (p.ExitCode, await stdout + await stderr);
    }
}
