using Omega.Cells;

namespace Omega.Server;

/// <summary>
/// Supplies the highest cell version whose changes may be made visible outside the process: a binding is pushed to an
/// agent, and a commit result returned over the wire, only once its version is at or below this value. With durability
/// this is the durable watermark; for an in-memory cell it is simply the cell's version.
/// </summary>
public interface IPublishableVersion
{
    /// <summary>The highest publishable cell version. Must never decrease.</summary>
    long PublishableVersion { get; }

    /// <summary>
    /// The highest publishable journal sequence (<see cref="Cell.JournalSequence"/>): a reply that reports a mutation
    /// which does not change the cell version (a lease renewal or release, a node status change read back) is sent
    /// only once the sequence read after the mutation is at or below this value. With durability this is the durable
    /// sequence; for an in-memory cell it is the cell's own sequence. Must never decrease.
    /// </summary>
    long PublishableSequence { get; }

    /// <summary>
    /// Asks the publisher to call <paramref name="onAdvance"/> whenever <see cref="PublishableVersion"/> or
    /// <see cref="PublishableSequence"/> advances (from any thread; the callback is cheap and never blocks). Returns the
    /// subscription (disposed when the server stops), or null when the publisher cannot notify: the dispatcher then
    /// polls every 2 ms, as it always did. A durable store notifies from its group commit, which removes the poll's
    /// delay (up to 2 ms, 1 ms on average) from every binding's commit-to-agent latency.
    /// </summary>
    IDisposable? Subscribe(Action onAdvance) => null;
}

/// <summary>In-memory cells: every committed version is publishable at once.</summary>
public sealed class CellVersionPublisher(Cell cell) : IPublishableVersion
{
    /// <inheritdoc />
    public long PublishableVersion => cell.Version;

    /// <inheritdoc />
    public long PublishableSequence => cell.JournalSequence;
}

/// <summary>One binding change captured from the cell.</summary>
internal readonly record struct FeedEvent(BindingChange Change, Allocation Allocation, long Version);

/// <summary>
/// The cell's binding listener. Runs under the commit lock, so it only appends to a single-producer chunked log and sets a
/// flag; the dispatcher thread is the only consumer. Allocates one chunk per 4,096 events.
/// </summary>
internal sealed class BindingFeed : IBindingListener, IDisposable
{
    private const int ChunkSize = 4096;

    private sealed class Chunk
    {
        public readonly FeedEvent[] Items = new FeedEvent[ChunkSize];
        public int Count;
        public Chunk? Next;
    }

    private Chunk _tail;
    private Chunk _head;
    // One consumed chunk handed back to the producer for reuse: without it the feed allocated a fresh 4,096-event chunk
    // (~370 KB) per 4,096 bindings, ~90-150 bytes per binding on the bind path (the bindpath bench's allocation sampler).
    private Chunk? _spare;
    private int _headIndex;
    private long _completeVersion;
    private readonly SemaphoreSlim _signal = new(0);
    private int _signalled;

    public BindingFeed()
    {
        _tail = _head = new Chunk();
    }

    /// <summary>
    /// Stamps each completed version's commit time for the stage histograms (null: no stage timing, e.g. the
    /// deterministic simulation's feed). One timestamp and a few stores per version, under the commit lock.
    /// </summary>
    public StageClock? Clock { get; init; }

    /// <summary>Highest version whose changes were all appended.</summary>
    public long CompleteVersion => Volatile.Read(ref _completeVersion);

    public void OnBindingChanged(BindingChange change, in Allocation allocation, long version)
    {
        var t = _tail;
        int n = t.Count;
        if (n == ChunkSize)
        {
            var c = Interlocked.Exchange(ref _spare, null) ?? new Chunk();
            Volatile.Write(ref t.Next, c);
            _tail = t = c;
            n = 0;
        }
        t.Items[n] = new FeedEvent(change, allocation, version);
        Volatile.Write(ref t.Count, n + 1);
    }

    public void OnVersionComplete(long version)
    {
        Clock?.Stamp(version);
        Volatile.Write(ref _completeVersion, version);
        Signal();
    }

    /// <summary>Wakes the dispatcher (at most one pending wake-up).</summary>
    public void Signal()
    {
        if (Interlocked.Exchange(ref _signalled, 1) == 0) _signal.Release();
    }

    public async ValueTask<bool> WaitAsync(TimeSpan timeout, CancellationToken ct)
    {
        bool got = await _signal.WaitAsync(timeout, ct).ConfigureAwait(false);
        // Only the wake-up that consumed the release clears the flag: flag set <=> one release outstanding, so the
        // producer (under the commit lock) never releases twice and never throws.
        if (got) Volatile.Write(ref _signalled, 0);
        return got;
    }

    public void Dispose() => _signal.Dispose();

    /// <summary>Consumer: the next event with version ≤ <paramref name="limit"/>, if any.</summary>
    public bool TryTake(long limit, out FeedEvent e)
    {
        while (true)
        {
            var h = _head;
            if (_headIndex < Volatile.Read(ref h.Count))
            {
                e = h.Items[_headIndex];
                if (e.Version > limit) return false;
                h.Items[_headIndex] = default;
                _headIndex++;
                return true;
            }
            if (_headIndex == ChunkSize && Volatile.Read(ref h.Next) is { } next)
            {
                _head = next;
                _headIndex = 0;
                // The producer has moved past h for good (it linked next), and every item of h was cleared as taken;
                // reset it and offer it back (the exchange publishes the reset before the producer can take it).
                h.Next = null;
                h.Count = 0;
                Interlocked.Exchange(ref _spare, h);
                continue;
            }
            e = default;
            return false;
        }
    }
}
