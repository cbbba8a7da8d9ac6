namespace Omega.Storage;

/// <summary>
/// Thrown when opening a store finds damaged data it cannot safely skip: a corrupt checkpoint file, a corrupt or missing
/// journal chunk followed by valid ones, a gap in the journal. The message names the file. The store refuses to open
/// rather than produce a silently wrong cell; docs/storage.md says what an operator does next.
/// </summary>
public sealed class StorageCorruptionException : IOException
{
    /// <summary>Creates the exception.</summary>
    public StorageCorruptionException(string message, string filePath, Exception? inner = null) : base(message, inner)
        => FilePath = filePath;

    /// <summary>Creates the exception (serialization-free default shape).</summary>
    public StorageCorruptionException() : this("storage corruption", "") { }

    /// <summary>Creates the exception.</summary>
    public StorageCorruptionException(string message) : this(message, "") { }

    /// <summary>Creates the exception.</summary>
    public StorageCorruptionException(string message, Exception inner) : this(message, "", inner) { }

    /// <summary>The damaged file.</summary>
    public string FilePath { get; }
}
