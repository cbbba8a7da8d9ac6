using System.Security.Cryptography.X509Certificates;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.Scheduling;
using Omega.Server;

namespace Omega.Dashboard;

/// <summary>
/// Settings of the web dashboard (docs/dashboard.md). Set through <c>OmegaOptions.Dashboard</c> by the host; the CLI's
/// <c>--http ADDR</c> sets <see cref="Listen"/>.
/// </summary>
public sealed class DashboardOptions
{
    /// <summary>The address and port to serve on, <c>ADDRESS:PORT</c> (port 0 picks a free one). Null: no dashboard (the default).</summary>
    public string? Listen { get; set; }

    /// <summary>How long a signed-in session lasts at most (also bounded by the credential's own expiry). Default 8 h.</summary>
    public TimeSpan SessionLifetime { get; set; } = TimeSpan.FromHours(8);

    /// <summary>A session unused this long ends. Default 30 min.</summary>
    public TimeSpan SessionIdleTimeout { get; set; } = TimeSpan.FromMinutes(30);

    /// <summary>Sessions kept at most; signing in beyond it ends the least recently used one. Default 64.</summary>
    public int MaxSessions { get; set; } = 64;

    /// <summary>How often a sample is taken and pushed to every open page. Default 1 s.</summary>
    public TimeSpan SampleInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Samples kept for a page that opens (the charts' history). Default 300.</summary>
    public int HistorySamples { get; set; } = 300;

    /// <summary>Open event streams at most (each is one long request); more are refused with 503. Default 32.</summary>
    public int MaxStreams { get; set; } = 32;
}

/// <summary>What the dashboard reads and acts on: the running pieces of one cell, handed over by the composition root.</summary>
public sealed class DashboardSources
{
    /// <summary>The authoritative cell (nodes, utilization, counters).</summary>
    public required Cell Cell { get; init; }

    /// <summary>The scheduling engine (queues, placements, decision records).</summary>
    public required SchedulingEngine Engine { get; init; }

    /// <summary>The control plane's object store (workloads and every other kind).</summary>
    public required ObjectStore Objects { get; init; }

    /// <summary>The server's credentials and audit log; sign-in is required when it is enabled.</summary>
    public required AuthService Auth { get; init; }

    /// <summary>Waits until the cell's journal, as of the call, is durable: an action's reply is sent only then.</summary>
    public required Func<CancellationToken, ValueTask> WaitDurable { get; init; }

    /// <summary>The server's TLS certificate (HTTPS); null serves plaintext HTTP (only with the server's explicit <c>--insecure</c>).</summary>
    public X509Certificate2? Certificate { get; init; }

    /// <summary>The clock (sessions, samples).</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>
    /// The server's node lifecycle controller: a node removed from the dashboard is forgotten there too (as Operate
    /// RemoveNode does), so its lease is no longer tracked. Null: nothing tracks leases (a cell without a server).
    /// </summary>
    public Omega.Server.NodeLifecycleController? Lifecycle { get; init; }
}
