using CsCheck;
using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Xunit.Abstractions;

namespace Omega.Scheduling.Tests;

/// <summary>
/// Issue 10's property test over admission: random sequences of job submissions, raw transactions, tenant creations and
/// quota changes, drawn heavily from extreme values (0, -1, NaN and infinities at the CLI's conversion, long.MaxValue,
/// long.MinValue, 2^53 ± 1, a million tasks, unknown tenants and nodes). Every operation must return a documented
/// typed outcome (a defined enum value) or succeed, nothing may throw out of the engine or the cell, and after every
/// step the cell's invariants hold: no node over capacity, no negative allocation, no task bound twice, per-node and
/// per-tenant sums consistent (<see cref="Cell.Audit"/>). CsCheck prints the failing seed ("Set seed: ..."); pass it as
/// OMEGA_PROPERTY_SEED to replay.
/// </summary>
public sealed class AdmissionPropertyTests(ITestOutputHelper output)
{
    public abstract record Op;

    public sealed record SubmitOp(long Job, int Tenant, int Priority, int Tasks, long Cpu, long Mem, long Gpu, long Disk, bool Gang, bool Service) : Op;

    public sealed record SubmitCliOp(long Job, double Cores, double GiB, int Tasks) : Op;

    public sealed record CommitOp((long Job, int Index, int Node, long Cpu, long Mem, int Tenant, int Priority, long Version)[] Claims, bool Gang, bool Coarse, ulong Key) : Op
    {
        public override string ToString() => $"Commit gang={Gang} coarse={Coarse} key={Key} claims=[{string.Join(", ", Claims.Select(c => c.ToString()))}]";
    }

    public sealed record TenantOp(string Name, long QuotaCpu, long QuotaMem, bool WithQuota) : Op;

    public sealed record QuotaOp(int Tenant, long Cpu, long Mem) : Op;

    public sealed record NodeOp(string Name, long Cpu, long Mem) : Op;

    public sealed record StepOp(int Steps) : Op;

    private static readonly Gen<long> GenLong = Gen.OneOf(
        Gen.Const(0L), Gen.Const(-1L), Gen.Const(1L), Gen.Const(long.MaxValue), Gen.Const(long.MinValue), Gen.Const(long.MaxValue - 1),
        Gen.Const(ResourceVector.MaxQuantity), Gen.Const(ResourceVector.MaxQuantity + 1), Gen.Long[0, 4000], Gen.Long[0, 1L << 34], Gen.Long);

    private static readonly Gen<int> GenInt = Gen.OneOf(
        Gen.Const(0), Gen.Const(-1), Gen.Const(1), Gen.Const(int.MaxValue), Gen.Const(int.MinValue), Gen.Const(2_000_000_000), Gen.Int[0, 5], Gen.Int);

    private static readonly Gen<int> GenTasks = Gen.OneOf(
        Gen.Const(0), Gen.Const(-1), Gen.Const(1_000_000), Gen.Const(1_000_001), Gen.Const(int.MaxValue), Gen.Int[1, 8]);

    private static readonly Gen<double> GenDouble = Gen.OneOf(
        Gen.Const(double.NaN), Gen.Const(double.PositiveInfinity), Gen.Const(double.NegativeInfinity), Gen.Const(-1.0), Gen.Const(0.0),
        Gen.Const(1e12), Gen.Const(1e300), Gen.Const(double.Epsilon), Gen.Double[0, 8]);

    private static readonly Gen<int> GenNode = Gen.OneOf(Gen.Int[0, 3], Gen.Const(-1), Gen.Const(int.MaxValue));

    private static readonly Gen<Op> GenOp = Gen.Frequency(
        (6, Gen.Select(Gen.Select(GenLong, GenInt, GenInt, GenTasks), Gen.Select(GenLong, GenLong, GenLong, GenLong), Gen.Bool, Gen.Bool,
            (a, r, gang, svc) => (Op)new SubmitOp(a.Item1, a.Item2, a.Item3, a.Item4, r.Item1, r.Item2, r.Item3, r.Item4, gang, svc))),
        (3, Gen.Select(GenLong, GenDouble, GenDouble, GenTasks, (j, c, m, t) => (Op)new SubmitCliOp(j, c, m, t))),
        (6, Gen.Select(
            Gen.Select(Gen.Select(GenLong, GenInt, GenNode, GenLong), Gen.Select(GenLong, GenInt, GenInt, GenLong),
                (a, b) => (a.Item1, a.Item2, a.Item3, a.Item4, b.Item1, b.Item2, b.Item3, b.Item4)).Array[0, 4],
            Gen.Bool, Gen.Bool, Gen.OneOf(Gen.Const(0UL), Gen.ULong[1, 4]),
            (claims, gang, coarse, key) => (Op)new CommitOp(claims, gang, coarse, key))),
        (2, Gen.Select(Gen.OneOf(Gen.Const("t1"), Gen.Const("batch"), Gen.Const(""), Gen.Const("has space"), Gen.Const(new string('x', 65)), Gen.String[1, 8]),
            GenLong, GenLong, Gen.Bool, (n, c, m, q) => (Op)new TenantOp(n, c, m, q))),
        (1, Gen.Select(GenInt, GenLong, GenLong, (t, c, m) => (Op)new QuotaOp(t, c, m))),
        // Node names are never blank here: a blank name is a caller bug (NodeSpec throws), and the server refuses it first.
        (1, Gen.Select(Gen.String[0, 6], GenLong, GenLong, (n, c, m) => (Op)new NodeOp("node-" + n, c, m))),
        (3, Gen.Int[1, 50].Select(s => (Op)new StepOp(s))));

    [Fact]
    public void Extreme_submissions_and_transactions_get_typed_outcomes_and_never_break_an_invariant()
    {
        string? seed = Environment.GetEnvironmentVariable("OMEGA_PROPERTY_SEED");
        output.WriteLine(seed is null ? "random seeds; a failure prints \"Set seed: ...\" (replay with OMEGA_PROPERTY_SEED)" : $"replaying seed {seed}");
        GenOp.Array[1, 25].Sample(Run, seed: seed, iter: 200, threads: 1, writeLine: output.WriteLine,
            print: ops => string.Join("\n  ", ops.Select(o => o.ToString())));
    }

    private static void Run(Op[] ops)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));
        using var cell = new Cell(new CellOptions { Time = time, MaxTenants = 8, InitialNodeCapacity = 16 });
        for (int i = 0; i < 3; i++) cell.AddNode(new NodeSpec($"n{i}", new ResourceVector(4000, 16L << 30)));
        var options = new SchedulingOptions { Time = time, Seed = 1 };
        options.Kinds.Add(new SchedulerKindOptions { Name = "batch", Workers = 1, MaxAttempts = 2, Backoff = TimeSpan.FromMilliseconds(1) });
        options.Kinds.Add(new SchedulerKindOptions { Name = "service", Workers = 1, MaxAttempts = 2, Detection = ConflictDetection.Coarse, Backoff = TimeSpan.FromMilliseconds(1) });
        using var engine = new SchedulingEngine(cell, options);
        var lease = cell.AcquireLease("raw", TimeSpan.FromDays(1)).Lease;
        var tx = new Transaction(lease);
        for (int i = 0; i < ops.Length; i++)
        {
            // Usage before the op: a tenant may be over a limit an operator lowered (legal), but the op must not make it grow.
            var before = UsageByTenant(cell);
            string where = $"op {i} {ops[i]}";
            switch (ops[i])
            {
                case SubmitOp s:
                {
                    var r = engine.Submit(new JobSpec(new JobId(s.Job), new TenantId(s.Tenant), s.Priority, s.Tasks, new ResourceVector(s.Cpu, s.Mem, s.Gpu, s.Disk), s.Gang),
                        s.Service ? "service" : "batch");
                    Assert.True(Enum.IsDefined(r.Status), where);
                    if (r.Accepted)
                    {
                        // Accepted means every admission check passed: a valid vector some node could hold, a known tenant.
                        Assert.True(new ResourceVector(s.Cpu, s.Mem, s.Gpu, s.Disk).IsValidRequest, where);
                        Assert.True(cell.TenantExists(new TenantId(s.Tenant)), where);
                        Assert.True(new ResourceVector(s.Cpu, s.Mem, s.Gpu, s.Disk).FitsWithin(cell.LargestNodeCapacity!.Value), where);
                    }
                    else Assert.False(string.IsNullOrWhiteSpace(r.Reason), where);
                    break;
                }
                case SubmitCliOp s:
                    // The CLI's conversion: a value with no valid vector is a usage error; anything else goes to admission.
                    if (ResourceVector.TryFromCoresAndGiB(s.Cores, s.GiB, out var v))
                    {
                        Assert.True(v.IsValidRequest, where);
                        Assert.True(Enum.IsDefined(engine.Submit(new JobSpec(new JobId(s.Job), default, 0, s.Tasks, v)).Status), where);
                    }
                    else Assert.False(double.IsFinite(s.Cores) && double.IsFinite(s.GiB) && s.Cores >= 0 && s.GiB >= 0 && s.Cores * 1000 <= ResourceVector.MaxQuantity && s.GiB * (1L << 30) <= ResourceVector.MaxQuantity, where);
                    break;
                case CommitOp c:
                {
                    tx.Reset(lease, c.Gang ? CommitMode.AllOrNothing : CommitMode.Incremental, c.Coarse ? ConflictDetection.Coarse : ConflictDetection.Fine,
                        c.Key == 0 ? IdempotencyKey.None : new IdempotencyKey(0, c.Key));
                    foreach (var k in c.Claims)
                        tx.Add(new Claim(new TaskId(k.Job, k.Index), new NodeId(k.Node), new ResourceVector(k.Cpu, k.Mem), k.Version, new TenantId(k.Tenant), k.Priority));
                    var r = cell.Commit(tx);
                    Assert.True(Enum.IsDefined(r.Status), where);
                    for (int j = 0; j < r.ClaimStatuses.Length; j++)
                    {
                        var st = r[j];
                        Assert.True(Enum.IsDefined(st), where);
                        if (st != ClaimStatus.Applied) continue;
                        var k = c.Claims[j];
                        Assert.True(new ResourceVector(k.Cpu, k.Mem).IsValidRequest && cell.TenantExists(new TenantId(k.Tenant)), $"{where}: claim {j} applied");
                    }
                    break;
                }
                case TenantOp t:
                    Assert.True(Enum.IsDefined(cell.CreateTenant(t.Name, t.WithQuota ? new ResourceVector(t.QuotaCpu, t.QuotaMem) : null, out _)), where);
                    Assert.True(cell.TenantCount <= 8, where);
                    break;
                case QuotaOp q:
                    Assert.True(Enum.IsDefined(cell.SetTenantQuota(new TenantId(q.Tenant), new ResourceVector(q.Cpu, q.Mem))), where);
                    break;
                case NodeOp n:
                    Assert.True(Enum.IsDefined(cell.AddNode(new NodeSpec(n.Name, new ResourceVector(n.Cpu, n.Mem)), out _)), where);
                    break;
                case StepOp s:
                    engine.RunUntilIdle(s.Steps);
                    time.Advance(TimeSpan.FromMilliseconds(10));
                    break;
            }
            AssertAudit(cell, before, where);
        }
        var last = UsageByTenant(cell);
        engine.RunUntilIdle(200);
        AssertAudit(cell, last, "final run");
        // No task bound twice (the cell's map is keyed by task; the engine's view must agree with it).
        var bound = cell.GetAllocations();
        Assert.Equal(bound.Count, bound.Select(a => a.Task).Distinct().Count());
    }
    private static Dictionary<int, ResourceVector> UsageByTenant(Cell cell)
    {
        var d = new Dictionary<int, ResourceVector>();
        foreach (var t in cell.GetTenants()) d[t.Id.Value] = t.Usage;
        return d;
    }

    /// <summary>
    /// The cell's audit must be clean, except that a tenant may be over its quota when the limit was lowered below what it
    /// already uses (<c>SetTenantQuota</c> allows that, as an expiring override does): then the op just applied must not
    /// have grown its usage in any dimension. "Quotas hold" means no placement takes a tenant past its limit.
    /// </summary>
    private static void AssertAudit(Cell cell, Dictionary<int, ResourceVector> before, string where)
    {
        var problems = cell.Audit().Where(p => !p.Contains("over quota", StringComparison.Ordinal)).ToList();
        Assert.True(problems.Count == 0, $"{where}: {string.Join("; ", problems)}");
        foreach (var t in cell.GetTenants())
        {
            if (t.Quota is not { } q || t.Usage.FitsWithin(q)) continue;
            var prev = before.TryGetValue(t.Id.Value, out var u) ? u : ResourceVector.Zero;
            Assert.True(t.Usage.FitsWithin(prev), $"{where}: tenant {t.Name} over its quota {q} and its usage grew from {prev} to {t.Usage}");
        }
    }
}
