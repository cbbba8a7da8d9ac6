using Microsoft.Extensions.Time.Testing;
using Omega.Cells;

namespace Omega.Scheduling.Tests;

public class EngineSmokeTests
{
    [Fact]
    public void Jobs_are_placed_or_parked_with_a_reason()
    {
        var time = new FakeTimeProvider();
        using var cell = new Cell(new CellOptions { Time = time }).WithTenants();
        var options = new SchedulingOptions { Time = time, Seed = 7 };
        options.Kinds.Add(new SchedulerKindOptions { Name = "batch", Workers = 2, MaxAttempts = 3 });
        using var engine = new SchedulingEngine(cell, options);
        // Submitted before any node exists, a job too large for every node is accepted (there is nothing to compare it
        // with yet) and parks with the reason; once nodes exist, admission refuses such a job outright.
        Assert.True(engine.Submit(new JobSpec(new JobId(2), default, 1, 1, ResourceVector.FromCoresAndGiB(64, 2))).Accepted);
        for (int i = 0; i < 20; i++) cell.AddNode(new NodeSpec($"n{i}", ResourceVector.FromCoresAndGiB(4, 16), $"rack-{i % 4}"));
        Assert.Equal(EnqueueStatus.RequestExceedsLargestNode, engine.Submit(new JobSpec(new JobId(3), default, 1, 1, ResourceVector.FromCoresAndGiB(64, 2))).Status);

        Assert.True(engine.Submit(new JobSpec(new JobId(1), default, 1, 10, ResourceVector.FromCoresAndGiB(1, 2))).Accepted);
        for (int round = 0; round < 5; round++)
        {
            engine.RunUntilIdle();
            time.Advance(TimeSpan.FromSeconds(2)); // let back-offs expire
        }

        Assert.True(engine.TryGetJob(new JobId(1), out var placed));
        Assert.Equal(JobPhase.Placed, placed.Phase);
        Assert.Equal(10, placed.Bound);
        Assert.True(engine.TryGetJob(new JobId(2), out var parked));
        Assert.Equal(JobPhase.Parked, parked.Phase);
        Assert.Contains("InsufficientResources", parked.ParkedReason);
        var record = engine.Explain(new TaskId(2, 0));
        Assert.NotNull(record);
        Assert.Equal(20, record!.FilteredByReason[Pipeline.FilterStatus.InsufficientResources]);
        Assert.Empty(cell.Audit());
    }
}
