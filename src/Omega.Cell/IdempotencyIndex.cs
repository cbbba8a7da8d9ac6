namespace Omega.Cells;

/// <summary>Scopes of idempotency keys.</summary>
internal static class IdempotencyScope
{
    /// <summary>The owner of keys restored from records written before keys were scoped: no scheduler has this id.</summary>
    public static readonly SchedulerId Legacy = new(-1);
}

/// <summary>
/// Remembers the result of every keyed commit, so a retry with the same key gets the original result and binds nothing.
/// Keys are scoped to the scheduler identity that used them (issue 10, defect 6): the index is keyed by
/// (scheduler id, key), so scheduler B sending A's key is a new transaction for B, never A's result replayed to B.
/// The scheduler id is what a fencing token is checked against, so only a holder of that identity's current lease
/// reaches the lookup. Bounded: the oldest keys are forgotten first. Guarded by the cell's commit lock.
/// </summary>
internal sealed class IdempotencyIndex
{
    internal readonly record struct ScopedKey(SchedulerId Scheduler, IdempotencyKey Key);

    internal struct Record
    {
        public ulong TxHash;
        public TransactionStatus Status;
        public long CellVersion;
        public int Applied;
        public ClaimStatus Single;     // the common one-claim case is stored inline: no allocation
        public ClaimStatus[]? Many;
        public int ClaimCount;
    }

    private readonly Dictionary<ScopedKey, Record> _records = new();
    private readonly Queue<ScopedKey> _order = new();
    private readonly int _retention;

    public IdempotencyIndex(int retention) => _retention = retention;

    public int Count => _records.Count;

    public bool TryGet(SchedulerId scheduler, IdempotencyKey key, out Record record) => _records.TryGetValue(new ScopedKey(scheduler, key), out record);

    public void Add(SchedulerId scheduler, IdempotencyKey key, ulong txHash, TransactionStatus status, long version, int applied, ReadOnlySpan<ClaimStatus> claims)
    {
        var r = new Record { TxHash = txHash, Status = status, CellVersion = version, Applied = applied, ClaimCount = claims.Length };
        if (claims.Length == 1) r.Single = claims[0];
        else r.Many = claims.ToArray();
        var scoped = new ScopedKey(scheduler, key);
        if (_records.TryAdd(scoped, r))
        {
            _order.Enqueue(scoped);
            while (_order.Count > _retention) _records.Remove(_order.Dequeue());
        }
    }

    public static CommitResult ToResult(in Record r)
    {
        ReadOnlyMemory<ClaimStatus> claims = r.ClaimCount == 1 ? new[] { r.Single } : r.Many ?? Array.Empty<ClaimStatus>();
        return new CommitResult(r.Status, r.CellVersion, r.Applied, replayed: true, claims);
    }

    /// <summary>A stable (process-independent) hash of what a transaction asks for, to detect a key reused for other claims.</summary>
    public static ulong Hash(Transaction tx)
    {
        ulong h = 0xcbf29ce484222325UL ^ (ulong)tx.Mode ^ ((ulong)tx.Detection << 8);
        foreach (ref readonly var c in tx.Claims)
        {
            h = Mix(h, (ulong)c.Task.Job.Value);
            h = Mix(h, (ulong)(uint)c.Task.Index | ((ulong)(uint)c.Node.Value << 32));
            h = Mix(h, (ulong)c.Resources.CpuMillis);
            h = Mix(h, (ulong)c.Resources.MemoryBytes);
            h = Mix(h, (ulong)c.Resources.Gpus ^ ((ulong)c.Resources.DiskBytes << 1));
            h = Mix(h, (ulong)c.ExpectedNodeVersion);
            h = Mix(h, (ulong)(uint)c.Tenant.Value | ((ulong)(uint)c.Priority << 32));
            if (c.Victims is { } v)
                foreach (var t in v) h = Mix(h, (ulong)t.Job.Value ^ ((ulong)(uint)t.Index << 40));
            // Only non-default kinds are mixed in, so the hash of an ordinary claim is the one stores already hold.
            if (c.Kind != ClaimKind.Bind || c.Ttl != TimeSpan.Zero) h = Mix(h, ((ulong)c.Kind << 56) ^ (ulong)c.Ttl.Ticks);
        }
        return h;
    }

    private static ulong Mix(ulong h, ulong x)
    {
        h ^= x + 0x9e3779b97f4a7c15UL + (h << 6) + (h >> 2);
        h *= 0xbf58476d1ce4e5b9UL;
        return h ^ (h >> 31);
    }
}
