using System.Globalization;

namespace Omega.Simulation;

/// <summary>One job of a trace in the format of ../shared/traces/google2011-jobs-a.csv (see that folder's README).</summary>
/// <param name="JobId">The trace's job id.</param>
/// <param name="SubmitTime">Seconds since trace start.</param>
/// <param name="Tasks">Task count.</param>
/// <param name="CpuPerTask">CPU request per task, normalized (largest machine = 1.0).</param>
/// <param name="MemPerTask">Memory request per task, normalized.</param>
/// <param name="Priority">Priority 0-11 (9-11: production).</param>
/// <param name="SchedulingClass">Scheduling class 0-3.</param>
/// <param name="DifferentMachine">The "different machine" constraint was set.</param>
/// <param name="Duration">Median task duration in seconds, or null when no task finished in the trace window.</param>
public sealed record TraceJob(long JobId, double SubmitTime, int Tasks, double CpuPerTask, double MemPerTask, int Priority, int SchedulingClass, bool DifferentMachine, double? Duration);

/// <summary>Why a trace could not be read. Each is an expected outcome of bad input, reported as a value.</summary>
public enum TraceErrorCode : byte
{
    /// <summary>The input is empty: no header line.</summary>
    Empty = 1,

    /// <summary>The header lacks a required column.</summary>
    MissingColumn = 2,

    /// <summary>A row has a different number of fields than the header.</summary>
    WrongFieldCount = 3,

    /// <summary>A field is not a number of the expected kind.</summary>
    BadNumber = 4,

    /// <summary>A number is outside its allowed range (negative count, time or request; priority outside 0-11).</summary>
    OutOfRange = 5,
}

/// <summary>A trace reading error: what, where (1-based line and the column's name) and a one-line message.</summary>
/// <param name="Code">The kind of error.</param>
/// <param name="Line">The 1-based line number (the header is line 1).</param>
/// <param name="Column">The column concerned, or empty.</param>
/// <param name="Message">A one-line description.</param>
public sealed record TraceError(TraceErrorCode Code, int Line, string Column, string Message)
{
    /// <inheritdoc />
    public override string ToString() => $"line {Line}: {Message}";
}

/// <summary>Reads job traces (CSV with a header; columns found by name, extra columns ignored).</summary>
public static class TraceReader
{
    private static readonly string[] Required =
        ["job_id", "submit_time_s", "tasks", "cpu_per_task", "mem_per_task", "priority", "scheduling_class", "different_machine_constraint", "duration_s"];

    /// <summary>Reads a whole trace. On bad input returns false with a typed <paramref name="error"/>; I/O failures throw.</summary>
    public static bool TryRead(TextReader reader, out IReadOnlyList<TraceJob> jobs, out TraceError? error)
    {
        ArgumentNullException.ThrowIfNull(reader);
        var list = new List<TraceJob>();
        jobs = list;
        error = null;
        string? header = reader.ReadLine();
        if (header is null)
        {
            error = new TraceError(TraceErrorCode.Empty, 1, "", "the trace is empty (no header line)");
            return false;
        }
        var names = header.Trim().Split(',');
        var col = new int[Required.Length];
        for (int i = 0; i < Required.Length; i++)
        {
            col[i] = Array.IndexOf(names, Required[i]);
            if (col[i] < 0)
            {
                error = new TraceError(TraceErrorCode.MissingColumn, 1, Required[i], $"the header has no column '{Required[i]}'");
                return false;
            }
        }
        int line = 1;
        string? text;
        while ((text = reader.ReadLine()) is not null)
        {
            line++;
            if (text.Length == 0) continue;
            var f = text.Split(',');
            if (f.Length != names.Length)
            {
                error = new TraceError(TraceErrorCode.WrongFieldCount, line, "", $"expected {names.Length} fields, found {f.Length}");
                return false;
            }
            if (!Long(f, col[0], 0, line, out long id, out error)
                || !Double(f, col[1], 1, line, out double submit, out error)
                || !Int(f, col[2], 2, line, out int tasks, out error)
                || !Double(f, col[3], 3, line, out double cpu, out error)
                || !Double(f, col[4], 4, line, out double mem, out error)
                || !Int(f, col[5], 5, line, out int priority, out error)
                || !Int(f, col[6], 6, line, out int cls, out error)
                || !Int(f, col[7], 7, line, out int diff, out error))
                return false;
            double? duration = null;
            if (f[col[8]].Length > 0)
            {
                if (!Double(f, col[8], 8, line, out double d, out error)) return false;
                duration = d;
            }
            string? bad = submit < 0 ? "submit_time_s" : tasks < 0 ? "tasks" : cpu < 0 ? "cpu_per_task" : mem < 0 ? "mem_per_task"
                : priority is < 0 or > 11 ? "priority" : cls is < 0 or > 3 ? "scheduling_class" : diff is < 0 or > 1 ? "different_machine_constraint"
                : duration < 0 ? "duration_s" : null;
            if (bad is not null)
            {
                error = new TraceError(TraceErrorCode.OutOfRange, line, bad, $"column '{bad}' is out of range");
                return false;
            }
            list.Add(new TraceJob(id, submit, tasks, cpu, mem, priority, cls, diff == 1, duration));
        }
        return true;
    }

    /// <summary>Reads a trace file. Bad content gives false and a typed error; a missing or unreadable file throws (I/O).</summary>
    public static bool TryReadFile(string path, out IReadOnlyList<TraceJob> jobs, out TraceError? error)
    {
        using var reader = new StreamReader(path);
        return TryRead(reader, out jobs, out error);
    }

    /// <summary>
    /// Turns trace jobs into simulator jobs: normalized requests scale the machine capacity (1.0 = one whole machine);
    /// production priorities (9-11) go to the service scheduler, the rest round-robin to the batch schedulers; jobs with
    /// no task are dropped; a job with no recorded duration runs to the end of the run.
    /// </summary>
    public static IReadOnlyList<JobSpec> ToJobs(IReadOnlyList<TraceJob> trace, ResourceVector machine, IReadOnlyList<string> batchSchedulers, string serviceScheduler)
    {
        ArgumentNullException.ThrowIfNull(trace);
        ArgumentNullException.ThrowIfNull(batchSchedulers);
        var jobs = new List<JobSpec>(trace.Count);
        int cursor = 0;
        foreach (var t in trace)
        {
            if (t.Tasks < 1) continue;
            bool service = t.Priority >= 9;
            string scheduler = service ? serviceScheduler : batchSchedulers[cursor++ % batchSchedulers.Count];
            var res = new ResourceVector((long)Math.Round(t.CpuPerTask * machine.CpuMillis), (long)Math.Round(t.MemPerTask * machine.MemoryBytes));
            double duration = t.Duration is { } d ? Math.Max(d, 0.001) : double.PositiveInfinity;
            jobs.Add(new JobSpec(t.SubmitTime, t.Tasks, res, duration, scheduler, service ? "service" : "batch", t.DifferentMachine));
        }
        return jobs;
    }

    private static bool Double(string[] f, int index, int req, int line, out double value, out TraceError? error)
    {
        error = null;
        if (double.TryParse(f[index], NumberStyles.Float, CultureInfo.InvariantCulture, out value) && double.IsFinite(value)) return true;
        error = new TraceError(TraceErrorCode.BadNumber, line, Required[req], $"column '{Required[req]}' is not a number: '{f[index]}'");
        return false;
    }

    private static bool Long(string[] f, int index, int req, int line, out long value, out TraceError? error)
    {
        error = null;
        if (long.TryParse(f[index], NumberStyles.Integer, CultureInfo.InvariantCulture, out value)) return true;
        error = new TraceError(TraceErrorCode.BadNumber, line, Required[req], $"column '{Required[req]}' is not an integer: '{f[index]}'");
        return false;
    }

    private static bool Int(string[] f, int index, int req, int line, out int value, out TraceError? error)
    {
        error = null;
        if (int.TryParse(f[index], NumberStyles.Integer, CultureInfo.InvariantCulture, out value)) return true;
        error = new TraceError(TraceErrorCode.BadNumber, line, Required[req], $"column '{Required[req]}' is not an integer: '{f[index]}'");
        return false;
    }
}
