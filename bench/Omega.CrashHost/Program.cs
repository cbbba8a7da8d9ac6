using System.Globalization;
using Omega.CrashHost;

// Omega crash harness.
//   host  --dir D --acks F --cycle N --seed S --checkpoint-ms M   the process that gets killed
//   drive [--cycles N] [--seed S] [--dir D]                        runs N kill/restart/verify cycles and prints a summary
//   drive-server [--cycles N] [--seed S] [--dir D] [--omega DLL]   the same against a real `omega serve` over the wire
//   drive-controllers [--cycles N] [--seed S] [--dir D]            SIGKILL cycles of a host under workload creates/scales/deletes
//   controllers-host --dir D --acks F --port P --seed S --cycle N [--verify-only 1]   the process drive-controllers kills
var opts = new Dictionary<string, string>(StringComparer.Ordinal);
for (int i = 1; i + 1 < args.Length; i += 2) opts[args[i].TrimStart('-')] = args[i + 1];
string Get(string k, string d) => opts.TryGetValue(k, out var v) ? v : d;
int GetInt(string k, int d) => opts.TryGetValue(k, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : d;

switch (args.FirstOrDefault())
{
    case "host":
        return await HostRun.RunAsync(Get("dir", ""), Get("acks", ""), GetInt("cycle", 1), GetInt("seed", 1), GetInt("workers", 4), GetInt("checkpoint-ms", 100), GetInt("ack-early", 0) == 1);
    case "drive":
    {
        int seed = GetInt("seed", Random.Shared.Next());
        int cycles = GetInt("cycles", 200);
        string dir = Get("dir", Path.Combine(Path.GetTempPath(), "omega-crash", seed.ToString(CultureInfo.InvariantCulture)));
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        string self = Environment.ProcessPath is { } p && !Path.GetFileNameWithoutExtension(p).Equals("dotnet", StringComparison.Ordinal)
            ? p : typeof(CrashDriver).Assembly.Location;
        Console.WriteLine($"omega crash harness: seed {seed}, {cycles} cycles, commit path {HostRun.CommitPathFromEnvironment()?.ToString() ?? "default"} (OMEGA_CRASH_COMMIT_PATH), data in {dir} (replay: drive --seed {seed} --cycles {cycles})");
        var driver = new CrashDriver(self, dir, Console.WriteLine);
        var summary = await driver.RunAsync(cycles, seed, TimeSpan.FromMinutes(2));
        Console.WriteLine(summary);
        return summary.Ok ? 0 : 1;
    }
    case "drive-server":
    {
        int seed = GetInt("seed", Random.Shared.Next());
        int cycles = GetInt("cycles", 500);
        string dir = Get("dir", Path.Combine(Path.GetTempPath(), "omega-server-crash", seed.ToString(CultureInfo.InvariantCulture)));
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        // Default: the omega.dll built next to this host (same configuration and TFM).
        string omega = Get("omega", Path.Combine(AppContext.BaseDirectory.Replace(Path.Combine("bench", "Omega.CrashHost"), Path.Combine("src", "Omega.Cli"), StringComparison.Ordinal), "omega.dll"));
        if (!File.Exists(omega))
        {
            Console.Error.WriteLine($"omega.dll not found at {omega}: build src/Omega.Cli in the same configuration, or pass --omega");
            return 2;
        }
        Console.WriteLine($"omega server crash driver: seed {seed}, {cycles} cycles, omega {omega}, data in {dir} (replay: drive-server --seed {seed} --cycles {cycles})");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var summary = await new ServerCrashDriver(omega, dir, Console.WriteLine).RunAsync(cycles, seed);
        Console.WriteLine(summary);
        Console.WriteLine($"elapsed {clock.Elapsed.TotalMinutes:F1} min");
        return summary.Ok ? 0 : 1;
    }
    case "controllers-host":
        return await ControllerCrashHost.RunAsync(Get("dir", ""), Get("acks", ""), GetInt("port", 0), GetInt("seed", 1), GetInt("cycle", 1), GetInt("verify-only", 0) == 1, GetInt("converge-seconds", 30));
    case "drive-controllers":
    {
        int seed = GetInt("seed", Random.Shared.Next());
        int cycles = GetInt("cycles", 50);
        string dir = Get("dir", Path.Combine(Path.GetTempPath(), "omega-controller-crash", seed.ToString(CultureInfo.InvariantCulture)));
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        string self = typeof(ControllerCrashDriver).Assembly.Location;
        Console.WriteLine($"omega controller crash driver: seed {seed}, {cycles} cycles, data in {dir} (replay: drive-controllers --seed {seed} --cycles {cycles})");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var summary = await new ControllerCrashDriver(self, dir, Console.WriteLine) { Verbose = GetInt("verbose", 0) == 1 }.RunAsync(cycles, seed);
        Console.WriteLine(summary);
        Console.WriteLine($"elapsed {clock.Elapsed.TotalMinutes:F1} min");
        return summary.Ok ? 0 : 1;
    }
    default:
        Console.Error.WriteLine("usage: Omega.CrashHost drive [--cycles N] [--seed S] [--dir D] | drive-server [--cycles N] [--seed S] [--dir D] [--omega DLL] | host --dir D --acks F --cycle N --seed S --checkpoint-ms M");
        return 2;
}
