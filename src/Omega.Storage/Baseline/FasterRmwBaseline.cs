using System.Diagnostics;
using System.Runtime.CompilerServices;
using FASTER.core;

namespace Omega.Storage.Baseline;

/// <summary>
/// The same-run baseline of design.md §7, for benchmarks and load reports (it lives here because only Omega.Storage may
/// reference FASTER): raw FASTER read-modify-write operations per second, in memory, with 16-byte
/// keys and 32-byte values chosen at random over a 1M key space, one session per thread.
/// </summary>
/// <remarks>
/// The store is built once and preloaded with every key, so the timed RMWs are in-place updates of existing records
/// (FASTER's fast path), which is the number the engine is compared with. The log is sized to hold every record in its
/// mutable region (1M records × 56 B ≈ 56 MiB in a 128 MiB log; MemorySize is set because it defaults to 16 GiB), and
/// the device is a null device: nothing is ever flushed, so this measures the in-memory store alone.
/// </remarks>
public sealed class FasterRmwBaseline : IDisposable
{
    /// <summary>Keys in the store.</summary>
    public const int KeySpace = 1 << 20;

    private readonly NullDevice _device;
    private readonly FasterKV<Key16, Value32> _store;
    private readonly AddFunctions _functions = new();

    /// <summary>Builds the store and preloads every key (about a second).</summary>
    public FasterRmwBaseline()
    {
        _device = new NullDevice();
        _store = new FasterKV<Key16, Value32>(
            size: 1L << 18, // hash buckets (64 B each, 7 entries): 1.8M entries for 1M keys, few overflow buckets
            logSettings: new LogSettings { LogDevice = _device, PageSizeBits = 20, MemorySizeBits = 27 },
            comparer: new Key16Comparer());
        Preload();
    }

    /// <summary>A one-line description of the baseline's configuration, for reports.</summary>
    public static string Describe =>
        $"FasterKV<Key{Unsafe.SizeOf<Key16>()}B,Value{Unsafe.SizeOf<Value32>()}B> 2.6.5, index 2^18 buckets, log page 1 MiB, MemorySize 128 MiB, NullDevice, default concurrency control; "
        + "key space 2^20, preloaded; RMW adds to the value in place";

    /// <summary>Runs RMWs on <paramref name="threads"/> threads for <paramref name="duration"/> and returns RMWs/s (per-thread rates summed).</summary>
    public double Run(int threads, TimeSpan duration, int seed)
    {
        var counts = new long[threads];
        var elapsed = new long[threads];
        using var ready = new Barrier(threads + 1);
        var stop = new StopFlag();
        var workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            int me = t;
            workers[t] = new Thread(() =>
            {
                // A FASTER session belongs to one thread; it is created and used only here.
                using var session = _store.For(_functions).NewSession<AddFunctions>();
                var rng = new XorShift(seed * 7919 + me + 1);
                // Warm the session and the JIT on this thread before the clock starts.
                for (int i = 0; i < 100_000; i++) Rmw(session, ref rng);
                ready.SignalAndWait();
                long n = 0, start = Stopwatch.GetTimestamp();
                while (!stop.IsSet)
                {
                    // Check the flag every 64 ops: a volatile read per op is cheap, but not free at ~500 ns per op.
                    for (int i = 0; i < 64; i++) Rmw(session, ref rng);
                    n += 64;
                }
                elapsed[me] = Stopwatch.GetTimestamp() - start;
                counts[me] = n;
                session.CompletePending(wait: true);
            }) { IsBackground = true, Name = $"faster-{me}" };
            workers[t].Start();
        }
        ready.SignalAndWait();
        Thread.Sleep(duration);
        stop.Set();
        foreach (var w in workers) w.Join();
        double rate = 0;
        for (int t = 0; t < threads; t++) rate += counts[t] / (elapsed[t] / (double)Stopwatch.Frequency);
        return rate;
    }

    private static void Rmw(ClientSession<Key16, Value32, long, Value32, Empty, AddFunctions> session, ref XorShift rng)
    {
        long k = (long)rng.NextBelow(KeySpace);
        var key = new Key16(k, ~k);
        long input = 1;
        Value32 output = default;
        session.RMW(ref key, ref input, ref output);
    }

    private void Preload()
    {
        using var session = _store.For(_functions).NewSession<AddFunctions>();
        for (long k = 0; k < KeySpace; k++)
        {
            var key = new Key16(k, ~k);
            long input = 1;
            Value32 output = default;
            session.RMW(ref key, ref input, ref output);
        }
        session.CompletePending(wait: true);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _store.Dispose();
        _device.Dispose();
    }

    /// <summary>A 16-byte blittable key.</summary>
    internal readonly record struct Key16(long A, long B);

    /// <summary>A 32-byte blittable value.</summary>
    internal struct Value32
    {
        public long Count;
        public long Sum;
        public long Last;
        public long Touches; // fills the value to 32 bytes; updated too, so all four words are live
    }

    private sealed class Key16Comparer : IFasterEqualityComparer<Key16>
    {
        // Both halves feed the hash, as a real 16-byte key would.
        public long GetHashCode64(ref Key16 k) => Utility.GetHashCode(k.A) ^ (Utility.GetHashCode(k.B) * 31);

        public bool Equals(ref Key16 k1, ref Key16 k2) => k1.A == k2.A && k1.B == k2.B;
    }

    /// <summary>RMW = add the input to the value: create on first touch, update in place afterwards.</summary>
    internal sealed class AddFunctions : FunctionsBase<Key16, Value32, long, Value32, Empty>
    {
        public override bool InitialUpdater(ref Key16 key, ref long input, ref Value32 value, ref Value32 output, ref RMWInfo rmwInfo)
        {
            value = new Value32 { Count = 1, Sum = input, Last = input, Touches = 1 };
            return true;
        }

        public override bool InPlaceUpdater(ref Key16 key, ref long input, ref Value32 value, ref Value32 output, ref RMWInfo rmwInfo)
        {
            value.Count++;
            value.Sum += input;
            value.Last = input;
            value.Touches++;
            return true;
        }

        public override bool CopyUpdater(ref Key16 key, ref long input, ref Value32 oldValue, ref Value32 newValue, ref Value32 output, ref RMWInfo rmwInfo)
        {
            newValue = oldValue;
            newValue.Count++;
            newValue.Sum += input;
            newValue.Last = input;
            newValue.Touches++;
            return true;
        }
    }

    private sealed class StopFlag
    {
        private volatile bool _set;

        public bool IsSet => _set;

        public void Set() => _set = true;
    }

    // xorshift64*: per-thread, allocation-free, seeded.
    private struct XorShift(long seed)
    {
        private ulong _s = (ulong)seed * 0x9E3779B97F4A7C15UL | 1;

        public ulong NextBelow(int bound)
        {
            _s ^= _s >> 12;
            _s ^= _s << 25;
            _s ^= _s >> 27;
            return ((_s * 0x2545F4914F6CDD1DUL) >> 32) * (ulong)bound >> 32;
        }
    }
}
