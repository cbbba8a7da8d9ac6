using System.Net;
using Omega.Protocol;
using Omega.Transport;

namespace Omega.Agent;

/// <summary>
/// Which server to connect to next, for a client given the replicas of a highly available deployment
/// (docs/protocol.md, section 3, "Replicas and the leader"). A <see cref="ErrorCode.NotLeader"/> redirect sends the next
/// attempt to the named leader at once; <see cref="ErrorCode.NoLeader"/>, a refused, silent or lost connection move on to
/// the next address of the list; a full round of failures (or a run of redirects that never reaches a leader: two
/// replicas each naming the other while an election settles) asks the caller to back off before the next round.
/// Not thread-safe: one connecting loop owns it.
/// </summary>
public sealed class LeaderTargets
{
    private readonly EndPoint[] _servers;
    private int _index;
    private EndPoint? _redirect;
    private int _failuresInRound;
    private int _redirectsWithoutSuccess;

    /// <summary>Creates the list; it must hold at least one address.</summary>
    public LeaderTargets(IReadOnlyList<EndPoint> servers)
    {
        ArgumentNullException.ThrowIfNull(servers);
        if (servers.Count == 0) throw new ArgumentException("at least one server address is needed", nameof(servers));
        _servers = new EndPoint[servers.Count];
        for (int i = 0; i < servers.Count; i++) _servers[i] = servers[i] ?? throw new ArgumentException("a server address is null", nameof(servers));
    }

    /// <summary>The addresses given, in order.</summary>
    public IReadOnlyList<EndPoint> Servers => _servers;

    /// <summary>The address the next attempt goes to: a pending redirect's leader, else the current list entry.</summary>
    public EndPoint Current => _redirect ?? _servers[_index];

    /// <summary>Redirects followed so far.</summary>
    public long RedirectsFollowed { get; private set; }

    /// <summary>The attempt to <see cref="Current"/> completed its handshake: the counters start again.</summary>
    public void Connected()
    {
        _failuresInRound = 0;
        _redirectsWithoutSuccess = 0;
        // Remember where the leader was found, when it is one of ours; a redirect target outside the list is kept as the
        // current target until it fails (then the list resumes where it was).
        if (_redirect is not null)
        {
            int at = Array.IndexOf(_servers, _redirect);
            if (at >= 0) { _index = at; _redirect = null; }
        }
    }

    /// <summary>
    /// The attempt was answered with a redirect. <paramref name="leader"/> is the Error's <c>leader</c> key (NotLeader), or
    /// null/empty for NoLeader. Returns true when the caller should back off before the next attempt (a full round failed,
    /// or redirects keep going round without reaching a leader); false to try <see cref="Current"/> at once.
    /// </summary>
    public bool Redirected(string? leader)
    {
        if (!string.IsNullOrEmpty(leader) && FrameClient.TryParseEndPoint(leader, out var target))
        {
            RedirectsFollowed++;
            // Two replicas whose views lag can name each other for a moment; after as many hops as there are replicas
            // (plus one) without a handshake, back off instead of bouncing between them.
            if (++_redirectsWithoutSuccess <= _servers.Length + 1)
            {
                _redirect = target;
                return false;
            }
            _redirectsWithoutSuccess = 0;
            _redirect = null;
            return EndRound(force: true);
        }
        return Failed();
    }

    /// <summary>
    /// The attempt failed (refused, timed out, closed, NoLeader): the next attempt goes to the next address. Returns true
    /// when a full round of the list failed and the caller should back off.
    /// </summary>
    public bool Failed()
    {
        if (_redirect is not null)
        {
            // The leader we were sent to is gone: resume the list where it was (the next replica after the redirector).
            _redirect = null;
        }
        else _index = (_index + 1) % _servers.Length;
        return EndRound(force: false);
    }

    private bool EndRound(bool force)
    {
        if (!force && ++_failuresInRound < _servers.Length) return false;
        _failuresInRound = 0;
        return true;
    }
}
