using System.Buffers;
using System.IO.Pipelines;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Runtime.InteropServices;
using Omega.Protocol;

namespace Omega.Transport;

/// <summary>
/// One TCP connection carrying Omega frames. Three loops run per connection: receive (socket to input pipe, paused by
/// the pipe's thresholds), process (input pipe to <see cref="IFrameHandler"/>, one frame at a time) and send (output
/// pipe to socket, every frame buffered since the last send goes out in one gathered write). Writers from any thread
/// append frames under a short lock; <see cref="Flush"/> resumes the send loop once per batch, inline on the flushing
/// thread when the loop is idle (no thread hop between a flush and the socket write). With TLS the receive and
/// send loops read and write the TLS stream instead of the socket (SslStream allows one read and one write at a time,
/// which is exactly one receive and one send loop); on a server the TLS handshake runs first, under the handshake
/// timeout, and the loops start only once it succeeded.
/// </summary>
public sealed partial class FrameConnection
{
    private readonly Socket _socket;
    private readonly Pipe _input;
    private readonly Pipe _output;
    private readonly IFrameHandler _handler;
    private readonly TransportOptions _options;
    private readonly TransportMetrics _metrics;
    private readonly Lock _writeLock = new();
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _unsent;
    private int _framesUnflushed;
    private int _inFlight;
    private int _closing;
    private DisconnectReason _reason;
    private bool _outputCompleted;
    private long _lastFrameAt;
    private long _lastReceivedAt;
    // When the sweep first saw this connection closing (0: not yet); see LingerExpired.
    private long _closingSeenAt;
    // Bytes of this connection's incomplete frame currently counted in the server-wide budget (processing loop only).
    private readonly ByteBudget? _incompleteBudget;
    private long _incompleteHeld;
    // TLS: the authenticated stream the loops use (null: plaintext socket I/O); on a server, the acceptor that runs the
    // handshake before the loops start, and the source that cancels it when the connection is closed meanwhile.
    private Stream? _stream;
    private readonly TlsAcceptor? _acceptor;
    private CancellationTokenSource? _tlsCancel;

    internal FrameConnection(long id, Socket socket, IFrameHandler handler, TransportOptions options, TransportMetrics metrics, ByteBudget? incompleteBudget = null,
        Stream? stream = null, TlsAcceptor? acceptor = null)
    {
        _incompleteBudget = incompleteBudget;
        _stream = stream;
        _acceptor = acceptor;
        IsTls = stream is not null || acceptor is not null;
        Id = id;
        _socket = socket;
        _handler = handler;
        _options = options;
        _metrics = metrics;
        int pause = options.InputPauseThreshold ?? Math.Max(64 * 1024, 2 * options.MaxFrameLength);
        int resume = options.InputResumeThreshold ?? pause / 2;
        // Both pipes draw their segments from the process-wide block pool (BlockMemoryPool: why not the default pool).
        _input = new Pipe(new PipeOptions(pool: BlockMemoryPool.Instance, pauseWriterThreshold: pause, resumeWriterThreshold: resume, useSynchronizationContext: false));
        // The outbound cap is enforced by disconnecting, not by pausing writers: a paused writer would stall the binding
        // dispatcher for every node. The pipe's pause threshold sits above the cap so it is never the first to trigger.
        long outPause = (long)options.MaxOutboundBytes * 2 + options.MaxFrameLength;
        // The send loop resumes INLINE, on the thread that flushes (issue 15): a flush into an idle connection writes the
        // socket right there (the dispatcher's pass, on the group-commit thread; a processing loop, for its replies), instead
        // of queueing the send loop's continuation to the thread pool, a hop of tens of microseconds (milliseconds on a busy
        // pool) between a binding's durable point and its socket write. The socket is non-blocking: a write the kernel
        // cannot take at once completes later on an I/O thread, and the flushing thread moves on. Everything the send loop
        // does on exit (close_notify, shutdown, the handler's OnDisconnected through FinishAsync) first yields to the pool
        // (SendLoopAsync's finally): running it inline, inside a flusher's locks, is the close re-entrancy that made an
        // earlier inline attempt revert.
        _output = new Pipe(new PipeOptions(pool: BlockMemoryPool.Instance, readerScheduler: PipeScheduler.Inline, pauseWriterThreshold: outPause, resumeWriterThreshold: options.MaxOutboundBytes, useSynchronizationContext: false));
        ConnectedAt = options.Time.GetTimestamp();
        _lastFrameAt = ConnectedAt;
        _lastReceivedAt = ConnectedAt;
        try { RemoteEndPoint = socket.RemoteEndPoint?.ToString() ?? ""; }
        catch (SocketException) { RemoteEndPoint = ""; }
    }

    /// <summary>True when the connection is (or, on a server still in the TLS handshake, will be) encrypted with TLS.</summary>
    public bool IsTls { get; }

    /// <summary>Connection number, unique within its server or client.</summary>
    public long Id { get; }

    /// <summary>The peer's address, for logs.</summary>
    public string RemoteEndPoint { get; }

    /// <summary>Whatever the protocol layer keeps per connection.</summary>
    public object? State { get; set; }

    /// <summary>Set by the protocol layer once the handshake succeeded; until then the handshake timeout applies.</summary>
    public bool HandshakeCompleted { get; set; }

    /// <summary>Timestamp (of the options' clock) when the connection was accepted.</summary>
    public long ConnectedAt { get; }

    /// <summary>Timestamp of the last complete frame received.</summary>
    public long LastFrameAt => Volatile.Read(ref _lastFrameAt);

    /// <summary>
    /// Timestamp (of the options' clock) at which the receive loop last took bytes off the socket. Unlike
    /// <see cref="LastFrameAt"/> it does not wait for the processing loop: frames that arrived but are queued behind
    /// slow requests of the same connection already count. The node lifecycle judges an agent's silence by it, so a busy
    /// server cannot mistake its own backlog for a silent agent.
    /// </summary>
    public long LastReceivedAt => Volatile.Read(ref _lastReceivedAt);

    /// <summary>The clock of <see cref="ConnectedAt"/>, <see cref="LastFrameAt"/> and <see cref="LastReceivedAt"/>.</summary>
    public TimeProvider Clock => _options.Time;

    /// <summary>True once the connection started closing.</summary>
    public bool IsClosing => Volatile.Read(ref _closing) != 0;

    /// <summary>
    /// Called by the server's sweep for a closing connection: true once it has been seen closing for longer than
    /// <paramref name="linger"/>. A graceful close sends what was queued, and then TLS's close_notify, before the socket
    /// goes; a peer that never reads (its receive window full) would hold that forever, so the sweep aborts such a
    /// connection after the linger, as SO_LINGER bounds a socket's close. Measured from the first sweep that saw it closing
    /// (sweep thread only), so no close path has to stamp the time.
    /// </summary>
    internal bool LingerExpired(long now, TimeSpan linger)
    {
        if (_closingSeenAt == 0)
        {
            _closingSeenAt = now;
            return false;
        }
        return (now - _closingSeenAt) / (double)_options.Time.TimestampFrequency >= linger.TotalSeconds;
    }

    /// <summary>Bytes written but not yet accepted by the socket.</summary>
    public long UnsentBytes => Volatile.Read(ref _unsent);

    /// <summary>Requests in flight (see <see cref="TryBeginRequest"/>).</summary>
    public int RequestsInFlight => Volatile.Read(ref _inFlight);

    /// <summary>Completes when the connection has closed, with the reason.</summary>
    public Task Closed => _closed.Task;

    /// <summary>Why the connection closed (valid once <see cref="Closed"/> completed).</summary>
    public DisconnectReason Reason => _reason;

    /// <summary>Counts a request as in flight; false (and nothing counted) when the per-connection limit is reached.</summary>
    public bool TryBeginRequest()
    {
        if (Interlocked.Increment(ref _inFlight) > _options.MaxRequestsInFlight)
        {
            Interlocked.Decrement(ref _inFlight);
            return false;
        }
        return true;
    }

    /// <summary>Ends a request counted by <see cref="TryBeginRequest"/> (after its reply was written).</summary>
    public void EndRequest() => Interlocked.Decrement(ref _inFlight);

    /// <summary>
    /// Appends one frame to the outbound buffer. Returns false if the connection is closing, or if the frame would take
    /// the unsent bytes above the cap, in which case the connection is closed as a slow consumer. Call <see cref="Flush"/> after a batch.
    /// </summary>
    internal bool Send<T>(uint requestId, in T message) where T : IWireMessage<T>
    {
        if (IsClosing) return false;
        lock (_writeLock)
        {
            if (_outputCompleted) return false;
            int n = Codec.WriteFrame(_output.Writer, requestId, message);
            _framesUnflushed++;
            if (Interlocked.Add(ref _unsent, n) > _options.MaxOutboundBytes)
            {
                Abort(DisconnectReason.SlowConsumer);
                return false;
            }
        }
        return true;
    }

    /// <summary>Appends an error frame, counted by code; if the code closes connections, closes after it is sent.</summary>
    public void SendError(uint requestId, ErrorCode code, string message) => SendError(requestId, code, message, DenyReason.None);

    /// <summary>Appends an error frame with a denial reason (key 2, for <see cref="ErrorCode.PermissionDenied"/>), counted by code.</summary>
    public void SendError(uint requestId, ErrorCode code, string message, DenyReason reason)
    {
        _metrics.Error(code);
        Send(requestId, new ErrorMessage { Code = code, Message = message, Reason = reason });
        if (code.ClosesConnection()) Close(code switch
        {
            ErrorCode.FrameTooLarge => DisconnectReason.FrameTooLarge,
            ErrorCode.FrameTooSmall => DisconnectReason.FrameTooSmall,
            ErrorCode.HandshakeTimeout => DisconnectReason.HandshakeTimeout,
            ErrorCode.IdleTimeout => DisconnectReason.IdleTimeout,
            ErrorCode.ServerBusy => DisconnectReason.ServerBusy,
            ErrorCode.ShuttingDown => DisconnectReason.Shutdown,
            ErrorCode.IncompleteFrameBudget => DisconnectReason.IncompleteFrameBudget,
            _ => DisconnectReason.ProtocolError,
        });
        else Flush();
    }

    /// <summary>
    /// Sends a leadership redirect (protocol version 4): <see cref="ErrorCode.NotLeader"/> naming <paramref name="leader"/>
    /// and its <paramref name="epoch"/>, or <see cref="ErrorCode.NoLeader"/> when <paramref name="leader"/> is null or
    /// empty; counted by code, then the connection is closed (the client reconnects to the leader).
    /// </summary>
    public void SendRedirect(uint requestId, string? leader, long epoch, string message)
    {
        var code = string.IsNullOrEmpty(leader) ? ErrorCode.NoLeader : ErrorCode.NotLeader;
        _metrics.Error(code);
        Send(requestId, new ErrorMessage { Code = code, Message = message, Leader = code == ErrorCode.NotLeader ? leader : null, Epoch = epoch });
        Close(DisconnectReason.NotLeader);
    }

    /// <summary>
    /// Hands every frame appended since the last flush to the send loop (one gathered socket write). When the send loop
    /// is idle the write happens here, on the calling thread, before this returns (the socket is non-blocking; see the
    /// constructor); otherwise the loop, still busy with the previous batch, takes this one after it.
    /// </summary>
    public void Flush()
    {
        lock (_writeLock)
        {
            if (_outputCompleted || _framesUnflushed == 0) return;
            _metrics.FramesOut(_framesUnflushed);
            _framesUnflushed = 0;
            // Marks the send loop's inline resumption (a thread-static: only a continuation run inside this very call
            // sees it), for the writes-inline metric.
            t_flushing = this;
            try
            {
                var t = _output.Writer.FlushAsync();
                // The output pipe's pause threshold is above the cap enforced in Send, so this completes synchronously.
                if (!t.IsCompleted) Abort(DisconnectReason.SlowConsumer);
            }
            finally
            {
                t_flushing = null;
            }
        }
    }

    [ThreadStatic] private static FrameConnection? t_flushing;

    /// <summary>Closes gracefully: frames already written are sent, then the socket is shut down.</summary>
    public void Close(DisconnectReason reason)
    {
        if (Interlocked.CompareExchange(ref _closing, 1, 0) != 0) return;
        _reason = reason;
        CancelTlsHandshake();
        lock (_writeLock)
        {
            if (_framesUnflushed > 0) { _metrics.FramesOut(_framesUnflushed); _framesUnflushed = 0; }
            _outputCompleted = true;
            _output.Writer.Complete();
        }
        _input.Reader.CancelPendingRead();
    }

    /// <summary>Closes at once, dropping unsent frames (slow consumers, shutdown).</summary>
    public void Abort(DisconnectReason reason)
    {
        bool first = Interlocked.CompareExchange(ref _closing, 1, 0) == 0;
        if (first) _reason = reason;
        CancelTlsHandshake();
        // Cancel the send loop's read BEFORE completing the pipe: its reader resumes inline (on this thread), and a
        // completed pipe would have it write the very frames an abort drops.
        _output.Reader.CancelPendingRead();
        lock (_writeLock)
        {
            if (!_outputCompleted) { _outputCompleted = true; _output.Writer.Complete(); }
        }
        _input.Reader.CancelPendingRead();
        try { _socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
        _socket.Dispose();
    }

    internal void Start()
    {
        _metrics.Opened();
        _handler.OnConnected(this);
        if (_acceptor is null) StartLoops();
        else _ = EstablishTlsAsync(_acceptor);
    }

    // The source is never disposed: a Close racing the end of the handshake may still cancel it (harmlessly).
    private void CancelTlsHandshake() => Volatile.Read(ref _tlsCancel)?.Cancel();

    /// <summary>
    /// Server side: the TLS handshake, then the loops. A handshake that fails, or that the sweep cuts short at the
    /// handshake timeout (Close cancels it), ends the connection here: no loop ran, no frame was read or sent, and the
    /// disconnect is counted with its reason (TlsHandshakeFailed, TlsRequired, HandshakeTimeout, PeerClosed).
    /// </summary>
    private async Task EstablishTlsAsync(TlsAcceptor acceptor)
    {
        var cancel = new CancellationTokenSource();
        Volatile.Write(ref _tlsCancel, cancel);
        if (IsClosing) cancel.Cancel();
        var (stream, failure) = await acceptor.AcceptAsync(_socket, _metrics, _options.Time, cancel.Token).ConfigureAwait(false);
        if (stream is not null && !IsClosing)
        {
            _stream = stream;
            StartLoops();
            // A Close between the check and StartLoops completed the output pipe and cancelled the input read: the
            // loops see it and end normally.
            return;
        }
        if (Interlocked.CompareExchange(ref _closing, 1, 0) == 0) _reason = failure;
        try
        {
            if (stream is not null)
            {
                try { await stream.DisposeAsync().ConfigureAwait(false); }
                catch (Exception ex) when (ex is IOException or ObjectDisposedException or SocketException or NotSupportedException or InvalidOperationException
                    or System.Security.Cryptography.CryptographicException) { }
            }
            try { _socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
        }
        finally
        {
            // As in FinishAsync: the connection ends whatever happened above.
            _socket.Dispose();
            _metrics.Closed(_reason);
            try { _handler.OnDisconnected(this, _reason); }
            finally { _closed.TrySetResult(); }
        }
    }

    private void StartLoops()
    {
        var receive = Task.Run(ReceiveLoopAsync);
        var send = Task.Run(SendLoopAsync);
        var process = Task.Run(ProcessLoopAsync);
        _ = FinishAsync(receive, send, process);
    }

    private async Task FinishAsync(Task receive, Task send, Task process)
    {
        // Whatever a loop did, the connection must end: Closed, the disconnect count and OnDisconnected are what the
        // server's shutdown and every waiter depend on. A loop that faulted (a bug: each loop catches its I/O errors) must
        // not leave them pending, which would hang the server's DisposeAsync for good.
        try
        {
            await AwaitLoop(process).ConfigureAwait(false);
            await AwaitLoop(send).ConfigureAwait(false);
            try { _socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
            _socket.Dispose();
            await AwaitLoop(receive).ConfigureAwait(false);
            if (_stream is { } stream)
            {
                try { await stream.DisposeAsync().ConfigureAwait(false); }
                catch (Exception ex) when (ex is IOException or ObjectDisposedException or SocketException or NotSupportedException or InvalidOperationException
                    or System.Security.Cryptography.CryptographicException) { }
            }
        }
        finally
        {
            _socket.Dispose();
            _metrics.Closed(_reason);
            try { _handler.OnDisconnected(this, _reason); }
            finally { _closed.TrySetResult(); }
        }
    }

    // Awaits one of the connection's loops; a fault (a bug) is counted and the connection still ends.
    private async Task AwaitLoop(Task loop)
    {
        try { await loop.ConfigureAwait(false); }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            _metrics.LoopFaulted(ex);
            try { _socket.Dispose(); } catch (ObjectDisposedException) { }
        }
    }

    private async Task ReceiveLoopAsync()
    {
        var writer = _input.Writer;
        try
        {
            while (true)
            {
                var mem = writer.GetMemory(8192);
                int n = _stream is null
                    ? await _socket.ReceiveAsync(mem, SocketFlags.None).ConfigureAwait(false)
                    : await _stream.ReadAsync(mem).ConfigureAwait(false);
                if (n == 0) break;
                // Stamped before the bytes are handed on: receipt, not processing, is what proves the peer is alive.
                Volatile.Write(ref _lastReceivedAt, _options.Time.GetTimestamp());
                writer.Advance(n);
                // Back-pressure: this await does not complete while the unprocessed input is above the pause threshold.
                var fr = await writer.FlushAsync().ConfigureAwait(false);
                if (fr.IsCompleted || fr.IsCanceled) break;
            }
            await writer.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException or OperationCanceledException or AuthenticationException or System.Security.Cryptography.CryptographicException)
        {
            await writer.CompleteAsync(ex is SocketException ? ex : null).ConfigureAwait(false);
        }
    }

    private async Task ProcessLoopAsync()
    {
        var reader = _input.Reader;
        var reason = DisconnectReason.PeerClosed;
        try
        {
            while (!IsClosing)
            {
                ReadResult rr;
                try { rr = await reader.ReadAsync().ConfigureAwait(false); }
                catch (SocketException) { reason = DisconnectReason.SocketError; break; }
                if (rr.IsCanceled) break;
                var buffer = rr.Buffer;
                FrameReadStatus status;
                int frames = 0;
                // Before the handshake only a small frame is accepted: an anonymous peer cannot make the server hold a
                // maximal frame. The limit is re-read per frame because the handshake completes inside OnFrame.
                while ((status = Frame.TryRead(ref buffer, FrameLimit, out var frame)) == FrameReadStatus.Ok)
                {
                    frames++;
                    Volatile.Write(ref _lastFrameAt, _options.Time.GetTimestamp());
                    _metrics.FrameIn();
                    _handler.OnFrame(this, frame);
                    if (IsClosing) break;
                }
                if (status == FrameReadStatus.TooLarge)
                    SendError(0, ErrorCode.FrameTooLarge, HandshakeCompleted
                        ? $"length prefix above the maximum frame length {_options.MaxFrameLength}"
                        : $"length prefix above the pre-handshake frame length {FrameLimit}");
                else if (status == FrameReadStatus.Incomplete && !IsClosing) HoldIncomplete(buffer.Length);
                else if (status == FrameReadStatus.TooSmall)
                    SendError(0, ErrorCode.FrameTooSmall, $"length prefix below {Frame.MinLength}");
                // Replies to every frame of this read go out in one flush (pipelined requests, batched replies).
                if (frames > 0) Flush();
                reader.AdvanceTo(buffer.Start, buffer.End);
                if (rr.IsCompleted)
                {
                    if (!buffer.IsEmpty && !IsClosing) reason = DisconnectReason.TruncatedFrame;
                    break;
                }
            }
        }
        finally
        {
            await reader.CompleteAsync().ConfigureAwait(false);
            _incompleteBudget?.Release(_incompleteHeld);
            _incompleteHeld = 0;
            Close(reason);
        }
    }

    private int FrameLimit => HandshakeCompleted ? _options.MaxFrameLength : _options.EffectivePreHandshakeFrameLength;

    /// <summary>
    /// Accounts the bytes left after the last whole frame (a partial frame) in the server-wide budget. Only growth can
    /// be refused: the connection that would cross the limit is closed with IncompleteFrameBudget, so an attacker's
    /// many half-sent frames cost at most the budget, not connections × frame length.
    /// </summary>
    private void HoldIncomplete(long tail)
    {
        if (_incompleteBudget is null || tail == _incompleteHeld) return;
        long delta = tail - _incompleteHeld;
        if (delta < 0 || _incompleteBudget.TryTake(delta))
        {
            if (delta < 0) _incompleteBudget.Release(-delta);
            _incompleteHeld = tail;
            return;
        }
        SendError(0, ErrorCode.IncompleteFrameBudget, $"the server's budget of {_incompleteBudget.Limit} bytes for incomplete frames is spent");
    }

    private async Task SendLoopAsync()
    {
        var reader = _output.Reader;
        var segments = new List<ArraySegment<byte>>(16);
        try
        {
            while (true)
            {
                var rr = await reader.ReadAsync().ConfigureAwait(false);
                if (rr.IsCanceled) break;
                var buffer = rr.Buffer;
                if (!buffer.IsEmpty)
                {
                    long len = buffer.Length;
                    bool inline = ReferenceEquals(t_flushing, this);
                    if (_stream is not null) await WriteTlsAsync(_stream, buffer).ConfigureAwait(false);
                    else if (buffer.IsSingleSegment) await SendAllAsync(buffer.First).ConfigureAwait(false);
                    else
                    {
                        segments.Clear();
                        foreach (var m in buffer)
                        {
                            if (!MemoryMarshal.TryGetArray(m, out var seg)) seg = new ArraySegment<byte>(m.ToArray());
                            segments.Add(seg);
                        }
                        int sent = 0;
                        while (sent < len)
                        {
                            int n = await _socket.SendAsync(segments, SocketFlags.None).ConfigureAwait(false);
                            sent += n;
                            if (sent < len) TrimSegments(segments, n);
                        }
                    }
                    Interlocked.Add(ref _unsent, -len);
                    _metrics.Written(len, inline);
                }
                reader.AdvanceTo(buffer.End);
                if (rr.IsCompleted) break;
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException or InvalidOperationException or AuthenticationException or System.Security.Cryptography.CryptographicException)
        {
            if (Interlocked.CompareExchange(ref _closing, 1, 0) == 0) _reason = DisconnectReason.SocketError;
        }
        finally
        {
            // Off the flushing thread before anything else: the loop may have resumed inline inside a Flush, Close or
            // Abort (under the connection's write lock and whatever locks its caller holds, such as the dispatcher's
            // pass), and its end runs close_notify, the socket's shutdown and, through FinishAsync, the handler's
            // OnDisconnected, none of which may run there.
            await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
            await reader.CompleteAsync().ConfigureAwait(false);
            _input.Reader.CancelPendingRead();
            // TLS: say close_notify first, so the peer can tell our close from a truncation.
            // It is a write like any other: against a peer that never reads it waits until the sweep's linger aborts the
            // socket (LingerExpired), and an abort makes it fail at once. It is best effort, so every failure is taken:
            // at worst the peer sees a truncation. Not only I/O exceptions come out of it: on Linux, with the session
            // already broken or past its close, OpenSSL's own exception types do (CryptographicException "application
            // data after close notify", and an internal SslException "error - 5"). One of those escaping this finally
            // used to fault the send loop, so the connection never ended and the server's shutdown waited on it for
            // ever (the TLS slow-consumer test's rare hang).
            if (_stream is SslStream ssl)
            {
                try { await ssl.ShutdownAsync().ConfigureAwait(false); }
                catch (Exception ex) when (ex is not OutOfMemoryException) { }
            }
            try { _socket.Shutdown(SocketShutdown.Send); } catch (SocketException) { } catch (ObjectDisposedException) { }
        }
    }

    /// <summary>
    /// Writes a batch to the TLS stream. SslStream has no gathered write and makes one record (and one socket write) per
    /// call, so the pipe's segments (a few KiB each) are packed into chunks of one full record (16 KiB) first: a batch of
    /// many small frames costs a few records, not one per segment. The chunk buffer is pooled, held only for the write.
    /// </summary>
    private static async ValueTask WriteTlsAsync(Stream stream, ReadOnlySequence<byte> buffer)
    {
        if (buffer.IsSingleSegment)
        {
            await stream.WriteAsync(buffer.First).ConfigureAwait(false);
            return;
        }
        const int RecordPayload = 16 * 1024;
        byte[] chunk = ArrayPool<byte>.Shared.Rent(RecordPayload);
        try
        {
            int used = 0;
            foreach (var segment in buffer)
            {
                var rest = segment;
                while (!rest.IsEmpty)
                {
                    int n = Math.Min(rest.Length, RecordPayload - used);
                    rest[..n].CopyTo(chunk.AsMemory(used));
                    used += n;
                    rest = rest[n..];
                    if (used == RecordPayload)
                    {
                        await stream.WriteAsync(chunk.AsMemory(0, used)).ConfigureAwait(false);
                        used = 0;
                    }
                }
            }
            if (used > 0) await stream.WriteAsync(chunk.AsMemory(0, used)).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
    }

    private async ValueTask SendAllAsync(ReadOnlyMemory<byte> data)
    {
        while (!data.IsEmpty)
        {
            int n = await _socket.SendAsync(data, SocketFlags.None).ConfigureAwait(false);
            data = data[n..];
        }
    }

    private static void TrimSegments(List<ArraySegment<byte>> segments, int sent)
    {
        while (sent > 0 && segments.Count > 0)
        {
            var s = segments[0];
            if (sent >= s.Count) { sent -= s.Count; segments.RemoveAt(0); }
            else { segments[0] = s.Slice(sent); sent = 0; }
        }
    }
}
