using dotnet_etcd;
using Omega.Bench.Shared;

namespace Omega.Replication.Tests;

/// <summary>
/// A real 3-member etcd cluster for the tests: child processes of /usr/bin/etcd (Debian's etcd-server; .ci/run installs
/// it) on free loopback ports, each in its own temporary directory, killed and deleted at dispose, started by the
/// launcher shared with the bench's failover driver and soak (bench/Shared/EtcdLauncher.cs). Tests isolate themselves
/// by cluster name (<see cref="ReplicationOptions.Cluster"/>), so one etcd serves the whole collection.
/// </summary>
public sealed class EtcdCluster : IAsyncLifetime
{
    private EtcdLauncher? _etcd;

    /// <summary>The members' client URLs.</summary>
    public IReadOnlyList<string> Endpoints => _etcd?.Endpoints ?? Array.Empty<string>();

    /// <summary>The etcd binary (ETCD_BIN overrides).</summary>
    public static string Binary => EtcdLauncher.FindBinary();

    public async Task InitializeAsync()
    {
        _etcd = EtcdLauncher.Start(Binary, Path.Combine(Path.GetTempPath(), "omega-etcd-" + Guid.NewGuid().ToString("N")[..8]), 3, "m");
        // Healthy when every member has a raft leader and serves a quorum read; a loaded CI machine needs time.
        await _etcd.WaitHealthyAsync(TimeSpan.FromSeconds(90));
    }

    /// <summary>A client on all members.</summary>
    public EtcdClient Client() => new(string.Join(",", Endpoints));

    public Task DisposeAsync()
    {
        _etcd?.Dispose();
        return Task.CompletedTask;
    }

    /// <summary>Free loopback TCP ports.</summary>
    public static int[] FreePorts(int count) => EtcdLauncher.FreePorts(count);
}

[CollectionDefinition(Name)]
public sealed class EtcdCollection : ICollectionFixture<EtcdCluster>
{
    public const string Name = "etcd";
}
