using System.Collections.Concurrent;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Omega.Hosting.Tests;

/// <summary>One log entry as a provider saw it.</summary>
internal sealed record LogEntry(string Category, LogLevel Level, EventId EventId, string Message);

/// <summary>Collects every log entry of the host it is added to.</summary>
internal sealed class CapturingLoggerProvider : ILoggerProvider
{
    public ConcurrentQueue<LogEntry> Entries { get; } = new();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose() { }

    private sealed class Logger(CapturingLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            => owner.Entries.Enqueue(new LogEntry(category, logLevel, eventId, formatter(state, exception)));
    }
}

/// <summary>A generic host with AddOmega, configured the way an embedding application would: from configuration keys.</summary>
internal static class TestHost
{
    public static IHost Build(Dictionary<string, string?> configuration, CapturingLoggerProvider? logs = null, Action<IServiceCollection>? services = null, Action<OmegaOptions>? configure = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(configuration);
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(LogLevel.Debug);
        if (logs is not null) builder.Logging.AddProvider(logs);
        services?.Invoke(builder.Services);
        builder.Services.AddOmega(configure);
        return builder.Build();
    }

    public static string TempDirectory() => Path.Combine(Path.GetTempPath(), "omega-hosting-" + Guid.NewGuid().ToString("N"));

    /// <summary>Reads the agent's binding stream until <paramref name="count"/> bindings have arrived, and returns them.</summary>
    public static async Task<List<Omega.Agent.AgentBinding>> BindingsAsync(Omega.Agent.AgentClient agent, int count, string what)
    {
        var held = new List<Omega.Agent.AgentBinding>();
        await UntilAsync(async () =>
        {
            while (agent.Bindings.TryRead(out var b)) held.Add(b);
            await Task.Yield();
            return held.Count == count;
        }, what);
        return held;
    }

    public static async Task UntilAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
        while (!await condition())
        {
            try { await Task.Delay(20, cts.Token); }
            catch (OperationCanceledException) { throw new TimeoutException($"timed out waiting for: {what}"); }
        }
    }
}
