using BenchmarkDotNet.Attributes;
using Omega.Cells;
using Omega.Scheduling;
using Omega.Scheduling.Pipeline;

namespace Omega.Benchmarks;

/// <summary>
/// The scheduling path per placement at 10,000 nodes: the decision alone (<see cref="PlacementPipeline.Plan"/> for a
/// 16-task job on a snapshot) and the whole engine step (submit, dequeue, decide, commit, record, then complete the
/// tasks so the cell stays in the same state). Each is reported per placement (OperationsPerInvoke = 16).
/// </summary>
/// <remarks>
/// Budgets (these are targets, not measurements; the coordinator measures on a quiet machine with
/// bench/scripts/commit-scaling-report.sh, COMMIT_SCALING_ONLY_BDN=1 for this class alone):
/// <list type="bullet">
/// <item><see cref="DecidePerPlacement"/>: budget ≤ 0.2 µs per placement (issue 14) and 0 B.</item>
/// <item><see cref="SubmitScheduleCompletePerPlacement"/>: budget ~2 µs of one core per placement for the whole path
/// (submit, decide, commit, bookkeeping, completion), and ≤ 100 B per placement. Those bytes are the harness's own: a
/// JobSpec per job and the 1-in-64 decision record with its replay inputs, amortized over 16 tasks. The engine step
/// itself has a 0 B budget with no decision records kept (≤ 6 B per placement with 1 in 64 kept).</item>
/// </list>
/// The byte budgets are enforced, load-independently, by tests/Omega.Scheduling.Tests/EngineAllocationBudgetTests.cs
/// (GC.GetAllocatedBytesForCurrentThread); this class reports the time, which only a quiet machine can measure. Both
/// methods draw from the same seeds on every run, so two builds with the same decisions do the same work (the
/// <c>decide-loop</c> mode, <see cref="SchedulingProfileLoop"/>, prints a checksum of the decisions to compare builds).
/// </remarks>
[MemoryDiagnoser]
[MedianColumn]
public class SchedulingBenchmarks
{
    private const int Tasks = 16;

    private BenchCell _fixture = null!;
    private PlacementPipeline _pipeline = null!;
    private readonly List<PlannedClaim> _planned = new(Tasks);
    private readonly PlanStats _stats = new();
    private readonly Random _rng = new(7);
    private readonly int[] _indexes = Enumerable.Range(0, Tasks).ToArray();
    private JobSpec _job = null!;

    private BenchCell _engineFixture = null!;
    private SchedulingEngine _engine = null!;
    private long _nextJob;

    [GlobalSetup]
    public void Setup()
    {
        _fixture = new BenchCell();
        _pipeline = PlacementPipeline.CreateDefault();
        _job = new JobSpec(new JobId(1), new TenantId(0), 0, Tasks, BenchCell.TaskRequest);

        _engineFixture = new BenchCell();
        var options = new SchedulingOptions { Seed = 7, DecisionSampleEvery = 64 };
        options.Kinds.Add(new SchedulerKindOptions { Name = "batch", Workers = 1, Preemption = false });
        _engine = new SchedulingEngine(_engineFixture.Cell, options);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _engine.Dispose();
        _engineFixture.Dispose();
        _fixture.Dispose();
    }

    /// <summary>Decide 16 tasks on a fresh snapshot: sampling, filters, scorers, selection. Budget ≤ 0.2 µs and 0 B per placement.</summary>
    [Benchmark(OperationsPerInvoke = Tasks)]
    public int DecidePerPlacement()
    {
        _planned.Clear();
        _pipeline.Plan(_job, _indexes, _fixture.Cell.Snapshot(), default, ReadOnlySpan<NodeId>.Empty, _rng, _planned, _stats);
        return _planned.Count;
    }

    /// <summary>The claims of the last <see cref="DecidePerPlacement"/> call (for the profile loop's decision checksum).</summary>
    internal List<PlannedClaim> LastPlanned => _planned;

    /// <summary>
    /// The whole engine path for one 16-task job: submit, one worker step (dequeue, snapshot, decide, commit, bookkeeping,
    /// decision record), then completion of its tasks. Budget ~2 µs and ≤ 100 B per placement (submit and completion
    /// included; the bytes are the harness's JobSpec and the sampled decision records, the step itself is 0 B).
    /// </summary>
    [Benchmark(OperationsPerInvoke = Tasks)]
    public int SubmitScheduleCompletePerPlacement()
    {
        var job = new JobSpec(new JobId(++_nextJob), new TenantId(0), 0, Tasks, BenchCell.TaskRequest);
        _engine.Submit(job);
        var outcome = _engine.Workers[0].Step();
        if (outcome != StepOutcome.Placed) throw new InvalidOperationException($"step: {outcome}");
        for (int i = 0; i < Tasks; i++) _engine.CompleteTask(job.Task(i));
        return Tasks;
    }
}
