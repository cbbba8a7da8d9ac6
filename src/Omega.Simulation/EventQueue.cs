namespace Omega.Simulation;

internal enum EventKind : byte
{
    SyntheticArrival,
    ExplicitArrival,
    DecisionDone,
    Requeue,
    Completion,
}

/// <summary>A scheduled event. Ordered by time, then by the order it was scheduled in (so ties never depend on heap layout).</summary>
internal struct SimEvent
{
    public double Time;
    public long Seq;
    public EventKind Kind;
    public int Index;
    public object? Ref;

    public readonly bool Before(in SimEvent other) => Time < other.Time || (Time == other.Time && Seq < other.Seq);
}

/// <summary>A binary min-heap of events on virtual time: the simulator's only clock.</summary>
internal sealed class EventQueue
{
    private SimEvent[] _heap = new SimEvent[1024];
    private int _count;
    private long _seq;

    public int Count => _count;

    public void Schedule(double time, EventKind kind, int index = 0, object? reference = null)
    {
        if (_count == _heap.Length) Array.Resize(ref _heap, _count * 2);
        var e = new SimEvent { Time = time, Seq = _seq++, Kind = kind, Index = index, Ref = reference };
        int i = _count++;
        while (i > 0)
        {
            int parent = (i - 1) >> 1;
            if (!e.Before(in _heap[parent])) break;
            _heap[i] = _heap[parent];
            i = parent;
        }
        _heap[i] = e;
    }

    public double PeekTime => _heap[0].Time;

    public SimEvent Pop()
    {
        var top = _heap[0];
        var last = _heap[--_count];
        _heap[_count] = default;
        int i = 0;
        int n = _count;
        while (true)
        {
            int child = 2 * i + 1;
            if (child >= n) break;
            if (child + 1 < n && _heap[child + 1].Before(in _heap[child])) child++;
            if (!_heap[child].Before(in last)) break;
            _heap[i] = _heap[child];
            i = child;
        }
        if (n > 0) _heap[i] = last;
        return top;
    }
}

/// <summary>A <see cref="TimeProvider"/> showing the simulator's virtual time, so the cell's leases live in virtual time too.</summary>
internal sealed class VirtualClock : TimeProvider
{
    private static readonly DateTimeOffset Epoch = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public double Now { get; set; }

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => (long)(Now * TimeSpan.TicksPerSecond);

    public override DateTimeOffset GetUtcNow() => Epoch.AddTicks(GetTimestamp());
}
