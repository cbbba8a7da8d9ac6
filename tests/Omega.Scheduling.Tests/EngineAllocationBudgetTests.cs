using Omega.Cells;
using Xunit.Abstractions;

namespace Omega.Scheduling.Tests;

/// <summary>
/// The allocation budget of the engine's per-placement path (issue 14), measured the way SchedulingBenchmarks'
/// SubmitScheduleCompletePerPlacement runs it: 10,000 nodes, 16-task jobs, one worker, warm. Bytes are counted with
/// <see cref="GC.GetAllocatedBytesForCurrentThread"/>, which is exact and independent of machine load, so the budget is
/// a deterministic test rather than a benchmark reading.
/// </summary>
public sealed class EngineAllocationBudgetTests(ITestOutputHelper output)
{
    private const int Tasks = 16;
    private const int Nodes = 10_000;

    /// <summary>
    /// Budgets in bytes per placement on the warm engine step (dequeue, snapshot, decide, commit, bookkeeping): 0 with
    /// no decision records kept (checked per round of 8,000 placements, see below: a rare one-off on this thread is not a
    /// per-placement cost); with 1 successful decision in 64 kept (the benchmark's setting) the kept records cost
    /// ~3 KB each, i.e. ~3 B per placement of 16-task jobs; since decision records carry their replay inputs (issue 18:
    /// seed, nodes read, tenant usage) a kept record is ~4.5 KB, ~4.2 B per placement measured, so 6 B. Before issue 14: 1,061 B (every 16-task job allocated
    /// a 1,024-slot per-task chunk on its first binding; now a small job's per-task state is allocated at submission).
    /// </summary>
    [Theory]
    [InlineData(int.MaxValue, 0.0)]
    [InlineData(64, 6.0)]
    public void Engine_step_allocation_per_placement_is_within_budget(int decisionSampleEvery, double stepBudgetBytesPerPlacement)
    {
        var cell = new Cell(new CellOptions { Name = "alloc", InitialNodeCapacity = Nodes });
        for (int i = 0; i < Nodes; i++) cell.AddNode(new NodeSpec($"node-{i:D6}", ResourceVector.FromCoresAndGiB(64, 256), failureDomain: $"rack-{i % 100}"));
        var options = new SchedulingOptions { Seed = 7, DecisionSampleEvery = decisionSampleEvery, CompletedJobRetention = 1_000 };
        options.Kinds.Add(new SchedulerKindOptions { Name = "batch", Workers = 1, Preemption = false });
        // Warm the cell's per-node binding index to its working size: each node's list grows (4, 8, 16 entries) the first
        // time it holds that many bindings, which bin-packing reaches node by node over a long run. Growth of the cell's
        // tables is not a per-placement cost; hold 16 tasks on every node once, then release them.
        var fill = cell.AcquireLease("warm", TimeSpan.FromHours(1)).Lease;
        var tx = new Transaction(fill);
        for (int n = 0; n < Nodes; n++)
        {
            tx.Reset(fill, CommitMode.Incremental, ConflictDetection.Fine);
            for (int k = 0; k < Tasks; k++) tx.Add(new Claim(new TaskId(-1 - n, k), new NodeId(n), ResourceVector.FromCoresAndGiB(1, 1), 0));
            if (cell.Commit(tx).Status != TransactionStatus.Committed) Assert.Fail("warm-up commit refused");
            for (int k = 0; k < Tasks; k++) cell.Release(new TaskId(-1 - n, k));
        }
        using var engine = new SchedulingEngine(cell, options);
        var request = ResourceVector.FromCoresAndGiB(1, 2);
        long nextJob = 0;
        long submitBytes = 0, stepBytes = 0, completeBytes = 0;

        void One(bool measure)
        {
            var job = new JobSpec(new JobId(++nextJob), new TenantId(0), 0, Tasks, request);
            long a = GC.GetAllocatedBytesForCurrentThread();
            if (!engine.Submit(job).Accepted) Assert.Fail("submit refused");
            long b = GC.GetAllocatedBytesForCurrentThread();
            var outcome = engine.Workers[0].Step();
            if (outcome != StepOutcome.Placed) Assert.Fail($"step: {outcome}");
            long c = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < Tasks; i++) engine.CompleteTask(job.Task(i));
            long d = GC.GetAllocatedBytesForCurrentThread();
            if (!measure) return;
            submitBytes += b - a;
            stepBytes += c - b;
            completeBytes += d - c;
        }

        // Warm: JIT tiers, and every table at its steady size (the completed-job retention, 1,000 here, is reached).
        for (int i = 0; i < 4_000; i++) One(measure: false);
        // Measured in 4 rounds of 500 jobs (8,000 placements each). A per-placement or per-job cost shows in every round; a
        // one-off (a table of the runtime or of a tier-up growing once on this thread: 11 KB in one CI run of 32,000
        // placements) shows in one. The second-best round must be within budget, so a one-off in up to two rounds passes
        // and a steady cost of 1 byte in 24 placements (one small object per ~1.5 jobs) fails.
        const int Rounds = 4, JobsPerRound = 500;
        var stepPerRound = new double[Rounds];
        double perPlacement(long bytes) => bytes / (double)(JobsPerRound * Tasks);
        for (int r = 0; r < Rounds; r++)
        {
            submitBytes = stepBytes = completeBytes = 0;
            for (int i = 0; i < JobsPerRound; i++) One(measure: true);
            stepPerRound[r] = perPlacement(stepBytes);
            output.WriteLine($"round {r}: step bytes in all {stepBytes:N0}; bytes per placement: submit {perPlacement(submitBytes):F1}, step {perPlacement(stepBytes):F2}, complete {perPlacement(completeBytes):F1}");
        }
        Array.Sort(stepPerRound);
        output.WriteLine($"budget: step <= {stepBudgetBytesPerPlacement} B per placement in the second-best round ({stepPerRound[1]:F2})");
        Assert.True(stepPerRound[1] <= stepBudgetBytesPerPlacement, $"engine step: {stepPerRound[1]:F2} B per placement in the second-best round > budget {stepBudgetBytesPerPlacement}");
    }
}
