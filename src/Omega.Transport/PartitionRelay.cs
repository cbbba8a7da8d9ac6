using System.Net;
using System.Net.Sockets;

namespace Omega.Transport;

/// <summary>
/// A loopback TCP relay that can partition the connections through it (issue 13, the region drill's partition mode): each
/// accepted connection gets its own upstream connection to the target and two pumps. While partitioned, every byte in
/// either direction is read and dropped, and a side that closes is not propagated (no FIN, no RST reaches the other
/// end): to both ends the peer has gone silent, as behind a real network partition, so whoever judges liveness must use
/// time (leases), not connection close. <see cref="Heal"/> lets bytes flow again and closes the connections that lost
/// bytes (their framing is broken, which TCP retransmission would not have done, but which their timeouts would): the
/// ends reconnect through the relay.
/// </summary>
/// <remarks>Sockets live in this project only (dependency rule); the drill in Omega.Cli uses it through this API.</remarks>
public sealed class PartitionRelay : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly EndPoint _target;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _lock = new();
    private readonly List<(Socket A, Socket B)> _pairs = new();
    private volatile bool _partitioned;
    private long _dropped;

    /// <summary>Starts relaying connections accepted on a free loopback port to <paramref name="target"/>.</summary>
    public PartitionRelay(EndPoint target)
    {
        _target = target ?? throw new ArgumentNullException(nameof(target));
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start(1024);
        _ = AcceptLoopAsync();
    }

    /// <summary>Where to connect instead of the target.</summary>
    public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndpoint;

    /// <summary>True while partitioned.</summary>
    public bool IsPartitioned => _partitioned;

    /// <summary>Bytes dropped so far (both directions).</summary>
    public long DroppedBytes => Interlocked.Read(ref _dropped);

    /// <summary>Connections open through the relay now.</summary>
    public int Connections
    {
        get { lock (_lock) return _pairs.Count; }
    }

    /// <summary>From now on every byte is dropped and no close is passed on; no connection is closed.</summary>
    public void Partition() => _partitioned = true;

    /// <summary>Traffic flows again; every connection open now (they lost bytes) is closed, so both ends reconnect.</summary>
    public void Heal()
    {
        (Socket A, Socket B)[] pairs;
        lock (_lock)
        {
            _partitioned = false;
            pairs = [.. _pairs];
            _pairs.Clear();
        }
        foreach (var (a, b) in pairs)
        {
            a.Dispose();
            b.Dispose();
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try { client = await _listener.AcceptSocketAsync(_stop.Token).ConfigureAwait(false); }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException) { return; }
            var upstream = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            client.NoDelay = true;
            try { await upstream.ConnectAsync(_target, _stop.Token).ConfigureAwait(false); }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                client.Dispose();
                upstream.Dispose();
                continue;
            }
            lock (_lock) _pairs.Add((client, upstream));
            _ = PumpAsync(client, upstream);
            _ = PumpAsync(upstream, client);
        }
    }

    private async Task PumpAsync(Socket from, Socket to)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            while (true)
            {
                int n = await from.ReceiveAsync(buffer, SocketFlags.None, _stop.Token).ConfigureAwait(false);
                if (_partitioned)
                {
                    // Dropped, and so is an end of stream (n == 0): the other end must not learn of it. The socket stays
                    // open until Heal or disposal; a closed side just stops being read.
                    Interlocked.Add(ref _dropped, n);
                    if (n == 0) return;
                    continue;
                }
                if (n == 0) break;
                int sent = 0;
                while (sent < n) sent += await to.SendAsync(buffer.AsMemory(sent, n - sent), SocketFlags.None, _stop.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // A side failed or Heal closed the pair. While partitioned the other side is left as it is (no close passed on).
            if (_partitioned) return;
        }
        // Not partitioned: a close on one side closes the pair, as a direct connection would.
        lock (_lock) _pairs.Remove((from, to) is var p && _pairs.Contains(p) ? p : (to, from));
        from.Dispose();
        to.Dispose();
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        lock (_lock)
        {
            foreach (var (a, b) in _pairs)
            {
                a.Dispose();
                b.Dispose();
            }
            _pairs.Clear();
        }
        _stop.Dispose();
        return ValueTask.CompletedTask;
    }
}
