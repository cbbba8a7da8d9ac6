using Omega.Protocol;

namespace Omega.Transport;

/// <summary>
/// The protocol layer's side of a connection. The transport calls these from the connection's processing loop, one
/// frame at a time and in order; a handler must not block (a reply is written with <see cref="FrameConnection"/>'s send methods).
/// </summary>
public interface IFrameHandler
{
    /// <summary>A connection opened. Set <see cref="FrameConnection.State"/> here.</summary>
    void OnConnected(FrameConnection connection);

    /// <summary>
    /// One whole frame arrived. Its body is only valid during the call. The transport has already bounded its length;
    /// decoding it (and catching whatever the decoder throws on hostile bytes) is the handler's job.
    /// </summary>
    void OnFrame(FrameConnection connection, in Frame frame);

    /// <summary>The connection closed, for <paramref name="reason"/>. Called exactly once.</summary>
    void OnDisconnected(FrameConnection connection, DisconnectReason reason);
}
