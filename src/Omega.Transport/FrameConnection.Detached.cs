using System.Buffers;
using System.Net.Sockets;
using Omega.Protocol;

namespace Omega.Transport;

// The deterministic-simulation seam (issue 18, docs/testing.md "The real protocol handling in the simulation").
//
// A detached connection is a FrameConnection with no loops: nothing reads a socket, nothing runs on the thread pool.
// Its owner (the simulation, on its one thread) hands it inbound bytes with DeliverDetached, which runs the same frame
// parsing and the same IFrameHandler.OnFrame call as the processing loop, and takes the frames the handler wrote out of
// the same output pipe with DrainDetached. Everything the handler calls (Send, SendError, Flush, Close, Abort,
// TryBeginRequest, the clocks) is the production code unchanged, so the simulation exercises the real protocol handling.
//
// Why not an interface extracted from FrameConnection: the handler, the dispatcher and the node outboxes call it at about
// a hundred sites, several of them generic per-frame sends (Send<T>) that an interface would turn into interface calls on
// the hot path; and that retyping collides with every other change to the server. The detached mode adds no branch to a
// socket connection's per-frame path: the constructor is shared, the loops are simply never started.
public sealed partial class FrameConnection
{
    private int _detachedFinished;

    /// <summary>
    /// Creates a connection driven by its owner instead of socket loops (deterministic simulation): the handler's
    /// <see cref="IFrameHandler.OnConnected"/> runs now. The socket is an unconnected placeholder that is never opened,
    /// so the production code paths that shut it down on close stay as they are.
    /// </summary>
    internal static FrameConnection CreateDetached(long id, IFrameHandler handler, TransportOptions options, TransportMetrics metrics)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var c = new FrameConnection(id, socket, handler, options, metrics);
        metrics.Opened();
        handler.OnConnected(c);
        return c;
    }

    /// <summary>
    /// Delivers bytes that arrived for a detached connection: every whole frame among them (with what an earlier delivery
    /// left incomplete) goes to the handler, as the processing loop does, and the replies are flushed once. Returns false
    /// when the connection is closing (the bytes were not processed).
    /// </summary>
    internal bool DeliverDetached(ReadOnlySpan<byte> bytes)
    {
        if (IsClosing) return false;
        var now = _options.Time.GetTimestamp();
        Volatile.Write(ref _lastReceivedAt, now);
        var w = _input.Writer;
        bytes.CopyTo(w.GetSpan(bytes.Length));
        w.Advance(bytes.Length);
        // Below the pause threshold (the simulation sends small frames), so this completes synchronously.
        var flushed = w.FlushAsync();
        if (!flushed.IsCompleted) throw new InvalidOperationException("a detached connection's input is above its pause threshold");
        flushed.GetAwaiter().GetResult();
        if (!_input.Reader.TryRead(out var rr)) return true;
        var buffer = rr.Buffer;
        FrameReadStatus status;
        int frames = 0;
        while ((status = Frame.TryRead(ref buffer, FrameLimit, out var frame)) == FrameReadStatus.Ok)
        {
            frames++;
            Volatile.Write(ref _lastFrameAt, now);
            _metrics.FrameIn();
            _handler.OnFrame(this, frame);
            if (IsClosing) break;
        }
        if (status == FrameReadStatus.TooLarge) SendError(0, ErrorCode.FrameTooLarge, $"length prefix above the frame length {FrameLimit}");
        else if (status == FrameReadStatus.TooSmall) SendError(0, ErrorCode.FrameTooSmall, $"length prefix below {Frame.MinLength}");
        if (frames > 0) Flush();
        _input.Reader.AdvanceTo(buffer.Start, buffer.End);
        return true;
    }

    /// <summary>
    /// Takes every whole frame flushed to a detached connection's output, each as its own byte array (header and body),
    /// in order, into <paramref name="frames"/>; returns how many. Bytes count as sent once taken.
    /// </summary>
    internal int DrainDetached(List<byte[]> frames)
    {
        if (!_output.Reader.TryRead(out var rr)) return 0;
        var buffer = rr.Buffer;
        int n = 0;
        long taken = 0;
        while (true)
        {
            var before = buffer;
            if (Frame.TryRead(ref buffer, int.MaxValue, out _) != FrameReadStatus.Ok) break;
            var whole = before.Slice(0, before.Length - buffer.Length);
            frames.Add(whole.ToArray());
            taken += whole.Length;
            n++;
        }
        _output.Reader.AdvanceTo(buffer.Start, buffer.End);
        Interlocked.Add(ref _unsent, -taken);
        return n;
    }

    /// <summary>
    /// Drops every byte flushed to a detached connection's output without copying it (they count as sent); returns how
    /// many. The per-frame allocation budgets (issue 15) use it to empty the output after each frame: unlike
    /// <see cref="DrainDetached"/> it allocates nothing, so it adds nothing to the measured bytes.
    /// </summary>
    internal long DiscardDetached()
    {
        if (!_output.Reader.TryRead(out var rr)) return 0;
        long n = rr.Buffer.Length;
        _output.Reader.AdvanceTo(rr.Buffer.End);
        Interlocked.Add(ref _unsent, -n);
        return n;
    }

    /// <summary>
    /// Ends a detached connection that was closed (by the handler, or by its owner with <see cref="Close"/> or
    /// <see cref="Abort"/>; closes it with <paramref name="reason"/> if not): counts the disconnect and calls
    /// <see cref="IFrameHandler.OnDisconnected"/> exactly once, as the socket loops' end does.
    /// </summary>
    internal void FinishDetached(DisconnectReason reason)
    {
        Abort(reason);
        if (Interlocked.Exchange(ref _detachedFinished, 1) != 0) return;
        _input.Writer.Complete();
        _input.Reader.Complete();
        _output.Reader.Complete();
        _metrics.Closed(_reason);
        try { _handler.OnDisconnected(this, _reason); }
        finally { _closed.TrySetResult(); }
    }
}
