using System.Net;
using System.Text.RegularExpressions;
using Omega.CrashHost;

namespace Omega.Cli.Tests;

/// <summary><c>omega serve --http</c> as a child process: the flag reaches the dashboard, which requires a sign-in.</summary>
public sealed class DashboardCliTests
{
    [Fact]
    public async Task ServeWithHttp_ServesTheDashboard_401WithoutSignIn_AndSignsInWithTheAdminToken()
    {
        string data = Path.Combine(Path.GetTempPath(), "omega-dash-cli-" + Guid.NewGuid().ToString("N"));
        try
        {
            // ServeProcess asks for --insecure (plaintext): the dashboard follows the listener and serves plain HTTP,
            // with a cookie that is not Secure (a browser would not send it back over HTTP) but still HttpOnly and Strict.
            using var serve = await ServeProcess.StartWithAuthAsync(OmegaProcess.Dll, data, TimeSpan.FromSeconds(90), "--http", "127.0.0.1:0");
            var m = Regex.Match(serve.Output, @"dashboard at (http://127\.0\.0\.1:\d+/)");
            Assert.True(m.Success, serve.Output);
            using var c = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false, UseCookies = false }) { BaseAddress = new Uri(m.Groups[1].Value), Timeout = TimeSpan.FromSeconds(10) };
            Assert.Equal(HttpStatusCode.Unauthorized, (await c.GetAsync("/api/session")).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await c.GetAsync("/api/events")).StatusCode);
            string token = (await File.ReadAllTextAsync(Path.Combine(data, "admin.token"))).Trim();
            using var login = await c.PostAsync("/login", new FormUrlEncodedContent([new("token", token)]));
            Assert.Equal(HttpStatusCode.SeeOther, login.StatusCode);
            string cookie = login.Headers.GetValues("Set-Cookie").Single();
            Assert.StartsWith("omega-session=", cookie, StringComparison.Ordinal);
            Assert.Contains("httponly", cookie, StringComparison.OrdinalIgnoreCase);
            Assert.Contains("samesite=strict", cookie, StringComparison.OrdinalIgnoreCase);
            using var session = new HttpRequestMessage(HttpMethod.Get, "/api/session");
            session.Headers.Add("Cookie", cookie.Split(';')[0]);
            using var ok = await c.SendAsync(session);
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
            Assert.Contains("operator:admin", await ok.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            await serve.KillAsync();
        }
        finally
        {
            try { Directory.Delete(data, true); } catch (IOException) { }
        }
    }
}
