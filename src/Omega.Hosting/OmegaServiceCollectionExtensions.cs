using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Omega.Hosting;

/// <summary>Registers Omega in a generic host's services.</summary>
public static class OmegaServiceCollectionExtensions
{
    /// <summary>
    /// Adds Omega: <see cref="OmegaOptions"/> bound from the configuration section <c>Omega</c> (when the host has an
    /// <see cref="IConfiguration"/>), then changed by <paramref name="configure"/>, validated by
    /// <see cref="OmegaOptionsValidator"/> when the host starts; the <see cref="OmegaHostedService"/> that opens the
    /// store and runs the engine and the server; and the <see cref="OmegaRuntime"/> handle to them. The clock is the
    /// registered <see cref="TimeProvider"/> (<see cref="TimeProvider.System"/> unless one is registered) and meters come
    /// from the registered <see cref="System.Diagnostics.Metrics.IMeterFactory"/> when there is one (the generic host
    /// registers it). Call once per host; one host runs one cell.
    /// </summary>
    /// <example>
    /// <code>
    /// var builder = Host.CreateApplicationBuilder(args);
    /// builder.Services.AddOmega(o => o.DataDirectory = "/var/lib/omega");
    /// using var host = builder.Build();
    /// await host.RunAsync();   // Ctrl+C or SIGTERM: stop accepting, stop the schedulers, checkpoint, close
    /// </code>
    /// </example>
    public static IServiceCollection AddOmega(this IServiceCollection services, Action<OmegaOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<OmegaOptions>()
            .Configure<IServiceProvider>(static (o, sp) => sp.GetService<IConfiguration>()?.GetSection(OmegaOptions.SectionName).Bind(o));
        if (configure is not null) options.Configure(configure);
        options.ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<OmegaOptions>, OmegaOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<OmegaRuntime>();
        services.AddHostedService<OmegaHostedService>();
        return services;
    }
}
