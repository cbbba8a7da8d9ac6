namespace Omega.Scheduling;

/// <summary>
/// The random stream of one placement decision: a <see cref="Random"/> whose whole state is one 64-bit seed
/// (SplitMix64), reseeded by the worker before every decision. Recording that seed in the decision record is what lets
/// <see cref="DecisionReplay"/> re-run the decision's sampling exactly (issue 18, "decision replay from the log"). A
/// <see cref="Random"/> seeded by <c>new Random(int)</c> cannot be captured (its state is 56 hidden integers) nor reseeded
/// without allocating, so the worker keeps one instance of this class and reseeds it in place: no allocation per decision.
/// </summary>
/// <remarks>
/// Every virtual member of <see cref="Random"/> is overridden, so the base implementation (and its hidden state) is never
/// used. The bounded draws use a multiply-shift reduction (Lemire) on 32 or 64 fresh bits, which is deterministic across
/// platforms; its bias (at most max/2^32) is irrelevant for sampling nodes.
/// </remarks>
public sealed class DecisionRandom : Random
{
    private ulong _state;

    /// <summary>Creates a stream seeded with <paramref name="seed"/>.</summary>
    public DecisionRandom(long seed) => Reseed(seed);

    /// <summary>The seed the stream was last (re)seeded with.</summary>
    public long Seed { get; private set; }

    /// <summary>Restarts the stream at <paramref name="seed"/>: the same seed gives the same draws.</summary>
    public void Reseed(long seed)
    {
        Seed = seed;
        _state = unchecked((ulong)seed);
    }

    private ulong NextUInt64()
    {
        // SplitMix64 (Steele, Lea, Flood 2014): passes BigCrush, one 64-bit state.
        ulong z = unchecked(_state += 0x9E3779B97F4A7C15UL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        return z ^ (z >> 31);
    }

    /// <inheritdoc />
    public override int Next() => (int)(NextUInt64() >> 33);

    /// <inheritdoc />
    public override int Next(int maxValue)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxValue);
        return (int)(((NextUInt64() >> 32) * (ulong)(uint)maxValue) >> 32);
    }

    /// <inheritdoc />
    public override int Next(int minValue, int maxValue)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minValue, maxValue);
        ulong range = (ulong)((long)maxValue - minValue);
        return (int)(minValue + (long)(((NextUInt64() >> 32) * range) >> 32));
    }

    /// <inheritdoc />
    public override long NextInt64() => (long)(NextUInt64() >> 1);

    /// <inheritdoc />
    public override long NextInt64(long maxValue)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxValue);
        return (long)Math.BigMul(NextUInt64(), (ulong)maxValue, out _);
    }

    /// <inheritdoc />
    public override long NextInt64(long minValue, long maxValue)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minValue, maxValue);
        ulong range = unchecked((ulong)(maxValue - minValue));
        return unchecked(minValue + (long)Math.BigMul(NextUInt64(), range, out _));
    }

    /// <inheritdoc />
    public override double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <inheritdoc />
    public override float NextSingle() => (NextUInt64() >> 40) * (1.0f / (1U << 24));

    /// <inheritdoc />
    protected override double Sample() => NextDouble();

    /// <inheritdoc />
    public override void NextBytes(byte[] buffer)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        NextBytes(buffer.AsSpan());
    }

    /// <inheritdoc />
    public override void NextBytes(Span<byte> buffer)
    {
        for (int i = 0; i < buffer.Length; i++) buffer[i] = (byte)(NextUInt64() >> 56);
    }
}
