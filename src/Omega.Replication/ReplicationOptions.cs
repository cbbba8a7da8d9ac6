namespace Omega.Replication;

/// <summary>
/// High-availability settings of one replica (issue 16; docs/high-availability.md). Every replica of a cell names the
/// same etcd cluster and <see cref="Cluster"/>, its own unique <see cref="ReplicaName"/>, and the address clients reach
/// it at (<see cref="AdvertiseAddress"/>), which the elected leader publishes in the election value.
/// </summary>
public sealed class ReplicationOptions
{
    /// <summary>etcd client URLs, e.g. <c>http://10.0.0.1:2379</c> (at least one; give every member).</summary>
    public IList<string> Endpoints { get; } = new List<string>();

    /// <summary>The replicated cell's name: every key lives under <c>/omega/{Cluster}/</c>. Default <c>default</c>.</summary>
    public string Cluster { get; set; } = "default";

    /// <summary>This replica's unique name (its progress key and log lines carry it).</summary>
    public string ReplicaName { get; set; } = Environment.MachineName;

    /// <summary>The client-facing <c>HOST:PORT</c> of this replica, published while it leads (the redirect target).</summary>
    public string AdvertiseAddress { get; set; } = "127.0.0.1:7077";

    /// <summary>
    /// The election lease's time to live in whole seconds. Default 2 (etcd's minimum with its default election timeout):
    /// a dead leader's key disappears within it, so a takeover takes about this plus the catch-up.
    /// </summary>
    public int LeaseTtlSeconds { get; set; } = 2;

    /// <summary>
    /// How long a replica goes on believing it holds its session while no etcd member confirms a renewal. Default zero:
    /// twice <see cref="LeaseTtlSeconds"/>. The keepalives go to every member at once, so this only runs out when no
    /// member can renew: etcd has no raft leader (a stalled raft leader is replaced within an election timeout, and the
    /// new one refreshes every lease to a full TTL) or this process cannot reach a quorum. Safety does not rest on it:
    /// every write of a leader is fenced at etcd (docs/high-availability.md, "Keeping the lease").
    /// </summary>
    public TimeSpan SessionGiveUp { get; set; } = TimeSpan.Zero;

    internal TimeSpan EffectiveSessionGiveUp => SessionGiveUp > TimeSpan.Zero ? SessionGiveUp : TimeSpan.FromSeconds(2.0 * LeaseTtlSeconds);

    /// <summary>
    /// The standby lag bound, in journal records (sequence numbers) between the newest entry of the log in etcd and what
    /// this replica applied. Default 100,000. A standby beyond it (a) does not campaign: a winner must replay its whole lag
    /// before it can accept a commit, so a far-behind winner would make the takeover as long as that replay; and (b) while
    /// a leader exists, bootstraps from the leader's snapshot instead of replaying the tail (when
    /// <see cref="SnapshotBootstrap"/> is on). With no leader the log does not grow, so a far-behind standby still replays
    /// it, and campaigns once within the bound: the bound never leaves the cell without a leader for good.
    /// </summary>
    public long MaxStandbyLagRecords { get; set; } = 100_000;

    /// <summary>How often a standby looks at the election key and the log's end while waiting. Default 100 ms.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// The largest log entry written to etcd, in bytes (etcd refuses requests over 1.5 MiB by default); a bigger
    /// group is split at element boundaries. Default 512 KiB.
    /// </summary>
    public int MaxEntryBytes { get; set; } = 512 * 1024;

    /// <summary>How long one fenced write may keep retrying an unavailable etcd before the leader gives up (and is deposed). Default 5 s.</summary>
    public TimeSpan ShipTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How often the leader trims the log in etcd. Default 5 s.</summary>
    public TimeSpan TrimInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Entries kept behind every live replica's applied position, so that a replica restarting within a short while
    /// resumes from the log. Default 500.
    /// </summary>
    public int RetainEntries { get; set; } = 500;

    /// <summary>
    /// The hard bound on entries kept whatever a live replica has applied (bounds etcd's space when a standby is stuck);
    /// a standby behind it must be bootstrapped from a copy of a replica's data directory. Default 2000.
    /// </summary>
    public int MaxRetainEntries { get; set; } = 2000;

    /// <summary>How often the leader compacts etcd's history (to the revision it saw one interval before). Default 30 s; zero: never.</summary>
    public TimeSpan CompactionInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How often a replica publishes its applied position (the trim reads it). Default 1 s.</summary>
    public TimeSpan ProgressInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// A replica whose next log entry was trimmed (new, or down too long) bootstraps from a snapshot streamed by the
    /// leader over the Omega protocol (docs/protocol.md, "Replica snapshots"), then tails the log from it. Default true;
    /// false: it fails with <see cref="ReplicaBehindLogException"/> and must be given a copy of a replica's directory.
    /// </summary>
    public bool SnapshotBootstrap { get; set; } = true;

    /// <summary>
    /// The bearer token this replica presents to the leader for a snapshot: an operator credential with the admin scope
    /// (the snapshot holds every credential's hash). Null: none (for a leader running without authentication).
    /// <c>omega serve</c> uses its <c>--admin-token-file</c>.
    /// </summary>
    public string? SnapshotToken { get; set; }

    /// <summary>The transport (TLS) settings for the connection to the leader; null: plaintext, default limits.</summary>
    public Omega.Transport.TransportOptions? SnapshotTransport { get; set; }

    /// <summary>How long one snapshot transfer (request, every chunk, install) may take before it is abandoned and retried. Default 10 minutes.</summary>
    public TimeSpan SnapshotTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>SnapshotRead requests kept in flight (each at most one chunk, 512 KiB by default, in memory). Default 4.</summary>
    public int SnapshotReadsInFlight { get; set; } = 4;

    /// <summary>Log pages (of 64 entries) a standby applies between two looks at its lag and the election key. Default 16.</summary>
    internal int TailPagesPerRound { get; set; } = 16;

    internal string Prefix => $"/omega/{Cluster}/";

    /// <summary>Checks the settings; returns the first problem or null.</summary>
    public string? Validate()
    {
        if (Endpoints.Count == 0) return "at least one etcd endpoint is required";
        foreach (var e in Endpoints)
            if (!Uri.TryCreate(e, UriKind.Absolute, out var u) || (u.Scheme != "http" && u.Scheme != "https"))
                return $"etcd endpoint '{e}' is not an http(s) URL";
        if (string.IsNullOrWhiteSpace(Cluster) || Cluster.Contains('/', StringComparison.Ordinal)) return "the cluster name must be non-empty without '/'";
        if (string.IsNullOrWhiteSpace(ReplicaName) || ReplicaName.Contains('/', StringComparison.Ordinal) || ReplicaName.Contains('\n', StringComparison.Ordinal)) return "the replica name must be non-empty without '/' or newlines";
        if (string.IsNullOrWhiteSpace(AdvertiseAddress) || !AdvertiseAddress.Contains(':', StringComparison.Ordinal)) return "the advertised address must be HOST:PORT";
        if (LeaseTtlSeconds is < 1 or > 60) return "the lease TTL must be 1-60 s";
        if (MaxEntryBytes is < 4096 or > 1_400_000) return "the largest entry must be 4 KiB - 1.4 MB (etcd refuses requests over 1.5 MiB)";
        if (MaxStandbyLagRecords < 1) return "the standby lag bound must be at least 1 record";
        if (SessionGiveUp < TimeSpan.Zero) return "the session give-up time must not be negative";
        if (SnapshotReadsInFlight is < 1 or > 64) return "snapshot reads in flight: 1-64";
        if (RetainEntries < 0 || MaxRetainEntries < RetainEntries || MaxRetainEntries < 1) return "retained entries: 0 <= RetainEntries <= MaxRetainEntries, MaxRetainEntries >= 1";
        return null;
    }
}
