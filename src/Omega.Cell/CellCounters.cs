using System.Diagnostics.Metrics;

namespace Omega.Cells;

/// <summary>
/// Counts every outcome code of the cell (claims, transactions, releases) and exports them through the
/// <c>Omega.Cell</c> meter as observable counters tagged with the code. Counting on the hot path is a plain increment
/// under the commit lock: no allocation, no boxing; the meter reads the arrays when a listener collects.
/// </summary>
public sealed class CellCounters : IDisposable
{
    /// <summary>The meter name.</summary>
    public const string MeterName = "Omega.Cell";

    private readonly long[] _claims = new long[Enum.GetValues<ClaimStatus>().Length];
    private readonly long[] _transactions = new long[Enum.GetValues<TransactionStatus>().Length];
    private readonly long[] _releases = new long[Enum.GetValues<ReleaseStatus>().Length];
    private long _replays;
    private readonly Meter _meter;

    internal CellCounters(string cellName, IMeterFactory? meterFactory = null)
    {
        _meter = CreateMeter(MeterName, cellName, meterFactory);
        var cellTag = new KeyValuePair<string, object?>("cell", cellName);
        _meter.CreateObservableCounter("omega.cell.claims", () => Observe(0, Enum.GetNames<ClaimStatus>(), cellTag), "{claim}", "Claims by outcome code");
        _meter.CreateObservableCounter("omega.cell.transactions", () => Observe(1, Enum.GetNames<TransactionStatus>(), cellTag), "{transaction}", "Transactions by outcome code");
        _meter.CreateObservableCounter("omega.cell.releases", () => Observe(2, Enum.GetNames<ReleaseStatus>(), cellTag), "{release}", "Releases by outcome code");
        _meter.CreateObservableCounter("omega.cell.idempotent_replays", () => new Measurement<long>(Volatile.Read(ref _replays), cellTag), "{transaction}", "Retries answered from the idempotency index");
    }

    /// <summary>
    /// Creates a meter tagged <c>cell</c> = <paramref name="cellName"/> (a meter-level tag, so listeners and exporters
    /// that read meter tags tell two cells or engines in one process apart), from <paramref name="factory"/> when a host
    /// provides one.
    /// </summary>
    public static Meter CreateMeter(string meterName, string cellName, IMeterFactory? factory)
    {
        var options = new MeterOptions(meterName) { Tags = [new KeyValuePair<string, object?>("cell", cellName)] };
        return factory?.Create(options) ?? new Meter(options);
    }

    /// <summary>The number of claims that ended with <paramref name="status"/>.</summary>
    public long Claims(ClaimStatus status) => Sum(0, (int)status);

    /// <summary>The number of transactions that ended with <paramref name="status"/>.</summary>
    public long Transactions(TransactionStatus status) => Sum(1, (int)status);

    /// <summary>The number of releases that ended with <paramref name="status"/>.</summary>
    public long Releases(ReleaseStatus status) => Sum(2, (int)status);

    // The concurrent commit path (CommitPath.Concurrent) counts into per-stripe shards, so that no counter line is written
    // by every commit of every core: each shard is written only by the holder of its stripe (a plain increment), and
    // readers add the shards to the base arrays (each count exact, the sum not one instant's).
    private Shard[]? _shards;

    /// <summary>One stripe's counts: written only by the holder of that stripe.</summary>
    internal sealed class Shard
    {
        public readonly long[] Claims = new long[Enum.GetValues<ClaimStatus>().Length];
        public readonly long[] Transactions = new long[Enum.GetValues<TransactionStatus>().Length];
        public readonly long[] Releases = new long[Enum.GetValues<ReleaseStatus>().Length];
        public long Direct;   // commits and releases this shard's stripe answered without the commit lock
        // Keeps the next shard's arrays off this one's last line (shards are allocated one after the other).
        private readonly long[] _pad = new long[8];

        public TransactionStatus Count(TransactionStatus s)
        {
            Transactions[(int)s]++;
            return s;
        }

        public ReleaseStatus Count(ReleaseStatus s)
        {
            Releases[(int)s]++;
            return s;
        }
    }

    /// <summary>Creates <paramref name="n"/> shards (once, by the cell's constructor).</summary>
    internal Shard[] CreateShards(int n)
    {
        var shards = new Shard[n];
        for (int i = 0; i < n; i++) shards[i] = new Shard();
        _shards = shards;
        return shards;
    }

    /// <summary>Concurrent path: the commits and releases answered without the commit lock (summed over the shards).</summary>
    internal long DirectCount()
    {
        long n = 0;
        if (_shards is { } shards)
            foreach (var s in shards) n += Volatile.Read(ref s.Direct);
        return n;
    }

    private long Sum(int kind, int code)
    {
        long n = Volatile.Read(ref Base(kind)[code]);
        if (_shards is { } shards)
            foreach (var s in shards) n += Volatile.Read(ref (kind == 0 ? s.Claims : kind == 1 ? s.Transactions : s.Releases)[code]);
        return n;
    }

    private long[] Base(int kind) => kind == 0 ? _claims : kind == 1 ? _transactions : _releases;

    /// <summary>The number of retries answered from the idempotency index.</summary>
    public long IdempotentReplays => Volatile.Read(ref _replays);

    internal void Count(ClaimStatus s) => _claims[(int)s]++;

    internal TransactionStatus Count(TransactionStatus s)
    {
        _transactions[(int)s]++;
        return s;
    }

    internal ReleaseStatus Count(ReleaseStatus s)
    {
        _releases[(int)s]++;
        return s;
    }

    internal void CountReplay() => _replays++;

    private IEnumerable<Measurement<long>> Observe(int kind, string[] names, KeyValuePair<string, object?> cellTag)
    {
        for (int i = 0; i < Base(kind).Length; i++)
            yield return new Measurement<long>(Sum(kind, i), cellTag, new KeyValuePair<string, object?>("code", names[i]));
    }

    /// <inheritdoc />
    public void Dispose() => _meter.Dispose();
}
