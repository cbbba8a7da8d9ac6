using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Text.Json;
using Omega.Cells;
using Omega.ControlPlane;

namespace Omega.Dashboard;

/// <summary>
/// Takes one sample of the cell every <see cref="DashboardOptions.SampleInterval"/> and hands the same serialized bytes
/// to every open page (serialized once, not per page). The numbers come from the cell, the engine and the object store,
/// plus a <see cref="MeterListener"/> on the engine's own instruments for what only they carry: conflicts by scheduler
/// and reason, parked jobs by reason, commit (bind) latency. The listener's callbacks run on the commit path, so they
/// only add to fixed arrays or existing dictionary entries (no allocation after the first of a key).
/// </summary>
internal sealed class Sampler : IDisposable
{
    internal const string RegionLabel = "topology.omega/region";
    internal const string ZoneLabel = "topology.omega/zone";
    private const int LatencyBuckets = 48; // log2 buckets of microseconds: 1 us .. ~78 h

    private readonly DashboardSources _src;
    private readonly DashboardOptions _options;
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<(string Scheduler, string Reason), StrongBox> _conflicts = new();
    private readonly ConcurrentDictionary<(string Scheduler, string Reason), StrongBox> _parked = new();
    private readonly long[] _commitBuckets = new long[LatencyBuckets];
    private readonly long[] _lastCommitBuckets = new long[LatencyBuckets];
    private readonly Dictionary<(string, string), long> _lastConflicts = new();
    private readonly Dictionary<string, (long Placements, long Clean, long Conflicted)> _lastTotals = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private readonly Queue<byte[]> _history = new();
    private readonly List<Action<byte[]>> _subscribers = new();
    private readonly ITimer _timer;
    private long _lastSampleTs;

    public Sampler(DashboardSources src, DashboardOptions options)
    {
        _src = src;
        _options = options;
        string cell = src.Cell.Name;
        _listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name != Omega.Scheduling.SchedulingMetrics.MeterName || !SameCell(instrument.Meter, cell)) return;
            if (instrument.Name is "omega.sched.conflicts" or "omega.sched.parked" or "omega.sched.commit.duration") l.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>(OnLong);
        _listener.SetMeasurementEventCallback<double>(OnDouble);
        _listener.Start();
        _lastSampleTs = src.Time.GetTimestamp();
        _timer = src.Time.CreateTimer(_ => Tick(), null, options.SampleInterval, options.SampleInterval);
    }

    private static bool SameCell(Meter m, string cell)
    {
        if (m.Tags is null) return true;
        foreach (var t in m.Tags)
            if (t.Key == "cell") return Equals(t.Value, cell);
        return true;
    }

    private void OnLong(Instrument instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        string scheduler = "", reason = "";
        foreach (var t in tags)
        {
            if (t.Key == "scheduler") scheduler = t.Value as string ?? "";
            else if (t.Key == "reason") reason = t.Value as string ?? "";
        }
        var map = instrument.Name == "omega.sched.conflicts" ? _conflicts : _parked;
        var box = map.GetOrAdd((scheduler, reason), static _ => new StrongBox());
        Interlocked.Add(ref box.Value, value);
    }

    private void OnDouble(Instrument instrument, double seconds, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        double us = seconds * 1e6;
        int b = us <= 1 ? 0 : Math.Min(LatencyBuckets - 1, (int)Math.Ceiling(Math.Log2(us)));
        Interlocked.Increment(ref _commitBuckets[b]);
    }

    /// <summary>The samples kept, oldest first, each one JSON object.</summary>
    public byte[][] History()
    {
        lock (_lock) return _history.ToArray();
    }

    /// <summary>Calls <paramref name="onSample"/> with every new sample's JSON until the returned handle is disposed.</summary>
    public IDisposable Subscribe(Action<byte[]> onSample)
    {
        lock (_lock) _subscribers.Add(onSample);
        return new Unsubscriber(this, onSample);
    }

    private sealed class Unsubscriber(Sampler owner, Action<byte[]> a) : IDisposable
    {
        public void Dispose()
        {
            lock (owner._lock) owner._subscribers.Remove(a);
        }
    }

    /// <summary>Takes a sample now (the timer does every interval).</summary>
    internal void Tick()
    {
        byte[] json;
        Action<byte[]>[] subs;
        try
        {
            lock (_lock)
            {
                json = Take();
                _history.Enqueue(json);
                while (_history.Count > Math.Max(1, _options.HistorySamples)) _history.Dequeue();
                subs = _subscribers.ToArray();
            }
        }
        catch (Exception e) when (e is ObjectDisposedException or InvalidOperationException)
        {
            // The engine or store closed under a last tick at shutdown. This runs on a timer: an exception escaping it
            // would end the whole server process for the sake of a chart.
            return;
        }
        foreach (var s in subs) s(json);
    }

    // Caller holds _lock (the "last" fields are per-sample state).
    private byte[] Take()
    {
        var cell = _src.Cell;
        var engine = _src.Engine;
        long ts = _src.Time.GetTimestamp();
        double dt = Math.Max(1e-3, _src.Time.GetElapsedTime(_lastSampleTs, ts).TotalSeconds);
        _lastSampleTs = ts;
        var buffer = new ArrayBufferWriter<byte>(8192);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteNumber("t", _src.Time.GetUtcNow().ToUnixTimeMilliseconds());
            w.WriteNumber("version", cell.Version);

            // ---- nodes and utilization (cpu and memory: allocated / capacity), per region and zone when labelled
            var snap = cell.Snapshot();
            long cpuUsed = 0, cpuCap = 0, memUsed = 0, memCap = 0;
            int live = 0, tasks = 0;
            var zones = new SortedDictionary<string, long[]>(StringComparer.Ordinal);
            w.WriteStartArray("nodes");
            int listed = 0;
            for (int i = 0; i < snap.NodeCount; i++)
            {
                if (snap.TryGetNode(new NodeId(i), out var n) != SnapshotRead.Ok) continue;
                live++;
                tasks += n.TaskCount;
                cpuUsed += n.Allocated.CpuMillis; cpuCap += n.Capacity.CpuMillis;
                memUsed += n.Allocated.MemoryBytes; memCap += n.Capacity.MemoryBytes;
                n.Spec.Labels.TryGetValue(RegionLabel, out var region);
                n.Spec.Labels.TryGetValue(ZoneLabel, out var zone);
                if (region is not null || zone is not null)
                {
                    string key = (region ?? "-") + "/" + (zone ?? "-");
                    if (!zones.TryGetValue(key, out var z)) zones[key] = z = new long[5];
                    z[0] += n.Allocated.CpuMillis; z[1] += n.Capacity.CpuMillis; z[2] += n.Allocated.MemoryBytes; z[3] += n.Capacity.MemoryBytes; z[4]++;
                }
                if (listed++ >= 500) continue; // the table shows the first 500; the totals count every node
                w.WriteStartObject();
                w.WriteString("name", n.Spec.Name);
                w.WriteString("status", n.Status.ToString());
                w.WriteNumber("cpuUsed", n.Allocated.CpuMillis);
                w.WriteNumber("cpuCap", n.Capacity.CpuMillis);
                w.WriteNumber("memUsed", n.Allocated.MemoryBytes);
                w.WriteNumber("memCap", n.Capacity.MemoryBytes);
                w.WriteNumber("tasks", n.TaskCount);
                w.WriteString("region", region ?? "");
                w.WriteString("zone", zone ?? "");
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteNumber("nodeCount", live);
            w.WriteNumber("tasks", tasks);
            w.WriteNumber("cpuUtil", cpuCap == 0 ? 0 : (double)cpuUsed / cpuCap);
            w.WriteNumber("memUtil", memCap == 0 ? 0 : (double)memUsed / memCap);
            w.WriteStartArray("zones");
            foreach (var (key, z) in zones)
            {
                w.WriteStartObject();
                w.WriteString("name", key);
                w.WriteNumber("cpuUtil", z[1] == 0 ? 0 : (double)z[0] / z[1]);
                w.WriteNumber("memUtil", z[3] == 0 ? 0 : (double)z[2] / z[3]);
                w.WriteNumber("nodes", z[4]);
                w.WriteEndObject();
            }
            w.WriteEndArray();

            // ---- schedulers: queue, age, placements/s, conflict fraction (interval and since start)
            long placementsTotal = 0;
            double rate = 0;
            w.WriteStartArray("schedulers");
            foreach (var kind in engine.Kinds)
            {
                var (placed, clean, conflicted) = engine.Totals(kind);
                _lastTotals.TryGetValue(kind, out var last);
                _lastTotals[kind] = (placed, clean, conflicted);
                long dClean = clean - last.Clean, dConf = conflicted - last.Conflicted;
                double r = (placed - last.Placements) / dt;
                placementsTotal += placed;
                rate += r;
                w.WriteStartObject();
                w.WriteString("name", kind);
                w.WriteNumber("queue", engine.QueueDepth(kind));
                w.WriteNumber("oldestQueuedS", engine.OldestQueuedAge(kind).TotalSeconds);
                w.WriteNumber("placements", placed);
                w.WriteNumber("placementsPerS", r);
                w.WriteNumber("clean", clean);
                w.WriteNumber("conflicted", conflicted);
                // The Omega paper's conflict fraction: transactions that conflicted over all transactions.
                w.WriteNumber("conflictFraction", dClean + dConf == 0 ? 0 : (double)dConf / (dClean + dConf));
                w.WriteNumber("conflictFractionTotal", clean + conflicted == 0 ? 0 : (double)conflicted / (clean + conflicted));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteNumber("placementsTotal", placementsTotal);
            w.WriteNumber("placementsPerS", rate);
            w.WriteNumber("queued", engine.QueuedTasks);

            // ---- commit (bind) latency over the interval, from the engine's histogram
            long count = 0;
            Span<long> delta = stackalloc long[LatencyBuckets];
            for (int b = 0; b < LatencyBuckets; b++)
            {
                long v = Interlocked.Read(ref _commitBuckets[b]);
                delta[b] = v - _lastCommitBuckets[b];
                _lastCommitBuckets[b] = v;
                count += delta[b];
            }
            w.WriteNumber("commits", count);
            w.WriteNumber("bindP50Ms", Quantile(delta, count, 0.5));
            w.WriteNumber("bindP99Ms", Quantile(delta, count, 0.99));

            // ---- conflicts by scheduler and reason (since start, and in the interval)
            w.WriteStartArray("conflicts");
            foreach (var (key, box) in _conflicts)
            {
                long v = Interlocked.Read(ref box.Value);
                _lastConflicts.TryGetValue(key, out var lastV);
                _lastConflicts[key] = v;
                w.WriteStartObject();
                w.WriteString("scheduler", key.Scheduler);
                w.WriteString("reason", key.Reason);
                w.WriteNumber("total", v);
                w.WriteNumber("perS", (v - lastV) / dt);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("parked");
            foreach (var (key, box) in _parked)
            {
                w.WriteStartObject();
                w.WriteString("scheduler", key.Scheduler);
                w.WriteString("reason", key.Reason);
                w.WriteNumber("total", Interlocked.Read(ref box.Value));
                w.WriteEndObject();
            }
            w.WriteEndArray();

            // ---- workloads with their status and conditions (the first 200), and their pending reasons
            var list = _src.Objects.List(new ObjectFilter(Workload.KindName), 200);
            var pending = new SortedDictionary<string, int>(StringComparer.Ordinal);
            w.WriteStartArray("workloads");
            foreach (var o in list.Items)
            {
                if (o is not Workload wl) continue;
                var st = wl.Status;
                if (!string.IsNullOrEmpty(st.PendingReason)) pending[st.PendingReason] = pending.GetValueOrDefault(st.PendingReason) + 1;
                w.WriteStartObject();
                w.WriteString("tenant", wl.Metadata.Tenant);
                w.WriteString("name", wl.Metadata.Name);
                w.WriteNumber("generation", wl.Metadata.Generation);
                w.WriteString("type", wl.Spec.Type.ToString());
                w.WriteNumber("desired", st.Desired);
                w.WriteNumber("bound", st.Bound);
                w.WriteNumber("ready", st.Ready);
                w.WriteNumber("serving", st.Serving);
                w.WriteString("pending", st.PendingReason ?? "");
                w.WriteStartArray("conditions");
                foreach (var c in st.Conditions)
                {
                    w.WriteStartObject();
                    w.WriteString("type", c.Type);
                    w.WriteString("status", c.Status.ToString());
                    w.WriteString("reason", c.Reason);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartObject("pendingReasons");
            foreach (var (k, v) in pending) w.WriteNumber(k, v);
            w.WriteEndObject();
            w.WriteNumber("objects", _src.Objects.Count);
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    // Upper bound of the bucket holding the q-quantile, in milliseconds (log2 buckets: within a factor of two).
    private static double Quantile(ReadOnlySpan<long> buckets, long count, double q)
    {
        if (count == 0) return 0;
        long rank = (long)Math.Ceiling(q * count), seen = 0;
        for (int b = 0; b < buckets.Length; b++)
        {
            seen += buckets[b];
            if (seen >= rank) return Math.Pow(2, b) / 1000.0;
        }
        return Math.Pow(2, buckets.Length - 1) / 1000.0;
    }

    public void Dispose()
    {
        _timer.Dispose();
        _listener.Dispose();
    }

    private sealed class StrongBox
    {
        public long Value;
    }
}
