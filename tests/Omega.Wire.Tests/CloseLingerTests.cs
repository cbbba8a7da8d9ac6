using System.Net;
using Omega.Protocol;
using Omega.Transport;
using Xunit;

namespace Omega.Wire.Tests;

/// <summary>
/// A connection the server closes gracefully still owes its peer everything queued before the close (and, over TLS, a
/// close_notify). A peer that stops reading would hold that close open for ever, with its buffers, its connection slot
/// and the server's shutdown waiting on it. <see cref="TransportOptions.CloseLinger"/> bounds it: the sweep aborts a
/// connection still closing after the linger. These tests drive a bare <see cref="FrameServer"/> (the library surface
/// under the Omega server) with a handler that answers every frame with a large reply and closes on request.
/// </summary>
public sealed class CloseLingerTests
{
    // Answers each frame with a ~16 KiB error frame (any message will do: the peer never reads it); a frame of type
    // Error (the type only; the transport does not decode bodies) makes it close the connection gracefully, as a
    // protocol error does.
    private sealed class BigReplies : IFrameHandler
    {
        private static readonly string Payload = new('x', 16 * 1024);

        public void OnConnected(FrameConnection connection) { }

        public void OnFrame(FrameConnection connection, in Frame frame)
        {
            if (frame.Type == MessageType.Error)
            {
                connection.Close(DisconnectReason.ProtocolError);
                return;
            }
            connection.Send(frame.RequestId, new ErrorMessage { Code = ErrorCode.MalformedBody, Message = Payload });
            connection.Flush();
        }

        public void OnDisconnected(FrameConnection connection, DisconnectReason reason) { }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_gracefully_closed_connection_whose_peer_never_reads_is_aborted_after_the_linger(bool tls)
    {
        var options = new TransportOptions
        {
            SocketBufferSize = 4096,
            CloseLinger = TimeSpan.FromSeconds(1),
            SweepInterval = TimeSpan.FromMilliseconds(100),
            ServerTls = tls ? new TlsServerOptions { Certificate = TestTls.Server } : null,
        };
        await using var server = new FrameServer(new IPEndPoint(IPAddress.Loopback, 0), new BigReplies(), options, "linger");
        server.Start();
        using var client = await RawClient.ConnectAsync(server.EndPoint, receiveBuffer: 4096, tls: tls);
        long Unsent()
        {
            long u = 0;
            server.ForEachConnection(c => u = Math.Max(u, c.UnsentBytes));
            return u;
        }
        // Replies pile up behind a socket the peer does not drain: 40 x 16 KiB, well under the 8 MiB outbound cap, so
        // nothing here is a slow-consumer abort.
        var hello = RawClient.Frame((byte)MessageType.Hello, 1, ReadOnlySpan<byte>.Empty);
        for (int i = 0; i < 40; i++) await client.SendAsync(hello).WaitAsync(TimeSpan.FromSeconds(30));
        await Wait.UntilAsync(() => Unsent() > 256 * 1024, () => $"replies queued behind the full socket (unsent {Unsent()} bytes)", 30_000);

        // The server closes gracefully: it must first send the queued replies, which this peer will never read.
        await client.SendAsync(RawClient.Frame((byte)MessageType.Error, 2, ReadOnlySpan<byte>.Empty)).WaitAsync(TimeSpan.FromSeconds(30));
        await Wait.UntilAsync(() => server.Metrics.Disconnects(DisconnectReason.ProtocolError) == 1,
            () => $"the closing connection ended after the linger (open {server.ConnectionCount}, unsent {Unsent()} bytes)", 30_000);
        // The disconnect is counted just before the connection leaves the server's table.
        await Wait.UntilAsync(() => server.ConnectionCount == 0, "the connection left the server's table");
        Assert.Equal(0, server.Metrics.LoopFaults);
    }
}
