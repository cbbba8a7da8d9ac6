namespace Omega.Cells;

/// <summary>
/// The live bindings on one node, and the only place a binding's full <see cref="Allocation"/> is kept (the cell's task
/// index maps a task to its node only). Written by the single committer (under the commit lock), read lock-free by
/// scheduler workers (preemption) and by the server's acknowledgement path through a per-node seqlock.
/// </summary>
/// <remarks>
/// <para>Why not the <c>HashSet&lt;TaskId&gt;</c> this replaced: readers could only see it under the commit lock, so every
/// preemption probe of a worker queued behind every commit. A dense array with a seqlock costs the writer one fenced
/// increment per change and lets readers copy without blocking the writer.</para>
/// <para>Issue 15: the cell used to keep every binding twice (here and as the value of a task-keyed dictionary, ~190 bytes
/// per binding together). Now the dictionary holds the node id only, and this list carries an open-addressing index from
/// task to position (linear probing, 4 bytes per slot, at most 5/8 full), so a lookup by task is O(1) for the writer and
/// lock-free for readers: the index and the items are replaced together and every change runs inside the seqlock, so a
/// reader that raced a change (and may have probed garbage) fails validation and retries. Removal moves the last
/// binding into the hole and deletes the index slot by backward shift (no tombstones, so probes stay short).</para>
/// </remarks>
internal sealed class NodeBindings
{
    private long _seq;                 // even: stable; odd: the writer is changing the list
    private readonly NodeId _node;     // every binding here is on this node, so a slot does not repeat it
    private Slot[] _items;
    private int[] _index;              // position + 1 of the binding whose task hashes here; 0 = empty. Length: power of 2.
    private int _count;

    /// <summary>
    /// One binding as stored: an <see cref="Allocation"/> without its node, in 64 bytes. The Allocation struct itself takes
    /// 96 (its 256-bit resource vector is 32-byte aligned, which pads the fields around it); at 10M bindings the difference
    /// is about 300 MB.
    /// </summary>
    private struct Slot
    {
        public long Job;
        public long Generation;
        public long Cpu, Memory, Gpus, Disk;
        public int Index;
        public int Tenant;
        public int Priority;

        public Slot(in Allocation a)
        {
            Job = a.Task.Job.Value;
            Index = a.Task.Index;
            Generation = a.Generation;
            var r = a.Resources;
            Cpu = r.CpuMillis;
            Memory = r.MemoryBytes;
            Gpus = r.Gpus;
            Disk = r.DiskBytes;
            Tenant = a.Tenant.Value;
            Priority = a.Priority;
        }

        public readonly TaskId Task => new(new JobId(Job), Index);

        public readonly Allocation ToAllocation(NodeId node)
            => new(Task, node, new ResourceVector(Cpu, Memory, Gpus, Disk), new TenantId(Tenant), Priority, Generation);
    }

    /// <summary>An empty list of node <paramref name="node"/>'s bindings with room for <paramref name="capacity"/>.</summary>
    public NodeBindings(NodeId node, int capacity = 4)
    {
        _node = node;
        _items = new Slot[Math.Max(4, capacity)];
        _index = new int[IndexLength(_items.Length)];
    }

    // The smallest power of two with capacity <= 5/8 of it: linear probing stays short (about 1.4 probes per hit at 5/8).
    private static int IndexLength(int capacity)
    {
        int n = 8;
        while (n * 5 / 8 < capacity) n <<= 1;
        return n;
    }

    // Eight consecutive indexes of one job share a home group: eight neighbouring index slots (32 bytes), and their
    // slots sit side by side in _items because a node's bindings of one transaction are appended in order. Why (issue
    // 15, prof15's bind-path profile): a node's bindings arrive and are acknowledged in runs of consecutive indexes of one
    // job, and with every task hashed apart each insert (the committer) and each lock-free read (the acknowledgement)
    // missed the cache on its own index line; most of AddBinding's samples sat on that load. Groups are placed by the
    // mixed hash of (job, index / 8), so jobs and groups still spread; linear probing stays correct for any home
    // function (Insert, Remove and the readers all use this one).
    private const int GroupBits = 3;
    private const int GroupMask = (1 << GroupBits) - 1;

    private static int Hash(TaskId task)
    {
        // Job ids and group numbers are small and dense: mix both so neighbouring groups spread over the table.
        ulong h = (ulong)task.Job.Value * 0x9E3779B97F4A7C15UL ^ (uint)(task.Index >> GroupBits) * 0xC2B2AE3D27D4EB4FUL;
        return ((int)(h >> 32) & ~GroupMask) | (task.Index & GroupMask);
    }

    /// <summary>Tests: the home slot of <paramref name="task"/> in an index of <paramref name="length"/> slots (a power of two).</summary>
    internal static int HomeSlot(TaskId task, int length) => Hash(task) & (length - 1);

    /// <summary>Writer only. The number of bindings.</summary>
    public int Count => _count;

    /// <summary>Writer only. The binding at <paramref name="i"/> (0 ≤ i &lt; Count).</summary>
    public Allocation this[int i] => _items[i].ToAllocation(_node);

    /// <summary>Writer only. The task of the binding at <paramref name="i"/> (0 ≤ i &lt; Count).</summary>
    public TaskId TaskAt(int i) => _items[i].Task;

    /// <summary>Writer only. Adds a binding of a task that is not in the list.</summary>
    public void Add(in Allocation a)
    {
        BeginWrite();
        if (_count == _items.Length)
        {
            // Readers holding the old arrays fail their validation and retry on the new ones.
            var grown = new Slot[_items.Length * 2];
            Array.Copy(_items, grown, _count);
            var index = new int[IndexLength(grown.Length)];
            for (int i = 0; i < _count; i++) Insert(index, grown[i].Task, i);
            Volatile.Write(ref _items, grown);
            Volatile.Write(ref _index, index);
        }
        _items[_count] = new Slot(a);
        Insert(_index, a.Task, _count);
        Volatile.Write(ref _count, _count + 1);
        EndWrite();
    }

    /// <summary>
    /// Writer only, and only while no reader can hold the list (recovery, before the cell is published): as
    /// <see cref="Add"/> without the seqlock's fences (a full fence and a release store per binding, 10M of each in a
    /// large recovery). The publication of the restored cell orders everything written here before any reader.
    /// </summary>
    public void AddUnpublished(in Allocation a)
    {
        if (_count == _items.Length)
        {
            var grown = new Slot[_items.Length * 2];
            Array.Copy(_items, grown, _count);
            var index = new int[IndexLength(grown.Length)];
            for (int i = 0; i < _count; i++) Insert(index, grown[i].Task, i);
            _items = grown;
            _index = index;
        }
        _items[_count] = new Slot(a);
        Insert(_index, a.Task, _count);
        _count++;
    }

    private static void Insert(int[] index, TaskId task, int position)
    {
        int mask = index.Length - 1;
        int s = Hash(task) & mask;
        while (index[s] != 0) s = (s + 1) & mask;
        index[s] = position + 1;
    }

    /// <summary>Writer only. Removes the binding of <paramref name="task"/>; false if it is not here.</summary>
    public bool Remove(TaskId task)
    {
        int slot = SlotOf(task);
        if (slot < 0) return false;
        BeginWrite();
        var index = _index;
        int mask = index.Length - 1;
        int i = index[slot] - 1;
        int last = _count - 1;
        if (i != last)
        {
            // The last binding moves into the hole: repoint its index slot first.
            int ls = SlotOf(_items[last].Task);
            index[ls] = i + 1;
            _items[i] = _items[last];
        }
        _items[last] = default;
        // Backward-shift deletion: pull later members of the probe run into the hole when their home allows it.
        int hole = slot;
        int j = (hole + 1) & mask;
        while (index[j] != 0)
        {
            int home = Hash(_items[index[j] - 1].Task) & mask; // no slot points at `last` any more but the hole
            // j's entry may move to the hole iff its home is not in the cyclic interval (hole, j].
            bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
            if (!stays)
            {
                index[hole] = index[j];
                hole = j;
            }
            j = (j + 1) & mask;
        }
        index[hole] = 0;
        Volatile.Write(ref _count, last);
        EndWrite();
        return true;
    }

    /// <summary>
    /// Writer only (recovery, before the cell is published). Shrinks the list to its count: staging grows lists by
    /// doubling, which would leave up to half of each one empty (about 0.4 GB at 10M bindings).
    /// </summary>
    public void TrimExcess()
    {
        int cap = Math.Max(4, _count);
        if (cap == _items.Length) return;
        BeginWrite();
        var items = new Slot[cap];
        Array.Copy(_items, items, _count);
        var index = new int[IndexLength(cap)];
        for (int i = 0; i < _count; i++) Insert(index, items[i].Task, i);
        Volatile.Write(ref _items, items);
        Volatile.Write(ref _index, index);
        EndWrite();
    }

    /// <summary>Writer only.</summary>
    public bool Contains(TaskId task) => SlotOf(task) >= 0;

    /// <summary>Writer only. The binding of <paramref name="task"/>, if it is on this node.</summary>
    public bool TryGet(TaskId task, out Allocation allocation)
    {
        int s = SlotOf(task);
        if (s < 0) { allocation = default; return false; }
        allocation = _items[_index[s] - 1].ToAllocation(_node);
        return true;
    }

    // Writer only: the index slot that points at task's binding, or -1.
    private int SlotOf(TaskId task)
    {
        var index = _index;
        int mask = index.Length - 1;
        int s = Hash(task) & mask;
        while (true)
        {
            int p = index[s];
            if (p == 0) return -1;
            if (_items[p - 1].Job == task.Job.Value && _items[p - 1].Index == task.Index) return s;
            s = (s + 1) & mask;
        }
    }

    /// <summary>
    /// Any thread, racy, no lock and no validation: reads the lines an <see cref="Add"/> or <see cref="Remove"/> of
    /// <paramref name="task"/> will touch (the sequence word, the task's index probe run, the append position and, if the
    /// task is found, its slot), so they are in this core's cache before the commit lock is taken (Cell.WarmClaims). The
    /// value means nothing and is discarded: the arrays may be replaced or changed under it, which is why every read is
    /// range-checked and the probe is bounded.
    /// </summary>
    public long Touch(TaskId task)
    {
        long sum = Volatile.Read(ref _seq);
        var items = _items;
        var index = _index;
        int count = _count;
        if ((uint)count < (uint)items.Length) sum += items[count].Job;
        int mask = index.Length - 1;
        int s = Hash(task) & mask;
        for (int probes = 0; probes < 8; probes++)
        {
            int p = index[s];
            if (p == 0 || (uint)(p - 1) >= (uint)items.Length) break;
            if (items[p - 1].Job == task.Job.Value) { sum += items[p - 1].Generation; break; }
            s = (s + 1) & mask;
        }
        return sum;
    }

    private void BeginWrite() => Interlocked.Exchange(ref _seq, _seq + 1); // full fence: odd before any data write

    private void EndWrite() => Volatile.Write(ref _seq, _seq + 1);          // release: data before even

    /// <summary>
    /// Any thread, lock-free. The binding of <paramref name="task"/> as the committer last left this node's list. A reader
    /// that raced a change may probe stale or torn slots; the probe is bounded by the table length and every position is
    /// range-checked, and the seqlock validation then discards the result and retries.
    /// </summary>
    public bool TryRead(TaskId task, out Allocation allocation)
    {
        var spin = new SpinWait();
        while (true)
        {
            long s1 = Volatile.Read(ref _seq);
            if ((s1 & 1) == 0)
            {
                var items = Volatile.Read(ref _items);
                var index = Volatile.Read(ref _index);
                int mask = index.Length - 1;
                int s = Hash(task) & mask;
                bool found = false;
                allocation = default;
                for (int probes = 0; probes < index.Length; probes++)
                {
                    int p = index[s];
                    if (p == 0 || (uint)(p - 1) >= (uint)items.Length) break;
                    if (items[p - 1].Job == task.Job.Value && items[p - 1].Index == task.Index)
                    {
                        allocation = items[p - 1].ToAllocation(_node);
                        found = true;
                        break;
                    }
                    s = (s + 1) & mask;
                }
                // Full fence: the reads above complete before the sequence is read again (seqlock validation).
                Interlocked.MemoryBarrier();
                if (Volatile.Read(ref _seq) == s1) return found;
            }
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

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
                    for (int i = 0; i < n; i++) into.Add(items[i].ToAllocation(_node));
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
