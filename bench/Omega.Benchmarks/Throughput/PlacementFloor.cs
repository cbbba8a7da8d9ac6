using System.Diagnostics;
using System.Globalization;

namespace Omega.Benchmarks.Throughput;

/// <summary>
/// <c>floor [--seconds N] [--reps R] [--nodes N]</c>: the placement floor of issue 14 — what a placement costs with no
/// scheduler and no cell around it. Each node's free CPU and memory are packed in one 64-bit word; a placement samples
/// two random nodes, takes the one with more free CPU, and subtracts its request with one compare-and-swap; the oldest
/// placement of the thread is released with one atomic add, so utilization stays at half, as in the throughput loop.
/// Placements per second at 1 and 2 threads; the full pipeline's rate is compared against it in the report.
/// </summary>
internal static class PlacementFloor
{
    private const long TaskCpu = 1, TaskMem = 2, NodeCpu = 64, NodeMem = 128;   // 64 task slots per node

    public static int Run(string[] args)
    {
        double seconds = 3;
        int reps = 5, nodes = 10_000;
        for (int i = 0; i + 1 < args.Length; i += 2)
            switch (args[i])
            {
                case "--seconds": seconds = double.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
                case "--reps": reps = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
                case "--nodes": nodes = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
                default: Console.Error.WriteLine("usage: floor [--seconds N] [--reps R] [--nodes N]"); return 2;
            }
        Console.WriteLine($"# placement floor: {nodes:N0} nodes, sample 2 + one CAS per placement and per release, {reps} x {seconds} s");
        for (int rep = 1; rep <= reps; rep++)
            foreach (int threads in new[] { 1, 2 })
                Console.WriteLine(FormattableString.Invariant($"rep {rep} | {threads}T | {Once(threads, nodes, seconds, rep),14:N0} placements/s"));
        return 0;
    }

    private static double Once(int threads, int nodeCount, double seconds, int seed)
    {
        var words = new long[nodeCount];
        Array.Fill(words, NodeCpu << 32 | NodeMem);
        int resident = nodeCount * 32 / threads;               // half of the 64 slots per node, over all threads
        var counts = new long[threads];
        var stop = new StopFlag();
        using var ready = new Barrier(threads + 1);
        var workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            int me = t;
            workers[t] = new Thread(() =>
            {
                var rng = new XorShift(seed * 7919L + me + 1);
                var held = new int[resident + 1];
                int head = 0, tail = 0, count = 0;
                void Place() { int n = Claim(words, ref rng); if (n >= 0) { held[tail] = n; tail = (tail + 1) % held.Length; count++; } }
                while (count < resident) Place();
                ready.SignalAndWait();
                long ops = 0, start = Stopwatch.GetTimestamp();
                while (!stop.IsSet)
                {
                    Interlocked.Add(ref words[held[head]], TaskCpu << 32 | TaskMem);   // release the oldest: one atomic add
                    head = (head + 1) % held.Length;
                    count--;
                    Place();
                    ops++;
                }
                counts[me] = (long)(ops / Stopwatch.GetElapsedTime(start).TotalSeconds);
            }) { IsBackground = true };
            workers[t].Start();
        }
        ready.SignalAndWait();
        Thread.Sleep(TimeSpan.FromSeconds(seconds));
        stop.Set();
        foreach (var w in workers) w.Join();
        return counts.Sum();
    }

    // Power of two choices over packed (cpu << 32 | mem) words; -1 when neither sampled node fits.
    private static int Claim(long[] words, ref XorShift rng)
    {
        while (true)
        {
            int a = (int)(rng.Next() % (ulong)words.Length), b = (int)(rng.Next() % (ulong)words.Length);
            long wa = Volatile.Read(ref words[a]), wb = Volatile.Read(ref words[b]);
            int n = (wa >> 32) >= (wb >> 32) ? a : b;
            long w = n == a ? wa : wb;
            if ((w >> 32) < TaskCpu || (w & 0xFFFFFFFF) < TaskMem) return -1;
            if (Interlocked.CompareExchange(ref words[n], w - (TaskCpu << 32 | TaskMem), w) == w) return n;
        }
    }
}
