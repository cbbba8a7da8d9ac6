namespace Omega.Cells;

// Security records (issue 11): credentials, their revocations and the audit log live in the cell's one journal, so they
// share its total order, its durable watermark and its restore path (journal replay and the FasterKV store of record),
// and a restart (later a failover) can never bring a revoked credential back. The cell does not interpret them: the
// server's credential store (Omega.Server) encodes and decodes the values. They do not bump the cell version: a
// credential is not cell state a scheduler syncs on, and a denial written to the audit log must not look like a change
// to the cell. Their acknowledgement uses the journal-sequence gate (docs/network-server.md, "Durable replies").
public sealed partial class Cell
{
    /// <summary>Longest security-record key accepted, in UTF-16 characters.</summary>
    public const int MaxAuthKeyLength = 256;

    /// <summary>Largest security-record value accepted, in bytes.</summary>
    public const int MaxAuthValueBytes = 64 * 1024;

    private readonly Dictionary<string, byte[]> _authRecords = new(StringComparer.Ordinal);

    /// <summary>
    /// Writes (creates or replaces) the security record <paramref name="key"/> and journals it. Returns false (nothing
    /// written) for an empty or too long key or a too large value. Acknowledge the write to anyone only once
    /// <see cref="JournalSequence"/>, read after this returns, is durable.
    /// </summary>
    public bool PutAuthRecord(string key, ReadOnlySpan<byte> value)
    {
        if (string.IsNullOrEmpty(key) || key.Length > MaxAuthKeyLength || value.Length > MaxAuthValueBytes) return false;
        var copy = value.ToArray();
        using (Serial())
        {
            _authRecords[key] = copy;
            if (_journal is not null)
            {
                var w = BeginRecord(CellRecordKind.AuthRecordPut, _vw.Published);
                w.String(key);
                w.I32(copy.Length);
                w.Bytes(copy);
                EndRecord(_vw.Published);
            }
            return true;
        }
    }

    /// <summary>Deletes the security record <paramref name="key"/> (journaled); false when there is none.</summary>
    public bool DeleteAuthRecord(string key)
    {
        if (string.IsNullOrEmpty(key)) return false;
        using (Serial())
        {
            if (!_authRecords.Remove(key)) return false;
            if (_journal is not null)
            {
                var w = BeginRecord(CellRecordKind.AuthRecordDelete, _vw.Published);
                w.String(key);
                EndRecord(_vw.Published);
            }
            return true;
        }
    }

    /// <summary>A copy of every security record held, in no particular order (read once at server start).</summary>
    public IReadOnlyList<KeyValuePair<string, byte[]>> GetAuthRecords()
    {
        using (Serial()) return [.. _authRecords];
    }

    /// <summary>The number of security records held.</summary>
    public int AuthRecordCount
    {
        get
        {
            using (Serial()) return _authRecords.Count;
        }
    }

    /// <summary>Recovery: installs the security records a restorer found (before the cell is shared).</summary>
    internal void RestoreAuthRecords(Dictionary<string, byte[]> records)
    {
        using (Serial())
        {
            foreach (var (k, v) in records) _authRecords[k] = v;
        }
    }
}
