using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Omega.Agent;
using Omega.Transport;

namespace Omega.Hosting.Tests;

/// <summary>The host's TLS settings (section Omega:Tls): the self-signed mode made once and kept, and validation.</summary>
public sealed class TlsHostingTests
{
    [Fact]
    public async Task Self_signed_mode_makes_a_certificate_once_in_the_data_directory_and_agents_verify_it()
    {
        string dir = TestHost.TempDirectory();
        var config = new Dictionary<string, string?>
        {
            ["Omega:DataDirectory"] = dir,
            ["Omega:Listen"] = "127.0.0.1:0",
            ["Omega:Tls:Mode"] = "SelfSigned",
        };
        try
        {
            string pin;
            using (var host = TestHost.Build(config))
            {
                var runtime = host.Services.GetRequiredService<OmegaRuntime>();
                await host.StartAsync();
                Assert.True(runtime.IsTls);
                Assert.True(runtime.TlsCertificateCreated);
                Assert.Equal(Path.Combine(dir, "tls", "server.crt"), runtime.TlsCertificatePath);
                pin = runtime.TlsCertificatePin!;
                var transport = new TransportOptions { ClientTls = new TlsClientOptions { TrustedAuthorities = TlsCertificates.LoadAuthorities(runtime.TlsCertificatePath!) } };
                await using (var agent = new AgentClient(new AgentOptions { Server = runtime.EndPoint, NodeName = "tls-node", Capacity = ResourceVector.FromCoresAndGiB(4, 8), Seed = 2, Transport = transport }))
                    await agent.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
                // A plaintext client is refused with the typed error.
                var refused = await Assert.ThrowsAsync<AgentRequestException>(() => ControlClient.ConnectAsync(runtime.EndPoint, "plain").WaitAsync(TimeSpan.FromSeconds(30)));
                Assert.Equal(Omega.Protocol.ErrorCode.TlsRequired, refused.Code);
                await host.StopAsync();
            }
            using (var again = TestHost.Build(config))
            {
                var runtime = again.Services.GetRequiredService<OmegaRuntime>();
                await again.StartAsync();
                Assert.False(runtime.TlsCertificateCreated);
                Assert.Equal(pin, runtime.TlsCertificatePin);
                await again.StopAsync();
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Inconsistent_tls_settings_stop_the_host_before_anything_opens()
    {
        var config = new Dictionary<string, string?>
        {
            ["Omega:InMemory"] = "true",
            ["Omega:Listen"] = "127.0.0.1:0",
            ["Omega:Tls:Mode"] = "Certificate",
            ["Omega:Tls:CertificateFile"] = "/nonexistent/server.crt",
            ["Omega:Tls:ClientCaFile"] = "/nonexistent/ca.pem",
        };
        using var host = TestHost.Build(config);
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        Assert.Contains(e.Failures, f => f.Contains("needs both Omega:Tls:CertificateFile and Omega:Tls:KeyFile", StringComparison.Ordinal));
        Assert.Contains(e.Failures, f => f.Contains("'/nonexistent/server.crt' does not exist", StringComparison.Ordinal));
        Assert.Contains(e.Failures, f => f.Contains("'/nonexistent/ca.pem' does not exist", StringComparison.Ordinal));
        Assert.False(host.Services.GetRequiredService<OmegaRuntime>().IsRunning);
    }
}
