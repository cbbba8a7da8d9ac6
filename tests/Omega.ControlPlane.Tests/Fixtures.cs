using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.Storage;

namespace Omega.ControlPlane.Tests;

internal static class Objects
{
    public static Workload Workload(string name, int replicas = 3, string tenant = "t1", WorkloadType type = WorkloadType.Service)
    {
        var w = new Workload();
        w.Metadata.Name = name;
        w.Metadata.Tenant = tenant;
        w.Spec.Type = type;
        w.Spec.Replicas = replicas;
        w.Spec.Priority = 100;
        w.Spec.Resources = new ResourceRequest { CpuMillis = 1000, MemoryBytes = 1L << 30 };
        return w;
    }
}

/// <summary>A temp data directory for a FASTER-durable cell, with small footprints.</summary>
internal sealed class TempDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "omega-cp-tests", Guid.NewGuid().ToString("N"));

    public FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));

    public ICellStore Open() => CellStore.Open(new StorageOptions
    {
        DataDirectory = Path,
        Cell = new CellOptions { Time = Time },
        CheckpointInterval = null,
        CheckpointOnDispose = false,
        JournalMemorySizeBits = 24,
        JournalPageSizeBits = 20,
        JournalSegmentSizeBits = 24,
        StoreIndexBuckets = 1 << 12,
        StoreMemorySizeBits = 22,
        StorePageSizeBits = 18,
        StoreSegmentSizeBits = 24,
        Warning = _ => { },
    });

    public static IDurabilityWaiter Durability(ICellStore store) => DurabilityWaiter.From((v, ct) => store.WaitForVersionAsync(v, ct));

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
