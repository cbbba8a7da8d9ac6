using System.Diagnostics;
using System.Globalization;

namespace Omega.Benchmarks.Throughput;

/// <summary>
/// Measures how much CPU the rest of the machine used while a case ran: all busy CPU time (from /proc/stat) minus this
/// process's own (from /proc/self/stat), in cores. On a shared 2-core machine this says which repetitions were
/// measured while someone else was building, so they can be told apart from quiet ones instead of averaged in.
/// </summary>
/// <remarks>Linux only; elsewhere it reports NaN. The kernel counts in clock ticks (USER_HZ = 100 on Linux), so a 3 s
/// window resolves about 0.01 core.</remarks>
internal readonly struct NoiseMeter
{
    private const double TicksPerSecond = 100; // USER_HZ; /proc reports times in these units on every mainstream Linux

    private readonly long _busy, _steal, _self, _start;

    private NoiseMeter(long busy, long steal, long self, long start)
    {
        _busy = busy;
        _steal = steal;
        _self = self;
        _start = start;
    }

    public static NoiseMeter Start()
    {
        var (busy, steal) = ReadMachine();
        return new NoiseMeter(busy, steal, ReadSelf(), Stopwatch.GetTimestamp());
    }

    /// <summary>Others' CPU use in cores, and steal time (the hypervisor running other guests) in cores, since <see cref="Start"/>.</summary>
    public (double OthersCores, double StealCores) Stop()
    {
        double seconds = Stopwatch.GetElapsedTime(_start).TotalSeconds;
        var (busy, steal) = ReadMachine();
        long self = ReadSelf();
        if (busy < 0 || self < 0 || _busy < 0 || _self < 0) return (double.NaN, double.NaN);
        double others = (busy - _busy - (self - _self)) / TicksPerSecond / seconds;
        return (Math.Max(0, others), (steal - _steal) / TicksPerSecond / seconds);
    }

    /// <summary>Samples for <paramref name="window"/> and returns others' CPU use in cores.</summary>
    public static double SampleOthers(TimeSpan window)
    {
        var m = Start();
        Thread.Sleep(window);
        return m.Stop().OthersCores;
    }

    private static (long Busy, long Steal) ReadMachine()
    {
        try
        {
            // First line: "cpu  user nice system idle iowait irq softirq steal guest guest_nice".
            string line = File.ReadLines("/proc/stat").First();
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            long Field(int i) => i < f.Length ? long.Parse(f[i], CultureInfo.InvariantCulture) : 0;
            long busy = Field(1) + Field(2) + Field(3) + Field(6) + Field(7);
            return (busy, Field(8));
        }
        catch (IOException) { return (-1, -1); }
        catch (UnauthorizedAccessException) { return (-1, -1); }
    }

    private static long ReadSelf()
    {
        try
        {
            // Fields 14 and 15 are utime and stime; the command name (field 2) may contain spaces, so split after ')'.
            string stat = File.ReadAllText("/proc/self/stat");
            var f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture);
        }
        catch (IOException) { return -1; }
        catch (UnauthorizedAccessException) { return -1; }
    }
}
