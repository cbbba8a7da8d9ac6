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
