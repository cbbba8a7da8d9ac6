using Omega.Storage;

namespace Omega.Storage.Tests;

/// <summary>Opening a FASTER store raises the pool's minimum so FASTER's blocking commit callback cannot starve timers.</summary>
public sealed class ThreadPoolFloorTests
{
    [Fact]
    public void Opening_a_durable_store_raises_the_minimum_worker_threads_above_the_core_count()
    {
        string dir = Path.Combine(Path.GetTempPath(), "omega-floor-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            using (CellStore.Open(new StorageOptions { DataDirectory = dir, CheckpointInterval = null }))
            {
                ThreadPool.GetMinThreads(out int workers, out _);
                Assert.True(workers >= ThreadPoolFloor.Base + ThreadPoolFloor.PerStore, $"min worker threads {workers}");
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
