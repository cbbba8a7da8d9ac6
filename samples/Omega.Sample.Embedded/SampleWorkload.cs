using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Omega.Hosting;
using Omega.Scheduling;

namespace Omega.Sample.Embedded;

/// <summary>How many jobs the sample places.</summary>
internal sealed record SampleWorkloadOptions(int Jobs);

/// <summary>
/// The application's own work: once Omega has started (store open and recovered, engine and server running), add a few
/// nodes (first run only: they are durable), submit jobs to both scheduler kinds, wait until each is placed, and stop the
/// application. Everything it reports goes through <see cref="ILogger"/>.
/// </summary>
internal sealed class SampleWorkload(OmegaRuntime runtime, SampleWorkloadOptions options, IHostApplicationLifetime lifetime, TimeProvider time, ILogger<SampleWorkload> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await runtime.Started.WaitAsync(stoppingToken);
            var cell = runtime.Cell;
            SampleLog.Started(log, runtime.EndPoint, cell.Version, runtime.Recovery.Allocations);
            if (cell.NodeCount == 0)
                for (int i = 0; i < 8; i++)
                    cell.AddNode(new NodeSpec($"node-{i}", ResourceVector.FromCoresAndGiB(16, 64), failureDomain: $"rack-{i % 2}"));

            // Job ids must be new to the cell: the cell's version only grows, across restarts too.
            long first = cell.Version * 1_000 + 1;
            var submitted = new List<(JobId Id, string Scheduler)>();
            for (int j = 0; j < options.Jobs; j++)
            {
                string scheduler = j % 4 == 0 ? "service" : "batch";
                var job = new JobSpec(new JobId(first + j), default, priority: scheduler == "service" ? 1 : 0, taskCount: 1 + j % 3, ResourceVector.FromCoresAndGiB(0.5, 1));
                var result = runtime.Engine.Submit(job, scheduler);
                if (result.Status != EnqueueStatus.Accepted) SampleLog.Refused(log, job.Id.Value, result.Status.ToString());
                else submitted.Add((job.Id, scheduler));
            }
            foreach (var (id, scheduler) in submitted)
            {
                var status = await WaitPlacedAsync(id, stoppingToken);
                SampleLog.Placed(log, id.Value, scheduler, status.Bound, status.Job.TaskCount);
            }
            SampleLog.AllPlaced(log, submitted.Count, cell.AllocationCount, cell.NodeCount);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            // The host then stops Omega in reverse order: server, workers, checkpoint, close.
            lifetime.StopApplication();
        }
    }

    // The engine keeps each job's state; the sample reads it on the host's clock until the job is placed.
    private async Task<JobStatus> WaitPlacedAsync(JobId id, CancellationToken cancel)
    {
        while (true)
        {
            if (runtime.Engine.TryGetJob(id, out var s) && s.Phase is JobPhase.Placed or JobPhase.Parked or JobPhase.Completed) return s;
            await Task.Delay(TimeSpan.FromMilliseconds(10), time, cancel);
        }
    }
}

/// <summary>The sample's log events (source-generated, with event ids).</summary>
internal static partial class SampleLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Omega is running on {EndPoint}: cell v{Version}, {Bindings} bindings recovered")]
    public static partial void Started(ILogger logger, System.Net.IPEndPoint endPoint, long version, long bindings);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "job j{Job} placed by the {Scheduler} scheduler: {Bound}/{Tasks} tasks bound")]
    public static partial void Placed(ILogger logger, long job, string scheduler, int bound, int tasks);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "job j{Job} refused: {Status}")]
    public static partial void Refused(ILogger logger, long job, string status);

    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "all {Jobs} jobs placed: {Bindings} bindings on {Nodes} nodes; stopping")]
    public static partial void AllPlaced(ILogger logger, int jobs, long bindings, int nodes);

    [LoggerMessage(EventId = 5, Level = LogLevel.Information, Message = "stopped with a checkpoint at cell v{Version} in {DataDirectory}")]
    public static partial void Done(ILogger logger, long version, string dataDirectory);
}
