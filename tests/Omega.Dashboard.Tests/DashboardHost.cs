using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Omega.ControlPlane;
using Omega.Hosting;
using Omega.Protocol;
using Omega.Scheduling;

namespace Omega.Dashboard.Tests;

/// <summary>
/// One in-memory Omega host per test class, the way <c>omega serve --http</c> runs it: TLS with its self-signed
/// certificate (so the dashboard is HTTPS), authentication on (sign-in needed), three nodes labelled with region and
/// zone, and the dashboard on a free port sampling every 200 ms.
/// </summary>
public sealed class DashboardHost : IAsyncLifetime
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "omega-dash-" + Guid.NewGuid().ToString("N"));
    private IHost? _host;
    private long _nextJob = 1;

    public OmegaRuntime Runtime { get; private set; } = null!;

    public Uri Address => Runtime.DashboardAddress!;

    /// <summary>The admin token (every scope).</summary>
    public string AdminToken { get; private set; } = "";

    /// <summary>An operator token with the read scope only.</summary>
    public string ReadOnlyToken { get; private set; } = "";

    public async Task InitializeAsync()
    {
        // Two hosts of this class may run at once in one process (one per test class): each gets its own admin token
        // file, not the shared temporary one an in-memory cell on port 0 would use.
        Directory.CreateDirectory(_dir);
        string tokenFile = Path.Combine(_dir, "admin.token");
        await File.WriteAllTextAsync(tokenFile, Omega.Server.AuthService.GenerateToken());
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.Services.AddOmega(o =>
        {
            o.InMemory = true;
            o.CellName = "dash-test";
            o.Listen = "127.0.0.1:0";
            o.Tls.Mode = OmegaTlsMode.SelfSigned;
            o.Tls.SelfSignedDirectory = Path.Combine(_dir, "tls");
            o.Authentication = true;
            o.AdminTokenFile = tokenFile;
            o.Readiness = ReplicaReadiness.Bound;
            o.Dashboard.Listen = "127.0.0.1:0";
            o.Dashboard.SampleInterval = TimeSpan.FromMilliseconds(200);
            o.Dashboard.MaxSessions = 8;
        });
        _host = builder.Build();
        await _host.StartAsync();
        Runtime = _host.Services.GetRequiredService<OmegaRuntime>();
        AdminToken = (await File.ReadAllTextAsync(Runtime.AdminTokenPath!)).Trim();
        ReadOnlyToken = Runtime.Server.Auth.CreateCredential(CredentialRole.Operator, "viewer", OperatorScopes.None, createdBy: "test");
        string[] zones = ["a", "b", "b"];
        for (int i = 0; i < 3; i++)
        {
            var labels = new Dictionary<string, string> { ["topology.omega/region"] = "eu", ["topology.omega/zone"] = "eu-" + zones[i] };
            Runtime.Cell.AddNode(new NodeSpec($"n{i + 1}", ResourceVector.FromCoresAndGiB(64, 256), "fd" + i, labels));
        }
        var wl = new Workload { Metadata = { Tenant = "default", Name = "web" } };
        wl.Spec.Type = WorkloadType.Service;
        wl.Spec.Replicas = 2;
        wl.Spec.Resources = new ResourceRequest { CpuMillis = 100, MemoryBytes = 64L << 20 };
        var created = await Runtime.Objects.CreateAsync(wl);
        Assert.True(created.IsOk, created.Message);
    }

    /// <summary>Submits a batch job of <paramref name="tasks"/> small tasks to the engine; returns its id.</summary>
    public JobId SubmitJob(int tasks)
    {
        var id = new JobId(Interlocked.Increment(ref _nextJob) + 1_000_000);
        var r = Runtime.Engine.Submit(new JobSpec(id, new TenantId(0), 0, tasks, new ResourceVector(10, 1L << 20)));
        Assert.Equal(EnqueueStatus.Accepted, r.Status);
        return id;
    }

    public async Task DisposeAsync()
    {
        if (_host is not null)
        {
            await _host.StopAsync();
            _host.Dispose();
        }
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    public static async Task UntilAsync(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(15));
        while (!condition())
        {
            try { await Task.Delay(25, cts.Token); }
            catch (OperationCanceledException) { throw new TimeoutException($"timed out waiting for: {what}"); }
        }
    }

    /// <summary>Where test artifacts go: TestResults/dashboard at the repository root (next to the TRX files), else the test's output folder.</summary>
    public static string ArtifactDirectory()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "Omega.sln"))) d = d.Parent;
        string dir = d is null ? Path.Combine(AppContext.BaseDirectory, "TestResults", "dashboard") : Path.Combine(d.FullName, "TestResults", "dashboard");
        Directory.CreateDirectory(dir);
        return dir;
    }
}
