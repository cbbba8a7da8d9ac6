using System.Globalization;
using Omega.Cells;
using Omega.Storage;

namespace Omega.CrashHost;

/// <summary>
/// The process the crash driver kills: opens the durable store, runs concurrent keyed commits and releases, and appends
/// every acknowledged (durable) result to the ack file before it counts it. Prints "ready", "acked N" every 20
/// acknowledgements, and "cp+"/"cp-" around each checkpoint, so the driver can kill at chosen moments.
/// </summary>
internal static class HostRun
{
    public const int Nodes = 40;
    public static readonly ResourceVector Capacity = new(32_000, 128L << 30);

    public static StorageOptions Options(string dataDir) => new()
    {
        // OMEGA_CRASH_COMMIT_PATH=Striped (inherited from `drive`): the cell's commit path (issue 14: the crash harness on
        // the node-striped path); unset or unknown: the cell's default.
        Cell = new CellOptions { CommitPath = CommitPathFromEnvironment() ?? new CellOptions().CommitPath },
        DataDirectory = dataDir,
        CheckpointInterval = null,
        JournalMemorySizeBits = 24,
        JournalPageSizeBits = 20,
        JournalSegmentSizeBits = 22,
        StoreIndexBuckets = 1 << 14,
        StoreMemorySizeBits = 24,
        StorePageSizeBits = 20,
        StoreSegmentSizeBits = 24,
    };

    public static CommitPath? CommitPathFromEnvironment() =>
        Enum.TryParse<CommitPath>(Environment.GetEnvironmentVariable("OMEGA_CRASH_COMMIT_PATH"), ignoreCase: true, out var p) ? p : null;

    public static async Task<int> RunAsync(string dataDir, string ackFile, int cycle, int seed, int workers, int checkpointMs, bool ackEarly = false)
    {
        var options = Options(dataDir);
        // The deliberately broken mode (for the test that shows the harness catches it): acknowledge the in-memory result
        // before it is durable, with a long group-commit window so the kill lands inside it.
        if (ackEarly) options.GroupCommitWindow = TimeSpan.FromMilliseconds(200);
        using var store = CellStore.Open(options);
        var cell = store.Cell;
        if (cell.NodeCount == 0)
        {
            for (int i = 0; i < Nodes; i++) cell.AddNode(new NodeSpec($"node-{i}", Capacity, $"rack-{i % 4}"));
        }
        // A fresh identity per run: the dead host's lease may still be unexpired. Its token is larger than any before.
        var lease = cell.AcquireLease(string.Create(CultureInfo.InvariantCulture, $"crash-host-{cycle}"), TimeSpan.FromMinutes(10)).Lease;
        await store.WaitForDurableAsync(cell.JournalSequence);
        using var acks = new StreamWriter(new FileStream(ackFile, FileMode.Append, FileAccess.Write, FileShare.Read), System.Text.Encoding.ASCII);
        var ackLock = new object();
        long acked = 0;
        Console.Out.WriteLine("ready");
        Console.Out.Flush();

        var tasks = new List<Task>();
        for (int w = 0; w < workers; w++)
        {
            int me = w;
            tasks.Add(Task.Run(async () =>
            {
                var rng = new Random(seed * 31 + me);
                var mine = new List<(TaskId Task, long Generation)>();
                long counter = 0;
                var tx = new Transaction(lease, CommitMode.Incremental, ConflictDetection.Fine);
                while (true)
                {
                    if (mine.Count > 0 && rng.Next(100) < 40)
                    {
                        int pick = rng.Next(mine.Count);
                        var (task, gen) = mine[pick];
                        mine[pick] = mine[^1];
                        mine.RemoveAt(mine.Count - 1);
                        lock (ackLock)
                        {
                            acks.Write(string.Create(CultureInfo.InvariantCulture, $"X {task.Job.Value} {task.Index}\n"));
                            acks.Flush();
                        }
                        cell.Release(task, gen);
                        if (!ackEarly) await store.WaitForDurableAsync(cell.JournalSequence);
                        continue;
                    }
                    var mode = rng.Next(4) == 0 ? CommitMode.AllOrNothing : CommitMode.Incremental;
                    var key = new IdempotencyKey((ulong)rng.NextInt64() | 1, (ulong)rng.NextInt64());
                    tx.Reset(lease, mode, ConflictDetection.Fine, key);
                    int n = 1 + rng.Next(4);
                    for (int i = 0; i < n; i++)
                    {
                        long job = ((long)cycle << 32) | ((long)me << 24) | counter++;
                        tx.Add(new Claim(new TaskId(job, 0), new NodeId(rng.Next(Nodes)), new ResourceVector(rng.Next(100, 4000), rng.Next(1, 16) * (1L << 30)), 0));
                    }
                    CommitResult result;
                    if (ackEarly)
                    {
                        result = cell.Commit(tx).Detach();
                        await Task.Yield();
                    }
                    else result = await store.CommitDurableAsync(tx);
                    var claims = new List<AckedClaim>(n);
                    var cs = tx.Claims;
                    for (int i = 0; i < n; i++)
                    {
                        claims.Add(new AckedClaim(cs[i].Task.Job.Value, cs[i].Task.Index, cs[i].Node.Value, cs[i].Resources.CpuMillis, cs[i].Resources.MemoryBytes, (int)result[i]));
                        if (result[i] == ClaimStatus.Applied) mine.Add((cs[i].Task, result.Generation));
                    }
                    string line = AckLog.FormatTransaction(new AckedTransaction(key.High, key.Low, (int)result.Status, result.CellVersion, claims));
                    long a;
                    lock (ackLock)
                    {
                        acks.Write(line);
                        acks.Write('\n');
                        acks.Flush();
                        a = ++acked;
                    }
                    if (a % 20 == 0)
                    {
                        lock (Console.Out) Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"acked {a}"));
                    }
                }
            }));
        }
        tasks.Add(Task.Run(async () =>
        {
            while (true)
            {
                await Task.Delay(checkpointMs);
                lock (Console.Out) Console.Out.WriteLine("cp+");
                await store.CheckpointAsync();
                lock (Console.Out) Console.Out.WriteLine("cp-");
            }
        }));
        await Task.WhenAny(tasks);
        // Only reached if a worker failed: report it and exit non-zero.
        foreach (var t in tasks) if (t.IsFaulted) Console.Error.WriteLine(t.Exception);
        return 3;
    }
}
