using Omega.Protocol;
using Omega.Transport;

namespace Omega.Server;

/// <summary>
/// Server-side state of one node: its agent connection and its outbox. The outbox keeps, in version order, every binding
/// change not yet acknowledged by the agent (a heartbeat's "last version seen" trims it), so a reconnecting agent can
/// resume from its last version with nothing lost and nothing sent twice.
/// </summary>
internal sealed class NodeState(NodeId id)
{
    public readonly Lock Sync = new();
    public readonly NodeId Id = id;
    public FrameConnection? Connection;

    /// <summary>Dispatcher-private: already in this pass's dirty list.</summary>
    public bool Dirty;

    // Outbox: entries in version order; Versions[i] is the cell version of Entries[i].
    private readonly List<BindingEntry> _entries = new();
    private readonly List<long> _versions = new();
    private int _start;

    // Index of the first entry above SentUpTo: sending resumes here instead of rescanning the outbox.
    private int _cursor;

    /// <summary>Highest version sent on the current connection (entries up to it are not sent again on it).</summary>
    public long SentUpTo;

    /// <summary>Highest version the agent said it has seen.</summary>
    public long AckedUpTo;

    public int Pending => _entries.Count - _start;

    /// <summary>Caller holds Sync.</summary>
    public void Append(in BindingEntry e, long version)
    {
        _entries.Add(e);
        _versions.Add(version);
    }

    /// <summary>Caller holds Sync. Makes room for <paramref name="more"/> further entries (the restart seeding knows its counts).</summary>
    public void Reserve(int more)
    {
        _entries.EnsureCapacity(_entries.Count + more);
        _versions.EnsureCapacity(_versions.Count + more);
    }

    /// <summary>Caller holds Sync. Drops entries at or below <paramref name="version"/>.</summary>
    public void Trim(long version)
    {
        if (version > AckedUpTo) AckedUpTo = version;
        while (_start < _entries.Count && _versions[_start] <= version) _start++;
        if (_cursor < _start) _cursor = _start;
        // Compact once the dead prefix dominates, so trimming stays amortised O(1).
        if (_start > 1024 && _start * 2 > _entries.Count)
        {
            _entries.RemoveRange(0, _start);
            _versions.RemoveRange(0, _start);
            _cursor -= _start;
            _start = 0;
        }
    }

    /// <summary>Caller holds Sync. A (re)connected agent resumes after <paramref name="version"/>: rewind or advance the send cursor.</summary>
    public void ResumeAfter(long version)
    {
        Trim(version);
        SentUpTo = version;
        _cursor = _start;
        while (_cursor < _entries.Count && _versions[_cursor] <= version) _cursor++;
    }

    /// <summary>
    /// Caller holds Sync. Sends every entry above <see cref="SentUpTo"/>, one Bindings frame per version, without
    /// flushing (the caller flushes once per batch). Returns the number of frames written.
    /// </summary>
    public int SendPending(BindingEntry[] scratch)
    {
        var c = Connection;
        if (c is null || c.IsClosing) return 0;
        int frames = 0;
        int i = _cursor;
        // Entries routed late at or below the resume point were already seen by the agent: skip them.
        while (i < _entries.Count && _versions[i] <= SentUpTo) i++;
        _cursor = i;
        while (i < _entries.Count)
        {
            long v = _versions[i];
            int j = i;
            while (j < _entries.Count && _versions[j] == v) j++;
            int n = j - i;
            var buf = n <= scratch.Length ? scratch : new BindingEntry[n];
            for (int k = 0; k < n; k++) buf[k] = _entries[i + k];
            if (!c.Send(0, new Bindings { NodeId = Id.Value, Version = v, Entries = buf.AsMemory(0, n) })) return frames;
            SentUpTo = v;
            frames++;
            i = j;
            _cursor = i;
        }
        return frames;
    }
}
