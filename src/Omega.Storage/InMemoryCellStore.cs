using Omega.Cells;

namespace Omega.Storage;

/// <summary>
/// The in-memory mode behind <see cref="ICellStore"/>: a plain cell with no journal, whose every result is "durable" at
/// once (nothing survives the process). For tests and simulation; it keeps the cell's in-memory speed.
/// </summary>
internal sealed class InMemoryCellStore : ICellStore
{
    public InMemoryCellStore(CellOptions? options)
    {
        Cell = new Cell(options);
        Metrics = new StorageMetrics(Cell.Name, options?.MeterFactory);
    }

    public Cell Cell { get; }

    public bool IsPersistent => false;

    public long DurableSequence => Cell.JournalSequence;

    public long DurableVersion => Cell.Version;

    public RecoveryReport Recovery { get; } = new();

    public StorageMetrics Metrics { get; }

    public ValueTask WaitForDurableAsync(long sequence, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask WaitForVersionAsync(long cellVersion, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask<CommitResult> CommitDurableAsync(Transaction transaction, CancellationToken cancellationToken = default)
        => ValueTask.FromResult(Cell.Commit(transaction).Detach());

    public ValueTask CheckpointAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public void Dispose()
    {
        Cell.Dispose();
        Metrics.Dispose();
    }
}
