namespace Omega.Storage;

/// <summary>
/// Thrown when opening a store finds its data directory's <c>LOCK</c> held: another process (or another store in this
/// process) has the directory open. Two writers would interleave their journals, so the second refuses to open. The
/// lock is an OS file lock that dies with its process, so after a crash (even <c>kill -9</c>) nothing is left to clean.
/// </summary>
public sealed class StorageLockedException : IOException
{
    /// <summary>Creates the exception.</summary>
    public StorageLockedException(string message, string directory, Exception? inner = null) : base(message, inner)
        => DataDirectory = directory;

    /// <summary>Creates the exception (serialization-free default shape).</summary>
    public StorageLockedException() : this("data directory in use", "") { }

    /// <summary>Creates the exception.</summary>
    public StorageLockedException(string message) : this(message, "") { }

    /// <summary>Creates the exception.</summary>
    public StorageLockedException(string message, Exception inner) : this(message, "", inner) { }

    /// <summary>The data directory whose lock is held.</summary>
    public string DataDirectory { get; }
}
