using CsCheck;
using Microsoft.Extensions.Time.Testing;
using Xunit.Abstractions;

namespace Omega.Cells.Tests;

/// <summary>
/// Random sequences of node changes, lease and clock events, commits (both modes, both detections, preemptions,
/// idempotency keys, stale and unknown schedulers) and releases, run against the real cell and against
/// <see cref="CellModel"/>. Every operation's result and, after every operation, the whole observable state must agree.
/// CsCheck shrinks a failing sequence and prints the seed that reproduces it.
/// </summary>
public sealed class ModelBasedTests(ITestOutputHelper output)
{
    // ---------------------------------------------------------------- operations

    internal abstract record Op;

    internal sealed record AddNodeOp(int Name, int Cpu, int Mem, int Gpu, NodeStatus Status) : Op;

    internal sealed record UpdateNodeOp(int Node, int Cpu, int Mem, int Gpu, bool Rename) : Op;

    internal sealed record SetStatusOp(int Node, NodeStatus Status) : Op;

    internal sealed record RemoveNodeOp(int Node) : Op;

    internal sealed record ClaimSpec(int Job, int Index, int Node, int Cpu, int Mem, int Gpu, int VersionDelta, int Tenant, int Priority, (int Job, int Index)[] Victims)
    {
        public override string ToString()
            => $"j{Job}/{Index}@{Node} ({Cpu},{Mem},{Gpu}) dv{VersionDelta} t{Tenant} p{Priority}"
                + (Victims.Length == 0 ? "" : " evict " + string.Join("+", Victims.Select(v => $"j{v.Job}/{v.Index}")));
    }

    internal sealed record CommitOp(int Scheduler, int TokenChoice, CommitMode Mode, ConflictDetection Detection, int KeyChoice, int KeyPick, ClaimSpec[] Claims) : Op
    {
        public override string ToString()
            => $"Commit(s{Scheduler} token{TokenChoice} {Mode} {Detection} key{KeyChoice}/{KeyPick}: {string.Join("; ", Claims.AsEnumerable())})";
    }

    /// <summary>Retries the last keyed transaction: exactly (Tweak 0), or with one field of its first claim changed.</summary>
    internal sealed record RetryLastKeyedOp(int Tweak) : Op;

    internal sealed record ReleaseOp(int Job, int Index, int GenerationChoice) : Op;

    internal sealed record AcquireLeaseOp(int Scheduler, int Seconds) : Op;

    internal sealed record RenewLeaseOp(int Scheduler, bool Oldest, int Seconds) : Op;

    internal sealed record ReleaseLeaseOp(int Scheduler) : Op;

    internal sealed record AdvanceOp(int Seconds) : Op;

    internal sealed record QuotaOp(int Tenant, int Cpu, int Mem) : Op;

    internal sealed record SnapshotOp : Op;

    private static readonly Gen<NodeStatus> GenStatus = Gen.Frequency(
        (4, Gen.Const(NodeStatus.Schedulable)), (1, Gen.Const(NodeStatus.Draining)), (1, Gen.Const(NodeStatus.Fenced)),
        (1, Gen.Const(NodeStatus.Down)), (1, Gen.Const(NodeStatus.Removed)));

    private static readonly Gen<int> GenCpu = Gen.Frequency((25, Gen.Int[0, 8].Select(i => i * 250)), (1, Gen.Const(-1)));

    // A victim (0, i) means "the i-th task bound on the claimed node", resolved against the model when the claim is
    // built, so preemptions often name real victims; other victims name an arbitrary task.
    private static readonly Gen<(int Job, int Index)[]> GenVictims = Gen.Frequency(
        (6, Gen.Const(Array.Empty<(int, int)>())),
        (3, Gen.Select(Gen.Frequency((3, Gen.Const(0)), (1, Gen.Int[1, 3])), Gen.Int[0, 3]).Array[1, 2]));

    private static readonly Gen<ClaimSpec> GenClaim =
        from job in Gen.Int[1, 3]
        from index in Gen.Int[0, 3]
        from node in Gen.Int[0, 30]
        from cpu in GenCpu
        from mem in Gen.Int[0, 4]
        from gpu in Gen.Frequency((4, Gen.Const(0)), (1, Gen.Const(1)))
        from versionDelta in Gen.Frequency((8, Gen.Const(0)), (1, Gen.Const(-1)), (1, Gen.Const(1)))
        from tenant in Gen.Frequency((30, Gen.Int[0, 2]), (1, Gen.Const(-1)))
        from priority in Gen.Int[0, 3]
        from victims in GenVictims
        select new ClaimSpec(job, index, node, cpu, mem, gpu, versionDelta, tenant, priority, victims);

    private static readonly Gen<Op> GenOp = Gen.Frequency(
        (3, (from name in Gen.Int[0, 23] from cpu in GenCpu from mem in Gen.Int[0, 8] from gpu in Gen.Int[0, 2] from status in GenStatus
             select (Op)new AddNodeOp(name, cpu, mem, gpu, status))),
        (2, (from node in Gen.Int[0, 30] from cpu in GenCpu from mem in Gen.Int[0, 8] from gpu in Gen.Int[0, 2]
             from rename in Gen.Frequency((8, Gen.Const(false)), (1, Gen.Const(true)))
             select (Op)new UpdateNodeOp(node, cpu, mem, gpu, rename))),
        (2, Gen.Select(Gen.Int[0, 30], GenStatus, (n, s) => (Op)new SetStatusOp(n, s))),
        (1, Gen.Int[0, 30].Select(n => (Op)new RemoveNodeOp(n))),
        (14, (from scheduler in Gen.Int[0, 2]
              from token in Gen.Frequency((8, Gen.Const(0)), (1, Gen.Const(1)), (1, Gen.Const(2)))
              from mode in Gen.OneOf(CommitMode.Incremental, CommitMode.AllOrNothing)
              from detection in Gen.OneOf(ConflictDetection.Fine, ConflictDetection.Coarse)
              from keyChoice in Gen.Frequency((5, Gen.Const(0)), (3, Gen.Const(1)), (1, Gen.Const(2)))
              from keyPick in Gen.Int[0, 9]
              from claims in Gen.Frequency((14, GenClaim.Array[1, 4]), (1, Gen.Const(Array.Empty<ClaimSpec>())), (1, GenClaim.Array[5, 5]))
              select (Op)new CommitOp(scheduler, token, mode, detection, keyChoice, keyPick, claims))),
        (3, Gen.Frequency((3, Gen.Const(0)), (1, Gen.Int[1, 5])).Select(tweak => (Op)new RetryLastKeyedOp(tweak))),
        (5, (from job in Gen.Int[1, 3] from index in Gen.Int[0, 3] from gen in Gen.Int[0, 2] select (Op)new ReleaseOp(job, index, gen))),
        (2, Gen.Select(Gen.Int[0, 2], Gen.Int[1, 20], (s, d) => (Op)new AcquireLeaseOp(s, d))),
        (1, Gen.Select(Gen.Int[0, 2], Gen.Bool, Gen.Int[1, 20], (s, o, d) => (Op)new RenewLeaseOp(s, o, d))),
        (1, Gen.Int[0, 2].Select(s => (Op)new ReleaseLeaseOp(s))),
        (2, Gen.Int[0, 8].Select(s => (Op)new AdvanceOp(s))),
        (1, Gen.Select(Gen.Int[0, 2], Gen.Int[-1, 6].Select(c => c < 0 ? -1 : c * 500), Gen.Int[0, 10], (t, c, m) => (Op)new QuotaOp(t, c, m))),
        (1, Gen.Const<Op>(new SnapshotOp())));

    // ---------------------------------------------------------------- the test

    [Theory]
    [InlineData(null)]
    [InlineData(CommitPath.Striped)] // issue 14: the node-striped path must give the same results and state
    [InlineData(CommitPath.Concurrent)] // issue 14 round 12: the lock-free-checks path
    public void Random_operation_sequences_give_the_same_results_and_state_as_a_sequential_model(CommitPath? path)
    {
        var seen = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        GenOp.Array[1, 60].Sample(
            ops => new Runner { Seen = seen, Path = path }.Run(ops),
            iter: 1000,
            writeLine: output.WriteLine,
            print: ops => "\n  " + string.Join("\n  ", ops.AsEnumerable()));

        // The generator must actually reach every outcome, or agreement with the model would prove little.
        output.WriteLine(string.Join("\n", seen.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}: {kv.Value}")));
        // Reservations and protected capacity (issue 12) are not in the sequential model yet: their outcomes are proven by
        // ReservationTests and ProtectedCapacityTests (seeded two-scheduler stress with the audit after every step).
        string[] notModelled = [nameof(ClaimStatus.TaskReserved), nameof(ClaimStatus.ReservationNotFound), nameof(ClaimStatus.ReservationMismatch),
            nameof(ClaimStatus.ReservationExpired), nameof(ClaimStatus.ProtectedCapacity), nameof(ClaimStatus.ReservationLimitReached),
            // Hard anti-affinity (claim groups) is proven by PlacementGroupTests (seeded concurrent workers, invariant after every step).
            nameof(ClaimStatus.AntiAffinityViolated),
            // Recovery budgets (issue 13) are proven by RecoveryBudgetGateTests (seeded concurrent property test).
            nameof(ClaimStatus.RecoveryBudgetHeld)];
        var missing = Enum.GetNames<TransactionStatus>().Concat(Enum.GetNames<ClaimStatus>()).Append("Replayed")
            .Where(code => !seen.ContainsKey(code) && !notModelled.Contains(code)).ToList();
        Assert.True(missing.Count == 0, "outcomes never generated: " + string.Join(", ", missing));
    }

    [Fact]
    public void The_model_runner_detects_a_divergence()
    {
        // Guard against a vacuous model test: a runner whose model misses one release must fail.
        var ops = new Op[]
        {
            new CommitOp(0, 0, CommitMode.Incremental, ConflictDetection.Fine, 0, 0, [new ClaimSpec(1, 0, 0, 250, 1, 0, 0, 0, 0, [])]),
            new ReleaseOp(1, 0, 0),
        };
        var ex = Assert.ThrowsAny<Exception>(() => new Runner { SkipModelReleases = true }.Run(ops));
        Assert.Contains("step 1", ex.Message, StringComparison.Ordinal);
    }

    /// <summary>Runs one sequence against a fresh cell and a fresh model, comparing as it goes.</summary>
    private sealed class Runner
    {
        private const int Retention = 4;
        private const int MaxClaims = 4;
        private readonly FakeTimeProvider _time = new();
        private readonly CellModel _model = new(Retention, MaxClaims);
        private readonly Dictionary<int, List<SchedulerLease>> _leases = new();
        private readonly List<IdempotencyKey> _usedKeys = new();
        private readonly List<(CellSnapshot Snapshot, string?[] Views)> _snapshots = new();
        private (SchedulerLease Lease, CommitMode Mode, ConflictDetection Detection, IdempotencyKey Key, Claim[] Claims)? _lastKeyed;
        private ulong _nextKey;

        public bool SkipModelReleases { get; init; }

        public CommitPath? Path { get; init; }

        public System.Collections.Concurrent.ConcurrentDictionary<string, int>? Seen { get; init; }

        public void Run(Op[] ops)
        {
            using var cell = new Cell(TestCommitPath.Apply(new CellOptions { Time = _time, IdempotencyRetention = Retention, MaxClaimsPerTransaction = MaxClaims, InitialNodeCapacity = 16 }, Path));
            var setup = new List<Op>
            {
                new AddNodeOp(100, 2000, 4, 1, NodeStatus.Schedulable),
                new AddNodeOp(101, 2000, 4, 1, NodeStatus.Schedulable),
                new AddNodeOp(102, 1000, 2, 0, NodeStatus.Schedulable),
                new AcquireLeaseOp(0, 60),
                new AcquireLeaseOp(1, 60),
            };
            foreach (var op in setup) Step(cell, op, -1);
            // Tenants 1 and 2 exist; claims also name -1 and 3 (unknown) now and then.
            for (int t = 1; t <= 2; t++)
            {
                Assert.Equal(new TenantId(_model.CreateTenant()), cell.CreateTenant($"t{t}"));
                if (ModelComparison.Difference(cell, _model, tenants: 3) is { } diff) throw new Xunit.Sdk.XunitException($"after creating tenant {t}\n{diff}");
            }
            for (int i = 0; i < ops.Length; i++) Step(cell, ops[i], i);
        }

        private void Step(Cell cell, Op op, int step)
        {
            string where = $"step {step}: {op}";
            var (actual, expected) = Apply(cell, op);
            if (actual != expected) throw new Xunit.Sdk.XunitException($"{where}\n  cell:  {actual}\n  model: {expected}");
            if (ModelComparison.Difference(cell, _model, tenants: 3) is { } diff) throw new Xunit.Sdk.XunitException($"after {where}\n{diff}");
            CheckOldSnapshots(where);
        }

        private NodeId Resolve(int raw) => new(raw % (_model.Nodes.Count + 2));

        private (string Actual, string Expected) Apply(Cell cell, Op op)
        {
            switch (op)
            {
                case AddNodeOp a:
                {
                    var spec = new NodeSpec($"node{a.Name}", new ResourceVector(a.Cpu, a.Mem, a.Gpu));
                    var s = cell.AddNode(spec, out var id, a.Status);
                    var m = _model.AddNode(spec, a.Status);
                    return ($"{s} {(s == NodeOpStatus.Ok ? id : default)}", $"{m.Status} {m.Id}");
                }
                case UpdateNodeOp u:
                {
                    var id = Resolve(u.Node);
                    string name = _model.IsLive(id) && !u.Rename ? _model.Nodes[id.Value].Spec.Name : "renamed";
                    var spec = new NodeSpec(name, new ResourceVector(u.Cpu, u.Mem, u.Gpu), "fd2");
                    return (cell.UpdateNode(id, spec).ToString(), _model.UpdateNode(id, spec).ToString());
                }
                case SetStatusOp s:
                {
                    var id = Resolve(s.Node);
                    return (cell.SetNodeStatus(id, s.Status).ToString(), _model.SetNodeStatus(id, s.Status).ToString());
                }
                case RemoveNodeOp r:
                {
                    var id = Resolve(r.Node);
                    var s = cell.RemoveNode(id, out var released);
                    var m = _model.RemoveNode(id, out var modelReleased);
                    return ($"{s} [{Sorted(released)}]", $"{m} [{Sorted(modelReleased)}]");
                }
                case CommitOp c:
                    return Commit(cell, c);
                case RetryLastKeyedOp retry:
                {
                    if (_lastKeyed is not { } last) return ("none", "none");
                    var claims = (Claim[])last.Claims.Clone();
                    if (claims.Length > 0)
                    {
                        var c0 = claims[0];
                        claims[0] = retry.Tweak switch
                        {
                            1 => c0 with { Priority = c0.Priority + 1 },
                            2 => c0 with { Tenant = new TenantId(c0.Tenant.Value + 1) },
                            3 => c0 with { ExpectedNodeVersion = c0.ExpectedNodeVersion + 1 },
                            4 => c0 with { Resources = c0.Resources + new ResourceVector(0, 0, 0, 1) },
                            5 => c0 with { Victims = c0.Victims is { Length: > 0 } ? null : [new TaskId(1, 0)] },
                            _ => c0,
                        };
                    }
                    var tx = TestCell.Build(last.Lease, last.Mode, last.Detection, last.Key, claims);
                    var result = cell.Commit(tx);
                    if (result.Replayed) Seen?.AddOrUpdate("Replayed", 1, (_, n) => n + 1);
                    return (Outcome.Of(result).ToString(),
                        _model.Commit(last.Lease.Id, last.Lease.Token, last.Mode, last.Detection, last.Key, claims).ToString());
                }
                case ReleaseOp r:
                {
                    var task = new TaskId(r.Job, r.Index);
                    bool bound = _model.Allocations.TryGetValue(task, out var a);
                    long generation = r.GenerationChoice switch
                    {
                        0 => 0,
                        1 => bound ? a.Generation : 0,
                        _ => bound ? a.Generation + 1 : 7,
                    };
                    var actual = cell.Release(task, generation);
                    var expected = SkipModelReleases ? ReleaseStatus.Released : _model.Release(task, generation);
                    return (actual.ToString(), expected.ToString());
                }
                case AcquireLeaseOp l:
                {
                    var duration = TimeSpan.FromSeconds(l.Seconds);
                    var r = cell.AcquireLease($"s{l.Scheduler}", duration);
                    var m = _model.AcquireLease($"s{l.Scheduler}", duration);
                    if (r.Status == LeaseStatus.Granted)
                    {
                        if (!_leases.TryGetValue(l.Scheduler, out var list)) _leases[l.Scheduler] = list = new List<SchedulerLease>();
                        list.Add(r.Lease);
                        if (r.Lease.ExpiresAt != _time.GetUtcNow() + duration) return ($"expires {r.Lease.ExpiresAt}", $"expires {_time.GetUtcNow() + duration}");
                    }
                    return ($"{r.Status} {r.Lease.Id} {r.Lease.Token}", $"{m.Status} {m.Id} {m.Token}");
                }
                case RenewLeaseOp l:
                {
                    if (!_leases.TryGetValue(l.Scheduler, out var list)) return ("none", "none");
                    var lease = l.Oldest ? list[0] : list[^1];
                    var duration = TimeSpan.FromSeconds(l.Seconds);
                    var r = cell.RenewLease(lease, duration);
                    var m = _model.RenewLease(lease.Id, lease.Token, duration);
                    string extra = r.Status == LeaseStatus.Renewed && r.Lease.Token != lease.Token ? " token changed" : "";
                    return ($"{r.Status}{extra}", m.ToString());
                }
                case ReleaseLeaseOp l:
                {
                    if (!_leases.TryGetValue(l.Scheduler, out var list)) return ("none", "none");
                    var lease = list[^1];
                    return (cell.ReleaseLease(lease).ToString(), _model.ReleaseLease(lease.Id, lease.Token).ToString());
                }
                case AdvanceOp a:
                    _time.Advance(TimeSpan.FromSeconds(a.Seconds));
                    _model.Advance(TimeSpan.FromSeconds(a.Seconds));
                    return ("", "");
                case QuotaOp q:
                {
                    ResourceVector? limit = q.Cpu < 0 ? null : new ResourceVector(q.Cpu, q.Mem, 1);
                    cell.SetTenantQuota(new TenantId(q.Tenant), limit);
                    _model.SetTenantQuota(q.Tenant, limit);
                    return ("", "");
                }
                case SnapshotOp:
                {
                    var snap = cell.Snapshot();
                    var views = new string?[_model.Nodes.Count];
                    for (int i = 0; i < views.Length; i++)
                    {
                        var n = _model.Nodes[i];
                        views[i] = n.Status == NodeStatus.Removed ? null : ModelComparison.Describe(n.Spec, n.Status, n.Version, n.Allocated, n.TaskCount);
                    }
                    _snapshots.Add((snap, views));
                    if (_snapshots.Count > 3) _snapshots.RemoveAt(0);
                    return ($"v{snap.Version} nodes={snap.NodeCount}", $"v{_model.Version} nodes={_model.Nodes.Count}");
                }
                default:
                    throw new InvalidOperationException(op.ToString());
            }
        }

        private (string Actual, string Expected) Commit(Cell cell, CommitOp c)
        {
            SchedulerLease lease;
            bool known = _leases.TryGetValue(c.Scheduler, out var list);
            if (c.TokenChoice == 2 || !known) lease = new SchedulerLease(new SchedulerId(10 + c.Scheduler), "ghost", new FencingToken(1), default);
            else lease = c.TokenChoice == 0 ? list![^1] : list![0];

            var key = IdempotencyKey.None;
            if (c.KeyChoice == 2 && _usedKeys.Count > 0) key = _usedKeys[c.KeyPick % _usedKeys.Count];
            else if (c.KeyChoice != 0)
            {
                key = new IdempotencyKey(0xABCD, ++_nextKey);
                _usedKeys.Add(key);
            }

            var claims = new Claim[c.Claims.Length];
            for (int i = 0; i < claims.Length; i++)
            {
                var s = c.Claims[i];
                var node = Resolve(s.Node);
                long version = node.Value < _model.Nodes.Count ? _model.Nodes[node.Value].Version : 1;
                var onNode = _model.Allocations.Values.Where(a => a.Node == node).Select(a => a.Task).OrderBy(t => t.Job.Value).ThenBy(t => t.Index).ToList();
                var victims = s.Victims.Length == 0 ? null : Array.ConvertAll(s.Victims,
                    v => v.Job == 0 && onNode.Count > 0 ? onNode[v.Index % onNode.Count] : new TaskId(Math.Max(1, v.Job), v.Index));
                claims[i] = new Claim(new TaskId(s.Job, s.Index), node, new ResourceVector(s.Cpu, s.Mem, s.Gpu), version + s.VersionDelta,
                    new TenantId(s.Tenant), s.Priority, victims);
            }
            if (!key.IsNone) _lastKeyed = (lease, c.Mode, c.Detection, key, claims);

            var tx = TestCell.Build(lease, c.Mode, c.Detection, key, claims);
            var result = cell.Commit(tx);
            if (Seen is { } seen)
            {
                seen.AddOrUpdate(result.Status.ToString(), 1, (_, n) => n + 1);
                if (result.Replayed) seen.AddOrUpdate("Replayed", 1, (_, n) => n + 1);
                foreach (var s in result.ClaimStatuses.Span) seen.AddOrUpdate(s.ToString(), 1, (_, n) => n + 1);
            }
            var actual = Outcome.Of(result);
            var expected = _model.Commit(lease.Id, lease.Token, c.Mode, c.Detection, key, claims);
            return (actual.ToString(), expected.ToString());
        }

        private void CheckOldSnapshots(string where)
        {
            foreach (var (snap, views) in _snapshots)
            {
                for (int i = 0; i <= views.Length; i++)
                {
                    var read = snap.TryGetNode(new NodeId(i), out var view);
                    if (read == SnapshotRead.TooOld) continue;
                    string? expected = i < views.Length ? views[i] : null;
                    string? actual = read == SnapshotRead.Ok ? ModelComparison.Describe(view.Spec, view.Status, view.Version, view.Allocated, view.TaskCount) : null;
                    if (actual != expected)
                        throw new Xunit.Sdk.XunitException($"after {where}\n  snapshot v{snap.Version} n{i} changed: now {actual ?? read.ToString()}, taken as {expected ?? "absent"}");
                }
            }
        }

        private static string Sorted(IEnumerable<Allocation> allocations)
            => string.Join("; ", allocations.Select(a => a.ToString()).Order(StringComparer.Ordinal));
    }
}
