namespace Omega.Transport;

/// <summary>
/// A server-wide count of bytes held for incomplete frames, against <see cref="TransportOptions.MaxIncompleteFrameBytes"/>.
/// Each connection reports the growth and shrinkage of its own partial frame; the connection whose growth would cross
/// the limit is the one refused. Rejected alternative: per-connection limits alone, which multiply by the connection
/// limit (400 connections holding most of a 1 MiB frame each held ~443 MB until the idle timeout).
/// </summary>
internal sealed class ByteBudget(long limit)
{
    private long _used;

    /// <summary>The limit.</summary>
    public long Limit { get; } = limit;

    /// <summary>Bytes held now, over all connections.</summary>
    public long Used => Volatile.Read(ref _used);

    /// <summary>Takes <paramref name="bytes"/> more; false (and nothing taken) when that would exceed the limit.</summary>
    public bool TryTake(long bytes)
    {
        if (Interlocked.Add(ref _used, bytes) <= Limit) return true;
        Interlocked.Add(ref _used, -bytes);
        return false;
    }

    /// <summary>Gives back bytes taken earlier.</summary>
    public void Release(long bytes)
    {
        if (bytes != 0) Interlocked.Add(ref _used, -bytes);
    }
}
