using System.Diagnostics;
using System.IO.Compression;
using System.Xml.Linq;

namespace Omega.Cli.Tests;

/// <summary>
/// The packages (issue 17, item 5): <c>dotnet pack</c> of the solution (from the build the tests already ran, so no
/// second build) gives every library and the <c>omega</c> tool one version, the MIT license expression, the readme,
/// the repository's commit (SourceLink) and a symbol package; the tool holds SkiaSharp's native assets for Linux, macOS
/// and Windows; and <c>dotnet tool install --tool-path</c> from that local feed gives a working <c>omega</c> that prints
/// its version and writes a chart.
/// </summary>
public sealed class PackageTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(4);

    /// <summary>OmegaRepositoryUrl's placeholder default (Directory.Build.props).</summary>
    private const string RepositoryUrl = "https://github.com/omega-scheduler/omega";

    private static readonly string[] Libraries =
    [
        "Omega.Core", "Omega.Cell", "Omega.Scheduling", "Omega.ControlPlane", "Omega.Protocol", "Omega.Transport", "Omega.Server",
        "Omega.Agent", "Omega.Storage", "Omega.Simulation", "Omega.Reporting", "Omega.Hosting",
    ];

    [Fact]
    public async Task Pack_gives_packages_with_their_metadata_and_the_tool_installs_from_the_local_feed_and_runs()
    {
        string root = OperatorExperienceTests.RepositoryRoot();
        string work = Path.Combine(Path.GetTempPath(), "omega-pack-" + Guid.NewGuid().ToString("N"));
        string feed = Path.Combine(work, "feed"), tools = Path.Combine(work, "tools");
        // The configuration the tests were built in (bin/Release/... or bin/Debug/...), so --no-build finds the binaries.
        string configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        try
        {
            var pack = await Dotnet(root, Timeout, "pack", Path.Combine(root, "Omega.sln"), "-c", configuration, "--no-build", "-o", feed);
            Assert.True(pack.ExitCode == 0, pack.Output);

            string? version = null;
            foreach (var id in Libraries.Append("omega"))
            {
                // "Omega.Cell.0.5.0.nupkg", not "Omega.Cell.Tests..." nor the .snupkg: the id is followed by the version's digits.
                var nupkg = Assert.Single(Directory.GetFiles(feed, $"{id}.*.nupkg"), f => Path.GetFileName(f)[id.Length + 1] is >= '0' and <= '9');
                using var zip = ZipFile.OpenRead(nupkg);
                var nuspec = XDocument.Load(zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal)).Open());
                var ns = nuspec.Root!.Name.Namespace;
                var meta = nuspec.Root.Element(ns + "metadata")!;
                string Field(string name) => meta.Element(ns + name)?.Value ?? "";

                // One version source (Directory.Build.props): every package has the same one.
                version ??= Field("version");
                Assert.Equal(version, Field("version"));
                Assert.Equal("MIT", Field("license"));
                Assert.Equal("expression", meta.Element(ns + "license")!.Attribute("type")!.Value);
                Assert.Equal("README.md", Field("readme"));
                Assert.Contains(zip.Entries, e => e.FullName == "README.md");
                Assert.Contains(zip.Entries, e => e.FullName == "LICENSE");
                Assert.True(Field("description").Length > 40, $"{id}: description '{Field("description")}'");
                // SourceLink: the repository element names the commit the package was built from.
                var repository = meta.Element(ns + "repository");
                Assert.NotNull(repository);
                Assert.Equal("git", repository!.Attribute("type")?.Value);
                Assert.Matches("^[0-9a-f]{40}$", repository.Attribute("commit")?.Value ?? "");
                // The repository's address (a placeholder property in Directory.Build.props, docs/packages.md).
                Assert.Equal(RepositoryUrl, repository.Attribute("url")?.Value);
                Assert.Equal(RepositoryUrl, Field("projectUrl"));
                // Symbols travel in a .snupkg beside each package, and its PDB maps the sources to that commit on GitHub.
                string snupkg = Path.ChangeExtension(nupkg, ".snupkg");
                Assert.True(File.Exists(snupkg), $"no symbol package for {id}");
                using (var symbols = ZipFile.OpenRead(snupkg))
                {
                    var pdb = symbols.Entries.First(e => e.FullName.EndsWith(".pdb", StringComparison.Ordinal));
                    using var buffer = new MemoryStream();
                    using (var s = pdb.Open()) s.CopyTo(buffer);
                    // The SourceLink map is a UTF-8 JSON blob in the portable PDB's custom debug information. It names the
                    // commit the binaries were built from (with --no-build that can precede the commit pack stamps into
                    // the nuspec, when a commit was made in between), so the pattern, not the nuspec's commit, is checked.
                    Assert.Matches(@"https://raw\.githubusercontent\.com/omega-scheduler/omega/[0-9a-f]{40}/\*",
                        System.Text.Encoding.Latin1.GetString(buffer.ToArray()));
                }
                if (id == "omega")
                {
                    Assert.Contains("kubectl-style", Field("description"), StringComparison.Ordinal);
                    // The charts' native libraries for each platform the tool runs on, not only the build machine's.
                    foreach (var rid in new[] { "linux-x64", "osx", "win-x64" })
                        Assert.True(zip.Entries.Any(e => e.FullName.Contains($"/runtimes/{rid}/native/", StringComparison.Ordinal) && e.Name.Contains("SkiaSharp", StringComparison.Ordinal)),
                            $"the omega tool package has no SkiaSharp native asset for {rid}");
                }
            }

            var install = await Dotnet(work, Timeout, "tool", "install", "omega", "--tool-path", tools, "--add-source", feed, "--version", version!);
            Assert.True(install.ExitCode == 0, install.Output);
            string omega = Path.Combine(tools, OperatingSystem.IsWindows() ? "omega.exe" : "omega");
            var printed = await Run(omega, work, TimeSpan.FromMinutes(1), "--version");
            Assert.True(printed.ExitCode == 0, printed.Output);
            Assert.StartsWith(version!, printed.Output.Trim(), StringComparison.Ordinal);
            // A chart-writing command: the load generator's report draws PNGs with ScottPlot (SkiaSharp natives).
            string report = Path.Combine(work, "report");
            var charts = await Run(omega, work, TimeSpan.FromMinutes(2), "loadgen", "--nodes", "50", "--seconds", "1", "--load", "0.01", "--seed", "3", "--plain", "--report", report);
            Assert.True(charts.ExitCode == 0, charts.Output);
            var pngs = Directory.GetFiles(report, "*.png");
            Assert.NotEmpty(pngs);
            foreach (var png in pngs)
            {
                var head = new byte[8];
                using (var f = File.OpenRead(png)) Assert.Equal(8, f.Read(head, 0, 8));
                Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }, head);
            }
        }
        finally
        {
            if (Directory.Exists(work)) Directory.Delete(work, recursive: true);
        }
    }

    private static Task<(int ExitCode, string Output)> Dotnet(string directory, TimeSpan timeout, params string[] args) => Run("dotnet", directory, timeout, args);

    private static async Task<(int ExitCode, string Output)> Run(string file, string directory, TimeSpan timeout, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = directory };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish within {timeout}: {await stdout}");
        }
        return (p.ExitCode, await stdout + await stderr);
    }
}
