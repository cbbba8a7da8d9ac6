namespace Omega.Hosting;

/// <summary>
/// The host could not start because of what it was configured with (a tenant beyond the cell's limit, an unreadable
/// admin token file): an operator's mistake to report in one line, not a bug. Hosts map it to their usage exit code
/// instead of matching on message text.
/// </summary>
public sealed class OmegaConfigurationException : InvalidOperationException
{
    /// <summary>Creates the exception with its one-line message.</summary>
    public OmegaConfigurationException(string message) : base(message) { }

    /// <summary>Creates the exception with no message.</summary>
    public OmegaConfigurationException() { }

    /// <summary>Creates the exception with its message and cause.</summary>
    public OmegaConfigurationException(string message, Exception innerException) : base(message, innerException) { }
}
