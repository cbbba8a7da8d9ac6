using System.Text.Json;

namespace Omega.Cli.Tests;

/// <summary>
/// Issue 17: <c>-o json</c> on the commands that lacked it (token, audit, quota, policy, rollout, doctor, break-glass,
/// loadgen), and the job verbs <c>job status</c> / <c>job stop</c>, run as child processes and parsed by a JSON parser.
/// </summary>
public sealed class ScriptOutputTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    private static JsonElement Json(OmegaProcess.Result r, string kind)
    {
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement.Clone();
        Assert.Equal("omega/v1", root.GetProperty("apiVersion").GetString());
        Assert.Equal(kind, root.GetProperty("kind").GetString());
        return root;
    }

    [Fact]
    public async Task Credentials_audit_quotas_policy_doctor_and_job_verbs_print_one_json_document_each()
    {
        string endpoint = $"127.0.0.1:{OmegaChild.FreePort()}";
        using var serve = OmegaChild.Serve(endpoint, "--in-memory");
        await serve.WaitForAsync("listening on", Timeout);
        var env = new[] { ("OMEGA_ADDR", endpoint), ("OMEGA_PIN", ServeTests.PinOf(serve.Output)), ("OMEGA_TOKEN_FILE", ServeTests.TokenFileOf(serve.Output)) };
        Task<OmegaProcess.Result> Omega(params string[] args) => OmegaProcess.RunWithEnvironmentAsync(Timeout, env, args);

        var created = Json(await Omega("token", "create", "--role", "operator", "--name", "viewer", "-o", "json"), "Credential");
        string id = created.GetProperty("id").GetString()!;
        Assert.StartsWith("omega1.", created.GetProperty("token").GetString(), StringComparison.Ordinal);
        var list = Json(await Omega("token", "list", "-o", "json"), "CredentialList");
        Assert.Contains(list.GetProperty("items").EnumerateArray(), x => x.GetProperty("id").GetString() == id && x.GetProperty("scopes").GetString() == "read");
        Assert.Equal(id, Json(await Omega("token", "revoke", id, "-o", "json"), "CredentialRevoked").GetProperty("id").GetString());
        var audit = Json(await Omega("audit", "-o", "json"), "AuditLog");
        Assert.Contains(audit.GetProperty("items").EnumerateArray(), e => e.GetProperty("action").GetString() == "RevokeToken");

        var quota = Json(await Omega("quota", "set", "default", "--cores", "4", "--memory-gib", "8", "-o", "json"), "QuotaSet");
        Assert.Equal(4000, quota.GetProperty("limit").GetProperty("cpuMillis").GetInt64());
        var quotas = Json(await Omega("quota", "list", "-o", "json"), "QuotaList");
        Assert.Contains(quotas.GetProperty("items").EnumerateArray(), t => t.GetProperty("tenant").GetString() == "default" && t.GetProperty("limit").GetProperty("memoryBytes").GetInt64() == 8L << 30);

        string policy = Path.Combine(Path.GetTempPath(), "omega-policy-" + Guid.NewGuid().ToString("N") + ".json");
        await File.WriteAllTextAsync(policy, """{"weights":{"bin-packing":2}}""");
        try
        {
            var applied = Json(await Omega("policy", "apply", "-f", policy, "-o", "json"), "PolicyResult");
            Assert.True(applied.GetProperty("revision").GetInt32() >= 1);
        }
        finally
        {
            File.Delete(policy);
        }
        Assert.NotEmpty(Json(await Omega("rollout", "history", "-o", "json"), "PolicyResult").GetProperty("lines").EnumerateArray());
        var doctor = Json(await Omega("doctor", "-o", "json"), "DoctorReport");
        Assert.True(doctor.GetProperty("clean").GetBoolean());

        // Job verbs: no agents, so the job stays queued; status, stop (audited), status again, stop of an unknown job.
        Assert.Equal(0, (await Omega("submit", "--job", "9", "--tasks", "2")).ExitCode);
        Assert.Equal("queued", Json(await Omega("job", "status", "j9", "-o", "json"), "JobStatus").GetProperty("phase").GetString());
        var stop = Json(await Omega("job", "stop", "9", "--reason", "test", "-o", "json"), "JobStopResult");
        Assert.Equal(("stopped", 2), (stop.GetProperty("outcome").GetString(), stop.GetProperty("dequeued").GetInt32()));
        Assert.Equal("stopped", Json(await Omega("job", "status", "9", "-o", "json"), "JobStatus").GetProperty("phase").GetString());
        var unknown = await Omega("job", "stop", "404");
        Assert.Equal(5, unknown.ExitCode);
        Assert.Contains("UnknownJob", unknown.Stderr, StringComparison.Ordinal);
        Assert.Contains(Json(await Omega("audit", "-o", "json"), "AuditLog").GetProperty("items").EnumerateArray(),
            e => e.GetProperty("action").GetString() == "StopJob" && e.GetProperty("target").GetString() == "j9");
        Assert.Equal(2, (await Omega("job", "status", "x1")).ExitCode);
        Assert.Equal(0, await serve.StopAsync(Timeout));
    }

    [Fact]
    public async Task Loadgen_prints_its_summary_as_json_and_its_progress_on_stderr()
    {
        var r = await OmegaProcess.RunAsync(Timeout, "loadgen", "--nodes", "50", "--seconds", "1", "--load", "0.01", "--seed", "3", "-o", "json");
        var doc = Json(r, "LoadgenSummary");
        Assert.Equal(3, doc.GetProperty("seed").GetInt32());
        Assert.True(doc.GetProperty("invariantsOk").GetBoolean());
        Assert.Equal(2, doc.GetProperty("schedulers").GetArrayLength());
        Assert.Contains("omega loadgen: embedded engine", r.Stderr, StringComparison.Ordinal);
        var bad = await OmegaProcess.RunAsync(Timeout, "loadgen", "--connect", "127.0.0.1:1", "-o", "json");
        Assert.Equal(2, bad.ExitCode);
    }
}
