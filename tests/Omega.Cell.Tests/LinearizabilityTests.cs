using System.Collections.Concurrent;
using CsCheck;
using Microsoft.Extensions.Time.Testing;
using Xunit.Abstractions;

namespace Omega.Cells.Tests;

/// <summary>
/// CsCheck's <c>SampleParallel</c>: a few commits, releases, stale-token commits and snapshot reads run concurrently on one
/// cell; the result of every operation and the final state must equal those of some sequential order of the same
/// operations run on <see cref="CellModel"/>.
/// </summary>
public sealed class LinearizabilityTests(ITestOutputHelper output)
{
    internal sealed record LinClaim(int Task, int Node, int Cpu, int ExpectedVersion, int Priority, int Victim)
    {
        public override string ToString() => $"t{Task}@n{Node} cpu{Cpu} v{ExpectedVersion} p{Priority}{(Victim >= 0 ? $" evict t{Victim}" : "")}";
    }

    internal sealed record LinCommit(CommitMode Mode, ConflictDetection Detection, int Key, LinClaim[] Claims)
    {
        public override string ToString() => $"commit {Mode} {Detection} key{Key} [{string.Join("; ", Claims.AsEnumerable())}]";
    }

    /// <summary>The real cell, built on first use so that CsCheck's model-only replays of the initial state build no cell.</summary>
    internal sealed class Actual(int nodes, int capacity, CommitPath? path = null)
    {
        private readonly Lazy<(Cell Cell, SchedulerLease Lease, SchedulerLease Stale)> _state = new(() =>
        {
            var cell = new Cell(TestCommitPath.Apply(new CellOptions { Time = new FakeTimeProvider(), InitialNodeCapacity = 16 }, path));
            for (int i = 0; i < nodes; i++) cell.AddNode(new NodeSpec($"n{i}", new ResourceVector(capacity, 100)));
            var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
            var stale = cell.AcquireLease("z", TimeSpan.FromHours(1)).Lease;
            cell.ReleaseLease(stale);
            cell.AcquireLease("z", TimeSpan.FromHours(1));
            return (cell, lease, stale);
        });

        public ConcurrentQueue<string> Log { get; } = new();

        public Cell Cell => _state.Value.Cell;

        public void Commit(LinCommit c, bool stale = false)
        {
            var (cell, lease, staleLease) = _state.Value;
            var tx = TestCell.Build(stale ? staleLease : lease, c.Mode, c.Detection, Key(c.Key), ToClaims(c.Claims));
            Log.Enqueue($"{(stale ? "stale " : "")}{c} => {Outcome.Of(cell.Commit(tx))}");
        }

        public void Release(int task) => Log.Enqueue($"release t{task} => {Cell.Release(new TaskId(1, task))}");

        public void Read()
        {
            while (true)
            {
                var snap = Cell.Snapshot();
                var text = Describe(snap);
                if (text is null) continue;   // a node changed too often meanwhile: re-sync
                Log.Enqueue("read => " + text);
                return;
            }
        }

        private static string? Describe(CellSnapshot snap)
        {
            var parts = new List<string> { $"v{snap.Version}" };
            for (int i = 0; i < snap.NodeCount; i++)
            {
                if (snap.TryGetNode(new NodeId(i), out var v) != SnapshotRead.Ok) return null;
                parts.Add($"n{i}:v{v.Version},{v.Allocated.CpuMillis}m,{v.TaskCount}");
            }
            return string.Join(" ", parts);
        }

        public override string ToString() => $"{Cell.Version}: " + string.Join(" | ", Log.Order(StringComparer.Ordinal));
    }

    internal sealed class Model
    {
        private readonly SchedulerLease _lease;
        private readonly SchedulerLease _stale;

        public Model(int nodes, int capacity)
        {
            for (int i = 0; i < nodes; i++) State.AddNode(new NodeSpec($"n{i}", new ResourceVector(capacity, 100)));
            var l = State.AcquireLease("s", TimeSpan.FromHours(1));
            _lease = new SchedulerLease(l.Id, "s", l.Token, default);
            var z = State.AcquireLease("z", TimeSpan.FromHours(1));
            _stale = new SchedulerLease(z.Id, "z", z.Token, default);
            State.ReleaseLease(z.Id, z.Token);
            State.AcquireLease("z", TimeSpan.FromHours(1));
        }

        public CellModel State { get; } = new();

        public List<string> Log { get; } = new();

        public void Commit(LinCommit c, bool stale = false)
        {
            var lease = stale ? _stale : _lease;
            var outcome = State.Commit(lease.Id, lease.Token, c.Mode, c.Detection, Key(c.Key), ToClaims(c.Claims));
            Log.Add($"{(stale ? "stale " : "")}{c} => {outcome}");
        }

        public void Release(int task) => Log.Add($"release t{task} => {State.Release(new TaskId(1, task), 0)}");

        public void Read()
        {
            var parts = new List<string> { $"v{State.Version}" };
            for (int i = 0; i < State.Nodes.Count; i++)
            {
                var n = State.Nodes[i];
                parts.Add($"n{i}:v{n.Version},{n.Allocated.CpuMillis}m,{n.TaskCount}");
            }
            Log.Add("read => " + string.Join(" ", parts));
        }

        public override string ToString() => $"{State.Version}: " + string.Join(" | ", Log.Order(StringComparer.Ordinal));
    }

    private static IdempotencyKey Key(int k) => k == 0 ? IdempotencyKey.None : new IdempotencyKey(5, (ulong)k);

    private static Claim[] ToClaims(LinClaim[] claims) => Array.ConvertAll(claims, c => new Claim(new TaskId(1, c.Task), new NodeId(c.Node),
        new ResourceVector(c.Cpu * 500, 1), c.ExpectedVersion, default, c.Priority, c.Victim < 0 ? null : [new TaskId(1, c.Victim)]));

    private static readonly Gen<LinCommit> GenCommit =
        from mode in Gen.OneOf(CommitMode.Incremental, CommitMode.AllOrNothing)
        from detection in Gen.OneOf(ConflictDetection.Fine, ConflictDetection.Coarse)
        from key in Gen.Frequency((3, Gen.Const(0)), (2, Gen.Int[1, 2]))
        from claims in (from task in Gen.Int[0, 5]
                        from node in Gen.Int[0, 2]
                        from cpu in Gen.Int[1, 4]
                        from version in Gen.Int[1, 3]
                        from priority in Gen.Int[0, 2]
                        from victim in Gen.Frequency((3, Gen.Const(-1)), (1, Gen.Int[0, 5]))
                        select new LinClaim(task, node, cpu, version, priority, victim)).Array[1, 3]
        select new LinCommit(mode, detection, key, claims);

    [Theory]
    [InlineData(null)]
    [InlineData(CommitPath.Striped)] // issue 14: the node-striped path
    [InlineData(CommitPath.Concurrent)] // issue 14 round 12: the concurrent path
    public void Concurrent_commits_releases_and_snapshot_reads_are_linearizable(CommitPath? path)
    {
        var initial = Gen.Select(Gen.Int[2, 3], Gen.Int[2, 4], (nodes, cores) => (new Actual(nodes, cores * 1000, path), new Model(nodes, cores * 1000)));
        initial.SampleParallel(
            [
                GenCommit.Operation<Actual, Model>(c => c.ToString(), (a, c) => a.Commit(c), (m, c) => m.Commit(c)),
                GenCommit.Operation<Actual, Model>(c => c.ToString(), (a, c) => a.Commit(c), (m, c) => m.Commit(c)),
                GenCommit.Operation<Actual, Model>(c => "stale " + c, (a, c) => a.Commit(c, stale: true), (m, c) => m.Commit(c, stale: true)),
                Gen.Int[0, 5].Operation<Actual, Model>(t => $"release t{t}", (a, t) => a.Release(t), (m, t) => m.Release(t)),
                Gen.Const(0).Operation<Actual, Model>(_ => "read", (a, _) => a.Read(), (m, _) => m.Read()),
            ],
            equal: (a, m) => a.Log.Order(StringComparer.Ordinal).SequenceEqual(m.Log.Order(StringComparer.Ordinal))
                && ModelComparison.Difference(a.Cell, m.State, tenants: 1) is null,
            iter: 250,
            threads: 4,
            printActual: a => a.ToString(),
            printModel: m => m.ToString(),
            writeLine: output.WriteLine);
    }
}
