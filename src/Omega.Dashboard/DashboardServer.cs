using System.Globalization;
using System.Net;
using System.Reflection;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.Protocol;

namespace Omega.Dashboard;

/// <summary>
/// The live web dashboard (docs/dashboard.md): an embedded single page, a Server-Sent Events stream of samples, a few
/// JSON reads (objects of every kind, decisions) and operator actions (drain, undrain). HTTPS with the server's own
/// certificate unless the server itself is plaintext. With the server's authentication on, a browser signs in by posting
/// an operator token to <c>/login</c> and gets an HttpOnly, Secure, SameSite=Strict session cookie; every data endpoint
/// answers 401 without one. Actions need the credential's drain scope, the session's CSRF token in a header and a
/// same-origin request, and are written to the server's audit log.
/// </summary>
public sealed class DashboardServer : IAsyncDisposable
{
    /// <summary>The session cookie's name. The <c>__Host-</c> prefix (HTTPS only) makes the browser refuse it unless Secure, host-only and Path=/.</summary>
    public const string SecureCookieName = "__Host-omega-session";

    /// <summary>The session cookie's name over plaintext HTTP (<c>--insecure</c>), where a Secure cookie would not be sent back.</summary>
    public const string PlainCookieName = "omega-session";

    /// <summary>The header a state-changing request carries its session's CSRF token in.</summary>
    public const string CsrfHeader = "X-Omega-CSRF";

    private readonly DashboardSources _src;
    private readonly DashboardOptions _options;
    private readonly ILogger _logger;
    private readonly SessionStore _sessions;
    private readonly Sampler _sampler;
    // With the server's authentication off (--no-auth) there is no sign-in, but actions still need this token in a
    // header: another site's page cannot read it, so it cannot forge a drain (CORS blocks the custom header).
    private readonly string _openCsrf = SessionStore.NewSecret();
    private WebApplication? _app;
    private int _streams;

    /// <summary>Creates the dashboard (nothing listens until <see cref="StartAsync"/>).</summary>
    /// <param name="sources">The cell's running pieces.</param>
    /// <param name="options">Listen address and limits; <see cref="DashboardOptions.Listen"/> must be set.</param>
    /// <param name="logger">Where the dashboard logs (sign-ins, actions); null: nowhere.</param>
    public DashboardServer(DashboardSources sources, DashboardOptions options, ILogger? logger = null)
    {
        _src = sources ?? throw new ArgumentNullException(nameof(sources));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _logger = logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        if (!IPEndPoint.TryParse(options.Listen ?? "", out _)) throw new ArgumentException($"dashboard listen address must be ADDRESS:PORT, not '{options.Listen}'", nameof(options));
        _sessions = new SessionStore(options, sources.Time);
        _sampler = new Sampler(sources, options);
    }

    /// <summary>The address the dashboard serves on (<c>https://127.0.0.1:PORT/</c>); null before <see cref="StartAsync"/>.</summary>
    public Uri? Address { get; private set; }

    /// <summary>True when served over HTTPS.</summary>
    public bool IsHttps => _src.Certificate is not null;

    private bool AuthRequired => _src.Auth.Enabled;

    private string CookieName => IsHttps ? SecureCookieName : PlainCookieName;

    /// <summary>Binds the port and starts serving. A port in use fails here (IOException from Kestrel).</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        var endpoint = IPEndPoint.Parse(_options.Listen!);
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ApplicationName = "Omega.Dashboard" });
        // The dashboard's own lines go to the host's logger; ASP.NET Core's request logging is not wanted on a CLI's stderr.
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Listen(endpoint, l =>
            {
                if (_src.Certificate is { } cert) l.UseHttps(cert);
            });
        });
        var app = builder.Build();
        app.Use(SecurityHeaders);
        app.MapGet("/", ctx => Static(ctx, "index.html", "text/html; charset=utf-8"));
        app.MapGet("/app.js", ctx => Static(ctx, "app.js", "text/javascript; charset=utf-8"));
        app.MapGet("/app.css", ctx => Static(ctx, "app.css", "text/css; charset=utf-8"));
        app.MapPost("/login", Login);
        app.MapPost("/logout", Logout);
        app.MapGet("/api/session", SessionInfo);
        app.MapGet("/api/sample", LatestSample);
        app.MapGet("/api/events", Events);
        app.MapGet("/api/objects", ListObjects);
        app.MapGet("/api/explain", Explain);
        app.MapGet("/api/audit", ReadAudit);
        app.MapPost("/api/nodes/{name}/{action}", NodeAction);
        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        _app = app;
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        var bound = new Uri(addresses.First());
        Address = new UriBuilder(IsHttps ? "https" : "http", endpoint.Address.ToString(), bound.Port, "/").Uri;
        _sampler.Tick();
    }

    private static Task SecurityHeaders(HttpContext ctx, Func<Task> next)
    {
        var h = ctx.Response.Headers;
        // Everything is same-origin and embedded: nothing else may load, and no other site may frame the page.
        h.ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
        h.XContentTypeOptions = "nosniff";
        h.XFrameOptions = "DENY";
        // same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" on its own form posts, and the
        // same-origin check below could not tell them from a cross-site page's.
        h["Referrer-Policy"] = "same-origin";
        h.CacheControl = "no-store";
        return next();
    }

    private static async Task Static(HttpContext ctx, string name, string contentType)
    {
        using var s = typeof(DashboardServer).Assembly.GetManifestResourceStream("wwwroot/" + name)
            ?? throw new InvalidOperationException($"embedded resource wwwroot/{name} is missing from the build");
        ctx.Response.ContentType = contentType;
        await s.CopyToAsync(ctx.Response.Body, ctx.RequestAborted).ConfigureAwait(false);
    }

    // ---------------------------------------------------------------- sessions

    private DashboardSession? Current(HttpContext ctx)
    {
        if (!AuthRequired)
            return new DashboardSession { Id = "", CredentialId = "", Who = "anonymous(--no-auth)", Scopes = OperatorScopes.All, Csrf = _openCsrf, ExpiresAtMs = long.MaxValue };
        var s = _sessions.Get(ctx.Request.Cookies[CookieName]);
        if (s is null) return null;
        // A revoked or expired credential ends its sessions at their next request.
        if (!_src.Auth.IsCredentialLive(s.CredentialId))
        {
            _sessions.Remove(s.Id);
            return null;
        }
        return s;
    }

    private static Task Unauthorized(HttpContext ctx)
    {
        ctx.Response.StatusCode = StatusCodes.Status401Unauthorized;
        // Not "Bearer": the browser must not pop a credential dialog; the page shows its sign-in form instead.
        ctx.Response.Headers.WWWAuthenticate = "OmegaSession realm=\"omega\"";
        return ctx.Response.WriteAsJsonAsync(new { error = "sign in first: POST /login with an operator token" });
    }

    // A form post from another origin is refused: SameSite=Strict already keeps the cookie off it, this keeps a
    // cross-site page from signing the browser in as someone else (login CSRF).
    private static bool SameOrigin(HttpContext ctx)
    {
        string? origin = ctx.Request.Headers.Origin;
        // A browser says where a request comes from (Fetch Metadata); a non-browser client (curl, the CLI) sends no
        // Origin and cannot carry the browser's cookie anyway.
        string? site = ctx.Request.Headers["Sec-Fetch-Site"];
        if (!string.IsNullOrEmpty(site) && site is not ("same-origin" or "none")) return false;
        if (string.IsNullOrEmpty(origin)) return true;
        if (origin == "null") return site == "same-origin";
        return Uri.TryCreate(origin, UriKind.Absolute, out var o)
            && string.Equals(o.Authority, ctx.Request.Host.Value, StringComparison.OrdinalIgnoreCase)
            && string.Equals(o.Scheme, ctx.Request.Scheme, StringComparison.OrdinalIgnoreCase);
    }

    private async Task Login(HttpContext ctx)
    {
        if (!SameOrigin(ctx))
        {
            ctx.Response.StatusCode = StatusCodes.Status403Forbidden;
            return;
        }
        if (!AuthRequired)
        {
            ctx.Response.Redirect("/", false);
            return;
        }
        string? token = null;
        if (ctx.Request.HasFormContentType)
        {
            var form = await ctx.Request.ReadFormAsync(ctx.RequestAborted).ConfigureAwait(false);
            token = form["token"].ToString().Trim();
        }
        var id = _src.Auth.CheckBearer(token, out var reason);
        if (id is null)
        {
            _src.Auth.AuditRefusal($"dashboard({ctx.Connection.RemoteIpAddress})", "Dashboard SignIn", "", "SignInRefused", reason);
            Log.SignInRefused(_logger, ctx.Connection.RemoteIpAddress?.ToString() ?? "", reason);
            ctx.Response.Redirect("/?error=signin", false);
            return;
        }
        var s = _sessions.Create(id.CredentialId, id.Who, id.Scopes, id.ExpiresUnixMs);
        _src.Auth.AuditAction(id.Who, "Dashboard SignIn", ctx.Connection.RemoteIpAddress?.ToString() ?? "", "ok");
        Log.SignedIn(_logger, id.Who);
        ctx.Response.Cookies.Append(CookieName, s.Id, new CookieOptions
        {
            HttpOnly = true,
            Secure = IsHttps,
            SameSite = SameSiteMode.Strict,
            Path = "/",
            MaxAge = TimeSpan.FromMilliseconds(Math.Max(0, s.ExpiresAtMs - _src.Time.GetUtcNow().ToUnixTimeMilliseconds())),
        });
        // 303: the browser follows with a GET, so a reload does not post the token again.
        ctx.Response.StatusCode = StatusCodes.Status303SeeOther;
        ctx.Response.Headers.Location = "/";
    }

    private Task Logout(HttpContext ctx)
    {
        var s = Current(ctx);
        if (s is not null && !SessionStore.SecretEquals(ctx.Request.Headers[CsrfHeader], s.Csrf))
        {
            ctx.Response.StatusCode = StatusCodes.Status403Forbidden;
            return Task.CompletedTask;
        }
        if (s is not null) _sessions.Remove(s.Id);
        ctx.Response.Cookies.Delete(CookieName, new CookieOptions { Secure = IsHttps, Path = "/", SameSite = SameSiteMode.Strict, HttpOnly = true });
        ctx.Response.StatusCode = StatusCodes.Status204NoContent;
        return Task.CompletedTask;
    }

    private Task SessionInfo(HttpContext ctx)
    {
        if (Current(ctx) is not { } s) return Unauthorized(ctx);
        return ctx.Response.WriteAsJsonAsync(new
        {
            who = s.Who,
            canOperate = s.Has(OperatorScopes.Drain),
            canRemove = s.Has(OperatorScopes.Override),
            csrf = s.Csrf,
            cell = _src.Cell.Name,
            authRequired = AuthRequired,
            expiresUnixMs = s.ExpiresAtMs == long.MaxValue ? 0 : s.ExpiresAtMs,
        });
    }

    // ---------------------------------------------------------------- data

    private async Task LatestSample(HttpContext ctx)
    {
        if (Current(ctx) is null)
        {
            await Unauthorized(ctx).ConfigureAwait(false);
            return;
        }
        var h = _sampler.History();
        ctx.Response.ContentType = "application/json";
        await ctx.Response.Body.WriteAsync(h.Length == 0 ? "{}"u8.ToArray() : h[^1], ctx.RequestAborted).ConfigureAwait(false);
    }

    private async Task Events(HttpContext ctx)
    {
        if (Current(ctx) is not { } session)
        {
            await Unauthorized(ctx).ConfigureAwait(false);
            return;
        }
        if (Interlocked.Increment(ref _streams) > _options.MaxStreams)
        {
            Interlocked.Decrement(ref _streams);
            ctx.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
            return;
        }
        try
        {
            var ct = ctx.RequestAborted;
            ctx.Response.ContentType = "text/event-stream";
            ctx.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpResponseBodyFeature>()?.DisableBuffering();
            // A slow page must not hold samples without bound: it keeps the newest few, the rest are dropped.
            var queue = System.Threading.Channels.Channel.CreateBounded<byte[]>(new System.Threading.Channels.BoundedChannelOptions(4)
            {
                FullMode = System.Threading.Channels.BoundedChannelFullMode.DropOldest, SingleReader = true,
            });
            using var sub = _sampler.Subscribe(b => queue.Writer.TryWrite(b));
            var body = ctx.Response.Body;
            await body.WriteAsync("retry: 2000\nevent: history\ndata: ["u8.ToArray(), ct).ConfigureAwait(false);
            var history = _sampler.History();
            for (int i = 0; i < history.Length; i++)
            {
                if (i > 0) await body.WriteAsync(","u8.ToArray(), ct).ConfigureAwait(false);
                await body.WriteAsync(history[i], ct).ConfigureAwait(false);
            }
            await body.WriteAsync("]\n\n"u8.ToArray(), ct).ConfigureAwait(false);
            await body.FlushAsync(ct).ConfigureAwait(false);
            await foreach (var sample in queue.Reader.ReadAllAsync(ct).ConfigureAwait(false))
            {
                // The session is re-checked at every sample: sign-out, expiry or a revoked credential ends the stream.
                if (AuthRequired && Current(ctx) is null) break;
                await body.WriteAsync("event: sample\ndata: "u8.ToArray(), ct).ConfigureAwait(false);
                await body.WriteAsync(sample, ct).ConfigureAwait(false);
                await body.WriteAsync("\n\n"u8.ToArray(), ct).ConfigureAwait(false);
                await body.FlushAsync(ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            // The page closed.
        }
        catch (IOException)
        {
            // The connection broke.
        }
        finally
        {
            Interlocked.Decrement(ref _streams);
        }
    }

    /// <summary>
    /// Objects of every kind the store holds (so a kind added later shows up without a change here): kinds with counts,
    /// and the objects of <c>?kind=</c> (at most 500) as the store's JSON.
    /// </summary>
    private async Task ListObjects(HttpContext ctx)
    {
        if (Current(ctx) is null)
        {
            await Unauthorized(ctx).ConfigureAwait(false);
            return;
        }
        string? kind = ctx.Request.Query["kind"];
        var counts = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var items = new List<JsonElement>();
        string? cont = null;
        int scanned = 0;
        // Paged, and bounded: a cell with very many objects is counted up to 20,000 of them.
        do
        {
            var page = _src.Objects.List(default, 1000, cont);
            foreach (var o in page.Items)
            {
                counts[o.Kind] = counts.GetValueOrDefault(o.Kind) + 1;
                if (kind is not null && o.Kind == kind && items.Count < 500)
                    items.Add(JsonDocument.Parse(ObjectCodec.Serialize(o)).RootElement);
            }
            scanned += page.Items.Count;
            cont = page.Continue;
        } while (cont is not null && scanned < 20_000);
        await ctx.Response.WriteAsJsonAsync(new { kinds = counts, truncated = cont is not null, kind, items }, ctx.RequestAborted).ConfigureAwait(false);
    }

    /// <summary><c>?task=j12/0</c>: the engine's decision record; <c>?workload=tenant/name&amp;generation=N</c>: the archived decisions of that generation.</summary>
    private async Task Explain(HttpContext ctx)
    {
        if (Current(ctx) is null)
        {
            await Unauthorized(ctx).ConfigureAwait(false);
            return;
        }
        string? task = ctx.Request.Query["task"], workload = ctx.Request.Query["workload"], gen = ctx.Request.Query["generation"];
        string text;
        int status = StatusCodes.Status200OK;
        if (task is not null)
        {
            if (!TaskId.TryParse(task.Trim(), out var id)) { status = 400; text = $"'{task}' is not a task id (jN/I, e.g. j12/0)"; }
            else if (_src.Engine.Explain(id) is not { } d) { status = 404; text = $"no decision recorded for {id} (not placed yet, or sampled out)"; }
            else text = d.Explain(id.Index);
        }
        else if (workload is not null)
        {
            int slash = workload.IndexOf('/');
            string tenant = slash < 0 ? "default" : workload[..slash], name = slash < 0 ? workload : workload[(slash + 1)..];
            long? generation = long.TryParse(gen, NumberStyles.None, CultureInfo.InvariantCulture, out var g) ? g : null;
            var sb = new StringBuilder();
            int found = 0;
            string? cont = null;
            do
            {
                var page = _src.Objects.List(new ObjectFilter(Decision.KindName, tenant), 1000, cont);
                foreach (var o in page.Items)
                    if (o is Decision dec && dec.Spec.Workload == name && (generation is null || dec.Spec.WorkloadGeneration == generation))
                    {
                        found++;
                        sb.Append(CultureInfo.InvariantCulture, $"--- generation {dec.Spec.WorkloadGeneration} slot {dec.Spec.Slot} attempt {dec.Spec.Attempt}: {dec.Spec.Outcome} ({dec.Spec.CommitStatus})\n{dec.Spec.Text}\n");
                    }
                cont = page.Continue;
            } while (cont is not null);
            if (_src.Objects.Get<Workload>(tenant, name) is { } wl)
                sb.Insert(0, string.Create(CultureInfo.InvariantCulture, $"workload {tenant}/{name} generation {wl.Metadata.Generation}: desired {wl.Status.Desired}, bound {wl.Status.Bound}, ready {wl.Status.Ready}, serving {wl.Status.Serving}{(wl.Status.PendingReason is { } p ? ", pending: " + p : "")}\n"));
            else if (found == 0) status = 404;
            text = found == 0 && status == 200 ? sb + "no archived decisions for it" : sb.Length == 0 ? $"no workload {tenant}/{name}" : sb.ToString();
        }
        else { status = 400; text = "give ?task=jN/I or ?workload=tenant/name[&generation=N]"; }
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "text/plain; charset=utf-8";
        await ctx.Response.WriteAsync(text, ctx.RequestAborted).ConfigureAwait(false);
    }

    private async Task ReadAudit(HttpContext ctx)
    {
        if (Current(ctx) is null)
        {
            await Unauthorized(ctx).ConfigureAwait(false);
            return;
        }
        var (total, entries) = _src.Auth.ReadAudit(50);
        await ctx.Response.WriteAsJsonAsync(new { total, entries }, ctx.RequestAborted).ConfigureAwait(false);
    }

    // ---------------------------------------------------------------- actions

    /// <summary>
    /// <c>POST /api/nodes/{name}/ACTION</c>, ACTION one of <c>cordon</c>, <c>drain</c> (both: no new bindings, tasks keep
    /// running; Omega's drain does not evict), <c>uncordon</c>/<c>undrain</c> (a draining node schedulable again) and
    /// <c>remove</c> (the node goes for good: its bindings are released and their tasks requeued). Cordon, drain and
    /// their undo need the drain scope, remove the override scope (as Operate over the wire); each needs the session's
    /// CSRF token in <see cref="CsrfHeader"/> and a same-origin request. A refusal is typed: a JSON body
    /// <c>{"error": TEXT, "code": CODE}</c> with CODE one of <c>CsrfTokenMissing</c>, <c>ScopeMissing</c> (403),
    /// <c>UnknownNode</c> (404), <c>InvalidState</c> (409). Every action is audited with its outcome (refusals too) and
    /// answered once the change and its audit entry are durable.
    /// </summary>
    private async Task NodeAction(HttpContext ctx)
    {
        string name = (string)ctx.Request.RouteValues["name"]!, action = (string)ctx.Request.RouteValues["action"]!;
        if (Current(ctx) is not { } s)
        {
            await Unauthorized(ctx).ConfigureAwait(false);
            return;
        }
        string what = action switch
        {
            "drain" => "Dashboard DrainNode",
            "cordon" => "Dashboard CordonNode",
            "undrain" => "Dashboard UndrainNode",
            "uncordon" => "Dashboard UncordonNode",
            "remove" => "Dashboard RemoveNode",
            _ => "",
        };
        if (what.Length == 0)
        {
            ctx.Response.StatusCode = StatusCodes.Status404NotFound;
            return;
        }
        if (!SameOrigin(ctx) || !SessionStore.SecretEquals(ctx.Request.Headers[CsrfHeader], s.Csrf))
        {
            _src.Auth.AuditRefusal(s.Who, what, name, "CsrfTokenMissing");
            await Refuse(ctx, StatusCodes.Status403Forbidden, "missing or wrong CSRF token", "CsrfTokenMissing").ConfigureAwait(false);
            return;
        }
        bool remove = action == "remove";
        var scope = remove ? OperatorScopes.Override : OperatorScopes.Drain;
        if (!s.Has(scope))
        {
            _src.Auth.AuditRefusal(s.Who, what, name, "ScopeMissing");
            await Refuse(ctx, StatusCodes.Status403Forbidden, remove
                ? "this credential may not remove nodes: removing needs the override scope"
                : "this credential is read-only: cordoning and draining need the drain scope", "ScopeMissing").ConfigureAwait(false);
            return;
        }
        var cell = _src.Cell;
        if (!cell.TryGetNodeId(name, out var id))
        {
            _src.Auth.AuditAction(s.Who, what, name, "UnknownNode");
            await Refuse(ctx, StatusCodes.Status404NotFound, $"no node named '{name}'", "UnknownNode").ConfigureAwait(false);
            return;
        }
        NodeOpStatus st;
        string result;
        if (remove)
        {
            st = cell.RemoveNode(id, out var released);
            if (st == NodeOpStatus.Ok)
            {
                // As Operate RemoveNode: the lease is no longer tracked, and the released tasks are placed again.
                _src.Lifecycle?.Forget(id);
                if (released.Count > 0)
                {
                    var tasks = new List<TaskId>(released.Count);
                    foreach (var a in released) tasks.Add(a.Task);
                    _src.Engine.RequeueReleased(tasks);
                }
            }
            result = st == NodeOpStatus.Ok ? $"ok: {released.Count} binding(s) released" : st.ToString();
        }
        else
        {
            if (action is "drain" or "cordon") st = cell.SetNodeStatus(id, NodeStatus.Draining);
            else
            {
                // Only a drain can be undone here (as Operate UndrainNode): a lost or removed node stays so.
                var now = cell.Snapshot().TryGetNode(id, out var v) == SnapshotRead.Ok ? v.Status : NodeStatus.Removed;
                st = now == NodeStatus.Schedulable ? NodeOpStatus.Ok : now != NodeStatus.Draining ? NodeOpStatus.Invalid : cell.SetNodeStatus(id, NodeStatus.Schedulable);
            }
            result = st == NodeOpStatus.Ok ? "ok" : st.ToString();
        }
        _src.Auth.AuditAction(s.Who, what, name, result);
        Log.Action(_logger, s.Who, what, name, result);
        // The audit entry and the status change are in the journal: answer once both are durable.
        await _src.WaitDurable(ctx.RequestAborted).ConfigureAwait(false);
        if (st != NodeOpStatus.Ok)
        {
            await Refuse(ctx, StatusCodes.Status409Conflict, st.ToString(), "InvalidState").ConfigureAwait(false);
            return;
        }
        await ctx.Response.WriteAsJsonAsync(new { ok = true, node = name, action }, ctx.RequestAborted).ConfigureAwait(false);
    }

    private static Task Refuse(HttpContext ctx, int status, string message, string? code = null)
    {
        ctx.Response.StatusCode = status;
        return code is null ? ctx.Response.WriteAsJsonAsync(new { error = message }) : ctx.Response.WriteAsJsonAsync(new { error = message, code });
    }

    /// <summary>Stops serving (open streams end) and the sampler.</summary>
    public async ValueTask DisposeAsync()
    {
        _sampler.Dispose();
        if (_app is { } app)
        {
            _app = null;
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            try { await app.StopAsync(cts.Token).ConfigureAwait(false); }
            catch (OperationCanceledException) { }
            await app.DisposeAsync().ConfigureAwait(false);
        }
    }
}

/// <summary>The dashboard's log lines (event ids 1200-1219).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1200, Level = LogLevel.Information, Message = "Dashboard sign-in: {Who}")]
    public static partial void SignedIn(ILogger logger, string who);

    [LoggerMessage(EventId = 1201, Level = LogLevel.Warning, Message = "Dashboard sign-in refused from {Remote}: {Reason}")]
    public static partial void SignInRefused(ILogger logger, string remote, string reason);

    [LoggerMessage(EventId = 1202, Level = LogLevel.Information, Message = "Dashboard action by {Who}: {Action} {Target}: {Result}")]
    public static partial void Action(ILogger logger, string who, string action, string target, string result);
}
