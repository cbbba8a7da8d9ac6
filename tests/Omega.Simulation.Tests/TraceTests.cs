using Omega.Cells;

namespace Omega.Simulation.Tests;

public class TraceTests
{
    private const string Header = "job_id,submit_time_s,tasks,cpu_per_task,mem_per_task,priority,scheduling_class,different_machine_constraint,duration_s,finished,killed,failed,evicted,lost";

    private static bool Read(string csv, out IReadOnlyList<TraceJob> jobs, out TraceError? error)
        => TraceReader.TryRead(new StringReader(csv), out jobs, out error);

    [Fact]
    public void Reads_rows_in_the_shared_trace_format()
    {
        var csv = Header + "\n" +
                  "6251639646,4.046280,1,0.0625,0.0159,9,1,0,69.683,1,0,0,0,0\n" +
                  "6251668759,12.141654,3,0.5,0.25,0,1,1,,0,3,0,0,0\n";
        Assert.True(Read(csv, out var jobs, out var error), error?.ToString());
        Assert.Equal(2, jobs.Count);
        Assert.Equal(new TraceJob(6251639646, 4.04628, 1, 0.0625, 0.0159, 9, 1, false, 69.683), jobs[0]);
        Assert.Null(jobs[1].Duration);
        Assert.True(jobs[1].DifferentMachine);

        var sim = TraceReader.ToJobs(jobs, ResourceVector.FromCoresAndGiB(4, 16), ["batch"], "service");
        Assert.Equal("service", sim[0].Scheduler);          // priority 9: production
        Assert.Equal(250, sim[0].TaskResources.CpuMillis);  // 0.0625 of a 4-core machine
        Assert.Equal("batch", sim[1].Scheduler);
        Assert.Equal(2000, sim[1].TaskResources.CpuMillis);
        Assert.True(double.IsPositiveInfinity(sim[1].Duration)); // no recorded duration: runs to the end
    }

    [Fact]
    public void A_malformed_number_gives_a_typed_error_with_line_and_column()
    {
        var csv = Header + "\n" +
                  "1,4.0,1,0.0625,0.0159,9,1,0,69.6,1,0,0,0,0\n" +
                  "2,5.0,two,0.0625,0.0159,9,1,0,69.6,1,0,0,0,0\n";
        Assert.False(Read(csv, out _, out var error));
        Assert.Equal(TraceErrorCode.BadNumber, error!.Code);
        Assert.Equal(3, error.Line);
        Assert.Equal("tasks", error.Column);
        Assert.Contains("'two'", error.Message);
    }

    [Theory]
    [InlineData("1,4.0,1,0.06,0.01,9,1,0\n", TraceErrorCode.WrongFieldCount, "")]
    [InlineData("1,4.0,1,-0.5,0.01,9,1,0,10,1,0,0,0,0\n", TraceErrorCode.OutOfRange, "cpu_per_task")]
    [InlineData("1,4.0,1,0.5,0.01,12,1,0,10,1,0,0,0,0\n", TraceErrorCode.OutOfRange, "priority")]
    [InlineData("1,NaN,1,0.5,0.01,1,1,0,10,1,0,0,0,0\n", TraceErrorCode.BadNumber, "submit_time_s")]
    public void Bad_rows_are_rejected_with_their_code(string row, TraceErrorCode code, string column)
    {
        Assert.False(Read(Header + "\n" + row, out _, out var error));
        Assert.Equal(code, error!.Code);
        Assert.Equal(2, error.Line);
        Assert.Equal(column, error.Column);
    }

    [Fact]
    public void A_missing_column_or_empty_input_is_reported()
    {
        Assert.False(Read("job_id,submit_time_s\n1,2\n", out _, out var e1));
        Assert.Equal(TraceErrorCode.MissingColumn, e1!.Code);
        Assert.Equal("tasks", e1.Column);
        Assert.False(Read("", out _, out var e2));
        Assert.Equal(TraceErrorCode.Empty, e2!.Code);
    }

    /// <summary>The shared Google trace when it is beside the repository (../shared), else a synthetic one written here.</summary>
    [Fact]
    public void A_trace_drives_the_simulator()
    {
        string? shared = FindShared();
        IReadOnlyList<TraceJob> jobs;
        if (shared is not null)
        {
            Assert.True(TraceReader.TryReadFile(shared, out jobs, out var err), err?.ToString());
            Assert.Equal(7583, jobs.Count);                      // the README's row count
            Assert.Equal(224_966, jobs.Sum(j => (long)j.Tasks)); // and task count
            jobs = jobs.Where(j => j.SubmitTime < 1800).ToList(); // the first half hour keeps the test fast
        }
        else
        {
            var rows = Enumerable.Range(0, 200).Select(i => $"{i},{i * 5.0},{1 + i % 7},0.05,0.02,{(i % 10 == 0 ? 9 : 1)},1,0,{60 + i},1,0,0,0,0");
            Assert.True(Read(Header + "\n" + string.Join("\n", rows), out jobs, out var err), err?.ToString());
        }
        var config = Presets.Build(new PresetOptions { Machines = 2000, Duration = 1800, Seed = 3, Trace = jobs }, ConflictDetection.Fine, CommitMode.Incremental, 0.1, 2, 1, 30);
        var r = Simulator.Run(config);
        Assert.Empty(r.AuditProblems);
        long submitted = r.Schedulers.Sum(s => s.JobsSubmitted);
        Assert.Equal(jobs.Count(j => j.Tasks > 0 && j.SubmitTime <= 1800), submitted);
        Assert.True(r.Group("batch").JobsFullyPlaced > 0);
    }

    private static string? FindShared()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "shared", "traces", "google2011-jobs-a.csv");
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }
}

/// <summary>The trace's different-machine constraint in replay (issue 12: about 27k tasks of the Google trace carry it).</summary>
public class DifferentMachineTests
{
    private const string Header = "job_id,submit_time_s,tasks,cpu_per_task,mem_per_task,priority,scheduling_class,different_machine_constraint,duration_s";

    private static SimulationResult Replay(bool differentMachine)
    {
        // Three big machines; a job of 5 small tasks: without the constraint all 5 fit on one machine, with it at most 3.
        var csv = Header + "\n" + $"1,0.5,5,0.01,0.01,0,1,{(differentMachine ? 1 : 0)},\n";
        Assert.True(TraceReader.TryRead(new StringReader(csv), out var jobs, out var error), error?.ToString());
        Assert.Equal(differentMachine, jobs[0].DifferentMachine);
        var sim = TraceReader.ToJobs(jobs, ResourceVector.FromCoresAndGiB(4, 16), ["batch"], "service");
        Assert.Equal(differentMachine, sim[0].DifferentMachine);
        var config = TestWorlds.Cell(3, 64, 60, new SchedulerSpec("batch", JobTime: 0.1, TaskTime: 0.001)) with { Jobs = sim, RecordJobs = true };
        return Simulator.Run(config);
    }

    [Fact]
    public void A_different_machine_job_puts_at_most_one_task_per_machine_in_replay()
    {
        var free = Replay(differentMachine: false).Jobs.Single();
        Assert.Equal(5, free.Placed);
        var constrained = Replay(differentMachine: true).Jobs.Single();
        Assert.Equal(3, constrained.Placed); // one per machine; the other two stay unplaced
        Assert.NotEqual(JobOutcome.FullyPlaced, constrained.Outcome);
    }
}
