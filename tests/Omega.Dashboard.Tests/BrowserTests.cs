using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using OpenQA.Selenium.Support.UI;
using Xunit.Abstractions;

namespace Omega.Dashboard.Tests;

/// <summary>
/// The dashboard in a real headless browser: Debian's chromium driven through chromium-driver (installed by .ci/run).
/// One host and one browser for the class; each test starts signed out (cookies cleared).
/// </summary>
public sealed class BrowserTests : IClassFixture<DashboardHost>, IDisposable
{
    private readonly DashboardHost _h;
    private readonly ITestOutputHelper _out;
    private readonly ChromeDriver _browser;

    public BrowserTests(DashboardHost host, ITestOutputHelper output)
    {
        _h = host;
        _out = output;
        var options = new ChromeOptions { BinaryLocation = File.Exists("/usr/bin/chromium") ? "/usr/bin/chromium" : null };
        // Root in a container: no sandbox; a small /dev/shm: use /tmp. The dashboard's certificate is the server's
        // self-signed one, which this browser has no reason to trust.
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1500");
        options.AcceptInsecureCertificates = true;
        // The system driver, found by path: Selenium Manager must not try to download one.
        var service = File.Exists("/usr/bin/chromedriver") ? ChromeDriverService.CreateDefaultService("/usr/bin", "chromedriver") : ChromeDriverService.CreateDefaultService();
        service.SuppressInitialDiagnosticInformation = true;
        service.HideCommandPromptWindow = true;
        _browser = new ChromeDriver(service, options, TimeSpan.FromSeconds(30));
    }

    public void Dispose() => _browser.Quit();

    private WebDriverWait Wait(double seconds = 15)
    {
        var w = new WebDriverWait(_browser, TimeSpan.FromSeconds(seconds)) { PollingInterval = TimeSpan.FromMilliseconds(50) };
        // The page re-renders its tables at every sample: an element found a moment ago may be replaced.
        w.IgnoreExceptionTypes(typeof(StaleElementReferenceException));
        return w;
    }

    private void SignIn(string token)
    {
        _browser.Navigate().GoToUrl(_h.Address);
        Wait().Until(d => d.FindElement(By.Id("signin")).Displayed);
        // Nothing but the sign-in form before a session exists: the data endpoints answered 401.
        Assert.False(_browser.FindElement(By.Id("app")).Displayed);
        _browser.FindElement(By.Id("token")).SendKeys(token);
        _browser.FindElement(By.Id("login")).Click();
        try { Wait().Until(d => d.FindElement(By.Id("app")).Displayed); }
        catch (WebDriverTimeoutException)
        {
            _out.WriteLine($"after sign-in: {_browser.Url}\n{_browser.PageSource[..Math.Min(2000, _browser.PageSource.Length)]}");
            throw;
        }
        Wait().Until(d => d.FindElement(By.Id("conn")).Text == "live");
    }

    private string Text(string id) => _browser.FindElement(By.Id(id)).Text;

    [Fact]
    public async Task SignIn_ThenLiveNumbersChangeWhileAWorkloadRuns_AndAScreenshotIsKept()
    {
        SignIn(_h.AdminToken);
        Assert.Contains("operator:admin", Text("who"));
        Wait().Until(d => Text("node-count") == "3");
        string before = Text("placements-total");
        long placedBefore = long.Parse(before.Replace(",", ""));
        // A workload runs: jobs keep arriving and being placed while the page is open.
        using var stop = new CancellationTokenSource();
        var load = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                _h.SubmitJob(5);
                try { await Task.Delay(40, stop.Token); } catch (OperationCanceledException) { }
            }
        });
        try
        {
            // The page's numbers move without a reload: pushed by the event stream.
            Wait().Until(_ => long.Parse(Text("placements-total").Replace(",", "")) >= placedBefore + 20);
            string mid = Text("placements-total");
            Wait().Until(_ => Text("placements-total") != mid);
            Wait().Until(_ => Text("cell-util") != "0.0 %");
            Wait().Until(_ => _browser.FindElements(By.CssSelector("#zones tbody tr")).Count == 2);
            Wait().Until(_ => _browser.FindElement(By.CssSelector("#workloads tbody")).Text.Contains("default/web", StringComparison.Ordinal));
            _out.WriteLine($"placements shown: {before} -> {mid} -> {Text("placements-total")}; cpu {Text("cell-util")}");
        }
        finally
        {
            await stop.CancelAsync();
            await load;
        }
        // The decision view: explain a placed task in the browser.
        var job = _h.SubmitJob(1);
        await DashboardHost.UntilAsync(() => _h.Runtime.Engine.Explain(new TaskId(job, 0)) is not null, "a decision record for the job");
        _browser.FindElement(By.Id("explain-task")).SendKeys($"{new TaskId(job, 0)}");
        _browser.FindElement(By.CssSelector("#explain-form button")).Click();
        Wait().Until(_ => Text("explain").Contains(job.ToString(), StringComparison.Ordinal));
        // Objects of every kind are listed generically.
        Wait().Until(d => d.FindElements(By.CssSelector("#kinds button")).Any(b => b.Text.StartsWith("Workload", StringComparison.Ordinal)));

        string file = Path.Combine(DashboardHost.ArtifactDirectory(), "dashboard-live.png");
        _browser.GetScreenshot().SaveAsFile(file);
        _out.WriteLine($"screenshot: {file}");
        Assert.True(new FileInfo(file).Length > 10_000, "the screenshot holds the rendered page");
    }

    [Fact]
    public void ReadOnlyCredential_SeesNoDrainButton_AndTheEndpointRefusesWith403()
    {
        SignIn(_h.ReadOnlyToken);
        Assert.Contains("read-only", Text("who"));
        Wait().Until(d => d.FindElements(By.CssSelector("#nodes tbody tr")).Count == 3);
        Assert.Empty(_browser.FindElements(By.CssSelector("#nodes button")));
        // Forging the request from the page itself (its own session and CSRF token) is refused by the server too.
        var status = _browser.ExecuteAsyncScript(@"
            const done = arguments[arguments.length - 1];
            fetch('/api/session').then(r => r.json()).then(s =>
              fetch('/api/nodes/n3/drain', { method: 'POST', headers: { 'X-Omega-CSRF': s.csrf } })).then(r => done(r.status));");
        Assert.Equal(403L, status);
        // Cordon and remove too, each refused with a typed code the page (and a script) can branch on.
        foreach (var action in new[] { "cordon", "remove" })
        {
            var refusal = (string?)_browser.ExecuteAsyncScript(@"
                const done = arguments[arguments.length - 1];
                fetch('/api/session').then(r => r.json()).then(s =>
                  fetch('/api/nodes/n3/" + action + @"', { method: 'POST', headers: { 'X-Omega-CSRF': s.csrf } }))
                  .then(r => r.json().then(b => done(r.status + ' ' + b.code)));");
            Assert.Equal("403 ScopeMissing", refusal);
        }
        Assert.True(_h.Runtime.Cell.TryGetNodeId("n3", out var id));
        Assert.Equal(NodeStatus.Schedulable, NodeStatusOf(id));
        var (_, audit) = _h.Runtime.Server.Auth.ReadAudit(100);
        Assert.Contains(audit, e => e.Action == "Dashboard DrainNode" && e.Target == "n3" && e.Who.Contains("viewer", StringComparison.Ordinal) && e.Result.StartsWith("denied", StringComparison.Ordinal));
    }

    [Fact]
    public async Task OperatorDrain_FromThePage_DrainsTheNodeAndIsAudited()
    {
        SignIn(_h.AdminToken);
        ClickWhenPresent("#nodes button.drain[data-node='n2']");
        Assert.True(_h.Runtime.Cell.TryGetNodeId("n2", out var id));
        await DashboardHost.UntilAsync(() => NodeStatusOf(id) == NodeStatus.Draining, "n2 draining in the cell");
        // The page shows it on the next sample, with the button turned into Undrain.
        Wait().Until(d => d.FindElements(By.CssSelector("#nodes button.undrain[data-node='n2']")).Count == 1);
        var (_, audit) = _h.Runtime.Server.Auth.ReadAudit(100);
        Assert.Contains(audit, e => e.Action == "Dashboard DrainNode" && e.Target == "n2" && e.Result == "ok" && e.Who.Contains("operator:admin", StringComparison.Ordinal));
        // Undo it from the page as well (and leave the node as the other tests expect it).
        ClickWhenPresent("#nodes button.undrain[data-node='n2']");
        await DashboardHost.UntilAsync(() => NodeStatusOf(id) == NodeStatus.Schedulable, "n2 schedulable again");
    }

    [Fact]
    public async Task OperatorCordonUncordonAndRemove_FromThePage_ChangeTheCellAndAreAudited()
    {
        // A node of this test's own, so the others still see their three.
        _h.Runtime.Cell.AddNode(new NodeSpec("n9", ResourceVector.FromCoresAndGiB(8, 32), "fd9"));
        Assert.True(_h.Runtime.Cell.TryGetNodeId("n9", out var id));
        SignIn(_h.AdminToken);
        ClickWhenPresent("#nodes button.cordon[data-node='n9']");
        await DashboardHost.UntilAsync(() => NodeStatusOf(id) == NodeStatus.Draining, "n9 cordoned in the cell");
        ClickWhenPresent("#nodes button.uncordon[data-node='n9']");
        await DashboardHost.UntilAsync(() => NodeStatusOf(id) == NodeStatus.Schedulable, "n9 schedulable again");
        // Remove asks for confirmation in the page: the test answers yes.
        _browser.ExecuteScript("window.confirm = () => true;");
        ClickWhenPresent("#nodes button.remove[data-node='n9']");
        await DashboardHost.UntilAsync(() => NodeStatusOf(id) == NodeStatus.Removed, "n9 removed");
        Wait().Until(d => d.FindElements(By.CssSelector("#nodes button[data-node='n9']")).Count == 0);
        var (_, audit) = _h.Runtime.Server.Auth.ReadAudit(200);
        foreach (var action in new[] { "Dashboard CordonNode", "Dashboard UncordonNode" })
            Assert.Contains(audit, e => e.Action == action && e.Target == "n9" && e.Result == "ok" && e.Who.Contains("operator:admin", StringComparison.Ordinal));
        Assert.Contains(audit, e => e.Action == "Dashboard RemoveNode" && e.Target == "n9" && e.Result.StartsWith("ok", StringComparison.Ordinal));
        Directory.CreateDirectory(DashboardHost.ArtifactDirectory());
        ((ITakesScreenshot)_browser).GetScreenshot().SaveAsFile(Path.Combine(DashboardHost.ArtifactDirectory(), "dashboard-node-actions.png"));
    }

    // The node table is rebuilt at every sample: a button found a moment ago may be gone by the click. Retried on a
    // stale element only; the selector names the button's kind, so a retry can never press the opposite action.
    private void ClickWhenPresent(string css) => Wait().Until(d =>
    {
        d.FindElement(By.CssSelector(css)).Click();
        return true;
    });

    private NodeStatus NodeStatusOf(NodeId id)
        => _h.Runtime.Cell.Snapshot().TryGetNode(id, out var v) == Omega.Cells.SnapshotRead.Ok ? v.Status : NodeStatus.Removed;
}
