using System.Buffers.Binary;

namespace Omega.Storage.State;

/// <summary>The kinds of entries in the materialized store; the first byte of every key.</summary>
internal enum EntryKind : byte
{
    Meta = 0,
    Node = 1,
    NodeVersion = 2,
    Allocation = 3,
    Lease = 4,
    Quota = 5,
    Outcome = 6,

    // 13 matches the journal record kind (liveness range): one entry, key (13, 0), holding every domain-loss
    // confirmation in effect. Few domains are ever confirmed, so rewriting the whole list keeps restore trivial.
    DomainLosses = 13,

    // 15 matches the journal record kind ObjectPut (issue 12): key = 15 | UTF-8 object key (variable length, up to
    // Cell.MaxObjectKeyLength characters), value = version:i64 created:i64 encoded object. A delete is a tombstone.
    Object = 15,

    // 17 (cpres, issue 12): a reservation, key = 17 | job:i64 | index:i32 (like an allocation), value = node:i32
    // resources:4×i64 tenant:i32 priority:i32 expiresUtcTicks:i64 generation:i64. Released or consumed: a tombstone.
    Reservation = 17,

    // 18: a tenant's guaranteed capacity, key = 18 | tenant:i32, value = has:u8 resources:4×i64 (like a quota).
    Guarantee = 18,

    // 20 matches the journal record kind AuthRecordPut (issue 11): key = 20 | UTF-8 record key (up to
    // Cell.MaxAuthKeyLength characters), value = the record's opaque bytes. A delete (kind 21) is a tombstone.
    AuthRecord = 20,
    // 30 (issue 13): a region's recovery budget, key = 30 | UTF-8 region (≤ 63 bytes), value = capacity:4×i64
    // minPriority:i32. Cleared: a tombstone.
    RecoveryBudget = 30,

    // 31 (issue 13): a placement group's failover home, key = 31 | groupKey:i64 | keyShift:u8, value = UTF-8 region.
    // Cleared: a tombstone.
    FailoverHome = 31,

    // 7-8 left free for other entry kinds; 9 matches the TenantCreated journal record.
    Tenant = 9,
}

/// <summary>Key layouts (little-endian): kind:u8 followed by the entity's id.</summary>
internal static class StateKeys
{
    public const int MaxKeySize = 21;

    public static int Meta(Span<byte> k)
    {
        k[0] = (byte)EntryKind.Meta;
        return 1;
    }

    public static int ById(Span<byte> k, EntryKind kind, int id)
    {
        k[0] = (byte)kind;
        BinaryPrimitives.WriteInt32LittleEndian(k[1..], id);
        return 5;
    }

    public static int Allocation(Span<byte> k, TaskId task, EntryKind kind = EntryKind.Allocation)
    {
        k[0] = (byte)kind;
        BinaryPrimitives.WriteInt64LittleEndian(k[1..], task.Job.Value);
        BinaryPrimitives.WriteInt32LittleEndian(k[9..], task.Index);
        return 13;
    }

    /// <summary>
    /// An idempotency outcome: <c>6 keyHigh:u64 keyLow:u64 scheduler:i32</c> (21 bytes). Keys are scoped to the
    /// scheduler that used them; a 17-byte key without the scheduler was written before that and restores under the
    /// legacy scope.
    /// </summary>
    public static int Outcome(Span<byte> k, SchedulerId scheduler, IdempotencyKey key)
    {
        k[0] = (byte)EntryKind.Outcome;
        BinaryPrimitives.WriteUInt64LittleEndian(k[1..], key.High);
        BinaryPrimitives.WriteUInt64LittleEndian(k[9..], key.Low);
        BinaryPrimitives.WriteInt32LittleEndian(k[17..], scheduler.Value);
        return 21;
    }
}
