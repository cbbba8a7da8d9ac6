using System.Net;
using System.Text.Json;
using Omega.Protocol;

namespace Omega.Dashboard.Tests;

/// <summary>The dashboard's HTTP surface without a browser: 401 without a session, the cookie's flags, CSRF, revocation.</summary>
public sealed class HttpTests(DashboardHost h) : IClassFixture<DashboardHost>
{
    // The dashboard's certificate is the server's self-signed one: trusted here by its exact pin, as a client would.
    private HttpClient Client(CookieContainer? cookies = null, bool redirects = false)
    {
        string pin = h.Runtime.TlsCertificatePin!;
        var handler = new HttpClientHandler
        {
            CookieContainer = cookies ?? new CookieContainer(),
            UseCookies = cookies is not null,
            AllowAutoRedirect = redirects,
            ServerCertificateCustomValidationCallback = (_, cert, _, _) => cert is not null && Omega.Transport.TlsCertificates.PublicKeyPin(cert) == pin,
        };
        return new HttpClient(handler) { BaseAddress = h.Address, Timeout = TimeSpan.FromSeconds(10) };
    }

    private async Task<HttpResponseMessage> LoginAsync(HttpClient c, string token)
        => await c.PostAsync("/login", new FormUrlEncodedContent([new("token", token)]));

    [Fact]
    public async Task DataEndpoints_WithoutASession_Answer401_ButThePageItselfLoads()
    {
        using var c = Client();
        Assert.Equal("https", h.Address.Scheme);
        foreach (var path in (string[])["/api/session", "/api/events", "/api/sample", "/api/objects", "/api/explain?task=j1/0", "/api/audit"])
        {
            using var r = await c.GetAsync(path);
            Assert.True(r.StatusCode == HttpStatusCode.Unauthorized, $"{path}: {r.StatusCode}");
        }
        using var post = await c.PostAsync("/api/nodes/n1/drain", null);
        Assert.Equal(HttpStatusCode.Unauthorized, post.StatusCode);
        // A made-up cookie is no session either.
        using var forged = new HttpRequestMessage(HttpMethod.Get, "/api/session");
        forged.Headers.Add("Cookie", DashboardServer.SecureCookieName + "=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        Assert.Equal(HttpStatusCode.Unauthorized, (await c.SendAsync(forged)).StatusCode);
        using var page = await c.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains("login-form", await page.Content.ReadAsStringAsync());
        Assert.Contains("script-src 'self'", page.Headers.GetValues("Content-Security-Policy").Single());
    }

    [Fact]
    public async Task SignIn_SetsAnHttpOnlySecureSameSiteStrictCookie_AndABadTokenGetsNone()
    {
        using var c = Client();
        using var bad = await LoginAsync(c, "omega1.0000000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        Assert.Equal(HttpStatusCode.Redirect, bad.StatusCode);
        Assert.False(bad.Headers.Contains("Set-Cookie"));
        using var ok = await LoginAsync(c, h.AdminToken);
        Assert.Equal(HttpStatusCode.SeeOther, ok.StatusCode);
        string cookie = ok.Headers.GetValues("Set-Cookie").Single();
        Assert.StartsWith(DashboardServer.SecureCookieName + "=", cookie, StringComparison.Ordinal);
        Assert.Contains("httponly", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("secure", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("samesite=strict", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("path=/", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("max-age=", cookie, StringComparison.OrdinalIgnoreCase);
        // The token itself is never the cookie.
        Assert.DoesNotContain(h.AdminToken, cookie, StringComparison.Ordinal);
        var (_, audit) = h.Runtime.Server.Auth.ReadAudit(200);
        Assert.Contains(audit, e => e.Action == "Dashboard SignIn" && e.Result.StartsWith("denied", StringComparison.Ordinal));
        Assert.Contains(audit, e => e.Action == "Dashboard SignIn" && e.Result == "ok" && e.Who.Contains("operator:admin", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Actions_NeedTheCsrfToken_AndSameOrigin_AndARevokedCredentialEndsTheSession()
    {
        string token = h.Runtime.Server.Auth.CreateCredential(CredentialRole.Operator, "ops-http", OperatorScopes.Drain, createdBy: "test");
        var jar = new CookieContainer();
        using var c = Client(jar);
        using (var r = await LoginAsync(c, token)) Assert.Equal(HttpStatusCode.SeeOther, r.StatusCode);
        using var session = JsonDocument.Parse(await c.GetStringAsync("/api/session"));
        Assert.True(session.RootElement.GetProperty("canOperate").GetBoolean());
        string csrf = session.RootElement.GetProperty("csrf").GetString()!;

        // With the cookie but without the CSRF token: refused, nothing drained.
        using (var r = await c.PostAsync("/api/nodes/n1/drain", null)) Assert.Equal(HttpStatusCode.Forbidden, r.StatusCode);
        // With the token but from another site (a browser would say so): refused.
        using (var cross = new HttpRequestMessage(HttpMethod.Post, "/api/nodes/n1/drain"))
        {
            cross.Headers.Add(DashboardServer.CsrfHeader, csrf);
            cross.Headers.Add("Origin", "https://evil.example");
            Assert.Equal(HttpStatusCode.Forbidden, (await c.SendAsync(cross)).StatusCode);
        }
        Assert.True(h.Runtime.Cell.TryGetNodeId("n1", out var id));
        Assert.Equal(NodeStatus.Schedulable, StatusOf(id));
        // With both: done, and answered once durable. Then undone.
        using (var ok = new HttpRequestMessage(HttpMethod.Post, "/api/nodes/n1/drain"))
        {
            ok.Headers.Add(DashboardServer.CsrfHeader, csrf);
            Assert.Equal(HttpStatusCode.OK, (await c.SendAsync(ok)).StatusCode);
        }
        Assert.Equal(NodeStatus.Draining, StatusOf(id));
        using (var undo = new HttpRequestMessage(HttpMethod.Post, "/api/nodes/n1/undrain"))
        {
            undo.Headers.Add(DashboardServer.CsrfHeader, csrf);
            Assert.Equal(HttpStatusCode.OK, (await c.SendAsync(undo)).StatusCode);
        }
        Assert.Equal(NodeStatus.Schedulable, StatusOf(id));

        // Revoking the credential ends its dashboard session at the next request.
        Assert.True(h.Runtime.Server.Auth.Revoke(Omega.Server.AuthService.TokenId(token)!) >= 0);
        using (var r = await c.GetAsync("/api/session")) Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode);
        // And a revoked token cannot sign in again.
        using (var r = await LoginAsync(c, token)) Assert.Equal(HttpStatusCode.Redirect, r.StatusCode);
    }

    [Fact]
    public async Task Sessions_AreBoundedInNumber_AndEndWithTheirCredentialsExpiry()
    {
        // The oldest of more sessions than the limit (8 in this host) is the one that ends.
        var first = new CookieContainer();
        using var c0 = Client(first);
        using (var r = await LoginAsync(c0, h.AdminToken)) Assert.Equal(HttpStatusCode.SeeOther, r.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await c0.GetAsync("/api/session")).StatusCode);
        for (int i = 0; i < 8; i++)
        {
            using var ci = Client(new CookieContainer());
            using var r = await LoginAsync(ci, h.AdminToken);
            Assert.Equal(HttpStatusCode.SeeOther, r.StatusCode);
        }
        Assert.Equal(HttpStatusCode.Unauthorized, (await c0.GetAsync("/api/session")).StatusCode);

        // A session never outlives its credential: a token with three seconds to live.
        string shortLived = h.Runtime.Server.Auth.CreateCredential(CredentialRole.Operator, "brief", OperatorScopes.None, ttl: TimeSpan.FromSeconds(3), createdBy: "test");
        using var c1 = Client(new CookieContainer());
        using (var r = await LoginAsync(c1, shortLived)) Assert.Equal(HttpStatusCode.SeeOther, r.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await c1.GetAsync("/api/session")).StatusCode);
        HttpStatusCode last = HttpStatusCode.OK;
        await DashboardHost.UntilAsync(() => (last = c1.GetAsync("/api/session").GetAwaiter().GetResult().StatusCode) == HttpStatusCode.Unauthorized, "the session to end with its credential", TimeSpan.FromSeconds(20));
        Assert.Equal(HttpStatusCode.Unauthorized, last);
    }

    private NodeStatus StatusOf(NodeId id)
        => h.Runtime.Cell.Snapshot().TryGetNode(id, out var v) == Omega.Cells.SnapshotRead.Ok ? v.Status : NodeStatus.Removed;
}
