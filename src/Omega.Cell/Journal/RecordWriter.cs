using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;

namespace Omega.Cells;

/// <summary>
/// A growable little-endian byte buffer the cell encodes journal records into, reused under the commit lock so the
/// per-commit path allocates nothing once the buffer has reached its working size.
/// </summary>
internal sealed class RecordWriter
{
    private byte[] _buf = new byte[512];
    private int _pos;

    public ReadOnlySpan<byte> Written => _buf.AsSpan(0, _pos);

    public void Start(CellRecordKind kind, long sequence, long cellVersion)
    {
        _pos = 0;
        U8((byte)kind);
        I64(sequence);
        I64(cellVersion);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Span<byte> Take(int n)
    {
        if (_pos + n > _buf.Length) Array.Resize(ref _buf, Math.Max(_buf.Length * 2, _pos + n));
        var s = _buf.AsSpan(_pos, n);
        _pos += n;
        return s;
    }

    public void U8(byte v) => Take(1)[0] = v;

    public void I32(int v) => BinaryPrimitives.WriteInt32LittleEndian(Take(4), v);

    public void I64(long v) => BinaryPrimitives.WriteInt64LittleEndian(Take(8), v);

    public void U64(ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(Take(8), v);

    /// <summary>Reserves an int to fill in later (a count not known up front).</summary>
    public int ReserveI32()
    {
        int at = _pos;
        Take(4);
        return at;
    }

    public void PatchI32(int at, int v) => BinaryPrimitives.WriteInt32LittleEndian(_buf.AsSpan(at, 4), v);

    public void Bytes(ReadOnlySpan<byte> bytes) => bytes.CopyTo(Take(bytes.Length));

    public void Resources(ResourceVector r)
    {
        var s = Take(32);
        BinaryPrimitives.WriteInt64LittleEndian(s, r.CpuMillis);
        BinaryPrimitives.WriteInt64LittleEndian(s[8..], r.MemoryBytes);
        BinaryPrimitives.WriteInt64LittleEndian(s[16..], r.Gpus);
        BinaryPrimitives.WriteInt64LittleEndian(s[24..], r.DiskBytes);
    }

    public void Task(TaskId t)
    {
        I64(t.Job.Value);
        I32(t.Index);
    }

    /// <summary>The encoded size of one applied claim in a Commit record, without its kind byte and expiry.</summary>
    public static int ClaimSize(in Claim c) => ClaimFixedSize + 12 * (c.Victims?.Length ?? 0);

    private const int ClaimFixedSize = 12 + 4 + 32 + 4 + 4 + 4;

    /// <summary>
    /// Writes one applied claim of a Commit record (task, node, resources, tenant, priority, victims; docs/storage.md)
    /// into <paramref name="s"/>, which holds at least <see cref="ClaimSize"/> bytes, and returns the bytes written. The
    /// one encoder of a claim: the commit lock's writer and the pre-encoding before the lock both use it, so their
    /// bytes cannot differ.
    /// </summary>
    public static int WriteClaim(Span<byte> s, in Claim c)
    {
        var victims = c.Victims;
        int nv = victims?.Length ?? 0;
        int size = ClaimFixedSize + 12 * nv;
        s = s[..size]; // one bounds check for the whole claim
        BinaryPrimitives.WriteInt64LittleEndian(s, c.Task.Job.Value);
        BinaryPrimitives.WriteInt32LittleEndian(s[8..], c.Task.Index);
        BinaryPrimitives.WriteInt32LittleEndian(s[12..], c.Node.Value);
        var r = c.Resources;
        BinaryPrimitives.WriteInt64LittleEndian(s[16..], r.CpuMillis);
        BinaryPrimitives.WriteInt64LittleEndian(s[24..], r.MemoryBytes);
        BinaryPrimitives.WriteInt64LittleEndian(s[32..], r.Gpus);
        BinaryPrimitives.WriteInt64LittleEndian(s[40..], r.DiskBytes);
        BinaryPrimitives.WriteInt32LittleEndian(s[48..], c.Tenant.Value);
        BinaryPrimitives.WriteInt32LittleEndian(s[52..], c.Priority);
        BinaryPrimitives.WriteInt32LittleEndian(s[56..], nv);
        int at = ClaimFixedSize;
        for (int v = 0; v < nv; v++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(s[at..], victims![v].Job.Value);
            BinaryPrimitives.WriteInt32LittleEndian(s[(at + 8)..], victims[v].Index);
            at += 12;
        }
        return size;
    }

    /// <summary>Appends one applied claim (<see cref="WriteClaim"/>).</summary>
    public void Claim(in Claim c) => WriteClaim(Take(ClaimSize(c)), c);

    public void String(string s)
    {
        int n = Encoding.UTF8.GetByteCount(s);
        I32(n);
        Encoding.UTF8.GetBytes(s, Take(n));
    }

    public void Spec(NodeSpec spec)
    {
        String(spec.Name);
        String(spec.FailureDomain);
        Resources(spec.Capacity);
        I32(spec.Labels.Count);
        foreach (var (k, v) in spec.Labels)
        {
            String(k);
            String(v);
        }
        I32(spec.Taints.Count);
        for (int i = 0; i < spec.Taints.Count; i++) String(spec.Taints[i]);
    }
}
