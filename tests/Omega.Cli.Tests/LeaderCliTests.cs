using System.Net;
using Omega.Cells;
using Omega.Server;

namespace Omega.Cli.Tests;

/// <summary>
/// Issue 16: every operator command takes several replica addresses (<c>--connect a,b</c>, alias <c>--addr</c>, or
/// <c>OMEGA_ADDR</c> with commas) and follows the leader: a follower's NotLeader redirect, and a dead address, are stepped over.
/// </summary>
public sealed class LeaderCliTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(1);

    private sealed class Gate(bool leader, string? address) : ILeaderGate
    {
        public bool IsLeader => leader;
        public string? LeaderAddress => address;
        public long Epoch => 7;
#pragma warning disable CS0067 // never raised: this test's leadership does not change
        public event Action? Changed;
#pragma warning restore CS0067
    }

    [Fact]
    public async Task Commands_given_a_dead_address_and_a_follower_reach_the_leader()
    {
        using var cell = new Cell(new CellOptions { Name = "ha-cli" });
        cell.AddNode(new NodeSpec("only-on-the-cell", new ResourceVector(1000, 1 << 30)));
        await using var leader = new OmegaServer(cell, null, new IPEndPoint(IPAddress.Loopback, 0), new ServerOptions { Name = "leader" });
        await using var follower = new OmegaServer(cell, null, new IPEndPoint(IPAddress.Loopback, 0),
            new ServerOptions { Name = "follower", Leadership = new Gate(false, leader.EndPoint.ToString()) });
        leader.Start();
        follower.Start();
        string dead = $"127.0.0.1:{OmegaChild.FreePort()}";

        var r = await OmegaProcess.RunAsync(Timeout, "inspect", "nodes", "--addr", $"{dead},{follower.EndPoint}", "--insecure");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains("only-on-the-cell", r.Stdout, StringComparison.Ordinal);
        Assert.Equal(1, follower.Redirects);

        r = await OmegaProcess.RunWithEnvironmentAsync(Timeout, [("OMEGA_ADDR", $"{follower.EndPoint}, {dead}")], "inspect", "nodes", "--insecure");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains("only-on-the-cell", r.Stdout, StringComparison.Ordinal);
        Assert.Equal(2, follower.Redirects);

        // A malformed list is a usage error found before connecting.
        r = await OmegaProcess.RunAsync(Timeout, "inspect", "nodes", "--connect", $"{follower.EndPoint},,", "--insecure");
        Assert.Equal(2, r.ExitCode);
    }
}
