using System.Diagnostics;
using Omega.Cells;
using Xunit.Abstractions;

namespace Omega.Storage.Tests;

/// <summary>
/// Overlapped group commits (issue 15): the group-commit thread issues the next FasterLog commit while earlier ones are
/// still flushing (<see cref="StorageOptions.GroupCommitMaxInflight"/>), and an acknowledgement still waits for its own
/// commit. The journal's device is wrapped so a test can hold writes back and release them in any order.
/// </summary>
public sealed class OverlappedCommitTests
{
    private readonly ITestOutputHelper _output;

    public OverlappedCommitTests(ITestOutputHelper output) => _output = output;

    private static Transaction Claim(SchedulerLease lease, NodeId node, long job)
        => new Transaction(lease).Add(new Claim(new TaskId(job, 0), node, new ResourceVector(1, 1), 0));

    private static async Task WaitUntil(Func<bool> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), "timed out waiting until " + what);
            await Task.Delay(1);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_second_commit_is_issued_while_the_first_is_held_and_neither_is_acknowledged_before_the_disk_write(bool blockingWait)
    {
        using var tmp = new TempStore();
        var device = new HeldWritesDevice();
        using var store = tmp.Open(o =>
        {
            o.GroupCommitBlockingWait = blockingWait;
            o.JournalDeviceWrapper = device.Wrap;
            o.GroupCommitMaxInflight = 2;
            o.GroupCommitWindow = TimeSpan.FromMilliseconds(1);
        });
        try
        {
            var cell = store.Cell;
            var node = cell.AddNode(new NodeSpec("n", new ResourceVector(1_000_000, 1L << 40)));
            var lease = cell.AcquireLease("a", TimeSpan.FromMinutes(5)).Lease;
            await store.WaitForDurableAsync(cell.JournalSequence);
            await WaitUntil(() => store.Metrics.CommitsInFlightNow == 0, "the setup's commits completed");
            long durableBefore = store.DurableSequence;

            device.Hold = true;
            var a = store.CommitDurableAsync(Claim(lease, node, 1)).AsTask();
            await WaitUntil(() => store.Metrics.CommitsInFlightNow == 1 && device.HeldCount >= 1, "the first group's commit was issued and its write held");
            var b = store.CommitDurableAsync(Claim(lease, node, 2)).AsTask();
            // With one commit in flight (the old group commit) the second group would wait here for the first commit.
            await WaitUntil(() => store.Metrics.CommitsInFlightNow == 2, "the second group's commit was issued while the first was still in flight");

            await Task.Delay(30);
            Assert.False(a.IsCompleted, "the first claim was acknowledged while its write was held");
            Assert.False(b.IsCompleted, "the second claim was acknowledged while the first write was held");
            Assert.Equal(durableBefore, store.DurableSequence);

            device.Hold = false;
            device.ReleaseNewestFirst();
            var ra = await a.WaitAsync(TimeSpan.FromSeconds(10));
            var rb = await b.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(TransactionStatus.Committed, ra.Status);
            Assert.Equal(TransactionStatus.Committed, rb.Status);
            Assert.True(store.DurableVersion >= rb.CellVersion);
            Assert.True(store.Metrics.PeakCommitsInFlight >= 2);
        }
        finally
        {
            device.Hold = false;
            device.Release();
        }
    }

    [Fact]
    public async Task One_commit_in_flight_is_still_available()
    {
        using var tmp = new TempStore();
        using var store = tmp.Open(o => o.GroupCommitMaxInflight = 1);
        var cell = store.Cell;
        var node = cell.AddNode(new NodeSpec("n", new ResourceVector(1_000_000, 1L << 40)));
        var lease = cell.AcquireLease("a", TimeSpan.FromMinutes(5)).Lease;
        var pending = Enumerable.Range(0, 200).Select(i => store.CommitDurableAsync(Claim(lease, node, i)).AsTask()).ToArray();
        await Task.WhenAll(pending).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, store.Metrics.PeakCommitsInFlight);
    }

    [Fact]
    public async Task Acknowledged_claims_survive_crash_images_taken_while_writes_are_held_and_completed_out_of_order()
    {
        int seed = Environment.GetEnvironmentVariable("OMEGA_TEST_SEED") is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        _output.WriteLine($"seed {seed} (OMEGA_TEST_SEED={seed} to replay)");
        var result = await RunCrashImages(seed, Buggify.None);
        _output.WriteLine(result.ToString());
        Assert.True(result.Images >= 3 && result.Checked > 0 && result.HeldWrites > 0, result.ToString());
        Assert.Equal(0, result.WatermarkStepsBack);
        Assert.Equal(0, result.AcksAheadOfWatermark);
        Assert.Equal(0, result.Lost);
    }

    [Fact]
    public async Task The_crash_images_catch_acknowledgements_made_when_a_commit_is_issued()
    {
        // The same check against a journal that counts a group durable when its commit is issued: images taken while the
        // writes are held must miss acknowledged claims.
        int seed = Random.Shared.Next();
        _output.WriteLine($"seed {seed}");
        var result = await RunCrashImages(seed, Buggify.AckOnCommitIssue);
        _output.WriteLine(result.ToString());
        Assert.True(result.Lost > 0, "acknowledgements before durability were not detected: " + result);
    }

    private sealed record CrashImageResult(int Images, long Checked, long Lost, long HeldWrites, long WatermarkStepsBack, long AcksAheadOfWatermark, long PeakInFlight, int MaxInflight, bool BlockingWait);

    private async Task<CrashImageResult> RunCrashImages(int seed, Buggify buggify)
    {
        var rng = new Random(seed);
        int maxInflight = 1 + rng.Next(3);
        var window = TimeSpan.FromMicroseconds(rng.Next(200, 1500));
        bool blocking = rng.Next(2) == 0;
        using var tmp = new TempStore();
        var device = new HeldWritesDevice();
        var images = new List<(TempStore Dir, HashSet<long> Acked)>();
        long stepsBack = 0, ahead = 0, peak;
        int heldWrites;
        try
        {
            using (var store = tmp.Open(o =>
            {
                o.JournalDeviceWrapper = device.Wrap;
                // Small pages: a group spans pages, so FasterLog has several page writes out at once and the held ones can
                // be completed out of order.
                o.JournalPageSizeBits = 14;
                o.GroupCommitMaxInflight = maxInflight;
                o.GroupCommitWindow = window;
                o.GroupCommitBlockingWait = blocking;
                o.Cell.Buggify = buggify;
            }))
            {
                var cell = store.Cell;
                var nodes = Enumerable.Range(0, 8).Select(i => cell.AddNode(new NodeSpec($"n{i}", new ResourceVector(1L << 40, 1L << 50)))).ToArray();
                var lease = cell.AcquireLease("a", TimeSpan.FromMinutes(5)).Lease;
                await store.WaitForDurableAsync(cell.JournalSequence);
                var acked = new HashSet<long>();
                using var stop = new CancellationTokenSource();
                var workers = Enumerable.Range(0, 8).Select(w => Task.Run(async () =>
                {
                    var wrng = new Random(seed + w);
                    for (long i = 0; !stop.IsCancellationRequested; i++)
                    {
                        long job = w * 100_000_000L + i;
                        var tx = new Transaction(lease);
                        // Several claims per transaction now and then, so groups are big enough to cross pages.
                        int n = wrng.Next(4) == 0 ? 20 : 1;
                        for (int k = 0; k < n; k++) tx.Add(new Claim(new TaskId(job, k), nodes[wrng.Next(nodes.Length)], new ResourceVector(1, 1), 0));
                        var r = await store.CommitDurableAsync(tx);
                        if (r.Status != TransactionStatus.Committed) continue;
                        if (store.DurableVersion < r.CellVersion) Interlocked.Increment(ref ahead);
                        lock (acked) acked.Add(job);
                    }
                })).ToArray();
                var sampler = Task.Run(() =>
                {
                    long last = 0;
                    while (!stop.IsCancellationRequested)
                    {
                        long now = store.DurableSequence;
                        if (now < last) Interlocked.Increment(ref stepsBack);
                        last = now;
                        Thread.Yield();
                    }
                });

                for (int image = 0; image < 3; image++)
                {
                    // Some time with writes held and released in random order (a later page write reaching the disk first).
                    var phase = Stopwatch.StartNew();
                    while (phase.ElapsedMilliseconds < 150)
                    {
                        device.Hold = true;
                        await Task.Delay(rng.Next(1, 8));
                        device.Release(rng, rng.Next(0, 3));
                        await Task.Delay(rng.Next(1, 4));
                        device.Hold = false;
                        device.Release(rng);
                        await Task.Delay(rng.Next(0, 3));
                    }
                    // The crash image: hold every write, let the writes already on the disk and their commit metadata settle,
                    // note what was acknowledged, then copy the journal (what a crash would leave on the disk).
                    device.Hold = true;
                    await Task.Delay(rng.Next(5, 30));
                    for (int quiet = 0; quiet < 2;)
                    {
                        await Task.Delay(40);
                        quiet = device.Outstanding == 0 ? quiet + 1 : 0;
                    }
                    HashSet<long> ackedNow;
                    lock (acked) ackedNow = new HashSet<long>(acked);
                    var copy = new TempStore();
                    CopyJournal(tmp.Directory, copy.Directory);
                    images.Add((copy, ackedNow));
                    device.Hold = false;
                    device.Release(rng);
                }
                stop.Cancel();
                device.Hold = false;
                device.Release();
                await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(20));
                await sampler;
                peak = store.Metrics.PeakCommitsInFlight;
                heldWrites = device.EverHeld;
            }

            long checkedCount = 0, lost = 0;
            foreach (var (dir, ackedAtImage) in images)
            {
                using var recovered = dir.Open(o => o.JournalPageSizeBits = 14);
                var present = new HashSet<long>(recovered.Cell.GetAllocations().Select(a => a.Task.Job.Value));
                foreach (long job in ackedAtImage)
                {
                    checkedCount++;
                    if (!present.Contains(job)) lost++;
                }
            }
            return new CrashImageResult(images.Count, checkedCount, lost, heldWrites, stepsBack, ahead, peak, maxInflight, blocking);
        }
        finally
        {
            device.Hold = false;
            device.Release();
            foreach (var (dir, _) in images) dir.Dispose();
        }
    }

    // The journal only: the store was never checkpointed, so recovery replays the whole journal. Commit metadata first:
    // whatever it names was on the disk before it was written, so the data copied after it has it too.
    private static void CopyJournal(string from, string to)
    {
        string src = Path.Combine(from, "journal");
        string dst = Path.Combine(to, "journal");
        var files = Directory.GetFiles(src, "*", SearchOption.AllDirectories)
            .OrderBy(f => f.Contains(Path.DirectorySeparatorChar + "commits" + Path.DirectorySeparatorChar, StringComparison.Ordinal) ? 0 : 1)
            .ToArray();
        foreach (var f in files)
        {
            string target = Path.Combine(dst, Path.GetRelativePath(src, f));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            try
            {
                File.Copy(f, target, overwrite: true);
            }
            catch (FileNotFoundException)
            {
                // An outdated commit file removed while copying: a later one was written before it went.
            }
        }
    }
}
