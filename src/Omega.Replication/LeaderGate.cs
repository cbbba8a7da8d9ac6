using Omega.Server;

namespace Omega.Replication;

/// <summary>
/// The <see cref="ILeaderGate"/> of a replica (issue 16): <see cref="IsLeader"/> turns true only once this replica won
/// the election AND caught up with the whole replicated log, and false the moment its session is lost or a write of it
/// was fenced. <see cref="LeaderAddress"/> is the advertised client address stored in the election value.
/// </summary>
public sealed class LeaderGate : ILeaderGate
{
    private readonly Lock _lock = new();
    private bool _isLeader;
    private string? _leaderAddress;
    private long _epoch;

    /// <inheritdoc />
    public bool IsLeader
    {
        get
        {
            lock (_lock) return _isLeader;
        }
    }

    /// <inheritdoc />
    public string? LeaderAddress
    {
        get
        {
            lock (_lock) return _leaderAddress;
        }
    }

    /// <inheritdoc />
    public long Epoch
    {
        get
        {
            lock (_lock) return _epoch;
        }
    }

    /// <inheritdoc />
    public event Action? Changed;

    /// <summary>The steps of this replica's takeover, once it leads (null before): see <see cref="TakeoverTimeline"/>.</summary>
    public TakeoverTimeline? Timeline { get; internal set; }

    internal void Set(bool isLeader, string? leaderAddress, long epoch)
    {
        bool changed;
        lock (_lock)
        {
            changed = _isLeader != isLeader || !string.Equals(_leaderAddress, leaderAddress, StringComparison.Ordinal) || _epoch != epoch;
            _isLeader = isLeader;
            _leaderAddress = leaderAddress;
            _epoch = epoch;
        }
        if (changed) Changed?.Invoke();
    }
}
