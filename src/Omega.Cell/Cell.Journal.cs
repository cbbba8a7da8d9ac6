using System.Runtime.CompilerServices;

namespace Omega.Cells;

// The durability seam (issue 3): every applied mutation is encoded into a compact record under the commit lock and
// handed to the journal, which copies it into a buffer; group commit in Omega.Storage makes it durable. A transaction's
// claims, the bulk of a Commit record, are encoded before the lock (issue 15, PreEncodeClaims) and only copied under it.
public sealed partial class Cell
{
    private ICellJournal? _journal;
    private long _journalSeq;
    private RecordWriter? _records;
    // Set while several mutations are applied in one critical section (CommitBatch): their records collect here and go
    // to the journal as one batch at the end; JournalSequence is published only then, so no caller waits for a
    // sequence the journal has not been given yet.
    private CellBatchWriter? _batch;
    private bool _batching;

    /// <summary>Opens an empty cell whose every mutation is appended to <paramref name="journal"/> (see <see cref="ICellJournal"/>).</summary>
    public Cell(CellOptions? options, ICellJournal journal) : this(options)
    {
        AttachJournal(journal);
    }

    /// <summary>
    /// The sequence number of the last journal record appended (0 when none). A result obtained from this cell is covered
    /// by every record up to the value read after it returns: once that record is durable, the result is durable.
    /// </summary>
    public long JournalSequence => Volatile.Read(ref _journalSeq);

    /// <summary>True when a journal is attached.</summary>
    public bool IsJournaled => Volatile.Read(ref _journal) is not null;

    /// <summary>
    /// Attaches a journal to a cell that has none (a recovered cell, before it is shared). Every later mutation is
    /// appended to it, numbered from <see cref="JournalSequence"/> + 1.
    /// </summary>
    public void AttachJournal(ICellJournal journal)
    {
        ArgumentNullException.ThrowIfNull(journal);
        using (Serial())
        {
            if (_journal is not null) throw new InvalidOperationException("the cell already has a journal");
            _records = new RecordWriter();
            _journal = journal;
        }
    }

    // ---------------------------------------------------------------- encoding (caller holds _lock, _journal != null)

    private long NextJournalSequence => _journalSeq + (_batching ? _batch!.Count : 0) + 1;

    private RecordWriter BeginRecord(CellRecordKind kind, long cellVersion)
    {
        var w = _records!;
        w.Start(kind, NextJournalSequence, cellVersion);
        return w;
    }

    private void EndRecord(long cellVersion)
    {
        if (_batching)
        {
            _batch!.Add(_records!.Written);
            return;
        }
        // A batch of one: the bare record, exactly as before batches existed (CellBatchWriter.AppendTo does the same).
        long seq = _journalSeq + 1;
        _journal!.Append(seq, cellVersion, _records!.Written);
        Volatile.Write(ref _journalSeq, seq);
    }

    // Caller holds _lock.
    private void BeginJournalBatch()
    {
        if (_journal is null) return;
        _batch ??= new CellBatchWriter();
        _batch.Reset();
        _batching = true;
    }

    // Caller holds _lock. One journal append for the whole batch (a bare record when it holds one).
    private void EndJournalBatch()
    {
        if (!_batching) return;
        _batching = false;
        var b = _batch!;
        if (b.Count == 0) return;
        long last = b.FirstSequence + b.Count - 1;
        b.AppendTo(_journal!);
        b.Reset();
        Volatile.Write(ref _journalSeq, last);
    }

    // ---------------------------------------------------------------- encoding before the commit lock

    // Records whose claims section was copied from the pre-encoded bytes, and Commit records with applied claims that
    // were encoded under the lock (partial, all-or-nothing rollback never journals claims; reservation kinds; the option
    // off). Written under the lock.
    private long _journalPreEncoded, _journalEncodedUnderLock;

    /// <summary>
    /// Commit records with applied claims written since the cell was created: <c>PreEncoded</c> copied their claims section
    /// from bytes encoded before the commit lock (<see cref="CellOptions.EncodeJournalOutsideLock"/>), <c>UnderLock</c>
    /// encoded it under the lock (some claim failed, a reservation kind, or the option off). Diagnostics.
    /// </summary>
    public (long PreEncoded, long UnderLock) JournalEncodeStats
    {
        get { using (Serial()) return (_journalPreEncoded, _journalEncodedUnderLock); }
    }

    // Encodes the claims section of tx's Commit record as it will be if every claim applies, on the committing thread
    // before the commit lock (docs/storage.md, "Encoding outside the commit lock"). Under the lock, JournalCommit copies
    // these bytes only when every claim did apply and none needs its kind recorded; otherwise they are unused and the
    // record is encoded there from the outcomes. So a claim that failed validation is never journaled from here: its
    // bytes are only ever copied together with all the others, and only when all applied. Always re-encoded on each
    // Commit (never trusted from an earlier call): the victims arrays belong to the caller and may have changed.
    [MethodImpl(MethodImplOptions.NoInlining)] // out of line so a profile attributes the encoding (issue 15's shares)
    private void PreEncodeClaims(Transaction tx)
    {
        ReadOnlySpan<Claim> claims = tx.Claims;
        tx.JournalClaimsLength = -1;
        if (claims.Length == 0 || claims.Length > _options.MaxClaimsPerTransaction) return;
        int size = 0;
        for (int i = 0; i < claims.Length; i++) size += RecordWriter.ClaimSize(in claims[i]);
        var buf = tx.JournalClaims;
        if (buf is null || buf.Length < size) tx.JournalClaims = buf = new byte[Math.Max(size, (buf?.Length ?? 0) * 2)];
        int at = 0;
        for (int i = 0; i < claims.Length; i++) at += RecordWriter.WriteClaim(buf.AsSpan(at), in claims[i]);
        tx.JournalClaimsLength = at;
    }

    [MethodImpl(MethodImplOptions.NoInlining)] // out of line so a profile attributes the encoding (issue 15's shares)
    private void JournalCommit(Transaction tx, ReadOnlySpan<ClaimStatus> outcomes, TransactionStatus status, long resultVersion, int applied, ulong hash)
    {
        var w = BeginRecord(CellRecordKind.Commit, resultVersion);
        bool keyed = !tx.Key.IsNone;
        bool kinds = _txTouchesReservations && applied > 0;
        // bit 0 keyed, bit 1 scoped to the scheduler id that follows, bit 2 each applied claim carries its kind
        w.U8((byte)((keyed ? 3 : 0) | (kinds ? 4 : 0)));
        if (keyed)
        {
            w.I32(tx.Scheduler.Value);
            w.U64(tx.Key.High);
            w.U64(tx.Key.Low);
            w.U64(hash);
            w.U8((byte)status);
            w.I32(applied);
            w.I32(outcomes.Length);
            for (int i = 0; i < outcomes.Length; i++) w.U8((byte)outcomes[i]);
        }
        if (applied == 0)
        {
            w.I32(0);
            w.I32(0);
        }
        else
        {
            w.I32(_touchedCount);
            for (int t = 0; t < _touchedCount; t++)
            {
                int idx = _touched[t];
                w.I32(idx);
                w.I64(_live[idx].Version);
            }
            w.I32(applied);
            ReadOnlySpan<Claim> claims = tx.Claims;
            int pre = tx.JournalClaimsLength;
            if (pre >= 0 && applied == claims.Length && !kinds && _preEncode)
            {
                // Every claim applied and none carries a kind: the claims section is exactly what PreEncodeClaims wrote
                // before the lock, so it is one copy here.
                w.Bytes(tx.JournalClaims.AsSpan(0, pre));
                tx.JournalClaimsLength = -1;
                _journalPreEncoded++;
                EndRecord(resultVersion);
                return;
            }
            _journalEncodedUnderLock++;
            for (int i = 0; i < claims.Length; i++)
            {
                if (outcomes[i] != ClaimStatus.Applied) continue;
                ref readonly Claim c = ref claims[i];
                w.Claim(in c);
                if (kinds)
                {
                    w.U8((byte)c.Kind);
                    // A reserve's expiry as wall-clock UTC ticks (like a lease: the monotonic clock does not survive a
                    // restart). 0 when a later claim of the same transaction already consumed it.
                    if (c.Kind == ClaimKind.Reserve)
                        w.I64(_reservations.TryGetValue(c.Task, out var r) && r.Hold.Generation == resultVersion ? ToWallClock(r.ExpiresAtTimestamp).UtcTicks : 0);
                }
            }
        }
        EndRecord(resultVersion);
    }

    private void JournalRelease(TaskId task)
    {
        if (_journal is null) return;
        // SequencedVersion: on the striped path the release's version is assigned but not yet published.
        long v = SequencedVersion;
        var w = BeginRecord(CellRecordKind.Release, v);
        w.Task(task);
        EndRecord(v);
    }

    private void JournalNode(CellRecordKind kind, int index, IReadOnlyList<Allocation>? released)
    {
        if (_journal is null) return;
        ref NodeLive live = ref _live[index];
        var w = BeginRecord(kind, _vw.Published);
        w.I32(index);
        w.U8((byte)live.Status);
        w.I64(live.Version);
        int n = released?.Count ?? 0;
        w.I32(n);
        for (int i = 0; i < n; i++) w.Task(released![i].Task);
        w.Spec(live.Spec!);
        EndRecord(_vw.Published);
    }

    private void JournalLease(SchedulerId id)
    {
        if (_journal is null) return;
        ref LeaseState s = ref _leases[id.Value];
        var w = BeginRecord(CellRecordKind.Lease, _vw.Published);
        w.I32(id.Value);
        w.I64(s.Token.Value);
        w.I64(ToWallClock(s.ExpiresAtTimestamp).UtcTicks);
        w.U8(s.Released ? (byte)1 : (byte)0);
        w.String(s.Name);
        EndRecord(_vw.Published);
    }

    private void JournalQuota(int tenant)
    {
        if (_journal is null) return;
        var w = BeginRecord(CellRecordKind.Quota, _vw.Published);
        w.I32(tenant);
        var q = _tenantQuota[tenant];
        w.U8(q.HasValue ? (byte)1 : (byte)0);
        w.Resources(q ?? default);
        EndRecord(_vw.Published);
    }
}
