using System.Buffers.Binary;
using System.Diagnostics.Metrics;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Omega.Agent;
using Omega.Cells;
using Omega.Storage;

namespace Omega.Hosting.Tests;

public sealed class HostingTests
{
    [Fact]
    public async Task A_durable_host_serves_commits_over_the_wire_checkpoints_on_stop_and_a_restart_recovers_the_state()
    {
        string dir = TestHost.TempDirectory();
        var config = new Dictionary<string, string?>
        {
            ["Omega:CellName"] = "hosting-test",
            ["Omega:DataDirectory"] = dir,
            ["Omega:Listen"] = "127.0.0.1:0",
            ["Omega:BatchWorkers"] = "1",
            ["Omega:Storage:CheckpointInterval"] = "01:00:00", // only the stop's checkpoint
        };
        try
        {
            long checkpointed;
            var logs = new CapturingLoggerProvider();
            using (var host = TestHost.Build(config, logs))
            {
                var runtime = host.Services.GetRequiredService<OmegaRuntime>();
                await host.StartAsync();
                Assert.True(runtime.IsRunning);
                Assert.Equal("hosting-test", runtime.Cell.Name);      // bound from the "Omega" section
                Assert.True(runtime.Store.IsPersistent);
                Assert.Equal(dir, runtime.DataDirectory);
                Assert.False(runtime.Recovery.FromCheckpoint);
                Assert.NotEqual(0, runtime.EndPoint.Port);

                // Over the wire: an agent registers its node, an operator submits a job, the host's workers place it and
                // the bindings reach the agent (pushed only once durable).
                await using (var agent = new AgentClient(new AgentOptions { Server = runtime.EndPoint, NodeName = "node-a", Capacity = ResourceVector.FromCoresAndGiB(8, 32), Seed = 1 }))
                {
                    await agent.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
                    await using var control = await ControlClient.ConnectAsync(runtime.EndPoint, "hosting-test");
                    var (status, reason) = await control.SubmitJobAsync(new JobSpec(new JobId(1), new TenantId(0), 0, 2, ResourceVector.FromCoresAndGiB(1, 2), false));
                    Assert.True(status == 0, reason);
                    var delivered = new List<AgentBinding>();
                    await TestHost.UntilAsync(async () =>
                    {
                        while (agent.Bindings.TryRead(out var b)) delivered.Add(b);
                        await Task.Yield();
                        return delivered.Count == 2;
                    }, "two bindings delivered to the agent");
                    Assert.All(delivered, b => Assert.True(b.Version <= runtime.Store.DurableVersion));
                }
                await host.StopAsync();
                checkpointed = Assert.NotNull(runtime.CheckpointedVersion);
                Assert.False(runtime.IsRunning);
                Assert.Equal(runtime.Cell.Version, checkpointed);
            }
            Assert.True(File.Exists(Path.Combine(dir, "checkpoints", "CURRENT")), "a checkpoint was written on stop");
            var entries = logs.Entries.ToArray();
            Assert.Contains(entries, e => e.EventId.Id == 1000 && e.EventId.Name == "StoreRecovered" && e.Message.Contains(dir, StringComparison.Ordinal));
            Assert.Contains(entries, e => e.EventId.Id == 1004 && e.Category == typeof(OmegaHostedService).FullName);
            Assert.Contains(entries, e => e.EventId.Id == 1006 && e.Message.Contains($"v{checkpointed}", StringComparison.Ordinal));

            // Restart on the same directory: the state is back, from the checkpoint, with nothing left to replay.
            using (var again = TestHost.Build(config))
            {
                var runtime = again.Services.GetRequiredService<OmegaRuntime>();
                await again.StartAsync();
                Assert.True(runtime.Recovery.FromCheckpoint);
                Assert.Equal(0, runtime.Recovery.RecordsReplayed);
                Assert.Equal(checkpointed, runtime.Cell.Version);
                Assert.Equal(1, runtime.Cell.NodeCount);
                Assert.True(runtime.Cell.TryGetAllocation(new TaskId(1, 0), out _));
                Assert.True(runtime.Cell.TryGetAllocation(new TaskId(1, 1), out _));
                Assert.Empty(runtime.Cell.Audit());
                await again.StopAsync();
            }
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Invalid_options_fail_the_host_at_start_with_every_problem_named_and_nothing_opened()
    {
        string dir = TestHost.TempDirectory();
        using var host = TestHost.Build(new Dictionary<string, string?>
        {
            ["Omega:DataDirectory"] = dir,
            ["Omega:Listen"] = "nowhere",
            ["Omega:BatchWorkers"] = "0",
        }, configure: o => o.Server.MassSilenceFraction = 2);
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        Assert.Contains("Omega:Listen must be ADDRESS:PORT (port 0 picks a free one), not 'nowhere'", e.Message, StringComparison.Ordinal);
        Assert.Contains("Omega:BatchWorkers must be between 1 and 256, not 0", e.Message, StringComparison.Ordinal);
        Assert.Contains("Omega:Server:MassSilenceFraction must be in (0, 1], not 2", e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(dir), "no store may be opened with invalid options");
        Assert.False(host.Services.GetRequiredService<OmegaRuntime>().IsRunning);
    }

    [Fact]
    public async Task Two_engines_in_one_process_get_meters_from_their_hosts_factories_tagged_with_their_cell_and_the_hosts_clock()
    {
        var fake = new FakeTimeProvider(DateTimeOffset.UnixEpoch);
        using var east = TestHost.Build(new() { ["Omega:CellName"] = "east", ["Omega:InMemory"] = "true", ["Omega:Listen"] = "127.0.0.1:0" },
            services: s => s.AddSingleton<TimeProvider>(fake), configure: o => o.StartScheduling = false);
        using var west = TestHost.Build(new() { ["Omega:CellName"] = "west", ["Omega:InMemory"] = "true", ["Omega:Listen"] = "127.0.0.1:0" });
        await east.StartAsync();
        await west.StartAsync();
        try
        {
            var seen = new List<(string Meter, string? Cell, object? Scope)>();
            using (var listener = new MeterListener())
            {
                listener.InstrumentPublished = (instrument, _) =>
                {
                    if (!instrument.Meter.Name.StartsWith("Omega.", StringComparison.Ordinal)) return;
                    string? cell = instrument.Meter.Tags?.FirstOrDefault(t => t.Key == "cell").Value as string;
                    lock (seen) seen.Add((instrument.Meter.Name, cell, instrument.Meter.Scope));
                };
                listener.Start();
            }
            var eastFactory = east.Services.GetRequiredService<IMeterFactory>();
            var westFactory = west.Services.GetRequiredService<IMeterFactory>();
            foreach (var meter in new[] { "Omega.Cell", "Omega.Scheduling", "Omega.Storage" })
            {
                Assert.Contains(seen, s => s.Meter == meter && s.Cell == "east" && ReferenceEquals(s.Scope, eastFactory));
                Assert.Contains(seen, s => s.Meter == meter && s.Cell == "west" && ReferenceEquals(s.Scope, westFactory));
            }
            // The clock from dependency injection reaches the engine and the server.
            var runtime = east.Services.GetRequiredService<OmegaRuntime>();
            Assert.Same(fake, runtime.Engine.Time);
            Assert.Same(fake, runtime.Server.Options.Time);
            Assert.Same(TimeProvider.System, west.Services.GetRequiredService<OmegaRuntime>().Engine.Time);
            // In memory: stopping takes no checkpoint.
            await east.StopAsync();
            Assert.Null(runtime.CheckpointedVersion);
        }
        finally
        {
            await west.StopAsync();
        }
    }

    [Fact]
    public async Task A_storage_warning_goes_to_the_hosts_logger_with_its_event_id()
    {
        string dir = TestHost.TempDirectory();
        try
        {
            // A store whose final journal chunk is torn: written directly, then one payload byte of the last chunk flipped.
            var directWarnings = new List<string>();
            using (var store = CellStore.Open(new StorageOptions { DataDirectory = dir, CheckpointOnDispose = false, CheckpointInterval = null, Warning = directWarnings.Add }))
            {
                store.Cell.AddNode(new NodeSpec("n1", ResourceVector.FromCoresAndGiB(4, 8)));
                await store.WaitForDurableAsync(store.Cell.JournalSequence);
                store.Cell.AddNode(new NodeSpec("n2", ResourceVector.FromCoresAndGiB(4, 8)));
                await store.WaitForDurableAsync(store.Cell.JournalSequence);
            }
            TearLastChunk(Path.Combine(dir, "journal", "journal.log.0"));

            var logs = new CapturingLoggerProvider();
            using var host = TestHost.Build(new() { ["Omega:DataDirectory"] = dir, ["Omega:Listen"] = "127.0.0.1:0" }, logs);
            await host.StartAsync();
            var warning = Assert.Single(logs.Entries, e => e.Level == LogLevel.Warning);
            Assert.Equal(1002, warning.EventId.Id);
            Assert.Equal("StorageWarning", warning.EventId.Name);
            Assert.Contains("torn final journal chunk", warning.Message, StringComparison.Ordinal);
            Assert.Equal(1, host.Services.GetRequiredService<OmegaRuntime>().Cell.NodeCount); // n2's record was the torn one
            await host.StopAsync();
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Flips the last payload byte of the segment's last journal chunk ("OMJ1" header: payload length at +16, payload at +24).</summary>
    private static void TearLastChunk(string segment)
    {
        var bytes = File.ReadAllBytes(segment);
        int last = bytes.AsSpan().LastIndexOf(Encoding.ASCII.GetBytes("OMJ1"));
        Assert.True(last >= 0, "no journal chunk found");
        int payload = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(last + 16));
        bytes[last + 24 + payload - 1] ^= 0xFF;
        File.WriteAllBytes(segment, bytes);
    }
}
