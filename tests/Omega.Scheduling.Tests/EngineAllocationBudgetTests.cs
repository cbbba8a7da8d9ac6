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

    [Fact]
    public void Engine_step_allocation_per_placement_is_within_budget()
    {
        var cell = new Cell(new CellOptions { Name = "alloc", InitialNodeCapacity = Nodes });
        for (int i = 0; i < Nodes; i++) cell.AddNode(new NodeSpec($"node-{i:D6}", ResourceVector.FromCoresAndGiB(64, 256), failureDomain: $"rack-{i % 100}"));
        var options = new SchedulingOptions { Seed = 7, DecisionSampleEvery = 64 };
        options.Kinds.Add(new SchedulerKindOptions { Name = "batch", Workers = 1, Preemption = false });
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

        for (int i = 0; i < 4_000; i++) One(measure: false);   // warm: JIT tiers, pools and tables at steady size
        const int Jobs = 2_000;
        for (int i = 0; i < Jobs; i++) One(measure: true);
        double perPlacement(long bytes) => bytes / (double)(Jobs * Tasks);
        output.WriteLine($"bytes per placement: submit {perPlacement(submitBytes):F1}, step {perPlacement(stepBytes):F1}, complete {perPlacement(completeBytes):F1}");
        // Budget: the engine step (dequeue, snapshot, decide, commit, bookkeeping, decision record) allocates nothing per
        // placement once warm, apart from per-job objects amortised over the job's tasks.
        output.WriteLine($"budget: step <= {StepBudgetBytesPerPlacement} B per placement");
        Assert.True(perPlacement(stepBytes) <= StepBudgetBytesPerPlacement, $"engine step: {perPlacement(stepBytes):F1} B per placement > budget {StepBudgetBytesPerPlacement}");
    }

    /// <summary>Bytes per placement allowed on the warm engine step.</summary>
    /// <remarks>
    /// Measured 1,061 B before issue 14 (every 16-task job allocated a 1,024-slot per-task chunk on its first binding);
    /// 20.4 B after sizing the chunk to the job. What remains is per job, amortised over its 16 tasks: the job's 16-slot
    /// per-task chunk (~17.5 B per placement) and the sampled decision record (1 job in 64). The target is 0 B:
    /// that needs the per-task slots inline in JobState for small jobs (or pooled), not done yet; lower this budget then.
    /// </remarks>
    private const double StepBudgetBytesPerPlacement = 24;
}
