using System.Runtime.CompilerServices;

namespace Omega.Simulation;

/// <summary>
/// The simulator's random number generator: xoshiro256** seeded through SplitMix64. Written out here rather than taken
/// from <see cref="Random"/> so that a seed gives the same stream on every machine and every .NET version; the
/// exponential draws use <see cref="DeterministicMath.Log"/> for the same reason.
/// </summary>
public sealed class SimRandom
{
    private ulong _s0, _s1, _s2, _s3;

    /// <summary>Creates a generator for <paramref name="seed"/> and a stream number, so independent parts of a run
    /// (each workload, each scheduler) draw from independent streams and adding one part does not shift the others.</summary>
    public SimRandom(long seed, long stream = 0)
    {
        ulong x = unchecked((ulong)seed * 0x9E3779B97F4A7C15UL ^ (ulong)stream * 0xD1B54A32D192ED03UL);
        _s0 = SplitMix(ref x);
        _s1 = SplitMix(ref x);
        _s2 = SplitMix(ref x);
        _s3 = SplitMix(ref x);
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>The next 64 random bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong NextUInt64()
    {
        ulong result = BitOps.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = BitOps.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>A uniform integer in [0, <paramref name="bound"/>) (Lemire's multiply-shift, without the rejection step:
    /// the bias is below 2^-32 for the bounds used here).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int NextInt(int bound) => (int)(((NextUInt64() >> 32) * (ulong)(uint)bound) >> 32);

    /// <summary>A uniform double in (0, 1]: never zero, so its logarithm is finite.</summary>
    public double NextUnitOpenZero() => ((NextUInt64() >> 11) + 1) * (1.0 / (1UL << 53));

    /// <summary>An exponentially distributed draw with the given mean.</summary>
    public double Exponential(double mean) => -mean * DeterministicMath.Log(NextUnitOpenZero());
}

internal static class BitOps
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong RotateLeft(ulong x, int k) => (x << k) | (x >> (64 - k));
}

/// <summary>
/// Math that gives bit-identical results on every machine: only IEEE-754 additions, multiplications and divisions, which
/// are correctly rounded everywhere, unlike the platform's libm behind <see cref="Math.Log(double)"/>.
/// </summary>
public static class DeterministicMath
{
    private const double Ln2 = 0.6931471805599453094172321;
    private const double Sqrt2 = 1.4142135623730950488;

    /// <summary>The natural logarithm of a positive finite <paramref name="x"/> (within a few ulps of <see cref="Math.Log(double)"/>).</summary>
    public static double Log(double x)
    {
        if (!(x > 0) || double.IsInfinity(x)) return double.NaN;
        // x = m * 2^e with m in [sqrt(1/2), sqrt(2)); then ln x = e ln 2 + 2 atanh((m-1)/(m+1)).
        long bits = BitConverter.DoubleToInt64Bits(x);
        int e = (int)((bits >> 52) & 0x7FF);
        if (e == 0)
        {
            // Subnormal: scale up by 2^54 first.
            x *= 18014398509481984.0;
            bits = BitConverter.DoubleToInt64Bits(x);
            e = (int)((bits >> 52) & 0x7FF) - 54;
        }
        int exp = e - 1023;
        double m = BitConverter.Int64BitsToDouble((bits & 0x000FFFFFFFFFFFFFL) | 0x3FF0000000000000L);
        if (m >= Sqrt2) { m *= 0.5; exp++; }
        double z = (m - 1) / (m + 1);
        double z2 = z * z;
        // |z| <= 0.1716, z^2 <= 0.0295: 11 terms of the odd series reach well below 1e-17 relative.
        double sum = 1.0 / 23;
        sum = sum * z2 + 1.0 / 21;
        sum = sum * z2 + 1.0 / 19;
        sum = sum * z2 + 1.0 / 17;
        sum = sum * z2 + 1.0 / 15;
        sum = sum * z2 + 1.0 / 13;
        sum = sum * z2 + 1.0 / 11;
        sum = sum * z2 + 1.0 / 9;
        sum = sum * z2 + 1.0 / 7;
        sum = sum * z2 + 1.0 / 5;
        sum = sum * z2 + 1.0 / 3;
        sum = sum * z2 + 1.0;
        return exp * Ln2 + 2 * z * sum;
    }
}
