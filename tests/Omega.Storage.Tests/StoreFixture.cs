using System.Text;
using Microsoft.Extensions.Time.Testing;
using Omega.Cells;

namespace Omega.Storage.Tests;

/// <summary>A temp data directory, options on a fake clock, and a dump of everything a cell holds for comparisons.</summary>
internal sealed class TempStore : IDisposable
{
    public TempStore()
    {
        Directory = Path.Combine(Path.GetTempPath(), "omega-storage-tests", Guid.NewGuid().ToString("N"));
        System.IO.Directory.CreateDirectory(Directory);
    }

    public string Directory { get; }

    public FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));

    public List<string> Warnings { get; } = new();

    public StorageOptions Options(Action<StorageOptions>? configure = null)
    {
        var o = new StorageOptions
        {
            DataDirectory = Directory,
            Cell = new CellOptions { Time = Time, IdempotencyRetention = 1000 },
            CheckpointInterval = null,
            // Small FASTER footprints: tests open many stores.
            JournalMemorySizeBits = 24,
            JournalPageSizeBits = 20,
            JournalSegmentSizeBits = 24,
            StoreIndexBuckets = 1 << 12,
            StoreMemorySizeBits = 22,
            StorePageSizeBits = 18,
            StoreSegmentSizeBits = 24,
            Warning = m => { lock (Warnings) Warnings.Add(m); },
        };
        configure?.Invoke(o);
        return o;
    }

    public ICellStore Open(Action<StorageOptions>? configure = null) => CellStore.Open(Options(configure));

    public void Dispose()
    {
        if (Environment.GetEnvironmentVariable("OMEGA_KEEP_TEST_DIRS") == "1") return;
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temp directory is harmless.
        }
    }
}

internal static class CellDump
{
    /// <summary>Everything observable about a cell through its public surface, as text (stable order).</summary>
    public static string Of(Cell cell)
    {
        var sb = new StringBuilder();
        sb.Append("version ").Append(cell.Version).Append(" seq ").Append(cell.JournalSequence).Append(" nodes ").Append(cell.NodeCount).AppendLine();
        var snap = cell.Snapshot();
        for (int i = 0; i < cell.NodeCount; i++)
        {
            var r = snap.TryGetNode(new NodeId(i), out var v);
            sb.Append("node ").Append(i).Append(' ').Append(r);
            if (r == SnapshotRead.Ok)
            {
                sb.Append(' ').Append(v.Spec.Name).Append(' ').Append(v.Spec.Capacity).Append(' ').Append(v.Spec.FailureDomain)
                  .Append(" labels=").Append(string.Join(",", v.Spec.Labels.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => p.Key + "=" + p.Value)))
                  .Append(" taints=").Append(string.Join(",", v.Spec.Taints))
                  .Append(" status=").Append(v.Status).Append(" v").Append(v.Version).Append(" alloc ").Append(v.Allocated).Append(" tasks ").Append(v.TaskCount);
            }
            sb.AppendLine();
        }
        foreach (var a in cell.GetAllocations().OrderBy(a => a.Task.Job.Value).ThenBy(a => a.Task.Index)) sb.Append(a).AppendLine();
        foreach (var r in cell.GetReservations().OrderBy(r => r.Task.Job.Value).ThenBy(r => r.Task.Index)) sb.Append("reserved ").Append(r).AppendLine();
        foreach (var ti in cell.GetTenants()) sb.Append("tenant ").Append(ti.Id).Append(" named ").Append(ti.Name).Append(" guaranteed ").Append(ti.Guaranteed?.ToString() ?? "none").AppendLine();
        for (int t = 0; t < 8; t++)
        {
            var (usage, quota) = cell.GetTenantUsage(new TenantId(t));
            sb.Append("tenant ").Append(t).Append(' ').Append(usage).Append(" quota ").Append(quota?.ToString() ?? "none").AppendLine();
        }
        foreach (var name in new[] { "a", "b", "c" }) sb.Append("token ").Append(name).Append(' ').Append(cell.GetCurrentToken(name)?.ToString() ?? "none").AppendLine();
        return sb.ToString();
    }
}
