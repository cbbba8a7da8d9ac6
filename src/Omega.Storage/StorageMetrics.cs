using System.Diagnostics.Metrics;

namespace Omega.Storage;

/// <summary>
/// Storage counters, exported through the <c>Omega.Storage</c> meter: groups committed, records and bytes made durable,
/// group commit time, checkpoints, and recovery outcomes (torn tails discarded).
/// </summary>
public sealed class StorageMetrics : IDisposable
{
    /// <summary>The meter name.</summary>
    public const string MeterName = "Omega.Storage";

    private readonly Meter _meter;
    private readonly Counter<long> _groups;
    private readonly Counter<long> _records;
    private readonly Counter<long> _bytes;
    private readonly Histogram<double> _commitSeconds;
    private readonly Counter<long> _checkpoints;
    private readonly Counter<long> _tornTails;
    private long _groupCount;
    private long _recordCount;
    private long _checkpointCount;

    internal StorageMetrics(string cellName, IMeterFactory? meterFactory = null)
    {
        _meter = Omega.Cells.CellCounters.CreateMeter(MeterName, cellName, meterFactory);
        var tag = new KeyValuePair<string, object?>("cell", cellName);
        _groups = _meter.CreateCounter<long>("omega.storage.groups", "{group}", "Journal groups committed");
        _records = _meter.CreateCounter<long>("omega.storage.records", "{record}", "Journal records made durable");
        _bytes = _meter.CreateCounter<long>("omega.storage.bytes", "By", "Journal bytes made durable");
        _commitSeconds = _meter.CreateHistogram("omega.storage.group_commit.duration", "s", "Time to write and commit one journal group", tags: null, advice: Omega.Cells.LatencyBuckets.Advice);
        _checkpoints = _meter.CreateCounter<long>("omega.storage.checkpoints", "{checkpoint}", "Store checkpoints completed");
        _tornTails = _meter.CreateCounter<long>("omega.storage.torn_tails", "{chunk}", "Torn final journal chunks discarded on open");
        _tag = tag;
    }

    private readonly KeyValuePair<string, object?> _tag;

    /// <summary>Journal groups committed.</summary>
    public long Groups => Volatile.Read(ref _groupCount);

    /// <summary>Journal records made durable.</summary>
    public long Records => Volatile.Read(ref _recordCount);

    /// <summary>Checkpoints completed.</summary>
    public long Checkpoints => Volatile.Read(ref _checkpointCount);

    internal void GroupCommitted(int records, int bytes, TimeSpan elapsed)
    {
        Interlocked.Increment(ref _groupCount);
        Interlocked.Add(ref _recordCount, records);
        _groups.Add(1, _tag);
        _records.Add(records, _tag);
        _bytes.Add(bytes, _tag);
        _commitSeconds.Record(elapsed.TotalSeconds, _tag);
    }

    /// <summary>
    /// Where the last completed checkpoint's time went (issue 15: the compact checkpoint costs one pass over the store
    /// log per checkpoint, on the checkpointer thread, beside the commit path). Default until the first checkpoint.
    /// </summary>
    public CheckpointTimings LastCheckpoint
    {
        get { lock (_timingsLock) return _last; }
    }

    private readonly Lock _timingsLock = new();
    private CheckpointTimings _last;

    internal void CheckpointCompleted(CheckpointTimings timings)
    {
        lock (_timingsLock) _last = timings;
        Interlocked.Increment(ref _checkpointCount);
        _checkpoints.Add(1, _tag);
    }

    internal void TornTail() => _tornTails.Add(1, _tag);

    private long _commitsInFlight;
    private long _peakCommitsInFlight;

    /// <summary>Journal commits issued to FasterLog and not yet complete (at most <c>StorageOptions.GroupCommitMaxInflight</c>).</summary>
    public long CommitsInFlightNow => Volatile.Read(ref _commitsInFlight);

    /// <summary>The most journal commits that were in flight at once since the store opened (2 or more: commits overlapped).</summary>
    public long PeakCommitsInFlight => Volatile.Read(ref _peakCommitsInFlight);

    // Written by the group-commit thread only.
    internal void CommitsInFlight(int count)
    {
        Volatile.Write(ref _commitsInFlight, count);
        if (count > _peakCommitsInFlight) Volatile.Write(ref _peakCommitsInFlight, count);
    }

    /// <inheritdoc />
    public void Dispose() => _meter.Dispose();
}

/// <summary>The phases of one checkpoint (<see cref="StorageMetrics.LastCheckpoint"/>).</summary>
/// <param name="Apply">Applying the committed journal tail to the store of record (FasterKV).</param>
/// <param name="Snapshot">FASTER's snapshot checkpoint.</param>
/// <param name="Compact">Writing the compact checkpoint: the pass over the whole store log (zero when disabled).</param>
/// <param name="Files">Checksumming the checkpoint's files for the manifest, and switching CURRENT.</param>
/// <param name="CompactRecords">Records the compact checkpoint holds (store log records, superseded ones included).</param>
public readonly record struct CheckpointTimings(TimeSpan Apply, TimeSpan Snapshot, TimeSpan Compact, TimeSpan Files, long CompactRecords);
