using FASTER.core;

namespace Omega.Storage.Tests;

/// <summary>
/// A journal device for tests that can hold writes back: while <see cref="Hold"/> is set, a write is not passed to the
/// disk at all (a crash image taken then does not have it) until the test releases it, in any order it likes, so a later
/// write can reach the disk before an earlier one. Everything else goes straight to the real device.
/// </summary>
internal sealed class HeldWritesDevice : IDevice
{
    private readonly List<Action> _held = new();
    private IDevice _inner = null!;
    private int _outstanding;

    /// <summary>For <c>StorageOptions.JournalDeviceWrapper</c>.</summary>
    public IDevice Wrap(IDevice inner)
    {
        _inner = inner;
        return this;
    }

    /// <summary>While true, new writes wait in the held list.</summary>
    public volatile bool Hold;

    /// <summary>Writes waiting in the held list.</summary>
    public int HeldCount
    {
        get
        {
            lock (_held) return _held.Count;
        }
    }

    /// <summary>Writes passed to the disk and not yet completed.</summary>
    public int Outstanding => Volatile.Read(ref _outstanding);

    /// <summary>Writes ever held (so a test knows holding happened).</summary>
    public int EverHeld { get; private set; }

    /// <summary>Passes the held writes to the disk, in the order <paramref name="order"/> puts them (all of them when null).</summary>
    public void Release(Random? order = null, int? count = null)
    {
        Action[] batch;
        lock (_held)
        {
            var list = _held.ToList();
            if (order is not null)
            {
                for (int i = list.Count - 1; i > 0; i--)
                {
                    int j = order.Next(i + 1);
                    (list[i], list[j]) = (list[j], list[i]);
                }
            }
            int n = Math.Min(count ?? list.Count, list.Count);
            batch = list.Take(n).ToArray();
            foreach (var a in batch) _held.Remove(a);
        }
        foreach (var a in batch) a();
    }

    /// <summary>Passes the held writes to the disk, newest first.</summary>
    public void ReleaseNewestFirst()
    {
        Action[] batch;
        lock (_held)
        {
            batch = _held.AsEnumerable().Reverse().ToArray();
            _held.Clear();
        }
        foreach (var a in batch) a();
    }

    private DeviceIOCompletionCallback Track(DeviceIOCompletionCallback callback)
    {
        Interlocked.Increment(ref _outstanding);
        return (e, n, c) =>
        {
            Interlocked.Decrement(ref _outstanding);
            callback(e, n, c);
        };
    }

    private void WriteOrHold(Action write)
    {
        if (Hold)
        {
            lock (_held)
            {
                if (Hold)
                {
                    _held.Add(write);
                    EverHeld++;
                    return;
                }
            }
        }
        write();
    }

    public void WriteAsync(IntPtr sourceAddress, int segmentId, ulong destinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context)
        => WriteOrHold(() => _inner.WriteAsync(sourceAddress, segmentId, destinationAddress, numBytesToWrite, Track(callback), context));

    public void WriteAsync(IntPtr alignedSourceAddress, ulong alignedDestinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context)
        => WriteOrHold(() => _inner.WriteAsync(alignedSourceAddress, alignedDestinationAddress, numBytesToWrite, Track(callback), context));

    public uint SectorSize => _inner.SectorSize;
    public string FileName => _inner.FileName;
    public long Capacity => _inner.Capacity;
    public long SegmentSize => _inner.SegmentSize;
    public int StartSegment => _inner.StartSegment;
    public int EndSegment => _inner.EndSegment;

    public int ThrottleLimit
    {
        get => _inner.ThrottleLimit;
        set => _inner.ThrottleLimit = value;
    }

    public void Initialize(long segmentSize, LightEpoch epoch = null!, bool omitSegmentIdFromFilename = false) => _inner.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
    public bool TryComplete() => _inner.TryComplete();
    public bool Throttle() => _inner.Throttle();
    public void ReadAsync(int segmentId, ulong sourceAddress, IntPtr destinationAddress, uint readLength, DeviceIOCompletionCallback callback, object context)
        => _inner.ReadAsync(segmentId, sourceAddress, destinationAddress, readLength, callback, context);
    public void ReadAsync(ulong alignedSourceAddress, IntPtr alignedDestinationAddress, uint aligned_read_length, DeviceIOCompletionCallback callback, object context)
        => _inner.ReadAsync(alignedSourceAddress, alignedDestinationAddress, aligned_read_length, callback, context);
    public void TruncateUntilAddressAsync(long toAddress, AsyncCallback callback, IAsyncResult result) => _inner.TruncateUntilAddressAsync(toAddress, callback, result);
    public void TruncateUntilAddress(long toAddress) => _inner.TruncateUntilAddress(toAddress);
    public void TruncateUntilSegmentAsync(int toSegment, AsyncCallback callback, IAsyncResult result) => _inner.TruncateUntilSegmentAsync(toSegment, callback, result);
    public void TruncateUntilSegment(int toSegment) => _inner.TruncateUntilSegment(toSegment);
    public void RemoveSegmentAsync(int segment, AsyncCallback callback, IAsyncResult result) => _inner.RemoveSegmentAsync(segment, callback, result);
    public void RemoveSegment(int segment) => _inner.RemoveSegment(segment);
    public long GetFileSize(int segment) => _inner.GetFileSize(segment);
    public void Reset() => _inner.Reset();

    public void Dispose()
    {
        Hold = false;
        Release();
        _inner.Dispose();
    }
}
