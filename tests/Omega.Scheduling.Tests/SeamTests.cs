using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Xunit.Abstractions;
using static Omega.Scheduling.Tests.TestKit;

namespace Omega.Scheduling.Tests;

/// <summary>
/// The seam (issue 14): the engine reads the cell only through <see cref="ICellView"/> and changes it only through
/// <see cref="ICellCommitter"/>, and the view's reads never wait for the commit lock.
/// </summary>
public sealed class SeamTests
{
    private readonly ITestOutputHelper _output;

    public SeamTests(ITestOutputHelper output) => _output = output;

    /// <summary>A test double of both interfaces over a real cell: forwards every call and records it.</summary>
    private sealed class RecordingCell(Cell cell) : ICellView, ICellCommitter
    {
        private readonly Lock _sync = new();

        public int Snapshots, TenantReads, NodeReads, Commits, Releases, LeaseCalls, QuotaCalls;

        /// <summary>The live bindings as the calls through this double made them: claims applied, victims and releases removed.</summary>
        public Dictionary<TaskId, Allocation> Bindings { get; } = new();

        public string Name => cell.Name;

        public ResourceVector? LargestNodeCapacity => cell.LargestNodeCapacity;

        public bool TenantExists(TenantId tenant) => cell.TenantExists(tenant);

        public CellSnapshot Snapshot()
        {
            Interlocked.Increment(ref Snapshots);
            return cell.Snapshot();
        }

        public (ResourceVector Usage, ResourceVector? Quota) GetTenantUsage(TenantId tenant)
        {
            Interlocked.Increment(ref TenantReads);
            return cell.GetTenantUsage(tenant);
        }

        public int CopyAllocationsOnNode(NodeId id, List<Allocation> into)
        {
            Interlocked.Increment(ref NodeReads);
            return cell.CopyAllocationsOnNode(id, into);
        }

        public CommitResult Commit(Transaction tx)
        {
            var r = cell.Commit(tx);
            lock (_sync)
            {
                Commits++;
                var statuses = r.ClaimStatuses.Span;
                var claims = tx.Claims;
                for (int i = 0; i < claims.Length; i++)
                {
                    if (statuses[i] != ClaimStatus.Applied) continue;
                    var c = claims[i];
                    foreach (var v in c.Victims ?? []) Assert.True(Bindings.Remove(v), $"victim {v} was not bound through the committer");
                    Bindings.Add(c.Task, new Allocation(c.Task, c.Node, c.Resources, c.Tenant, c.Priority, r.CellVersion));
                }
            }
            return r;
        }

        public ReleaseStatus Release(TaskId task, long expectedGeneration = 0)
        {
            var s = cell.Release(task, expectedGeneration);
            lock (_sync)
            {
                Releases++;
                if (s == ReleaseStatus.Released) Assert.True(Bindings.Remove(task), $"{task} was released but never bound through the committer");
            }
            return s;
        }

        public LeaseResult AcquireLease(string name, TimeSpan duration)
        {
            Interlocked.Increment(ref LeaseCalls);
            return cell.AcquireLease(name, duration);
        }

        public LeaseResult RenewLease(SchedulerLease lease, TimeSpan duration)
        {
            Interlocked.Increment(ref LeaseCalls);
            return cell.RenewLease(lease, duration);
        }

        public LeaseStatus ReleaseLease(SchedulerLease lease)
        {
            Interlocked.Increment(ref LeaseCalls);
            return cell.ReleaseLease(lease);
        }

        public TenantOpStatus SetTenantQuota(TenantId tenant, ResourceVector? limit)
        {
            Interlocked.Increment(ref QuotaCalls);
            return cell.SetTenantQuota(tenant, limit);
        }
    }

    private static SchedulingOptions Options(FakeTimeProvider time, int seed)
    {
        var o = new SchedulingOptions { Time = time, Seed = seed };
        o.Kinds.Add(new SchedulerKindOptions { Name = "batch", Workers = 2, MaxAttempts = 20 });
        o.Kinds.Add(new SchedulerKindOptions { Name = "service", Workers = 1, Mode = CommitMode.AllOrNothing, Detection = ConflictDetection.Coarse, MaxAttempts = 20 });
        o.Guarantees[new TenantId(3)] = R(2, 0);
        return o;
    }

    /// <summary>
    /// A seeded workload (placements, gangs, preemption with a protected tenant, a quota, completions) run on an engine
    /// built over the recording double. Returns the cell's sorted bindings.
    /// </summary>
    private static List<Allocation> RunWorkload(int seed, Func<Cell, FakeTimeProvider, SchedulingEngine> build, out Cell cell, out SchedulingEngine engine)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 7, 0, 0, 0, TimeSpan.Zero));
        cell = new Cell(new CellOptions { Time = time }).WithTenants(4);
        for (int i = 0; i < 12; i++) cell.AddNode(Node($"n{i}", cores: 8, memGiB: 32, domain: $"rack-{i % 3}"));
        engine = build(cell, time);
        Assert.Equal(TenantOpStatus.Ok, engine.SetTenantQuota(new TenantId(2), R(10, 100)));
        var rng = new Random(seed);
        var jobs = new List<JobSpec>();
        long id = 1;
        for (int round = 0; round < 6; round++)
        {
            for (int j = 0; j < 8; j++)
            {
                bool gang = rng.Next(4) == 0;
                var job = Job(id++, tasks: rng.Next(1, 6), cores: rng.Next(1, 4), priority: rng.Next(0, 10), tenant: rng.Next(0, 5), gang: gang);
                var r = engine.Submit(job, gang ? "service" : "batch");
                Assert.True(r.Accepted, $"{r.Status} {r.Reason}");
                jobs.Add(job);
            }
            for (int k = 0; k < 5; k++)
            {
                engine.RunUntilIdle();
                time.Advance(TimeSpan.FromSeconds(1));
            }
            // Complete a few bound tasks through the engine (Release through the committer).
            foreach (var a in cell.GetAllocations().OrderBy(a => a.Task.Job.Value).ThenBy(a => a.Task.Index).Where(_ => rng.Next(3) == 0).ToList())
                engine.CompleteTask(a.Task);
        }
        AssertEngineMatchesCell(engine, cell, jobs, $"seed {seed}");
        return cell.GetAllocations().OrderBy(a => a.Task.Job.Value).ThenBy(a => a.Task.Index).ToList();
    }

    [Fact]
    public void An_engine_over_the_two_interfaces_commits_everything_through_the_committer_and_never_touches_the_cell()
    {
        int seed = Environment.GetEnvironmentVariable("OMEGA_TEST_SEED") is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        _output.WriteLine($"seed {seed} (OMEGA_TEST_SEED={seed} to replay)");

        RecordingCell? recorder = null;
        var viaSeam = RunWorkload(seed, (c, time) =>
        {
            recorder = new RecordingCell(c);
            return new SchedulingEngine(recorder, recorder, Options(time, seed));
        }, out var cell, out var engine);
        using var _ = cell;
        var rec = recorder!;

        // The engine holds no Cell: any use of engine.Cell by a worker would have thrown during the run.
        Assert.Throws<InvalidOperationException>(() => engine.Cell);
        // Every binding the cell holds was made, evicted or released through the committer, and nothing else was.
        var expected = rec.Bindings.Values.OrderBy(a => a.Task.Job.Value).ThenBy(a => a.Task.Index).ToList();
        Assert.Equal(expected, viaSeam);
        // Every transaction the cell counted came through the committer.
        long cellTransactions = 0;
        foreach (var status in Enum.GetValues<TransactionStatus>()) cellTransactions += cell.Counters.Transactions(status);
        Assert.Equal(rec.Commits, cellTransactions);
        Assert.True(rec.Commits > 0 && rec.Releases > 0 && rec.LeaseCalls >= 3 && rec.QuotaCalls == 1, $"commits {rec.Commits} releases {rec.Releases} leases {rec.LeaseCalls} quotas {rec.QuotaCalls}");
        // The reads went through the view: a snapshot and a tenant read per attempt (more tenant reads for preemption guarantees).
        Assert.True(rec.Snapshots > 0 && rec.TenantReads >= rec.Snapshots, $"snapshots {rec.Snapshots} tenant reads {rec.TenantReads}");
        Assert.True(cell.Counters.Claims(ClaimStatus.Applied) > 0);
        _output.WriteLine($"commits {rec.Commits}, releases {rec.Releases}, snapshots {rec.Snapshots}, node reads {rec.NodeReads}, bindings {viaSeam.Count}");

        // The double is transparent: the same seed on an engine built over the Cell itself ends in the same bindings.
        var direct = RunWorkload(seed, (c, time) => new SchedulingEngine(c, Options(time, seed)), out var cell2, out var engine2);
        using var __ = cell2;
        Assert.Equal(viaSeam, direct);
        Assert.Same(cell2, engine2.Cell);
        engine.Dispose();
        engine2.Dispose();
    }

    [Fact]
    public void Preemption_reads_node_bindings_and_tenant_usage_through_the_view()
    {
        var time = new FakeTimeProvider();
        using var cell = new Cell(new CellOptions { Time = time }).WithTenants(2);
        var n0 = cell.AddNode(Node("n0", cores: 4));
        var rec = new RecordingCell(cell);
        var o = new SchedulingOptions { Time = time, Seed = 1 };
        o.Kinds.Add(new SchedulerKindOptions { Name = "batch", MaxAttempts = 3 });
        o.Guarantees[new TenantId(1)] = R(1, 0);
        using var engine = new SchedulingEngine(rec, rec, o);
        Assert.True(engine.Submit(Job(1, tasks: 4, cores: 1, priority: 1, tenant: 1)).Accepted);
        engine.RunUntilIdle();
        Assert.True(engine.Submit(Job(2, tasks: 1, cores: 2, priority: 9)).Accepted);
        engine.RunUntilIdle();
        Assert.True(rec.NodeReads > 0, "the planner read the node's bindings through the view");
        Assert.Equal(2, cell.GetAllocationsOnNode(n0).Count(a => a.Task.Job == new JobId(1)));
        Assert.True(cell.TryGetAllocation(new TaskId(2, 0), out _));
        Assert.Equal(R(2, 2), cell.GetTenantUsage(new TenantId(1)).Usage);
    }

    /// <summary>A journal whose next append blocks (inside the cell's commit lock) until the test opens the gate.</summary>
    private sealed class GateJournal : ICellJournal, IDisposable
    {
        public ManualResetEventSlim Inside { get; } = new(false);

        public ManualResetEventSlim Gate { get; } = new(true);

        public void Append(long sequence, long cellVersion, ReadOnlySpan<byte> record)
        {
            if (Gate.IsSet) return;
            Inside.Set();
            Gate.Wait();
        }

        public void Dispose()
        {
            Inside.Dispose();
            Gate.Dispose();
        }
    }

    [Fact]
    public async Task View_reads_complete_while_a_committer_holds_the_commit_lock()
    {
        using var journal = new GateJournal();
        var time = new FakeTimeProvider();
        using var cell = new Cell(new CellOptions { Time = time }, journal).WithTenants(1);
        var n0 = cell.AddNode(Node("n0", cores: 8));
        var lease = cell.AcquireLease("s", TimeSpan.FromMinutes(1)).Lease;
        Assert.Equal(ClaimStatus.Applied, CommitDirect(cell, lease, new TaskId(1, 0), n0, R(1), tenant: 1).ClaimStatuses.Span[0]);
        ICellView view = cell;

        // A second commit stops inside the commit lock (in the journal append).
        journal.Gate.Reset();
        var blocked = Task.Run(() => CommitDirect(cell, lease, new TaskId(1, 1), n0, R(1), tenant: 1));
        Assert.True(journal.Inside.Wait(TimeSpan.FromSeconds(30)), "the commit never reached the journal");
        try
        {
            // Every read a scheduler worker makes returns while the lock is held (a locked read would wait for the gate).
            var reads = Task.Run(() =>
            {
                var snap = view.Snapshot();
                var usage = view.GetTenantUsage(new TenantId(1));
                var list = new List<Allocation>();
                int n = view.CopyAllocationsOnNode(n0, list);
                return (snap.Version, usage.Usage, n, view.TenantExists(new TenantId(1)), view.LargestNodeCapacity);
            });
            var done = await Task.WhenAny(reads, Task.Delay(TimeSpan.FromSeconds(30)));
            Assert.True(done == reads, "a view read waited for the commit lock");
            var (_, usageSeen, nodeBindings, exists, largest) = await reads;
            Assert.True(exists);
            Assert.Equal(R(8, 16), largest);
            // The in-flight transaction may or may not be visible yet, but never half of it.
            Assert.True(usageSeen == R(1, 1) || usageSeen == R(2, 2), $"usage {usageSeen}");
            Assert.InRange(nodeBindings, 1, 2);
        }
        finally
        {
            journal.Gate.Set();
        }
        Assert.Equal(TransactionStatus.Committed, (await blocked).Status);
        Assert.Equal(R(2, 2), cell.GetTenantUsage(new TenantId(1)).Usage);
        Assert.Equal(2, cell.GetAllocationsOnNode(n0).Count);
    }
}
