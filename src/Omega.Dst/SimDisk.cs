using Omega.Cells;
using Omega.ControlPlane;

namespace Omega.Dst;

/// <summary>
/// The simulated journal device at the cell's seam (<see cref="ICellJournal"/>). Appends go to a volatile tail; a flush
/// makes a prefix durable and completes the durability waits it covers; a crash keeps only the durable prefix and may
/// leave a torn copy of the next element, which recovery must detect by its checksum and discard (as FasterLog does).
/// FASTER itself is not simulated: it runs its own epoch and I/O threads and stays covered by the SIGKILL harnesses.
/// </summary>
public sealed class SimDisk : IDurabilityWaiter
{
    private readonly List<Element> _elements = new();
    private readonly List<(long Version, TaskCompletionSource Done)> _waiters = new();
    private int _durable;
    private long _durableVersion;
    private int _epoch; // bumped by a crash: a dead incarnation's journal view must never write again

    private sealed record Element(byte[] Bytes, uint Crc, long LastVersion, long LastSequence = 0);

    /// <summary>Elements appended (durable or not).</summary>
    public int Count => _elements.Count;

    /// <summary>Elements durable.</summary>
    public int DurableCount => _durable;

    /// <summary>The cell version covered by the durable prefix.</summary>
    public long DurableVersion => _durableVersion;

    /// <summary>The journal sequence covered by the durable prefix (the wire simulation's publishable sequence).</summary>
    public long DurableSequence { get; private set; }

    /// <summary>Torn tails discarded by recoveries so far.</summary>
    public int TornTailsDiscarded { get; private set; }

    /// <summary>A journal view for one cell incarnation (appends to this disk).</summary>
    public ICellJournal Journal() => new JournalView(this, _epoch);

    /// <summary>The simulation's thread: anything the simulated system does elsewhere is nondeterministic (a harness bug).</summary>
    internal int Thread { get; set; } = -1;

    /// <summary>Calls made on another thread than <see cref="Thread"/> (must stay 0).</summary>
    internal int OffThread { get; private set; }

    private void CheckThread()
    {
        if (Thread >= 0 && Environment.CurrentManagedThreadId != Thread) { OffThread++; if (Environment.GetEnvironmentVariable("OMEGA_DST_OFFTHREAD_STACKS") == "1") Console.Error.WriteLine("off-thread journal call:\n" + Environment.StackTrace); }
    }

    private void Append(int epoch, ReadOnlySpan<byte> bytes, long lastVersion, long lastSequence = 0)
    {
        CheckThread();
        if (epoch != _epoch) throw new InvalidOperationException("a crashed process wrote to the simulated disk (a harness bug)");
        var copy = bytes.ToArray();
        _elements.Add(new Element(copy, Checksum(copy), lastVersion, lastSequence));
    }

    /// <summary>Makes up to <paramref name="elements"/> more elements durable and completes the waits they cover (inline, on this thread).</summary>
    /// <returns>The elements made durable.</returns>
    public int Flush(int elements = int.MaxValue)
    {
        int n = Math.Min(elements, _elements.Count - _durable);
        if (n <= 0) return 0;
        _durable += n;
        _durableVersion = Math.Max(_durableVersion, _elements[_durable - 1].LastVersion);
        DurableSequence = Math.Max(DurableSequence, _elements[_durable - 1].LastSequence);
        // Collect first: a completed wait runs its continuation inline, which may write (and wait) again.
        List<TaskCompletionSource>? done = null;
        for (int i = _waiters.Count - 1; i >= 0; i--)
        {
            if (_waiters[i].Version > _durableVersion) continue;
            (done ??= new()).Add(_waiters[i].Done);
            _waiters.RemoveAt(i);
        }
        if (done is not null)
            for (int i = done.Count - 1; i >= 0; i--) done[i].TrySetResult();
        return n;
    }

    /// <inheritdoc />
    public ValueTask WaitDurableAsync(long cellVersion, CancellationToken cancellationToken)
    {
        CheckThread();
        if (cellVersion <= _durableVersion) return ValueTask.CompletedTask;
        // Synchronous continuations: the waiter resumes inside Flush, on the simulation's thread, at a step the seed chose.
        var tcs = new TaskCompletionSource();
        _waiters.Add((cellVersion, tcs));
        return new ValueTask(tcs.Task);
    }

    /// <summary>
    /// The process died: every element past the durable prefix is lost, except that with <paramref name="tear"/> the
    /// first lost element leaves a torn prefix of its bytes behind. Pending durability waits are abandoned.
    /// </summary>
    public void Crash(bool tear, Random rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        Element? torn = null;
        if (tear && _elements.Count > _durable && _elements[_durable].Bytes.Length > 1)
        {
            var e = _elements[_durable];
            torn = e with { Bytes = e.Bytes.AsSpan(0, rng.Next(1, e.Bytes.Length)).ToArray() };
        }
        _elements.RemoveRange(_durable, _elements.Count - _durable);
        if (torn is not null) _elements.Add(torn);
        _waiters.Clear();
        _epoch++;
    }

    /// <summary>Recovers a cell from the durable elements: a torn tail fails its checksum and is discarded (and cut off the disk).</summary>
    public Cell Recover(CellOptions options)
    {
        var restorer = new CellRestorer(options);
        int good = 0;
        foreach (var e in _elements)
        {
            if (Checksum(e.Bytes) != e.Crc) break;
            restorer.Replay(e.Bytes);
            good++;
        }
        if (good < _elements.Count)
        {
            TornTailsDiscarded += _elements.Count - good;
            _elements.RemoveRange(good, _elements.Count - good);
        }
        _durable = _elements.Count;
        DurableSequence = _durable > 0 ? _elements[_durable - 1].LastSequence : 0;
        var cell = restorer.Complete();
        cell.AttachJournal(Journal());
        return cell;
    }

    // FNV-1a: stands in for the storage checksum that rejects a torn element.
    private static uint Checksum(ReadOnlySpan<byte> bytes)
    {
        uint h = 2166136261;
        foreach (byte b in bytes) h = (h ^ b) * 16777619;
        return h;
    }

    private sealed class JournalView(SimDisk disk, int epoch) : ICellJournal
    {
        public void Append(long sequence, long cellVersion, ReadOnlySpan<byte> record) => disk.Append(epoch, record, cellVersion, sequence);

        // One element per frame, as the durable journal stores it: recovery applies all of a batch or none of it.
        public void AppendBatch(long firstSequence, int count, long lastCellVersion, ReadOnlySpan<byte> frame) => disk.Append(epoch, frame, lastCellVersion, firstSequence + count - 1);
    }
}
