namespace Omega.Cells;

/// <summary>
/// The live bindings on one node: written by the single committer (under the commit lock), read lock-free by scheduler
/// workers (preemption) through a per-node seqlock.
/// </summary>
/// <remarks>
/// Why not the <c>HashSet&lt;TaskId&gt;</c> this replaced: readers could only see it under the commit lock, so every
/// preemption probe of a worker queued behind every commit. A dense array with a seqlock costs the writer one fenced
/// increment per change and lets readers copy without blocking the writer. Removal scans the node's bindings (a node
/// holds tens to hundreds); the intrusive per-node list of issue 14's commit-path work replaces this.
/// </remarks>
internal sealed class NodeBindings
{
    private long _seq;                 // even: stable; odd: the writer is changing the list
    private Allocation[] _items;
    private int _count;

    /// <summary>An empty list with room for four bindings.</summary>
    public NodeBindings() : this(4) { }

    /// <summary>An empty list with room for <paramref name="capacity"/> bindings (recovery knows each node's count).</summary>
    public NodeBindings(int capacity) => _items = new Allocation[Math.Max(4, capacity)];

    /// <summary>Writer only. The number of bindings.</summary>
    public int Count => _count;

    /// <summary>Writer only. The binding at <paramref name="i"/> (0 ≤ i &lt; Count).</summary>
    public ref readonly Allocation this[int i] => ref _items[i];

    /// <summary>Writer only.</summary>
    public void Add(in Allocation a)
    {
        BeginWrite();
        if (_count == _items.Length)
        {
            // Readers holding the old array fail their validation and retry on the new one.
            var grown = new Allocation[_items.Length * 2];
            Array.Copy(_items, grown, _count);
            Volatile.Write(ref _items, grown);
        }
        _items[_count] = a;
        Volatile.Write(ref _count, _count + 1);
        EndWrite();
    }

    /// <summary>Writer only. Removes the binding of <paramref name="task"/>; false if it is not here.</summary>
    public bool Remove(TaskId task)
    {
        int i = IndexOf(task);
        if (i < 0) return false;
        BeginWrite();
        int last = _count - 1;
        _items[i] = _items[last];
        _items[last] = default;
        Volatile.Write(ref _count, last);
        EndWrite();
        return true;
    }

    /// <summary>Writer only.</summary>
    public bool Contains(TaskId task) => IndexOf(task) >= 0;

    private int IndexOf(TaskId task)
    {
        var items = _items;
        for (int i = 0; i < _count; i++)
            if (items[i].Task == task) return i;
        return -1;
    }

    private void BeginWrite() => Interlocked.Exchange(ref _seq, _seq + 1); // full fence: odd before any data write

    private void EndWrite() => Volatile.Write(ref _seq, _seq + 1);          // release: data before even

    /// <summary>Any thread. Appends a consistent copy of the bindings to <paramref name="into"/>; returns how many.</summary>
    public int CopyTo(List<Allocation> into)
    {
        int start = into.Count;
        var spin = new SpinWait();
        while (true)
        {
            long s1 = Volatile.Read(ref _seq);
            if ((s1 & 1) == 0)
            {
                var items = Volatile.Read(ref _items);
                int n = Volatile.Read(ref _count);
                if (n <= items.Length)
                {
                    for (int i = 0; i < n; i++) into.Add(items[i]);
                    // Full fence: the copies above complete before the sequence is read again (seqlock validation).
                    Interlocked.MemoryBarrier();
                    if (Volatile.Read(ref _seq) == s1) return n;
                }
                into.RemoveRange(start, into.Count - start);
            }
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }
}

/// <summary>A tenant's usage and quota as published for lock-free readers (see <see cref="Cell.GetTenantUsage"/>).</summary>
internal struct TenantPublished
{
    public long Seq;                   // even: stable; odd: being written
    public ResourceVector Usage;
    public ResourceVector Quota;
    public bool HasQuota;

    /// <summary>Writer only (under the commit lock).</summary>
    public void Publish(ResourceVector usage, ResourceVector? quota)
    {
        Interlocked.Exchange(ref Seq, Seq + 1);
        Usage = usage;
        Quota = quota ?? default;
        HasQuota = quota.HasValue;
        Volatile.Write(ref Seq, Seq + 1);
    }

    /// <summary>Any thread.</summary>
    public (ResourceVector Usage, ResourceVector? Quota) Read()
    {
        var spin = new SpinWait();
        while (true)
        {
            long s1 = Volatile.Read(ref Seq);
            if ((s1 & 1) == 0)
            {
                var usage = Usage;
                var quota = Quota;
                bool has = HasQuota;
                Interlocked.MemoryBarrier();
                if (Volatile.Read(ref Seq) == s1) return (usage, has ? quota : null);
            }
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }
}
