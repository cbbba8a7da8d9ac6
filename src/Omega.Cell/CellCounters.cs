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
        _meter.CreateObservableCounter("omega.cell.claims", () => Observe(_claims, Enum.GetNames<ClaimStatus>(), cellTag), "{claim}", "Claims by outcome code");
        _meter.CreateObservableCounter("omega.cell.transactions", () => Observe(_transactions, Enum.GetNames<TransactionStatus>(), cellTag), "{transaction}", "Transactions by outcome code");
        _meter.CreateObservableCounter("omega.cell.releases", () => Observe(_releases, Enum.GetNames<ReleaseStatus>(), cellTag), "{release}", "Releases by outcome code");
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
    public long Claims(ClaimStatus status) => Volatile.Read(ref _claims[(int)status]);

    /// <summary>The number of transactions that ended with <paramref name="status"/>.</summary>
    public long Transactions(TransactionStatus status) => Volatile.Read(ref _transactions[(int)status]);

    /// <summary>The number of releases that ended with <paramref name="status"/>.</summary>
    public long Releases(ReleaseStatus status) => Volatile.Read(ref _releases[(int)status]);

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

    private static IEnumerable<Measurement<long>> Observe(long[] counts, string[] names, KeyValuePair<string, object?> cellTag)
    {
        for (int i = 0; i < counts.Length; i++)
            yield return new Measurement<long>(Volatile.Read(ref counts[i]), cellTag, new KeyValuePair<string, object?>("code", names[i]));
    }

    /// <inheritdoc />
    public void Dispose() => _meter.Dispose();
}
