using System.Buffers;
using Omega.Protocol;
using Omega.Transport;

namespace Omega.Server;

// Replica snapshots (issue 16; docs/protocol.md, section 8, "Replica snapshots"; protocol version 5). Off the hot path:
// the snapshot file is written on a dedicated thread (it takes the store's checkpoint lock, never the commit path's),
// and chunks are read from disk on the thread pool with asynchronous file reads; the transport thread only decodes.
internal sealed partial class ProtocolHandler
{
    private readonly SnapshotService? _snapshots;

    /// <summary>Drops every held snapshot (the leadership was lost).</summary>
    public void DropSnapshots() => _snapshots?.DropAll();

    /// <returns>False when SnapshotBegin is sent later (the request stays in flight until then).</returns>
    private bool HandleSnapshotRequest(FrameConnection c, Session s, uint rid, in Frame frame)
    {
        if (!Decode<SnapshotRequest>(c, rid, frame, out var m)) return true;
        string replica = m.Replica.Length == 0 ? "(unnamed)" : m.Replica;
        if (_snapshots is not { } snapshots)
        {
            c.SendError(rid, ErrorCode.SnapshotUnavailable, "this server serves no replica snapshots (single-node mode, or not the leader's stack)");
            return true;
        }
        if (!snapshots.TryReserve())
        {
            c.SendError(rid, ErrorCode.SnapshotBusy, $"this server already holds its maximum of {_options.MaxSnapshots} snapshots; retry later");
            return true;
        }
        long epoch = _options.Leadership?.Epoch ?? 0;
        var session = s;
        // A dedicated thread: the copy blocks on the store's checkpoint lock and on disk for as long as the store is
        // big, which must hold neither a transport thread nor a pool thread (the pool starving is how a leader once
        // missed its etcd keepalive).
        var worker = new Thread(() =>
        {
            try
            {
                var e = snapshots.Create();
                _authz.Audit(session, "SnapshotRequest", replica, $"ok: snapshot {e.Id} at sequence {e.Sequence} (v{e.CellVersion}), {e.TotalBytes} bytes");
                c.Send(rid, new SnapshotBegin
                {
                    Snapshot = e.Id, Sequence = e.Sequence, CellVersion = e.CellVersion, TotalBytes = e.TotalBytes, Sha256 = e.Sha256,
                    ChunkBytes = snapshots.ChunkBytes, Format = 1, Epoch = epoch,
                });
            }
#pragma warning disable CA1031 // any failure to write the file is the client's typed error; the server goes on
            catch (Exception e)
#pragma warning restore CA1031
            {
                _authz.Audit(session, "SnapshotRequest", replica, $"{ErrorCode.SnapshotUnavailable}: {e.Message}");
                c.SendError(rid, ErrorCode.SnapshotUnavailable, $"the snapshot could not be written: {e.Message}");
            }
            c.Flush();
            c.EndRequest();
        }) { IsBackground = true, Name = "omega-snapshot" };
        worker.Start();
        return false;
    }

    /// <returns>False when the chunk is sent later (read from disk off the transport thread).</returns>
    private bool HandleSnapshotRead(FrameConnection c, uint rid, in Frame frame)
    {
        if (!Decode<SnapshotReadRequest>(c, rid, frame, out var m)) return true;
        if (_snapshots is not { } snapshots)
        {
            c.SendError(rid, ErrorCode.SnapshotUnavailable, "this server serves no replica snapshots");
            return true;
        }
        var e = snapshots.BeginRead(m.Snapshot);
        if (e is null)
        {
            c.SendError(rid, ErrorCode.UnknownSnapshot, $"snapshot {m.Snapshot} is not held here (expired, dropped or never issued): start over with SnapshotRequest");
            return true;
        }
        if (m.Offset < 0 || m.Offset > e.TotalBytes)
        {
            snapshots.EndRead(e);
            c.SendError(rid, ErrorCode.UnknownSnapshot, $"offset {m.Offset} is outside snapshot {m.Snapshot} (0-{e.TotalBytes})");
            return true;
        }
        int length = (int)Math.Min(snapshots.ChunkBytes, e.TotalBytes - m.Offset);
        _ = ReadChunkAsync(c, rid, snapshots, e, m.Offset, length);
        return false;
    }

    private static async Task ReadChunkAsync(FrameConnection c, uint rid, SnapshotService snapshots, SnapshotService.Entry e, long offset, int length)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(1, length));
        try
        {
            int read = 0;
            while (read < length)
            {
                int n = await RandomAccess.ReadAsync(e.Handle, buffer.AsMemory(read, length - read), offset + read).ConfigureAwait(false);
                if (n == 0) throw new EndOfStreamException($"snapshot file {e.Path} is shorter than {e.TotalBytes} bytes");
                read += n;
            }
            c.Send(rid, new SnapshotChunk { Snapshot = e.Id, Offset = offset, Data = buffer.AsMemory(0, length) });
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or UnauthorizedAccessException)
        {
            c.SendError(rid, ErrorCode.UnknownSnapshot, $"snapshot {e.Id} cannot be read any more: {ex.Message}");
        }
        finally
        {
            snapshots.EndRead(e);
            ArrayPool<byte>.Shared.Return(buffer);
        }
        c.Flush();
        c.EndRequest();
    }
}
