using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Xunit.Abstractions;

namespace Omega.Scheduling.Tests;

/// <summary>
/// Issue 14: where a worker's wall time goes (deciding, committing, the rest of its steps, idle), through the public
/// engine API and the omega.sched.worker.time metric. No timing assertion: only that each part is accounted where it
/// belongs and the parts never exceed the wall time.
/// </summary>
public class WorkerTimesTests(ITestOutputHelper output)
{
    [Fact]
    public void A_driven_worker_accounts_its_step_as_deciding_and_committing_and_an_empty_queue_as_idle()
    {
        var time = new FakeTimeProvider();
        using var cell = new Cell(new CellOptions { Time = time }).WithTenants();
        for (int i = 0; i < 20; i++) cell.AddNode(new NodeSpec($"n{i}", ResourceVector.FromCoresAndGiB(4, 16), $"rack-{i % 4}"));
        var options = new SchedulingOptions { Time = time, Seed = 3 };
        options.Kinds.Add(new SchedulerKindOptions { Name = "batch", Workers = 1 });
        using var engine = new SchedulingEngine(cell, options);

        Assert.Empty(engine.GetWorkerTimes("no-such-kind"));
        var before = Assert.Single(engine.GetWorkerTimes("batch"));
        Assert.Equal(0, before.Steps);
        Assert.Equal(0, before.CommittingSeconds);

        Assert.True(engine.Submit(new JobSpec(new JobId(1), default, 1, 10, ResourceVector.FromCoresAndGiB(1, 2))).Accepted);
        engine.RunUntilIdle();
        Assert.True(engine.TryGetJob(new JobId(1), out var placed));
        Assert.Equal(JobPhase.Placed, placed.Phase);

        var t = Assert.Single(engine.GetWorkerTimes("batch"));
        output.WriteLine(t.ToString());
        Assert.Equal("batch", t.Kind);
        Assert.Equal(0, t.Index);
        Assert.Equal(1, t.Steps);              // one step took the job and placed all ten tasks
        Assert.True(t.IdleSteps >= 1, $"RunUntilIdle ends on a step that found no job: {t}");
        Assert.True(t.DecidingSeconds > 0, $"deciding not accounted: {t}");
        Assert.True(t.CommittingSeconds > 0, $"committing not accounted: {t}");
        Assert.True(t.OtherSeconds >= 0 && t.IdleSeconds >= 0, t.ToString());
        Assert.True(t.DecidingSeconds + t.CommittingSeconds + t.OtherSeconds + t.IdleSeconds <= t.WallSeconds, $"parts exceed the wall time: {t}");
    }

    [Fact]
    public async Task A_running_worker_reports_idle_time_before_work_and_committing_after_it_also_as_a_metric()
    {
        const string kind = "worker-times-probe"; // unique: the listener also sees other tests' engines
        using var cell = new Cell(new CellOptions()).WithTenants();
        for (int i = 0; i < 20; i++) cell.AddNode(new NodeSpec($"n{i}", ResourceVector.FromCoresAndGiB(4, 16), $"rack-{i % 4}"));
        var options = new SchedulingOptions { Seed = 5 };
        options.Kinds.Add(new SchedulerKindOptions { Name = kind, Workers = 2 });
        await using var engine = new SchedulingEngine(cell, options);
        engine.Start();

        // Nothing queued: both workers' time goes to idle.
        await TestKit.WaitUntil(() => engine.GetWorkerTimes(kind).All(w => w.IdleSteps > 0 && w.IdleSeconds > 0), TimeSpan.FromSeconds(60),
            () => string.Join("; ", engine.GetWorkerTimes(kind)));
        Assert.All(engine.GetWorkerTimes(kind), w => Assert.Equal(0, w.Steps));

        var jobs = new List<JobSpec>();
        for (int j = 1; j <= 8; j++)
        {
            var spec = new JobSpec(new JobId(j), default, 1, 4, ResourceVector.FromCoresAndGiB(1, 2));
            Assert.True(engine.Submit(spec, kind).Accepted);
            jobs.Add(spec);
        }
        await TestKit.WaitUntil(() => jobs.All(s => engine.TryGetJob(s.Id, out var st) && st.Phase == JobPhase.Placed), TimeSpan.FromSeconds(60),
            () => string.Join("; ", engine.GetWorkerTimes(kind)));

        var times = engine.GetWorkerTimes(kind);
        foreach (var w in times) output.WriteLine(w.ToString());
        Assert.Equal(2, times.Count);
        Assert.True(times.Sum(w => w.Steps) >= 8, "every job took at least one step");
        Assert.True(times.Sum(w => w.CommittingSeconds) > 0);
        Assert.True(times.Sum(w => w.DecidingSeconds) > 0);
        foreach (var w in times)
            Assert.True(w.DecidingSeconds + w.CommittingSeconds + w.OtherSeconds + w.IdleSeconds <= w.WallSeconds + 1e-9, $"parts exceed the wall time: {w}");

        // The same figures as the observable counter omega.sched.worker.time, by scheduler, worker and state.
        var committing = new double[2];
        var states = new HashSet<string>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == SchedulingMetrics.MeterName && instrument.Name == "omega.sched.worker.time") l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<double>((_, value, tags, _) =>
        {
            string? scheduler = null, state = null;
            int worker = -1;
            foreach (var tag in tags)
            {
                if (tag.Key == "scheduler") scheduler = tag.Value as string;
                else if (tag.Key == "state") state = tag.Value as string;
                else if (tag.Key == "worker" && tag.Value is int i) worker = i;
            }
            if (scheduler != kind || state is null) return;
            lock (states)
            {
                states.Add(state);
                if (state == "committing" && (uint)worker < 2) committing[worker] = value;
            }
        });
        listener.Start();
        listener.RecordObservableInstruments();
        lock (states)
        {
            Assert.Equal(new HashSet<string> { "deciding", "committing", "other", "idle" }, states);
            Assert.True(committing[0] + committing[1] > 0, "the metric reports the committing time");
        }
    }
}
