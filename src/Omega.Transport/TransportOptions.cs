namespace Omega.Transport;

/// <summary>Limits and buffer sizes of a <see cref="FrameServer"/>. Every limit is enforced; each breach is counted in <see cref="TransportMetrics"/>.</summary>
public sealed class TransportOptions
{
    /// <summary>
    /// Creates the transport's meter (a host's <see cref="System.Diagnostics.Metrics.IMeterFactory"/>; null: a meter of
    /// its own). Set by the server from its options.
    /// </summary>
    public System.Diagnostics.Metrics.IMeterFactory? MeterFactory { get; set; }

    /// <summary>The <c>cell</c> tag of the transport's meter (the server sets its cell's name); null: no tag.</summary>
    public string? MeterCellName { get; set; }

    /// <summary>Largest accepted length prefix (type + request id + body), in bytes. Larger frames close the connection. Default 1 MiB.</summary>
    public int MaxFrameLength { get; set; } = 1 << 20;

    /// <summary>
    /// Largest accepted length prefix before the handshake completed (the first frame must be a small Hello). A peer
    /// that has not said who it is cannot make the server buffer more than this per connection; a larger prefix gets
    /// FrameTooLarge and the connection is closed. With TLS it applies to the decrypted frames: TLS records are read by
    /// the TLS layer below framing, whose own per-connection buffer is one record (at most 16 KiB + 261 bytes) and whose
    /// handshakes in progress are bounded by <see cref="TlsServerOptions.MaxConcurrentHandshakes"/>. Default 4 KiB
    /// (capped at <see cref="MaxFrameLength"/>).
    /// </summary>
    public int MaxPreHandshakeFrameLength { get; set; } = 4 << 10;

    /// <summary>
    /// Server-wide budget of bytes held for incomplete frames (a length prefix read, its body not yet complete), summed
    /// over all connections. A connection whose partial frame would take the total above it gets IncompleteFrameBudget
    /// and is closed, which releases its bytes. Per connection the bound is the frame length in force (pre-handshake or
    /// maximum). Default 64 MiB.
    /// </summary>
    public long MaxIncompleteFrameBytes { get; set; } = 64L << 20;

    /// <summary>Requests a connection may have in flight (received, reply not yet sent). Beyond it: TooManyRequestsInFlight. Default 256.</summary>
    public int MaxRequestsInFlight { get; set; } = 256;

    /// <summary>Bytes queued for a connection but not yet accepted by its socket. Beyond it the peer is a slow consumer and is disconnected. Default 8 MiB.</summary>
    public int MaxOutboundBytes { get; set; } = 8 << 20;

    /// <summary>Time from accept to a completed handshake: the TLS handshake (when TLS is on) and the Hello/Welcome exchange together. Default 10 s.</summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Longest time without a complete frame from the peer (partial frames do not count, which stops slowloris). Default 60 s.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Maximum open connections; further ones get ServerBusy and are closed. Default 20,000.</summary>
    public int MaxConnections { get; set; } = 20_000;

    /// <summary>Receive pipe: the receive loop pauses reading the socket above this many unprocessed bytes. Default 2 × max frame.</summary>
    public int? InputPauseThreshold { get; set; }

    /// <summary>Receive pipe: reading resumes below this many bytes. Default half the pause threshold.</summary>
    public int? InputResumeThreshold { get; set; }

    /// <summary>Socket send and receive buffer sizes (0 keeps the operating system's). Small values make slow-consumer tests fast.</summary>
    public int SocketBufferSize { get; set; }

    /// <summary>Clock for handshake and idle timeouts, so tests can advance time instead of sleeping.</summary>
    public TimeProvider Time { get; set; } = TimeProvider.System;

    /// <summary>
    /// TLS on a server's listener (<see cref="FrameServer"/>). <b>Null, the default of this library type, is a
    /// plaintext listener</b>: the <c>omega</c> command never runs one unless asked with <c>--insecure</c>.
    /// </summary>
    public TlsServerOptions? ServerTls { get; set; }

    /// <summary>
    /// TLS for a client's connection (<see cref="FrameClient"/>): how the server is verified. <b>Null, the default of
    /// this library type, speaks plaintext</b> and works only against a plaintext listener.
    /// </summary>
    public TlsClientOptions? ClientTls { get; set; }

    /// <summary>
    /// Longest time a closing connection may take to finish sending what was queued before it (and TLS's close_notify);
    /// after it the sweep aborts the socket. Bounds what a peer that stops reading can hold after the server closed it.
    /// Default 10 s.
    /// </summary>
    public TimeSpan CloseLinger { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Longest time the server's DisposeAsync waits for aborted connections to end. They end within milliseconds; one
    /// that does not is counted in <see cref="TransportMetrics.ShutdownStragglers"/>. Default 10 s.
    /// </summary>
    public TimeSpan ShutdownWait { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How often timeouts are checked. Default a quarter of the smaller timeout, at most 1 s.</summary>
    public TimeSpan? SweepInterval { get; set; }

    internal void Validate()
    {
        if (MaxFrameLength < 64) throw new ArgumentOutOfRangeException(nameof(MaxFrameLength), "at least 64 bytes");
        if (MaxPreHandshakeFrameLength < 64) throw new ArgumentOutOfRangeException(nameof(MaxPreHandshakeFrameLength), "at least 64 bytes");
        if (MaxIncompleteFrameBytes < MaxFrameLength + Protocol.Frame.PrefixLength)
            throw new ArgumentOutOfRangeException(nameof(MaxIncompleteFrameBytes), "must hold at least one maximal frame");
        if (MaxRequestsInFlight < 1) throw new ArgumentOutOfRangeException(nameof(MaxRequestsInFlight));
        if (MaxOutboundBytes < MaxFrameLength) throw new ArgumentOutOfRangeException(nameof(MaxOutboundBytes), "must hold at least one maximal frame");
        if (MaxConnections < 1) throw new ArgumentOutOfRangeException(nameof(MaxConnections));
        if (HandshakeTimeout <= TimeSpan.Zero || IdleTimeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(IdleTimeout));
        if (CloseLinger <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(CloseLinger));
        if (ShutdownWait <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(ShutdownWait));
        if (ServerTls is { } tls)
        {
            if (!tls.Certificate.HasPrivateKey) throw new ArgumentException("the server certificate has no private key", nameof(ServerTls));
            if (tls.MaxConcurrentHandshakes < 1) throw new ArgumentOutOfRangeException(nameof(ServerTls), "MaxConcurrentHandshakes must be at least 1");
        }
    }

    /// <summary>The pre-handshake limit in force: never above the maximum frame length.</summary>
    internal int EffectivePreHandshakeFrameLength => Math.Min(MaxPreHandshakeFrameLength, MaxFrameLength);

    internal TimeSpan EffectiveSweep
    {
        get
        {
            if (SweepInterval is { } s) return s;
            var min = HandshakeTimeout < IdleTimeout ? HandshakeTimeout : IdleTimeout;
            if (CloseLinger < min) min = CloseLinger;
            var q = min / 4;
            return q > TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : q;
        }
    }
}

/// <summary>Why a connection ended (a tag on the disconnect counter).</summary>
public enum DisconnectReason : byte
{
    /// <summary>The peer closed its side.</summary>
    PeerClosed = 0,

    /// <summary>The peer closed in the middle of a frame.</summary>
    TruncatedFrame = 1,

    /// <summary>The length prefix exceeded the maximum frame size.</summary>
    FrameTooLarge = 2,

    /// <summary>The length prefix was below the minimum.</summary>
    FrameTooSmall = 3,

    /// <summary>No handshake within the handshake timeout.</summary>
    HandshakeTimeout = 4,

    /// <summary>No complete frame within the idle timeout.</summary>
    IdleTimeout = 5,

    /// <summary>The outbound buffer cap was exceeded: the peer does not read fast enough.</summary>
    SlowConsumer = 6,

    /// <summary>The protocol layer closed the connection after a fatal error (wrong version, request before handshake).</summary>
    ProtocolError = 7,

    /// <summary>The server was at its connection limit.</summary>
    ServerBusy = 8,

    /// <summary>The server or client is shutting down.</summary>
    Shutdown = 9,

    /// <summary>A socket error.</summary>
    SocketError = 10,

    /// <summary>The local side chose to close (for example an agent library reconnecting).</summary>
    LocalClose = 11,

    /// <summary>The server-wide budget of bytes held for incomplete frames was spent (<see cref="TransportOptions.MaxIncompleteFrameBytes"/>).</summary>
    IncompleteFrameBudget = 12,

    /// <summary>The TLS handshake failed: no TLS 1.3 in common, a bad record, or (mTLS) no client certificate or one from another authority.</summary>
    TlsHandshakeFailed = 13,

    /// <summary>The listener speaks TLS and the peer sent plaintext (it was answered with the TlsRequired error).</summary>
    TlsRequired = 14,

    /// <summary>
    /// The replica does not lead (high availability): the connection was answered with NotLeader or NoLeader and closed,
    /// at its Hello, at a request, or when the replica lost the leadership.
    /// </summary>
    NotLeader = 15,
}
