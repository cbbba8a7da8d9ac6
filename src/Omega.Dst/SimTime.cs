namespace Omega.Dst;

/// <summary>
/// The simulation's one clock: it moves only when the harness advances it. It creates no timers: every component under
/// simulation takes its delays from an injected scheduler, and a hidden timer would be a source of nondeterminism, so
/// <see cref="CreateTimer"/> throws to expose one.
/// </summary>
public sealed class SimTime : TimeProvider
{
    private long _ticks;
    private readonly DateTimeOffset _epoch;

    /// <summary>Creates a clock at <paramref name="epoch"/>.</summary>
    public SimTime(DateTimeOffset epoch) => _epoch = epoch;

    /// <summary>Time elapsed since the epoch.</summary>
    public TimeSpan Elapsed => TimeSpan.FromTicks(_ticks);

    /// <summary>Moves the clock forward (never back: the cell's lease and reservation clocks are monotonic).</summary>
    public void Advance(TimeSpan by)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(by, TimeSpan.Zero);
        _ticks += by.Ticks;
    }

    /// <inheritdoc />
    public override DateTimeOffset GetUtcNow() => _epoch + TimeSpan.FromTicks(_ticks);

    /// <inheritdoc />
    public override long GetTimestamp() => _ticks;

    /// <inheritdoc />
    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    /// <inheritdoc />
    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        => throw new NotSupportedException("a component under simulation created a timer: it must take its delays from the injected scheduler");
}

/// <summary>
/// A process's own clock in the simulation: the shared clock shifted by a skew that a fault may change (a scheduler
/// whose clock jumped back believes its lease lives longer than the cell does: the stale-token fault). Never read by
/// the cell, whose clock is the simulation's.
/// </summary>
/// <param name="inner">The simulation's clock.</param>
public sealed class SkewedTime(SimTime inner) : TimeProvider
{
    /// <summary>Added to every reading (negative: this process lags).</summary>
    public TimeSpan Skew { get; set; }

    /// <inheritdoc />
    public override DateTimeOffset GetUtcNow() => inner.GetUtcNow() + Skew;

    /// <inheritdoc />
    public override long GetTimestamp() => inner.GetTimestamp() + Skew.Ticks;

    /// <inheritdoc />
    public override long TimestampFrequency => inner.TimestampFrequency;

    /// <inheritdoc />
    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) => inner.CreateTimer(callback, state, dueTime, period);
}
