namespace Omega.Cells;

/// <summary>
/// The cell's task index: task → node of its live binding. Open addressing with linear probing over one array of 16-byte
/// entries, backward-shift deletion (no tombstones), at most 5/8 full. Writer-only (the commit lock, or restore before the
/// cell is published); no reader takes it lock-free.
/// </summary>
/// <remarks>
/// <para>Why not the <c>Dictionary&lt;TaskId, NodeId&gt;</c> it replaces (issue 14, "shorten the critical section"): every
/// commit asks it whether the claimed task is bound (an unsuccessful lookup) and inserts, every release looks up and
/// removes. A dictionary touches two arrays per lookup (the bucket array, then the entry array, then chains), so on a
/// cell whose bindings do not fit in cache each operation costs two dependent cache misses inside the commit lock. Here
/// the key and the value sit in one entry and a probe run is contiguous: one miss per lookup, and the insert or removal
/// that follows finds its line already loaded. At 5/8 load an unsuccessful probe reads about 4 entries (64 bytes).</para>
/// <para>Memory: 16 bytes per slot at 5/16–5/8 load, 26–51 bytes per binding, against about 36 for the dictionary.</para>
/// </remarks>
internal sealed class TaskTable
{
    private struct Entry
    {
        public long Job;
        public int Index;
        public int NodePlusOne; // 0 = empty slot
    }

    private Entry[] _entries;
    private int _count;
    private int _growAt;

    /// <summary>An empty table.</summary>
    public TaskTable(int capacity = 16)
    {
        _entries = new Entry[LengthFor(capacity)];
        _growAt = _entries.Length / 8 * 5;
    }

    /// <summary>The number of tasks in the table.</summary>
    public int Count => _count;

    /// <summary>The number of tasks, read by any thread without the table's lock (exact once its writer is done).</summary>
    public int VolatileCount => Volatile.Read(ref _count);

    // The smallest power of two (≥ 16) that holds `capacity` entries at 5/8 load.
    private static int LengthFor(int capacity)
    {
        int n = 16;
        while (n / 8 * 5 < capacity) n <<= 1;
        return n;
    }

    // Four consecutive indexes of one job share a home group: four neighbouring 16-byte entries, one cache line when the
    // group is line-aligned. Why (issue 15, prof15's bind-path profile): a job's tasks are numbered densely and committed,
    // acknowledged and released in runs (an engine places a job's replicas in index order; the bind-path bench commits 16
    // consecutive indexes per node), and with every index hashed apart each lookup, insert and removal of a 10M-binding
    // table was a cache and TLB miss of its own: 75 % of TryApply's samples sat on the first probe's load. Now three of
    // four land on the line the first one loaded. Groups are placed by the mixed hash of (job, index / 4), so jobs and
    // groups still spread; linear probing stays correct for any home function (Remove and Resize use this one). Cost:
    // a probe from a random position walks longer runs (about 8 entries instead of 3-4 at 5/8 load: two lines, not one).
    private const int GroupBits = 2;
    private const int GroupMask = (1 << GroupBits) - 1;

    private static int Hash(long job, int index)
    {
        // Job ids and group numbers are small and dense; multiply-mix both so neighbouring groups spread (Fibonacci
        // hashing: the high bits of the product are the well-mixed ones).
        ulong h = ((ulong)job * 0x9E3779B97F4A7C15UL) ^ ((uint)(index >> GroupBits) * 0xC2B2AE3D27D4EB4FUL);
        h ^= h >> 29;
        h *= 0xBF58476D1CE4E5B9UL;
        return ((int)(h >> 32) & ~GroupMask) | (index & GroupMask);
    }

    /// <summary>Tests: the home slot of <paramref name="task"/> in a table of <paramref name="length"/> slots (a power of two).</summary>
    internal static int HomeSlot(TaskId task, int length) => Hash(task.Job.Value, task.Index) & (length - 1);

    // The slot holding `task`, or -1.
    private int Find(TaskId task)
    {
        var e = _entries;
        int mask = e.Length - 1;
        long job = task.Job.Value;
        int index = task.Index;
        int s = Hash(job, index) & mask;
        while (true)
        {
            ref readonly Entry x = ref e[s];
            if (x.NodePlusOne == 0) return -1;
            if (x.Job == job && x.Index == index) return s;
            s = (s + 1) & mask;
        }
    }

    /// <summary>
    /// Any thread, racy, no lock: reads <paramref name="task"/>'s probe run (at most 8 entries) so that the lookup, insert
    /// or removal the committer will make under the commit lock finds its line in cache (Cell.WarmClaims). Returns the
    /// node + 1 the run seemed to hold for the task, or 0; a hint only (the table may be resized or changed under it), never
    /// a binding. A stale array is harmless: nothing is written.
    /// </summary>
    public int Touch(TaskId task)
    {
        var e = _entries;
        int mask = e.Length - 1;
        long job = task.Job.Value;
        int index = task.Index;
        int s = Hash(job, index) & mask;
        for (int probes = 0; probes < 8; probes++)
        {
            ref readonly Entry x = ref e[s];
            int node = x.NodePlusOne;
            if (node == 0) return 0;
            if (x.Job == job && x.Index == index) return node;
            s = (s + 1) & mask;
        }
        return 0;
    }

    /// <summary>True if <paramref name="task"/> is in the table.</summary>
    public bool ContainsKey(TaskId task) => Find(task) >= 0;

    /// <summary>The node of <paramref name="task"/>'s binding, if it is in the table.</summary>
    public bool TryGetValue(TaskId task, out NodeId node)
    {
        int s = Find(task);
        if (s < 0) { node = default; return false; }
        node = new NodeId(_entries[s].NodePlusOne - 1);
        return true;
    }

    /// <summary>Adds <paramref name="task"/> → <paramref name="node"/>; false (and no change) if the task is present.</summary>
    public bool TryAdd(TaskId task, NodeId node) => Upsert(task, node, overwrite: false) == 0;

    /// <summary>Adds or replaces <paramref name="task"/>'s entry.</summary>
    public NodeId this[TaskId task]
    {
        set => Upsert(task, value, overwrite: true);
    }

    /// <summary>
    /// Adds or replaces <paramref name="task"/>'s entry in one probe and returns the node it replaced + 1, or 0 when the task
    /// was not in the table (recovery's upsert: a lookup and a store in one pass over the probe run).
    /// </summary>
    public int Exchange(TaskId task, NodeId node) => Upsert(task, node, overwrite: true);

    // The one probe loop for adds and replacements: returns the entry's previous NodePlusOne (0 when the task was absent
    // and is now added). With overwrite false an existing entry is left as it is.
    private int Upsert(TaskId task, NodeId node, bool overwrite)
    {
        if ((uint)node.Value >= int.MaxValue) throw new ArgumentOutOfRangeException(nameof(node), node, "negative node id");
        if (_count >= _growAt) Resize(_entries.Length * 2);
        var e = _entries;
        int mask = e.Length - 1;
        long job = task.Job.Value;
        int index = task.Index;
        int s = Hash(job, index) & mask;
        while (true)
        {
            ref Entry x = ref e[s];
            if (x.NodePlusOne == 0)
            {
                x.Job = job;
                x.Index = index;
                x.NodePlusOne = node.Value + 1;
                _count++;
                return 0;
            }
            if (x.Job == job && x.Index == index)
            {
                int previous = x.NodePlusOne;
                if (overwrite) x.NodePlusOne = node.Value + 1;
                return previous;
            }
            s = (s + 1) & mask;
        }
    }

    /// <summary>Removes <paramref name="task"/>; false if it was not present.</summary>
    public bool Remove(TaskId task) => Remove(task, out _);

    /// <summary>Removes <paramref name="task"/> and returns the node it was bound to; false if it was not present.</summary>
    public bool Remove(TaskId task, out NodeId node)
    {
        int hole = Find(task);
        if (hole < 0) { node = default; return false; }
        var e = _entries;
        node = new NodeId(e[hole].NodePlusOne - 1);
        int mask = e.Length - 1;
        // Backward-shift deletion: an entry later in the run moves into the hole unless its home slot lies in the cyclic
        // interval (hole, j], where moving it would put it before its home and make it unreachable.
        int j = (hole + 1) & mask;
        while (e[j].NodePlusOne != 0)
        {
            int home = Hash(e[j].Job, e[j].Index) & mask;
            bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
            if (!stays)
            {
                e[hole] = e[j];
                hole = j;
            }
            j = (j + 1) & mask;
        }
        e[hole] = default;
        _count--;
        return true;
    }

    /// <summary>Sizes the table for at least <paramref name="capacity"/> tasks (restore knows the count up front).</summary>
    public void EnsureCapacity(int capacity)
    {
        int length = LengthFor(capacity);
        if (length > _entries.Length) Resize(length);
    }

    private void Resize(int length)
    {
        var old = _entries;
        var e = new Entry[length];
        int mask = length - 1;
        for (int i = 0; i < old.Length; i++)
        {
            if (old[i].NodePlusOne == 0) continue;
            int s = Hash(old[i].Job, old[i].Index) & mask;
            while (e[s].NodePlusOne != 0) s = (s + 1) & mask;
            e[s] = old[i];
        }
        _entries = e;
        _growAt = length / 8 * 5;
    }

    /// <summary>Enumerates the entries (audits; O(table)). Do not change the table while enumerating.</summary>
    public Enumerator GetEnumerator() => new(this);

    /// <summary>An allocation-free enumerator over the table's entries.</summary>
    public struct Enumerator
    {
        private readonly TaskTable _table;
        private int _i;

        internal Enumerator(TaskTable table)
        {
            _table = table;
            _i = -1;
        }

        /// <summary>The current entry.</summary>
        public readonly KeyValuePair<TaskId, NodeId> Current
        {
            get
            {
                ref readonly Entry x = ref _table._entries[_i];
                return new(new TaskId(x.Job, x.Index), new NodeId(x.NodePlusOne - 1));
            }
        }

        /// <summary>Moves to the next occupied slot.</summary>
        public bool MoveNext()
        {
            var items = _table._entries;
            while (++_i < items.Length)
                if (items[_i].NodePlusOne != 0) return true;
            return false;
        }
    }
}

/// <summary>
/// The cell's task index as the commit paths use it: one <see cref="TaskTable"/> on every path but
/// <see cref="CommitPath.Concurrent"/>, where it is split into <see cref="Partitions"/> tables by a hash of the task, each
/// with its own lock, so that transactions on different tasks check and record task uniqueness without the commit lock
/// (Cell.Concurrent.cs). With one partition every call is the single table's own probe sequence behind one predictable
/// branch, so the other paths keep their lookup cost.
/// </summary>
internal sealed class TaskIndex
{
    /// <summary>The number of partitions on the concurrent path: one bit each of a ulong mask.</summary>
    public const int Partitions = 64;

    private readonly TaskTable _single;       // partition 0 (the only one unless partitioned)
    private readonly TaskTable[]? _parts;     // null: not partitioned
    private readonly Lock[]? _gates;
    // Keeps the padding between the partition locks alive (see the constructor).
    private readonly byte[][]? _padding;

    /// <summary>One table, or <see cref="Partitions"/> tables with a lock each.</summary>
    public TaskIndex(bool partitioned)
    {
        if (!partitioned)
        {
            _single = new TaskTable();
            return;
        }
        _parts = new TaskTable[Partitions];
        _gates = new Lock[Partitions];
        _padding = new byte[Partitions][];
        for (int i = 0; i < Partitions; i++)
        {
            // Allocated in sequence, each lock followed by its table and a line of padding, so no two partition locks
            // share a cache line (a lock word written by one core must not invalidate another partition's).
            _gates[i] = new Lock();
            _padding[i] = new byte[64];
            _parts[i] = new TaskTable();
        }
        _single = _parts[0];
    }

    /// <summary>True when split into partitions with locks.</summary>
    public bool Partitioned => _parts is not null;

    /// <summary>
    /// The partition of <paramref name="task"/>: the high bits of a mix of (job, index / 4), so the four consecutive
    /// indexes that share a line of a table (TaskTable's home groups) share a partition, while two workers that use the
    /// same job numbers with different indexes land apart. The tables use the low bits of a different mix, so a
    /// partition's entries still spread over its whole table.
    /// </summary>
    public static int PartitionOf(TaskId task)
    {
        ulong h = ((ulong)task.Job.Value * 0xD6E8FEB86659FD93UL) ^ ((uint)(task.Index >> 2) * 0x9E3779B97F4A7C15UL);
        h ^= h >> 31;
        h *= 0x94D049BB133111EBUL;
        return (int)(h >> 58);
    }

    private TaskTable Of(TaskId task) => _parts is null ? _single : _parts[PartitionOf(task)];

    /// <summary>Concurrent path: the table of partition <paramref name="p"/> (its lock held, or under Serial()).</summary>
    public TaskTable Part(int p) => _parts![p];

    /// <summary>Concurrent path: takes the locks of the partitions in <paramref name="mask"/>, in ascending bit order.</summary>
    public void Enter(ulong mask)
    {
        var gates = _gates!;
        for (ulong m = mask; m != 0; m &= m - 1) gates[System.Numerics.BitOperations.TrailingZeroCount(m)].Enter();
    }

    /// <summary>Concurrent path: releases the locks of the partitions in <paramref name="mask"/>.</summary>
    public void Exit(ulong mask)
    {
        var gates = _gates!;
        for (ulong m = mask; m != 0; m &= m - 1) gates[System.Numerics.BitOperations.TrailingZeroCount(m)].Exit();
    }

    /// <summary>The number of tasks. Partitioned: the sum of the partitions' counts, each exact, read without their locks.</summary>
    public int Count
    {
        get
        {
            if (_parts is null) return _single.Count;
            int n = 0;
            for (int i = 0; i < _parts.Length; i++) n += _parts[i].VolatileCount;
            return n;
        }
    }

    /// <inheritdoc cref="TaskTable.Touch"/>
    public int Touch(TaskId task) => Of(task).Touch(task);

    /// <inheritdoc cref="TaskTable.ContainsKey"/>
    public bool ContainsKey(TaskId task) => Of(task).ContainsKey(task);

    /// <inheritdoc cref="TaskTable.TryGetValue"/>
    public bool TryGetValue(TaskId task, out NodeId node) => Of(task).TryGetValue(task, out node);

    /// <inheritdoc cref="TaskTable.TryAdd"/>
    public bool TryAdd(TaskId task, NodeId node) => Of(task).TryAdd(task, node);

    /// <summary>Adds or replaces <paramref name="task"/>'s entry.</summary>
    public NodeId this[TaskId task]
    {
        set => Of(task)[task] = value;
    }

    /// <inheritdoc cref="TaskTable.Exchange"/>
    public int Exchange(TaskId task, NodeId node) => Of(task).Exchange(task, node);

    /// <inheritdoc cref="TaskTable.Remove(TaskId)"/>
    public bool Remove(TaskId task) => Of(task).Remove(task);

    /// <inheritdoc cref="TaskTable.Remove(TaskId, out NodeId)"/>
    public bool Remove(TaskId task, out NodeId node) => Of(task).Remove(task, out node);

    /// <summary>Sizes the index for about <paramref name="capacity"/> tasks.</summary>
    public void EnsureCapacity(int capacity)
    {
        if (_parts is null) { _single.EnsureCapacity(capacity); return; }
        foreach (var p in _parts) p.EnsureCapacity(capacity / Partitions + 16);
    }

    /// <summary>Enumerates every entry of every partition (audits; O(index)). Do not change the index while enumerating.</summary>
    public Enumerator GetEnumerator() => new(this);

    /// <summary>An allocation-free enumerator over the partitions' entries.</summary>
    public struct Enumerator
    {
        private readonly TaskIndex _index;
        private int _part;
        private TaskTable.Enumerator _inner;

        internal Enumerator(TaskIndex index)
        {
            _index = index;
            _part = 0;
            _inner = index._parts is null ? index._single.GetEnumerator() : index._parts[0].GetEnumerator();
        }

        /// <summary>The current entry.</summary>
        public readonly KeyValuePair<TaskId, NodeId> Current => _inner.Current;

        /// <summary>Moves to the next entry.</summary>
        public bool MoveNext()
        {
            while (true)
            {
                if (_inner.MoveNext()) return true;
                if (_index._parts is null || ++_part >= _index._parts.Length) return false;
                _inner = _index._parts[_part].GetEnumerator();
            }
        }
    }
}
