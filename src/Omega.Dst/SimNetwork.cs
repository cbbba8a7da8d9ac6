namespace Omega.Dst;

/// <summary>
/// The simulated network between the clients, the agents and the server: every message gets a delivery time; a
/// message may be dropped or duplicated when sent, delivered out of order (any deliverable message may go next), or
/// lost to a partition (an endpoint cut off from the server loses what it sends and what is sent to it).
/// </summary>
internal sealed class SimNetwork(DstSimulation sim)
{
    internal const int Server = 0;
    internal const int Client = 1;

    internal readonly record struct Message(long Id, int From, int To, DateTimeOffset DeliverAt, object Payload);

    private readonly List<Message> _inFlight = new();
    private readonly HashSet<int> _partitioned = new();
    private long _ids;

    public int InFlight => _inFlight.Count;

    public bool IsPartitioned(int endpoint) => _partitioned.Contains(endpoint);

    public void SetPartitioned(int endpoint, bool cut)
    {
        if (cut) _partitioned.Add(endpoint);
        else _partitioned.Remove(endpoint);
    }

    public void HealAll() => _partitioned.Clear();

    public void Send(int from, int to, object payload, bool faults)
    {
        if (_partitioned.Contains(from) || _partitioned.Contains(to))
        {
            sim.Count(DstFault.Drop);
            return;
        }
        if (faults && sim.Chance(0.04))
        {
            sim.Count(DstFault.Drop);
            sim.Event($"net drop {from}->{to} {payload}");
            return;
        }
        Enqueue(from, to, payload, faults);
        if (faults && sim.Chance(0.03))
        {
            sim.Count(DstFault.Duplicate);
            Enqueue(from, to, payload, faults);
        }
    }

    private void Enqueue(int from, int to, object payload, bool faults)
    {
        // Mostly LAN latency, sometimes a long stall (a slow link, a GC pause on the receiver).
        long ms = faults && sim.Chance(0.05) ? sim.Next(200, 2500) : sim.Next(1, 40);
        _inFlight.Add(new Message(++_ids, from, to, sim.Now + TimeSpan.FromMilliseconds(ms), payload));
    }

    /// <summary>Takes a deliverable message (any of them when <paramref name="reorder"/>, else the oldest), or null.</summary>
    public Message? TakeDeliverable(bool reorder)
    {
        var now = sim.Now;
        int first = -1, count = 0;
        for (int i = 0; i < _inFlight.Count; i++)
        {
            if (_inFlight[i].DeliverAt > now) continue;
            if (first < 0) first = i;
            count++;
        }
        if (first < 0) return null;
        int pick = first;
        if (reorder && count > 1)
        {
            int k = sim.Next(0, count);
            for (int i = first; ; i++)
            {
                if (_inFlight[i].DeliverAt > now) continue;
                if (k-- == 0) { pick = i; break; }
            }
            if (pick != first) sim.Count(DstFault.Reorder);
        }
        var m = _inFlight[pick];
        _inFlight.RemoveAt(pick);
        if (_partitioned.Contains(m.From) || _partitioned.Contains(m.To))
        {
            sim.Count(DstFault.Drop);
            return TakeDeliverable(reorder);
        }
        return m;
    }

    /// <summary>Drops every message to or from endpoints matching <paramref name="match"/>.</summary>
    public int DropWhere(Func<int, bool> match)
    {
        int n = _inFlight.RemoveAll(m => match(m.From) || match(m.To));
        return n;
    }
}
