namespace Omega.Cells;

/// <summary>
/// The durability seam of a <see cref="Cell"/>: receives a compact binary record of every applied mutation, in cell
/// version order, while the cell's commit lock is held.
/// </summary>
/// <remarks>
/// <para>The cell calls <see cref="Append"/> once per mutation (a transaction with any applied claim or an idempotency
/// key, a release, a node change, a lease grant/renewal/release, a quota change) after applying it and before releasing
/// the commit lock, so the journal sees records in exactly the order readers saw the versions.</para>
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
}
