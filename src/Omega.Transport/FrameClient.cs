using System.Net;
using System.Net.Sockets;

namespace Omega.Transport;

/// <summary>Client side of the transport: opens a connection to a <see cref="FrameServer"/> with the same loops and limits.</summary>
public static class FrameClient
{
    private static long s_nextId;

    /// <summary>Connects and starts the connection's loops. Throws <see cref="SocketException"/> if the server is unreachable.</summary>
    public static async Task<FrameConnection> ConnectAsync(IPEndPoint server, IFrameHandler handler, TransportOptions options, TransportMetrics metrics, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(server);
        ArgumentNullException.ThrowIfNull(options);
        var s = new Socket(server.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            if (options.SocketBufferSize > 0) { s.SendBufferSize = options.SocketBufferSize; s.ReceiveBufferSize = options.SocketBufferSize; }
            await s.ConnectAsync(server, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            s.Dispose();
            throw;
        }
        var c = new FrameConnection(Interlocked.Increment(ref s_nextId), s, handler, options, metrics);
        c.Start();
        return c;
    }
}
