namespace Omega;

/// <summary>
/// A node's dense identifier inside one cell, assigned by the cell when the node is added and never reused.
/// Dense ids let snapshots index nodes by array position instead of hashing on the hot path.
/// </summary>
/// <param name="Value">The zero-based index.</param>
public readonly record struct NodeId(int Value)
{
    /// <inheritdoc />
    public override string ToString() => $"n{Value}";
}

/// <summary>A job's identifier, chosen by the submitter and unique within a cell.</summary>
/// <param name="Value">The numeric id.</param>
public readonly record struct JobId(long Value)
{
    /// <inheritdoc />
    public override string ToString() => $"j{Value}";
}

/// <summary>A task's identifier: its job and its index within the job.</summary>
/// <param name="Job">The owning job.</param>
/// <param name="Index">The task's index in the job, from zero.</param>
public readonly record struct TaskId(JobId Job, int Index)
{
    /// <summary>Creates a task id from a raw job id and index.</summary>
    public TaskId(long job, int index) : this(new JobId(job), index) { }

    /// <inheritdoc />
    public override string ToString() => $"j{Job.Value}/{Index}";

    /// <summary>Parses the <c>j{job}/{index}</c> form produced by <see cref="ToString"/> (the leading 'j' is optional).</summary>
    public static bool TryParse(string? text, out TaskId id)
    {
        id = default;
        if (string.IsNullOrEmpty(text)) return false;
        var s = text.AsSpan();
        if (s.Length > 0 && (s[0] == 'j' || s[0] == 'J')) s = s[1..];
        int slash = s.IndexOf('/');
        if (slash <= 0) return false;
        if (!long.TryParse(s[..slash], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long job)) return false;
        if (!int.TryParse(s[(slash + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int index)) return false;
        id = new TaskId(job, index);
        return true;
    }
}

/// <summary>A tenant (quota holder). Tenant 0 is the default tenant.</summary>
/// <param name="Value">The numeric id.</param>
public readonly record struct TenantId(int Value)
{
    /// <inheritdoc />
    public override string ToString() => $"t{Value}";
}

/// <summary>A scheduler identity's dense id inside one cell, assigned when it first acquires a lease.</summary>
/// <param name="Value">The numeric id.</param>
public readonly record struct SchedulerId(int Value)
{
    /// <inheritdoc />
    public override string ToString() => $"s{Value}";
}

/// <summary>
/// A fencing token: a cell-wide, strictly increasing epoch granted with a scheduler lease.
/// A commit is accepted only with the current token of its scheduler identity.
/// </summary>
/// <param name="Value">The epoch.</param>
public readonly record struct FencingToken(long Value) : IComparable<FencingToken>
{
    /// <inheritdoc />
    public int CompareTo(FencingToken other) => Value.CompareTo(other.Value);

    /// <summary>Orders tokens.</summary>
    public static bool operator <(FencingToken left, FencingToken right) => left.Value < right.Value;

    /// <summary>Orders tokens.</summary>
    public static bool operator >(FencingToken left, FencingToken right) => left.Value > right.Value;

    /// <summary>Orders tokens.</summary>
    public static bool operator <=(FencingToken left, FencingToken right) => left.Value <= right.Value;

    /// <summary>Orders tokens.</summary>
    public static bool operator >=(FencingToken left, FencingToken right) => left.Value >= right.Value;

    /// <inheritdoc />
    public override string ToString() => $"#{Value}";
}

/// <summary>
/// A 128-bit idempotency key chosen by the submitter of a transaction. A retried transaction with the same key gets
/// the original result and binds nothing new. <see cref="None"/> (all zero) means "no key".
/// </summary>
/// <param name="High">The upper 64 bits.</param>
/// <param name="Low">The lower 64 bits.</param>
public readonly record struct IdempotencyKey(ulong High, ulong Low)
{
    /// <summary>No key: the transaction is not deduplicated.</summary>
    public static IdempotencyKey None => default;

    /// <summary>True when this is <see cref="None"/>.</summary>
    public bool IsNone => High == 0 && Low == 0;

    /// <summary>A fresh random key.</summary>
    public static IdempotencyKey NewRandom()
    {
        Span<byte> b = stackalloc byte[16];
        System.Security.Cryptography.RandomNumberGenerator.Fill(b);
        return new IdempotencyKey(BitConverter.ToUInt64(b), BitConverter.ToUInt64(b[8..]) | 1);
    }

    /// <inheritdoc />
    public override string ToString() => $"{High:x16}{Low:x16}";
}
