namespace Omega.Server;

/// <summary>
/// When each cell version was committed, for the stage histograms (docs/operations.md, "Stage dashboards"): a binding's
/// generation is the cell version that made it, so "time since the commit" at the binding's push or at its agent's
/// running report is a lookup here instead of a timestamp kept per binding.
/// </summary>
/// <remarks>
/// Written by one thread only: the committer, under the commit lock, once per completed version (the server's binding
/// feed). Two fixed rings, no allocation after construction:
/// <list type="bullet">
/// <item>an exact ring indexed by version (the last <see cref="ExactSize"/> versions): the binding stage, milliseconds;</item>
/// <item>a sampled ring with one entry per <see cref="Granularity"/> at most: the startup stage, which can take minutes,
/// longer than any affordable exact ring covers at a high commit rate. A version between two entries was committed less
/// than one granularity after the earlier entry (otherwise it would have made an entry itself), so reading the earlier
/// entry's time overstates the duration by less than that.</item>
/// </list>
/// A version older than both rings (or committed before this process started: a restart) has no time, and its stage is
/// not measured rather than measured wrong. Each entry is written invalidate-stamp-publish; a reader that sees the same
/// version before and after reading the stamp has read that version's stamp.
/// </remarks>
internal sealed class StageClock
{
    public const int ExactSize = 1 << 12;
    public const int SampledSize = 1 << 14;
    public static readonly TimeSpan Granularity = TimeSpan.FromMilliseconds(10);

    private readonly TimeProvider _time;
    private readonly long _granularityTicks;
    private readonly long[] _exactVersion = new long[ExactSize];
    private readonly long[] _exactStamp = new long[ExactSize];
    private readonly long[] _sampledVersion = new long[SampledSize];
    private readonly long[] _sampledStamp = new long[SampledSize];
    private long _sampledCount;     // entries ever appended (the next logical index)
    private long _lastSampledStamp;

    public StageClock(TimeProvider time)
    {
        _time = time;
        _granularityTicks = Math.Max(1, (long)(Granularity.TotalSeconds * time.TimestampFrequency));
    }

    /// <summary>The clock the stamps are read from (<see cref="TimeProvider.GetTimestamp"/> units).</summary>
    public TimeProvider Time => _time;

    /// <summary>The committer: <paramref name="version"/> is complete now. Three stores, no allocation.</summary>
    public void Stamp(long version)
    {
        if (version <= 0) return;
        long now = _time.GetTimestamp();
        int i = (int)(version & (ExactSize - 1));
        Volatile.Write(ref _exactVersion[i], 0);
        Volatile.Write(ref _exactStamp[i], now);
        Volatile.Write(ref _exactVersion[i], version);
        long n = _sampledCount;
        if (n > 0 && now - _lastSampledStamp < _granularityTicks) return;
        _lastSampledStamp = now;
        int j = (int)(n & (SampledSize - 1));
        Volatile.Write(ref _sampledVersion[j], 0);
        Volatile.Write(ref _sampledStamp[j], now);
        Volatile.Write(ref _sampledVersion[j], version);
        Volatile.Write(ref _sampledCount, n + 1);
    }

    /// <summary>The timestamp at which <paramref name="version"/> was committed (at most one granularity early), if known.</summary>
    public bool TryGetCommitTime(long version, out long stamp)
    {
        int i = (int)(version & (ExactSize - 1));
        if (Volatile.Read(ref _exactVersion[i]) == version)
        {
            stamp = Volatile.Read(ref _exactStamp[i]);
            if (Volatile.Read(ref _exactVersion[i]) == version) return true;
        }
        return TrySampled(version, out stamp);
    }

    // The last sampled entry at or below version: a binary search over the logical indices still in the ring, leaving a
    // margin at the old end for entries the writer may overwrite during the search.
    private bool TrySampled(long version, out long stamp)
    {
        stamp = 0;
        long n = Volatile.Read(ref _sampledCount);
        if (n == 0) return false;
        long lo = Math.Max(0, n - SampledSize + 64), hi = n - 1;
        if (lo > hi) return false;
        if (!Read(lo, out long v, out _) || v > version) return false; // older than the ring: unknown
        while (lo < hi)
        {
            long mid = lo + (hi - lo + 1) / 2;
            if (!Read(mid, out v, out _)) return false;
            if (v <= version) lo = mid;
            else hi = mid - 1;
        }
        return Read(lo, out _, out stamp);
    }

    private bool Read(long logical, out long version, out long stamp)
    {
        int j = (int)(logical & (SampledSize - 1));
        version = Volatile.Read(ref _sampledVersion[j]);
        stamp = Volatile.Read(ref _sampledStamp[j]);
        return version != 0 && Volatile.Read(ref _sampledVersion[j]) == version;
    }

    /// <summary>Seconds from <paramref name="stamp"/> to now on this clock.</summary>
    public double SecondsSince(long stamp) => Math.Max(0, _time.GetTimestamp() - stamp) / (double)_time.TimestampFrequency;
}
