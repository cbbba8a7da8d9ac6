using System.Diagnostics.Metrics;
using Omega.Protocol;

namespace Omega.Transport;

/// <summary>
/// Counters of the transport, in the meter "Omega.Transport": connections, frames, bytes, errors sent by code,
/// disconnects by reason and limit breaches by limit. Plain fields mirror the counters so tests can read them directly.
/// </summary>
public sealed class TransportMetrics : IDisposable
{
    /// <summary>The meter name.</summary>
    public const string MeterName = "Omega.Transport";

    private readonly Meter _meter;
    private readonly Counter<long> _accepted, _disconnects, _framesIn, _framesOut, _errors, _breaches, _writes;
    private readonly long[] _byReason = new long[16];
    private readonly long[] _byError = new long[ErrorCodeSlots];

    // Error codes are small and dense (docs/protocol.md, section 5); one slot each, no hashing on the error path.
    private const int ErrorCodeSlots = 128;
    private long _framesInCount, _framesOutCount, _acceptedCount, _active, _bytesSent, _writesInline, _writesPooled, _loopFaults, _stragglers;
    private string? _lastLoopFault;

    /// <summary>Creates the meter (one per server or client fleet).</summary>
    public TransportMetrics(string name) : this(name, null, null) { }

    /// <summary>
    /// Creates the meter from <paramref name="meterFactory"/> when a host provides one (else a meter of its own), tagged
    /// <c>cell</c> = <paramref name="cellName"/> when given, so that two servers in one process stay apart.
    /// </summary>
    public TransportMetrics(string name, System.Diagnostics.Metrics.IMeterFactory? meterFactory, string? cellName)
    {
        var options = new MeterOptions(MeterName) { Tags = cellName is null ? null : [new KeyValuePair<string, object?>("cell", cellName)] };
        _meter = meterFactory?.Create(options) ?? new Meter(options);
        var tag = new KeyValuePair<string, object?>("endpoint", name);
        _accepted = _meter.CreateCounter<long>("omega.transport.connections.accepted", "{connection}", "Connections accepted");
        _disconnects = _meter.CreateCounter<long>("omega.transport.disconnects", "{connection}", "Connections closed, by reason (DisconnectReason)");
        _framesIn = _meter.CreateCounter<long>("omega.transport.frames.received", "{frame}", "Frames received");
        _framesOut = _meter.CreateCounter<long>("omega.transport.frames.sent", "{frame}", "Frames sent");
        _errors = _meter.CreateCounter<long>("omega.transport.errors.sent", "{frame}", "Error frames sent, by error code");
        _breaches = _meter.CreateCounter<long>("omega.transport.limit.breaches", "{event}", "Connections or requests refused over a transport limit, by limit");
        _writes = _meter.CreateCounter<long>("omega.transport.writes", "{write}", "Batched writes to sockets, by thread (inline: on the thread that flushed; pool: by the send loop later)");
        _meter.CreateObservableCounter("omega.transport.loop.faults", () => new Measurement<long>(Volatile.Read(ref _loopFaults), tag), "{event}", "Connection loops that ended with an unexpected exception (a bug; the connection was closed)");
        _meter.CreateObservableCounter("omega.transport.shutdown.stragglers", () => new Measurement<long>(Volatile.Read(ref _stragglers), tag), "{connection}", "Connections that had not ended when the server's shutdown wait ran out (a bug)");
        _meter.CreateObservableCounter("omega.transport.bytes.sent", () => new Measurement<long>(Volatile.Read(ref _bytesSent), tag), "By", "Bytes the sockets (or TLS streams) accepted");
        // A level (opened minus closed): an UpDownCounter in the OpenTelemetry semantic conventions, not a gauge.
        _meter.CreateObservableUpDownCounter("omega.transport.connections.active", () => new Measurement<long>(Volatile.Read(ref _active), tag), "{connection}", "Connections open now");
    }

    /// <summary>Connection loops that ended with an unexpected exception (a bug; the connection was still closed).</summary>
    public long LoopFaults => Volatile.Read(ref _loopFaults);

    /// <summary>The last such exception, as text (type, message and stack), for diagnosis; null if none.</summary>
    public string? LastLoopFault => Volatile.Read(ref _lastLoopFault);

    /// <summary>Connections that had not ended when the server's shutdown wait (<see cref="TransportOptions.ShutdownWait"/>) ran out.</summary>
    public long ShutdownStragglers => Volatile.Read(ref _stragglers);

    internal void LoopFaulted(Exception ex)
    {
        Interlocked.Increment(ref _loopFaults);
        Volatile.Write(ref _lastLoopFault, ex.ToString());
    }

    internal void ShutdownStraggler() => Interlocked.Increment(ref _stragglers);

    /// <summary>Connections currently open.</summary>
    public long Active => Volatile.Read(ref _active);

    /// <summary>Connections accepted in total.</summary>
    public long Accepted => Volatile.Read(ref _acceptedCount);

    /// <summary>Frames received in total.</summary>
    public long FramesReceived => Volatile.Read(ref _framesInCount);

    /// <summary>Frames sent in total.</summary>
    public long FramesSent => Volatile.Read(ref _framesOutCount);

    /// <summary>Bytes the sockets (or TLS streams) accepted in total, counted once each write returned.</summary>
    public long BytesSent => Volatile.Read(ref _bytesSent);

    /// <summary>
    /// Batched writes made on the thread that flushed them (the dispatcher's pass, a processing loop), with no hop to
    /// another thread between the flush and the socket; see <see cref="WritesPooled"/> for the others.
    /// </summary>
    public long WritesInline => Volatile.Read(ref _writesInline);

    /// <summary>Batched writes made by a send loop resumed elsewhere (its previous write was still in progress, or it resumed after one that did not complete at once).</summary>
    public long WritesPooled => Volatile.Read(ref _writesPooled);

    /// <summary>Disconnects for one reason.</summary>
    public long Disconnects(DisconnectReason reason) => Volatile.Read(ref _byReason[(int)reason]);

    /// <summary>Error frames sent with one code.</summary>
    public long ErrorsSent(ErrorCode code) => (int)code < _byError.Length ? Volatile.Read(ref _byError[(int)code]) : 0;

    internal void Opened()
    {
        Interlocked.Increment(ref _active);
        Interlocked.Increment(ref _acceptedCount);
        _accepted.Add(1);
    }

    internal void Closed(DisconnectReason reason)
    {
        Interlocked.Decrement(ref _active);
        Interlocked.Increment(ref _byReason[(int)reason]);
        _disconnects.Add(1, new KeyValuePair<string, object?>("reason", reason.ToString()));
        if (reason is DisconnectReason.FrameTooLarge or DisconnectReason.FrameTooSmall or DisconnectReason.HandshakeTimeout
            or DisconnectReason.IdleTimeout or DisconnectReason.SlowConsumer or DisconnectReason.ServerBusy or DisconnectReason.TruncatedFrame
            or DisconnectReason.IncompleteFrameBudget)
            _breaches.Add(1, new KeyValuePair<string, object?>("limit", reason.ToString()));
    }

    internal void Rejected()
    {
        Interlocked.Increment(ref _byReason[(int)DisconnectReason.ServerBusy]);
        _disconnects.Add(1, new KeyValuePair<string, object?>("reason", nameof(DisconnectReason.ServerBusy)));
        _breaches.Add(1, new KeyValuePair<string, object?>("limit", "MaxConnections"));
    }

    internal void FrameIn() { Interlocked.Increment(ref _framesInCount); _framesIn.Add(1); }

    internal void FramesOut(int n) { Interlocked.Add(ref _framesOutCount, n); _framesOut.Add(n); }

    private static readonly KeyValuePair<string, object?> InlineTag = new("thread", "inline"), PoolTag = new("thread", "pool");

    internal void Written(long bytes, bool inline)
    {
        Interlocked.Add(ref _bytesSent, bytes);
        if (inline) { Interlocked.Increment(ref _writesInline); _writes.Add(1, InlineTag); }
        else { Interlocked.Increment(ref _writesPooled); _writes.Add(1, PoolTag); }
    }

    internal void Error(ErrorCode code)
    {
        if ((int)code < _byError.Length) Interlocked.Increment(ref _byError[(int)code]);
        _errors.Add(1, new KeyValuePair<string, object?>("code", code.ToString()));
        if (code == ErrorCode.TooManyRequestsInFlight) _breaches.Add(1, new KeyValuePair<string, object?>("limit", "MaxRequestsInFlight"));
    }

    /// <inheritdoc />
    public void Dispose() => _meter.Dispose();
}
