using System.Buffers.Binary;
using System.Text;

namespace Omega.Cells;

/// <summary>
/// Decodes journal records written by a <see cref="Cell"/> (see <see cref="ICellJournal"/>). The layout is documented in
/// docs/storage.md; it is little-endian and starts with <c>kind:u8 sequence:i64 cellVersion:i64</c>.
/// </summary>
public static class CellRecord
{
    /// <summary>The size of the fixed record header (kind, sequence, cell version).</summary>
    public const int HeaderSize = 17;

    /// <summary>Reads a record's header without decoding the rest.</summary>
    public static (CellRecordKind Kind, long Sequence, long CellVersion) ReadHeader(ReadOnlySpan<byte> record)
    {
        if (record.Length < HeaderSize) throw new FormatException($"journal record of {record.Length} bytes is shorter than its header");
        return ((CellRecordKind)record[0], BinaryPrimitives.ReadInt64LittleEndian(record[1..]), BinaryPrimitives.ReadInt64LittleEndian(record[9..]));
    }

    /// <summary>
    /// Decodes <paramref name="record"/> and calls <paramref name="visitor"/> for each of its parts in apply order.
    /// Throws <see cref="FormatException"/> if the record is malformed (storage checksums records, so that means a bug
    /// or a checksum collision, never a torn write).
    /// </summary>
    public static void Decode(ReadOnlySpan<byte> record, ICellRecordVisitor visitor)
    {
        ArgumentNullException.ThrowIfNull(visitor);
        var r = new Reader(record);
        var kind = (CellRecordKind)r.U8();
        long seq = r.I64();
        long version = r.I64();
        visitor.Begin(kind, seq, version);
        switch (kind)
        {
            case CellRecordKind.Commit: DecodeCommit(ref r, version, visitor); break;
            case CellRecordKind.Release: visitor.Unbind(r.Task()); break;
            case CellRecordKind.NodeAdded:
            case CellRecordKind.NodeUpdated:
            case CellRecordKind.NodeStatusChanged:
            case CellRecordKind.NodeRemoved:
            {
                var id = new NodeId(r.I32());
                var status = (NodeStatus)r.U8();
                long nodeVersion = r.I64();
                int released = r.I32();
                for (int i = 0; i < released; i++) visitor.Unbind(r.Task());
                visitor.Node(id, r.Spec(), status, nodeVersion);
                break;
            }
            case CellRecordKind.Lease:
            {
                var id = new SchedulerId(r.I32());
                var token = new FencingToken(r.I64());
                long expiresUtcTicks = r.I64();
                bool released = r.U8() != 0;
                string name = r.String();
                visitor.Lease(id, name, token, new DateTimeOffset(expiresUtcTicks, TimeSpan.Zero), released);
                break;
            }
            case CellRecordKind.Quota:
            {
                var tenant = new TenantId(r.I32());
                bool has = r.U8() != 0;
                var limit = r.Resources();
                visitor.Quota(tenant, has ? limit : null);
                break;
            }
            case CellRecordKind.DomainLossConfirmed:
            case CellRecordKind.DomainLossWithdrawn:
            {
                string domain = r.String();
                string author = r.String();
                string reason = r.String();
                var at = new DateTimeOffset(r.I64(), TimeSpan.Zero);
                visitor.DomainLoss(domain, author, reason, at, withdrawn: kind == CellRecordKind.DomainLossWithdrawn);
                break;
            }
            case CellRecordKind.ObjectPut:
            {
                string key = r.String();
                long created = r.I64();
                int n = r.I32();
                visitor.ObjectPut(key, created, r.Bytes(n));
                break;
            }
            case CellRecordKind.ObjectDelete:
                visitor.ObjectDeleted(r.String());
                break;
            case CellRecordKind.ReservationReleased:
            {
                var task = r.Task();
                _ = r.U8(); // the reason: informational (audit), nothing to restore
                visitor.Unreserve(task);
                break;
            }
            case CellRecordKind.TenantGuarantee:
            {
                var tenant = new TenantId(r.I32());
                bool has = r.U8() != 0;
                var g = r.Resources();
                visitor.Guarantee(tenant, has ? g : null);
                break;
            }
            case CellRecordKind.AuthRecordPut:
            {
                string key = r.String();
                int n = r.I32();
                visitor.AuthRecordPut(key, r.Bytes(n));
                break;
            }
            case CellRecordKind.AuthRecordDelete:
                visitor.AuthRecordDeleted(r.String());
                break;
            case CellRecordKind.RecoveryBudget:
            {
                string region = r.String();
                bool has = r.U8() != 0;
                var capacity = r.Resources();
                int minPriority = r.I32();
                visitor.RecoveryBudget(region, has ? capacity : null, minPriority);
                break;
            }
            case CellRecordKind.FailoverHome:
            {
                long key = r.I64();
                byte shift = r.U8();
                string region = r.String();
                visitor.FailoverHome(key, shift, region.Length == 0 ? null : region);
                break;
            }
            case CellRecordKind.TenantCreated:
            {
                var tenant = new TenantId(r.I32());
                string name = r.String();
                bool has = r.U8() != 0;
                var limit = r.Resources();
                visitor.Tenant(tenant, name);
                visitor.Quota(tenant, has ? limit : null);
                break;
            }
            default: throw new FormatException($"unknown journal record kind {(byte)kind} at sequence {seq}");
        }
        if (!r.AtEnd) throw new FormatException($"journal record {seq} ({kind}) has {r.Remaining} trailing bytes");
    }

    private static void DecodeCommit(ref Reader r, long version, ICellRecordVisitor visitor)
    {
        byte flags = r.U8();
        if ((flags & 1) != 0)
        {
            // Bit 1: the key is scoped to the scheduler id that follows. Records written before keys were scoped have no
            // owner; they restore under LegacyScope, which no scheduler matches (a retry of one is simply not deduplicated).
            var scheduler = (flags & 2) != 0 ? new SchedulerId(r.I32()) : IdempotencyScope.Legacy;
            var key = new IdempotencyKey(r.U64(), r.U64());
            ulong hash = r.U64();
            var status = (TransactionStatus)r.U8();
            int applied = r.I32();
            int n = r.I32();
            var claims = r.Bytes(n);
            visitor.Idempotency(scheduler, key, hash, status, version, applied, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ClaimStatus>(claims));
        }
        int touched = r.I32();
        for (int i = 0; i < touched; i++) visitor.NodeVersion(new NodeId(r.I32()), r.I64());
        int bound = r.I32();
        for (int i = 0; i < bound; i++)
        {
            var task = r.Task();
            var node = new NodeId(r.I32());
            var res = r.Resources();
            var tenant = new TenantId(r.I32());
            int prio = r.I32();
            int victims = r.I32();
            for (int v = 0; v < victims; v++) visitor.Unbind(r.Task());
            var kind = (flags & 4) != 0 ? (ClaimKind)r.U8() : ClaimKind.Bind;
            switch (kind)
            {
                case ClaimKind.Bind:
                    visitor.Bind(new Allocation(task, node, res, tenant, prio, version));
                    break;
                case ClaimKind.BindReserved:
                    visitor.Unreserve(task);
                    visitor.Bind(new Allocation(task, node, res, tenant, prio, version));
                    break;
                case ClaimKind.Reserve:
                    visitor.Reserve(new CellReservation(task, node, res, tenant, prio, new DateTimeOffset(r.I64(), TimeSpan.Zero), version));
                    break;
                default: throw new FormatException($"unknown claim kind {(byte)kind} in commit record at version {version}");
            }
        }
    }

    /// <summary>Encodes a node spec in the record format (for stores that keep specs next to the journal).</summary>
    public static byte[] EncodeSpec(NodeSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var w = new RecordWriter();
        w.Spec(spec);
        return w.Written.ToArray();
    }

    /// <summary>Decodes a node spec written by <see cref="EncodeSpec"/>.</summary>
    public static NodeSpec DecodeSpec(ReadOnlySpan<byte> bytes)
    {
        var r = new Reader(bytes);
        return r.Spec();
    }

    private ref struct Reader
    {
        private readonly ReadOnlySpan<byte> _s;
        private int _pos;

        public Reader(ReadOnlySpan<byte> s)
        {
            _s = s;
            _pos = 0;
        }

        public readonly bool AtEnd => _pos == _s.Length;

        public readonly int Remaining => _s.Length - _pos;

        private ReadOnlySpan<byte> Take(int n)
        {
            if (n < 0 || _pos + n > _s.Length) throw new FormatException($"journal record truncated: need {n} bytes at offset {_pos} of {_s.Length}");
            var r = _s.Slice(_pos, n);
            _pos += n;
            return r;
        }

        public byte U8() => Take(1)[0];

        public int I32() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));

        public long I64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

        public ulong U64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));

        public ReadOnlySpan<byte> Bytes(int n) => Take(n);

        public TaskId Task() => new(I64(), I32());

        public ResourceVector Resources() => new(I64(), I64(), I64(), I64());

        public string String() => Encoding.UTF8.GetString(Take(I32()));

        public NodeSpec Spec()
        {
            string name = String();
            string fd = String();
            var cap = Resources();
            int nl = I32();
            Dictionary<string, string>? labels = nl > 0 ? new Dictionary<string, string>(nl, StringComparer.Ordinal) : null;
            for (int i = 0; i < nl; i++)
            {
                string k = String();
                labels![k] = String();
            }
            int nt = I32();
            string[]? taints = nt > 0 ? new string[nt] : null;
            for (int i = 0; i < nt; i++) taints![i] = String();
            return new NodeSpec(name, cap, fd, labels, taints);
        }
    }
}
