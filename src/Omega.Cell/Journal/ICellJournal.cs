namespace Omega.Cells;

/// <summary>
/// The durability seam of a <see cref="Cell"/>: receives a compact binary record of every applied mutation, in cell
/// version order, while the cell's commit lock is held.
/// </summary>
/// <remarks>
/// <para>The cell calls <see cref="Append"/> once per mutation (a transaction with any applied claim or an idempotency
/// key, a release, a node change, a lease grant/renewal/release, a quota change) after applying it and before releasing
/// the commit lock, so the journal sees records in exactly the order readers saw the versions. Mutations applied in one
/// critical section (<see cref="Cell.CommitBatch"/>) arrive instead as one <see cref="AppendBatch"/> of their records.</para>
/// <para>An implementation must be cheap: it runs on the per-placement path under the commit lock (design.md §10: no
/// allocation, no system call, no storage operation). Copy the bytes into a buffer and make them durable later (group
/// commit). It must not call back into the cell. The record span is only valid during the call.</para>
/// <para>Records are decoded with <see cref="CellRecord.Decode"/>; their format is documented in docs/storage.md.</para>
/// </remarks>
public interface ICellJournal
{
    /// <summary>Appends one record. Called under the cell's commit lock.</summary>
    /// <param name="sequence">The record's journal sequence number: 1, 2, 3, ... without gaps.</param>
    /// <param name="cellVersion">The cell version after the mutation (unchanged for mutations that do not bump it).</param>
    /// <param name="record">The encoded record (see <see cref="CellRecord"/>).</param>
    void Append(long sequence, long cellVersion, ReadOnlySpan<byte> record);

    /// <summary>
    /// Appends a batch of at least two records as one frame (<see cref="CellBatch"/>), called under the cell's commit
    /// lock when the cell applied several mutations in one critical section (<see cref="Cell.CommitBatch"/>, later the
    /// commit combiner). The records' sequences run from <paramref name="firstSequence"/> without gaps. A batch of one
    /// record is never framed: it arrives through <see cref="Append"/>.
    /// </summary>
    /// <remarks>
    /// The default implementation hands each record to <see cref="Append"/> in order, which is correct for journals
    /// that do not care about batch boundaries (a recording test journal). A durable journal should store the frame as
    /// one element, so that a reader applies all of the batch or none of it (docs/storage.md, "Batch frames").
    /// </remarks>
    /// <param name="firstSequence">The first record's journal sequence.</param>
    /// <param name="count">The number of records (at least 2).</param>
    /// <param name="lastCellVersion">The cell version after the last record.</param>
    /// <param name="frame">The encoded frame; valid only during the call.</param>
    void AppendBatch(long firstSequence, int count, long lastCellVersion, ReadOnlySpan<byte> frame)
    {
        foreach (var record in CellBatch.Records(frame))
        {
            var (_, seq, version) = CellRecord.ReadHeader(record);
            Append(seq, version, record);
        }
    }
}
