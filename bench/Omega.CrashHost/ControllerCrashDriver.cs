using System.Diagnostics;
using System.Globalization;
using System.Net;
using Omega.Agent;

namespace Omega.CrashHost;

/// <summary>The totals of a controller crash run.</summary>
internal sealed class ControllerCrashSummary
{
    public int Seed;
    public int Cycles;
    public long OpsAcknowledged;
    public int Violations;
    public List<double> ConvergeMs = new();
    public List<string> Failures = new();

    public bool Ok => Violations == 0 && Failures.Count == 0;

    public override string ToString()
    {
        var ms = ConvergeMs.OrderBy(x => x).ToList();
        double p50 = ms.Count > 0 ? ms[ms.Count / 2] : 0, max = ms.Count > 0 ? ms[^1] : 0;
        return string.Create(CultureInfo.InvariantCulture,
            $"seed {Seed}: {Cycles} SIGKILL cycles, {OpsAcknowledged} workload writes acknowledged before the kills; violations {Violations}; "
            + $"convergence after restart p50 {p50:F0} ms max {max:F0} ms; {(Ok ? "OK" : "FAILED: " + string.Join("; ", Failures.Take(5)))}");
    }
}

/// <summary>
/// The controller crash driver (issue 12): starts <c>controllers-host</c> (a real Omega host with the workload controller
/// and agents), lets it verify the previous cycle and then run its stream of workload creates, scales and deletes, and
/// kills it with SIGKILL after a seeded random number of acknowledged writes (0: right after verification, while the
/// controllers may still be mid-reconcile). A last start only verifies. Every violation the host reports counts. The
/// node agents run here, in the driver, against the host's fixed port: they survive every kill (as real agents outlive a
/// server crash), reconnect, and re-report their replicas' readiness to the restarted server.
/// </summary>
internal sealed class ControllerCrashDriver(string hostDll, string workDir, Action<string> log)
{
    public async Task<ControllerCrashSummary> RunAsync(int cycles, int seed, int convergeSeconds = 30)
    {
        Directory.CreateDirectory(workDir);
        string data = Path.Combine(workDir, "data"), acks = Path.Combine(workDir, "acks.log");
        var rng = new Random(seed);
        var summary = new ControllerCrashSummary { Seed = seed };
        int port = FreePort();
        var agents = new List<AgentClient>();
        for (int i = 0; i < AgentCount; i++)
        {
            var agent = new AgentClient(new AgentOptions
            {
                Server = new IPEndPoint(IPAddress.Loopback, port), NodeName = $"crash-node-{i}", Capacity = ResourceVector.FromCoresAndGiB(8, 32),
                FailureDomain = $"rack-{i % 2}", Seed = seed + i, ReadyAfter = TimeSpan.FromMilliseconds(20 + rng.Next(80)),
                ReconnectBase = TimeSpan.FromMilliseconds(20), ReconnectMax = TimeSpan.FromMilliseconds(250),
            });
            agents.Add(agent);
            _ = agent.StartAsync(); // registers once the first host listens, then follows every restart
        }
        try
        {
        for (int cycle = 1; cycle <= cycles + 1; cycle++)
        {
            bool verifyOnly = cycle == cycles + 1;
            int killAfter = rng.Next(0, 30);
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add(hostDll);
            foreach (var a in new[] { "controllers-host", "--dir", data, "--acks", acks, "--port", port.ToString(CultureInfo.InvariantCulture), "--seed", rng.Next().ToString(CultureInfo.InvariantCulture),
                         "--cycle", cycle.ToString(CultureInfo.InvariantCulture), "--verify-only", verifyOnly ? "1" : "0", "--converge-seconds", convergeSeconds.ToString(CultureInfo.InvariantCulture) })
                psi.ArgumentList.Add(a);
            psi.Environment["DOTNET_NOLOGO"] = "1";
            using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start the controllers host");
            var stderr = p.StandardError.ReadToEndAsync();
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(convergeSeconds + 60));
            bool verified = false, killed = false;
            try
            {
                while (await p.StandardOutput.ReadLineAsync(cts.Token) is { } line)
                {
                    if (line.StartsWith("waiting ", StringComparison.Ordinal)) { if (Verbose) log($"cycle {cycle}: {line}"); }
                    else if (line.StartsWith("verified ", StringComparison.Ordinal))
                    {
                        verified = true;
                        Parse(line, summary);
                        if (cycle % 10 == 0 || cycle <= 2 || verifyOnly || !line.Contains("violations 0", StringComparison.Ordinal)) log(line);
                        if (!verifyOnly && killAfter == 0) { p.Kill(); killed = true; break; }
                    }
                    else if (line.StartsWith("op ", StringComparison.Ordinal))
                    {
                        summary.OpsAcknowledged++;
                        if (long.Parse(line.AsSpan(3), CultureInfo.InvariantCulture) >= killAfter) { p.Kill(); killed = true; break; }
                    }
                }
            }
            catch (OperationCanceledException)
            {
                p.Kill();
                summary.Failures.Add($"cycle {cycle}: no kill point within the timeout; stderr: {await stderr}");
            }
            await p.WaitForExitAsync();
            if (!verified) summary.Failures.Add($"cycle {cycle}: the host never verified (exit {p.ExitCode}): {await stderr}");
            else if (!killed && !verifyOnly) summary.Failures.Add($"cycle {cycle}: the host exited by itself ({p.ExitCode}): {await stderr}");
            summary.Cycles = Math.Min(cycle, cycles);
            if (!summary.Ok) break;
        }
        }
        finally
        {
            foreach (var a in agents) await a.DisposeAsync();
        }
        return summary;
    }

    /// <summary>Print the host's "waiting" diagnostics while it converges.</summary>
    public bool Verbose { get; init; }

    /// <summary>Node agents (8 cores, 32 GiB each): the host's stream never asks for more than fits.</summary>
    public const int AgentCount = 6;

    private static int FreePort()
    {
        var l = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int p = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return p;
    }

    private static void Parse(string line, ControllerCrashSummary s)
    {
        int v = line.IndexOf("violations ", StringComparison.Ordinal);
        var num = line.AsSpan(v + 11);
        int sp = num.IndexOfAny(':', ' ');
        s.Violations += int.Parse(sp < 0 ? num : num[..sp], CultureInfo.InvariantCulture);
        if (s.Violations > 0) s.Failures.Add(line);
        int c = line.IndexOf("converged in ", StringComparison.Ordinal);
        if (c > 0)
        {
            var ms = line.AsSpan(c + 13);
            s.ConvergeMs.Add(double.Parse(ms[..ms.IndexOf(' ')], CultureInfo.InvariantCulture));
        }
    }
}
