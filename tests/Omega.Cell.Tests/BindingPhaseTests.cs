using Omega.Cells;
using Xunit.Abstractions;

namespace Omega.Cells.Tests;

/// <summary>
/// Issue 15: an agent's Running/Ready report is validated and recorded without the commit lock (a striped phase table
/// beside the node's seqlocked list). These prove the race it opens is closed: a report that records just as the
/// committer releases the binding never leaves a phase behind for a dead binding, and every live binding's phase is
/// of its own generation.
/// </summary>
public sealed class BindingPhaseTests(ITestOutputHelper output)
{
    private static readonly ResourceVector Small = new(1, 1);

    [Fact]
    public void Reports_racing_releases_leave_no_phase_for_a_dead_binding()
    {
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        using var cell = new Cell(TestCommitPath.Apply(new CellOptions()));
        var node = cell.AddNode(new NodeSpec("n0", new ResourceVector(1_000_000, 1L << 40)));
        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        // A small window of live tasks, each bound once and released once: a phase left behind by a report that raced
        // its release would stay for good (nothing would release that task again), so any leak shows at the end.
        const int Window = 4;
        var ring = new long[Window]; // task index + 1 of the live task in each slot; 0 = empty
        int next = 0;
        for (int i = 0; i < Window; i++)
        {
            Assert.True(cell.Commit(new Transaction(lease).Add(new Claim(new TaskId(1, next), node, Small, 0))).IsCommitted);
            Volatile.Write(ref ring[i], ++next);
        }
        using var stop = new CancellationTokenSource();
        long reports = 0, ok = 0;
        // Reporters on their own threads (not the pool) report Started/Ready for the tasks the committer is releasing.
        var reporters = new Thread[2];
        for (int t = 0; t < reporters.Length; t++)
        {
            int rs = seed + 1 + t;
            reporters[t] = new Thread(() =>
            {
                var rng = new Random(rs);
                while (!stop.IsCancellationRequested)
                {
                    long k = Volatile.Read(ref ring[rng.Next(Window)]);
                    if (k == 0) continue;
                    var task = new TaskId(1, (int)(k - 1));
                    if (!cell.TryGetAllocationOnNode(node, task, out var a)) continue;
                    var st = cell.ReportBindingPhase(task, node, a.Generation, rng.Next(2) == 0 ? BindingPhase.Started : BindingPhase.Ready);
                    Interlocked.Increment(ref reports);
                    if (st == BindingPhaseStatus.Ok) Interlocked.Increment(ref ok);
                }
            }) { IsBackground = true, Name = $"reporter-{t}" };
        }
        foreach (var r in reporters) r.Start();
        while (Interlocked.Read(ref reports) == 0) Thread.Yield();

        var crng = new Random(seed);
        for (int step = 0; step < 30_000; step++)
        {
            int slot = crng.Next(Window);
            long k = ring[slot];
            Assert.Equal(ReleaseStatus.Released, cell.Release(new TaskId(1, (int)(k - 1))));
            Assert.True(cell.Commit(new Transaction(lease).Add(new Claim(new TaskId(1, next), node, Small, 0))).IsCommitted);
            Volatile.Write(ref ring[slot], ++next);
        }
        stop.Cancel();
        foreach (var r in reporters) Assert.True(r.Join(TimeSpan.FromSeconds(60)));
        output.WriteLine($"{reports:N0} reports, {ok:N0} recorded, {next:N0} tasks bound");
        Assert.True(ok > 0, $"seed {seed}: no report was recorded");

        // Every phase left belongs to a live binding at its generation.
        int withPhase = 0;
        foreach (var k in ring)
        {
            var task = new TaskId(1, (int)(k - 1));
            Assert.True(cell.TryGetAllocation(task, out var a));
            if (cell.GetBindingLifecycle(task, a.Generation).Phase != BindingPhase.Bound) withPhase++;
        }
        Assert.True(cell.ReportedBindingPhases == withPhase,
            $"seed {seed}: {cell.ReportedBindingPhases} phases recorded, but only {withPhase} of the {Window} live bindings have one (phases leaked for released bindings)");
        foreach (var k in ring) Assert.Equal(ReleaseStatus.Released, cell.Release(new TaskId(1, (int)(k - 1))));
        Assert.Equal(0, cell.ReportedBindingPhases);
    }

    [Fact]
    public async Task A_report_for_a_live_binding_is_recorded_while_another_thread_holds_the_commit_lock()
    {
        using var cell = new Cell(TestCommitPath.Apply(new CellOptions()));
        var node = cell.AddNode(new NodeSpec("n0", new ResourceVector(1_000_000, 1L << 40)));
        var other = cell.AddNode(new NodeSpec("n1", new ResourceVector(1_000_000, 1L << 40)));
        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        var task = new TaskId(1, 0);
        Assert.True(cell.Commit(new Transaction(lease).Add(new Claim(task, node, Small, 0))).IsCommitted);
        Assert.True(cell.TryGetAllocation(task, out var a));

        // A binding listener runs under the commit lock: hold it there while the report is made.
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var blocker = new LockHolder(entered, release);
        cell.AddBindingListener(blocker);
        blocker.Armed = true;
        var held = new Thread(() => cell.Commit(new Transaction(lease).Add(new Claim(new TaskId(2, 0), other, Small, 0)))) { IsBackground = true };
        held.Start();
        Assert.True(entered.Wait(TimeSpan.FromSeconds(30)), "the blocker never held the commit lock");
        try
        {
            var report = Task.Factory.StartNew(() => cell.ReportBindingPhase(task, node, a.Generation, BindingPhase.Ready), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            // Generous: this is a liveness check (without the feature the report waits for the lock, which is held until
            // the finally below), not a timing.
            var first = await Task.WhenAny(report, Task.Delay(TimeSpan.FromSeconds(30)));
            Assert.True(first == report, "the report waited for the commit lock");
            Assert.Equal(BindingPhaseStatus.Ok, await report);
            Assert.Equal(BindingPhase.Ready, cell.GetBindingLifecycle(task, a.Generation).Phase);
        }
        finally
        {
            release.Set();
        }
        Assert.True(held.Join(TimeSpan.FromSeconds(60)));
        // A report naming a binding that is not live is still answered under the lock, and typed.
        Assert.Equal(BindingPhaseStatus.GenerationMismatch, cell.ReportBindingPhase(task, node, a.Generation + 1, BindingPhase.Started));
        Assert.Equal(BindingPhaseStatus.NotBound, cell.ReportBindingPhase(task, other, a.Generation, BindingPhase.Started));
    }

    private sealed class LockHolder(ManualResetEventSlim entered, ManualResetEventSlim release) : IBindingListener
    {
        public volatile bool Armed;

        public void OnBindingChanged(BindingChange change, in Allocation allocation, long version)
        {
            if (!Armed) return;
            Armed = false;
            entered.Set();
            release.Wait(TimeSpan.FromSeconds(60));
        }

        public void OnVersionComplete(long version) { }
    }
}
