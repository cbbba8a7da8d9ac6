namespace Omega.Replication;

/// <summary>
/// A write of this replica to the replicated log was refused because it no longer holds the election (its epoch, the
/// election key's create revision, is not the current one), or because it could not reach etcd within
/// <see cref="ReplicationOptions.ShipTimeout"/>. The replica's journal fails with it: nothing after its last replicated
/// group is acknowledged.
/// </summary>
public sealed class ReplicationFencedException : IOException
{
    /// <summary>Creates the exception.</summary>
    public ReplicationFencedException(string message, Exception? inner = null) : base(message, inner) { }

    /// <summary>Creates the exception.</summary>
    public ReplicationFencedException() : base("fenced") { }

    /// <summary>Creates the exception.</summary>
    public ReplicationFencedException(string message) : base(message) { }
}

/// <summary>
/// This replica's next needed log entry was trimmed from etcd (it was down, or behind, past
/// <see cref="ReplicationOptions.MaxRetainEntries"/>): it must be bootstrapped from a copy of another replica's data
/// directory (docs/high-availability.md, "Adding and replacing replicas").
/// </summary>
public sealed class ReplicaBehindLogException : IOException
{
    /// <summary>Creates the exception.</summary>
    public ReplicaBehindLogException(string message) : base(message) { }

    /// <summary>Creates the exception.</summary>
    public ReplicaBehindLogException() : base("behind the log") { }

    /// <summary>Creates the exception.</summary>
    public ReplicaBehindLogException(string message, Exception inner) : base(message, inner) { }
}
