using Omega.Agent;
using Omega.Protocol;

namespace Omega.Wire.Tests;

/// <summary>
/// Protocol version 4 job verbs over loopback TCP (issue 17): a job's placement is pushed to a watcher (no polling), and
/// StopJob releases a job's bindings, is idempotent, audited and scoped.
/// </summary>
public sealed class JobVerbWireTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task A_watch_gets_the_placement_pushed_when_the_engine_places_the_job_and_then_ends()
    {
        // Workers not started: nothing changes until the test steps the engine, so the second event can only have come
        // from the server pushing the change the step made (the client sends nothing after WatchJob).
        await using var fx = ServerFixture.Start(engine: true, startWorkers: false,
            seed: cell => cell.AddNode(new NodeSpec("n0", new ResourceVector(4000, 8L << 30), "fd0")));
        await using var c = await ControlClient.ConnectAsync(fx.EndPoint, "watcher");
        Assert.Equal(0, (await c.SubmitJobAsync(new JobSpec(new JobId(7), default, 0, 2, new ResourceVector(1000, 1L << 30), false))).Status);

        await using var events = c.WatchJobAsync(new JobId(7)).GetAsyncEnumerator();
        Assert.True(await events.MoveNextAsync().AsTask().WaitAsync(Timeout));
        Assert.Equal(0, events.Current.Phase); // queued
        fx.Engine!.RunUntilIdle();
        Assert.True(await events.MoveNextAsync().AsTask().WaitAsync(Timeout));
        Assert.Equal(2, events.Current.Phase); // placed, final
        Assert.Equal(2, events.Current.Bound);
        Assert.False(await events.MoveNextAsync().AsTask().WaitAsync(Timeout));

        // WaitForJobAsync rides the same watch; an unknown job settles at once as not found.
        Assert.Equal(2, (await c.WaitForJobAsync(new JobId(7)).WaitAsync(Timeout)).Phase);
        Assert.False((await c.WaitForJobAsync(new JobId(404)).WaitAsync(Timeout)).Found);
    }

    [Fact]
    public async Task A_cancelled_watch_is_stopped_on_the_server_and_a_connection_holds_at_most_sixteen()
    {
        await using var fx = ServerFixture.Start(engine: true, startWorkers: false,
            seed: cell => cell.AddNode(new NodeSpec("n0", new ResourceVector(4000, 8L << 30), "fd0")));
        await using var c = await ControlClient.ConnectAsync(fx.EndPoint, "watcher");
        Assert.Equal(0, (await c.SubmitJobAsync(new JobSpec(new JobId(1), default, 0, 1, new ResourceVector(1000, 1L << 30), false))).Status);

        // Cancel one watch after its first event: the client sends StopJobWatch, so its slot is free again.
        using (var cts = new CancellationTokenSource())
        {
            await using var e = c.WatchJobAsync(new JobId(1), cts.Token).GetAsyncEnumerator();
            Assert.True(await e.MoveNextAsync().AsTask().WaitAsync(Timeout));
            cts.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await e.MoveNextAsync());
        }
        // 16 watches open at once (one more than the limit would allow had the cancelled one leaked)...
        var open = new List<IAsyncEnumerator<RemoteJobStatus>>();
        for (int i = 0; i < 16; i++)
        {
            var e = c.WatchJobAsync(new JobId(1)).GetAsyncEnumerator();
            Assert.True(await e.MoveNextAsync().AsTask().WaitAsync(Timeout));
            open.Add(e);
        }
        // ... and the 17th is refused with a typed error, the connection still good.
        await using (var extra = c.WatchJobAsync(new JobId(1)).GetAsyncEnumerator())
        {
            var ex = await Assert.ThrowsAsync<AgentRequestException>(async () => await extra.MoveNextAsync().AsTask().WaitAsync(Timeout));
            Assert.Equal(ErrorCode.ResourceExhausted, ex.Code);
        }
        // Placing the job ends every open watch with its final event.
        fx.Engine!.RunUntilIdle();
        foreach (var e in open)
        {
            Assert.True(await e.MoveNextAsync().AsTask().WaitAsync(Timeout));
            Assert.Equal(2, e.Current.Phase);
            Assert.False(await e.MoveNextAsync().AsTask().WaitAsync(Timeout));
            await e.DisposeAsync();
        }
        Assert.True((await c.QueryJobAsync(new JobId(1))).Found);
    }

    [Fact]
    public async Task Stop_releases_the_bindings_durably_is_idempotent_audited_and_needs_the_override_scope()
    {
        await using var fx = ServerFixture.Start(engine: true, startWorkers: false, auth: true,
            seed: cell => cell.AddNode(new NodeSpec("n0", new ResourceVector(2000, 8L << 30), "fd0")));
        await using var admin = await ControlClient.ConnectAsync(fx.EndPoint, null, "admin", fx.AdminToken);
        // 4 tasks of 1 core on a 2-core node: 2 bound, 2 pending.
        Assert.Equal(0, (await admin.SubmitJobAsync(new JobSpec(new JobId(3), default, 0, 4, new ResourceVector(1000, 1L << 30), false))).Status);
        fx.Engine!.Workers[0].Step();
        Assert.Equal(2, fx.Cell.AllocationCount);

        // A read-only operator may watch but not stop: PermissionDenied, nothing changed.
        string reader = fx.Server.Auth.CreateCredential(CredentialRole.Operator, "viewer", OperatorScopes.Read);
        await using (var ro = await ControlClient.ConnectAsync(fx.EndPoint, null, "viewer", reader))
        {
            var denied = await Assert.ThrowsAsync<AgentRequestException>(() => ro.StopJobAsync(new JobId(3)));
            Assert.Equal(ErrorCode.PermissionDenied, denied.Code);
            Assert.Equal(2, fx.Cell.AllocationCount);
        }

        var stopped = await admin.StopJobAsync(new JobId(3), "load test over");
        Assert.Equal((0, 2, 2), (stopped.Outcome, stopped.Dequeued, stopped.Released));
        Assert.Equal(0, fx.Cell.AllocationCount);
        var status = await admin.QueryJobAsync(new JobId(3));
        Assert.Equal(ControlClient.PhaseStopped, status.Phase);
        Assert.Equal(0, status.Bound);
        // A watch of a stopped job gets one final event.
        var events = new List<RemoteJobStatus>();
        await foreach (var e in admin.WatchJobAsync(new JobId(3)).WithCancellation(new CancellationTokenSource(Timeout).Token)) events.Add(e);
        Assert.Equal(ControlClient.PhaseStopped, Assert.Single(events).Phase);

        Assert.Equal(1, (await admin.StopJobAsync(new JobId(3))).Outcome); // a retry changes nothing
        var unknown = await Assert.ThrowsAsync<AgentRequestException>(() => admin.StopJobAsync(new JobId(404)));
        Assert.Equal(ErrorCode.UnknownJob, unknown.Code);
        var (_, audit) = await admin.ReadAuditAsync(100);
        Assert.Contains(audit, a => a.Action == "StopJob" && a.Target == "j3" && a.Result.Contains("stopped: 2 dequeued, 2 released (reason: load test over)", StringComparison.Ordinal));
        Assert.Contains(audit, a => a.Action == "StopJob" && a.Target == "j404" && a.Result.StartsWith("UnknownJob", StringComparison.Ordinal));
    }
}
