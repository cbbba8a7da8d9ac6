using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Omega.Protocol;

namespace Omega.Transport;

/// <summary>
/// A TCP listener that hands frames to an <see cref="IFrameHandler"/>. It enforces the connection limit on accept and the
/// handshake and idle timeouts with a sweep driven by <see cref="TransportOptions.Time"/>. With
/// <see cref="TransportOptions.ServerTls"/> set, every connection is TLS 1.3 (the handshake counts against the handshake
/// timeout); without it the listener is plaintext.
/// </summary>
public sealed class FrameServer : IAsyncDisposable
{
    private readonly TransportOptions _options;
    private readonly IFrameHandler _handler;
    private readonly Socket _listener;
    private readonly ConcurrentDictionary<long, FrameConnection> _connections = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly ITimer _sweep;
    private readonly ByteBudget _incomplete;
    private readonly TlsAcceptor? _tls;
    private Task? _acceptLoop;
    private long _nextId;

    /// <summary>Binds to <paramref name="endpoint"/> (port 0 picks a free port; see <see cref="EndPoint"/>).</summary>
    public FrameServer(IPEndPoint endpoint, IFrameHandler handler, TransportOptions? options = null, string name = "server")
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        _options = options ?? new TransportOptions();
        _options.Validate();
        _handler = handler ?? throw new ArgumentNullException(nameof(handler));
        Metrics = new TransportMetrics(name, _options.MeterFactory, _options.MeterCellName);
        _incomplete = new ByteBudget(_options.MaxIncompleteFrameBytes);
        _tls = _options.ServerTls is { } tls ? new TlsAcceptor(tls) : null;
        _listener = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(endpoint);
        _listener.Listen(4096);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
        var sweep = _options.EffectiveSweep;
        _sweep = _options.Time.CreateTimer(_ => Sweep(), null, sweep, sweep);
    }

    /// <summary>The bound address and port.</summary>
    public IPEndPoint EndPoint { get; }

    /// <summary>The transport's counters.</summary>
    public TransportMetrics Metrics { get; }

    /// <summary>The options in force.</summary>
    public TransportOptions Options => _options;

    /// <summary>True when the listener speaks TLS (<see cref="TransportOptions.ServerTls"/>).</summary>
    public bool IsTls => _tls is not null;

    /// <summary>Open connections.</summary>
    public int ConnectionCount => _connections.Count;

    /// <summary>Bytes now held for incomplete frames over all connections (bounded by <see cref="TransportOptions.MaxIncompleteFrameBytes"/>).</summary>
    public long IncompleteFrameBytes => _incomplete.Used;

    /// <summary>Starts accepting connections.</summary>
    public void Start() => _acceptLoop ??= Task.Run(AcceptLoopAsync);

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket s;
            try { s = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false); }
            catch (OperationCanceledException) { break; }
            catch (ObjectDisposedException) { break; }
            catch (SocketException) { continue; }
            s.NoDelay = true;
            if (_options.SocketBufferSize > 0) { s.SendBufferSize = _options.SocketBufferSize; s.ReceiveBufferSize = _options.SocketBufferSize; }
            if (_connections.Count >= _options.MaxConnections)
            {
                Metrics.Rejected();
                Metrics.Error(ErrorCode.ServerBusy);
                _ = RejectAsync(s);
                continue;
            }
            var c = new FrameConnection(Interlocked.Increment(ref _nextId), s, new Tracking(this, _handler), _options, Metrics, _incomplete, acceptor: _tls);
            _connections[c.Id] = c;
            c.Start();
        }
    }

    private static async Task RejectAsync(Socket s)
    {
        try
        {
            var bytes = Codec.FrameBytes(0, new ErrorMessage { Code = ErrorCode.ServerBusy, Message = "connection limit reached" });
            await s.SendAsync(bytes, SocketFlags.None).ConfigureAwait(false);
            s.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException) { }
        finally { s.Dispose(); }
    }

    private void Sweep()
    {
        long now = _options.Time.GetTimestamp();
        double freq = _options.Time.TimestampFrequency;
        foreach (var (_, c) in _connections)
        {
            if (c.IsClosing)
            {
                if (c.LingerExpired(now, _options.CloseLinger)) c.Abort(DisconnectReason.Shutdown);
                continue;
            }
            if (!c.HandshakeCompleted && (now - c.ConnectedAt) / freq >= _options.HandshakeTimeout.TotalSeconds)
                c.SendError(0, ErrorCode.HandshakeTimeout, "no handshake within the handshake timeout");
            else if ((now - c.LastFrameAt) / freq >= _options.IdleTimeout.TotalSeconds)
                c.SendError(0, ErrorCode.IdleTimeout, "no complete frame within the idle timeout");
        }
    }

    /// <summary>
    /// Calls <paramref name="action"/> for every open connection (a snapshot: connections accepted meanwhile may or may
    /// not be seen). Used when the whole server must turn its clients away at once, e.g. a replica losing the leadership.
    /// </summary>
    public void ForEachConnection(Action<FrameConnection> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        foreach (var (_, c) in _connections)
            if (!c.IsClosing) action(c);
    }

    /// <summary>Runs the timeout sweep now (tests call it after advancing a fake clock; the timer calls it too).</summary>
    public void SweepNow() => Sweep();

    /// <summary>Stops accepting, closes every connection and waits for them to end.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        await _sweep.DisposeAsync().ConfigureAwait(false);
        if (_acceptLoop is not null) await _acceptLoop.ConfigureAwait(false);
        var closing = new List<Task>();
        foreach (var (_, c) in _connections) { c.Abort(DisconnectReason.Shutdown); closing.Add(c.Closed); }
        // An aborted connection ends within milliseconds (its socket is gone, so every loop's I/O fails). The wait is
        // bounded all the same: a connection that does not end is a bug, counted in ShutdownStragglers, and must not
        // keep the process from shutting down.
        var all = Task.WhenAll(closing);
        try { await all.WaitAsync(_options.ShutdownWait).ConfigureAwait(false); }
        catch (TimeoutException)
        {
            foreach (var t in closing) if (!t.IsCompleted) Metrics.ShutdownStraggler();
        }
        _tls?.Dispose();
        Metrics.Dispose();
        _stop.Dispose();
    }

    // Removes a connection from the table when it closes, then forwards to the protocol handler.
    private sealed class Tracking(FrameServer server, IFrameHandler inner) : IFrameHandler
    {
        public void OnConnected(FrameConnection connection) => inner.OnConnected(connection);

        public void OnFrame(FrameConnection connection, in Frame frame) => inner.OnFrame(connection, frame);

        public void OnDisconnected(FrameConnection connection, DisconnectReason reason)
        {
            server._connections.TryRemove(connection.Id, out _);
            inner.OnDisconnected(connection, reason);
        }
    }
}
