using System.Buffers;
using System.Text;
using Omega.Agent;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.Protocol;

namespace Omega.Wire.Tests;

/// <summary>
/// The control-plane object messages over TCP (docs/protocol.md, section 8, "Objects"): preconditions, the resumable
/// watch, finalizers, and hostile object frames. Every test goes through a real server on loopback.
/// </summary>
public sealed class ObjectWireTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);

    private static Workload NewWorkload(string name, int replicas = 1, string tenant = "default")
    {
        var w = new Workload();
        w.Metadata.Name = name;
        w.Metadata.Tenant = tenant;
        w.Spec.Replicas = replicas;
        w.Spec.Resources = new ResourceRequest { CpuMillis = 100, MemoryBytes = 1 << 20 };
        return w;
    }

    private static (ServerFixture Fixture, ObjectStore Store) Start(ObjectStoreOptions? storeOptions = null, Action<Server.ServerOptions>? configure = null)
    {
        ObjectStore? store = null;
        var fx = ServerFixture.Start(o => { o.Objects = store; configure?.Invoke(o); }, seed: cell => store = new ObjectStore(cell, storeOptions));
        return (fx, store!);
    }

    [Fact]
    public async Task Two_writers_with_the_same_resourceVersion_one_wins_and_one_gets_ObjectConflict()
    {
        var (fx, store) = Start();
        await using var fixture = fx;
        using var storeScope = store;
        await using var a = await ControlClient.ConnectAsync(fx.EndPoint);
        await using var b = await ControlClient.ConnectAsync(fx.EndPoint);
        var created = await a.CreateAsync(NewWorkload("web", 1));
        Assert.Equal(1, created.Metadata.Generation);

        // Both read the same version, both change the spec, both write with that version as the precondition.
        var forA = (Workload)(await a.GetAsync(created.Key))!;
        var forB = (Workload)(await b.GetAsync(created.Key))!;
        Assert.Equal(forA.Metadata.ResourceVersion, forB.Metadata.ResourceVersion);
        forA.Spec.Replicas = 5;
        forB.Spec.Replicas = 7;
        var outcomes = await Task.WhenAll(TryUpdate(a, forA), TryUpdate(b, forB));

        Assert.Single(outcomes, o => o.Error is null);
        var loser = Assert.Single(outcomes, o => o.Error is not null);
        Assert.Equal(ErrorCode.ObjectConflict, loser.Error!.Code);
        var winner = outcomes.Single(o => o.Error is null).Written!;
        var stored = (Workload)(await a.GetAsync(created.Key))!;
        Assert.Equal(winner.Metadata.ResourceVersion, stored.Metadata.ResourceVersion);
        Assert.Equal(((Workload)winner).Spec.Replicas, stored.Spec.Replicas);
        Assert.Equal(2, stored.Metadata.Generation);
        Assert.Equal(1, store.Rejections(ObjectStatus.Conflict));

        // The loser re-reads and retries: now it wins.
        stored.Spec.Replicas = 9;
        var retried = (Workload)await b.UpdateAsync(stored);
        Assert.Equal(9, retried.Spec.Replicas);
        Assert.Equal(3, retried.Metadata.Generation);

        // A delete with a stale precondition is a conflict too, and changes nothing.
        var stale = await Assert.ThrowsAsync<AgentRequestException>(() => a.DeleteAsync(created.Key, stored.Metadata.ResourceVersion));
        Assert.Equal(ErrorCode.ObjectConflict, stale.Code);
        Assert.NotNull(await a.GetAsync(created.Key));
    }

    private static async Task<(ApiObject? Written, AgentRequestException? Error)> TryUpdate(ControlClient c, ApiObject obj)
    {
        try { return (await c.UpdateAsync(obj), null); }
        catch (AgentRequestException e) { return (null, e); }
    }

    [Fact]
    public async Task A_watch_resumed_after_a_disconnect_loses_and_repeats_nothing()
    {
        var (fx, store) = Start();
        await using var fixture = fx;
        using var storeScope = store;
        await using var writer = await ControlClient.ConnectAsync(fx.EndPoint);
        var acked = new List<long>();
        acked.Add((await writer.CreateAsync(NewWorkload("before"))).Metadata.ResourceVersion);

        // Informer pattern: list, then watch from the list's version.
        var list = await writer.ListAsync(Workload.KindName);
        Assert.Single(list.Items);
        var seen = new List<long>();
        long resumeFrom;
        {
            var watcher = await ControlClient.ConnectAsync(fx.EndPoint);
            await using var e = watcher.WatchAsync(list.ResourceVersion, Workload.KindName).GetAsyncEnumerator();
            for (int i = 0; i < 6; i++) acked.Add((await writer.CreateAsync(NewWorkload($"w{i}"))).Metadata.ResourceVersion);
            for (int i = 0; i < 4; i++)
            {
                Assert.True(await e.MoveNextAsync().AsTask().WaitAsync(Timeout));
                seen.Add(e.Current.ResourceVersion);
            }
            resumeFrom = seen[^1];
            // The disconnect: the connection goes away with events still unread.
            await watcher.DisposeAsync();
            await Assert.ThrowsAsync<AgentRequestException>(async () => { while (await e.MoveNextAsync().AsTask().WaitAsync(Timeout)) seen.Add(e.Current.ResourceVersion); });
            seen.RemoveAll(v => v > resumeFrom); // whatever arrived after the chosen resume point is read again below
        }
        Assert.Equal(0, await WaitForWatchers(store, 0));

        // Writes while no one watches: updates, a cell change in between, a delete.
        var w0 = (Workload)(await writer.GetAsync(new ObjectKey(Workload.KindName, "default", "w0")))!;
        w0.Spec.Replicas = 3;
        acked.Add((await writer.UpdateAsync(w0)).Metadata.ResourceVersion);
        fx.Cell.AddNode(new NodeSpec("n1", ResourceVector.FromCoresAndGiB(4, 8)));
        acked.Add((await writer.DeleteAsync(new ObjectKey(Workload.KindName, "default", "w1"))).ResourceVersion);
        for (int i = 6; i < 9; i++) acked.Add((await writer.CreateAsync(NewWorkload($"w{i}"))).Metadata.ResourceVersion);

        await using var again = await ControlClient.ConnectAsync(fx.EndPoint);
        var types = new List<WatchEventType>();
        await foreach (var ev in again.WatchAsync(resumeFrom, Workload.KindName).WithCancellation(new CancellationTokenSource(Timeout).Token))
        {
            seen.Add(ev.ResourceVersion);
            types.Add(ev.Type);
            if (seen.Count == acked.Count - 1) break; // "before" was listed, not watched
        }
        Assert.Equal(acked.Skip(1), seen);
        Assert.Contains(WatchEventType.Modified, types);
        Assert.Contains(WatchEventType.Deleted, types);
        // Disposing the enumerator stopped the server's watch.
        Assert.Equal(0, await WaitForWatchers(store, 0));
    }

    private static async Task<int> WaitForWatchers(ObjectStore store, int count)
    {
        await Wait.UntilAsync(() => store.WatcherCount == count, $"{count} open watchers");
        return store.WatcherCount;
    }

    [Fact]
    public async Task A_watch_from_before_the_history_window_is_WatchExpired_and_the_connection_goes_on()
    {
        var (fx, store) = Start(new ObjectStoreOptions { HistoryCapacity = 8, MaxWatcherLag = 8 });
        await using var fixture = fx;
        using var storeScope = store;
        await using var c = await ControlClient.ConnectAsync(fx.EndPoint);
        long first = (await c.CreateAsync(NewWorkload("w0"))).Metadata.ResourceVersion;
        for (int i = 1; i < 20; i++) await c.CreateAsync(NewWorkload($"w{i}"));

        var e = await Assert.ThrowsAsync<AgentRequestException>(async () => { await foreach (var __ in c.WatchAsync(first)) { } });
        Assert.Equal(ErrorCode.WatchExpired, e.Code);
        Assert.Equal(1, fx.Server.TransportMetrics.ErrorsSent(ErrorCode.WatchExpired));

        // The documented recovery: list again, watch from the list's version.
        var list = await c.ListAsync(Workload.KindName, limit: 7);
        Assert.Equal(7, list.Items.Count);
        Assert.NotNull(list.Continue);
        var rest = await c.ListAsync(Workload.KindName, continueToken: list.Continue);
        Assert.Equal(13, rest.Items.Count);
        Assert.Null(rest.Continue);
        await using var e2 = c.WatchAsync(list.ResourceVersion).GetAsyncEnumerator();
        var created = await c.CreateAsync(NewWorkload("after"));
        Assert.True(await e2.MoveNextAsync().AsTask().WaitAsync(Timeout));
        Assert.Equal(created.Metadata.ResourceVersion, e2.Current.ResourceVersion);
    }

    [Fact]
    public async Task Finalizers_block_deletion_until_they_are_removed()
    {
        var (fx, store) = Start();
        await using var fixture = fx;
        using var storeScope = store;
        await using var c = await ControlClient.ConnectAsync(fx.EndPoint);
        var w = NewWorkload("web");
        w.Metadata.Finalizers.Add("example.com/cleanup");
        var created = await c.CreateAsync(w);
        await using var events = c.WatchAsync(created.Metadata.ResourceVersion, Workload.KindName).GetAsyncEnumerator();

        var deleted = await c.DeleteAsync(created.Key);
        Assert.False(deleted.Removed);
        var terminating = (Workload)(await c.GetAsync(created.Key))!;
        Assert.NotNull(terminating.Metadata.DeletionTimestamp);
        Assert.Equal(deleted.Object!.Metadata.ResourceVersion, terminating.Metadata.ResourceVersion);

        // Frozen spec while terminating; a repeated delete changes nothing.
        terminating.Spec.Replicas = 4;
        var frozen = await Assert.ThrowsAsync<AgentRequestException>(() => c.UpdateAsync(terminating));
        Assert.Equal(ErrorCode.ObjectTerminating, frozen.Code);
        Assert.False((await c.DeleteAsync(created.Key)).Removed);
        Assert.NotNull(await c.GetAsync(created.Key));

        // The "controller" finishes its cleanup and removes its finalizer: the object goes.
        var current = (Workload)(await c.GetAsync(created.Key))!;
        current.Metadata.Finalizers.Clear();
        await c.UpdateAsync(current);
        Assert.Null(await c.GetAsync(created.Key));

        Assert.True(await events.MoveNextAsync().AsTask().WaitAsync(Timeout));
        Assert.Equal(WatchEventType.Modified, events.Current.Type);
        Assert.NotNull(events.Current.Object.Metadata.DeletionTimestamp);
        Assert.True(await events.MoveNextAsync().AsTask().WaitAsync(Timeout));
        Assert.Equal(WatchEventType.Deleted, events.Current.Type);
        var missing = await Assert.ThrowsAsync<AgentRequestException>(() => c.DeleteAsync(created.Key));
        Assert.Equal(ErrorCode.ObjectNotFound, missing.Code);
    }

    [Fact]
    public async Task Hostile_object_frames_get_typed_errors_and_the_connection_and_server_go_on()
    {
        var (fx, store) = Start(configure: o => o.MaxObjectRequestBytes = 4096);
        await using var fixture = fx;
        using var storeScope = store;
        using var raw = await RawClient.ConnectAsync(fx.EndPoint);
        await raw.HandshakeAsync(PeerRole.Scheduler);

        async Task<ErrorCode> Create(uint rid, string json)
        {
            await raw.SendAsync(rid, new CreateObject { Body = new ObjectWrite { Object = Encoding.UTF8.GetBytes(json) } });
            var e = await raw.ReadErrorAsync();
            Assert.NotNull(e);
            return e.Value.Code;
        }

        Assert.Equal(ErrorCode.InvalidRequest, await Create(2, "{\"kind\":\"Workload\", nope"));
        Assert.Equal(ErrorCode.InvalidRequest, await Create(3, "{\"apiVersion\":\"omega/v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"x\"}}"));
        Assert.Equal(ErrorCode.InvalidRequest, await Create(4, "{\"apiVersion\":\"omega/v2\",\"kind\":\"Workload\",\"metadata\":{\"name\":\"x\",\"tenant\":\"default\"}}"));
        Assert.Equal(ErrorCode.InvalidRequest, await Create(5, new string('[', 200) + new string(']', 200)));
        Assert.Equal(ErrorCode.InvalidRequest, await Create(6, "{\"apiVersion\":\"omega/v1\",\"kind\":\"Workload\",\"metadata\":{\"name\":\"Bad Name\",\"tenant\":\"default\"},\"spec\":{\"replicas\":1,\"resources\":{\"cpuMillis\":1}}}"));
        Assert.Equal(ErrorCode.InvalidRequest, await Create(7, "{\"apiVersion\":\"omega/v1\",\"kind\":\"Workload\",\"metadata\":{\"name\":\"x\",\"tenant\":\"default\"},\"spec\":{\"replicas\":-1,\"resources\":{\"cpuMillis\":1}}}"));
        Assert.Equal(ErrorCode.ObjectTooLarge, await Create(8, "{\"kind\":\"Workload\",\"pad\":\"" + new string('x', 5000) + "\"}"));
        // The object field of the wrong MessagePack type: the body itself is malformed.
        await raw.SendAsync(RawClient.Frame((byte)MessageType.CreateObject, 9, [0x81, 0x00, 0x2a]));
        Assert.Equal(ErrorCode.MalformedBody, (await raw.ReadErrorAsync())!.Value.Code);
        // Watch requests that cannot name a watch, lists out of range.
        await raw.SendAsync(0, new WatchObjects { FromResourceVersion = 0 });
        Assert.Equal(ErrorCode.InvalidRequest, (await raw.ReadErrorAsync())!.Value.Code);
        await raw.SendAsync(10, new WatchObjects { FromResourceVersion = fx.Cell.Version + 100 });
        Assert.Equal(ErrorCode.InvalidRequest, (await raw.ReadErrorAsync())!.Value.Code);
        await raw.SendAsync(11, new ListObjects { Limit = 20_000, Kind = "", Tenant = "", Continue = "" });
        Assert.Equal(ErrorCode.InvalidRequest, (await raw.ReadErrorAsync())!.Value.Code);
        await raw.SendAsync(12, new GetObject { Kind = "Workload", Tenant = "default", Name = "nothing" });
        Assert.Equal(ErrorCode.ObjectNotFound, (await raw.ReadErrorAsync())!.Value.Code);
        // An agent may not touch objects.
        using (var agent = await RawClient.ConnectAsync(fx.EndPoint))
        {
            await agent.HandshakeAsync(PeerRole.Agent);
            await agent.SendAsync(2, new GetObject { Kind = "Workload", Tenant = "default", Name = "x" });
            Assert.Equal(ErrorCode.WrongRole, (await agent.ReadErrorAsync())!.Value.Code);
        }

        // The same connection still works, and nothing was stored by the refusals.
        var valid = ObjectCodecBytes(NewWorkload("ok"));
        await raw.SendAsync(13, new CreateObject { Body = new ObjectWrite { Object = valid } });
        var reply = await raw.ExpectAsync<ObjectReply>();
        Assert.True(reply.ResourceVersion > 0);
        Assert.Equal(1, store.Count);
        await using var other = await ControlClient.ConnectAsync(fx.EndPoint);
        Assert.Single((await other.ListAsync()).Items);
        Assert.Equal(1, fx.Server.TransportMetrics.ErrorsSent(ErrorCode.ObjectTooLarge));
    }

    private static byte[] ObjectCodecBytes(ApiObject o) => ObjectCodec.Serialize(o);

    [Fact]
    public async Task A_watcher_that_does_not_read_is_cut_off_with_WatchTooSlow_and_resumes_without_gaps()
    {
        var (fx, store) = Start(new ObjectStoreOptions { HistoryCapacity = 128, MaxWatcherLag = 8 }, configure: o =>
        {
            o.MaxWatchBufferBytes = 64 * 1024;
            o.Transport.SocketBufferSize = 4096; // small kernel buffers: the server's queue grows as soon as the peer stops reading
        });
        await using var fixture = fx;
        using var storeScope = store;
        using var raw = await RawClient.ConnectAsync(fx.EndPoint, receiveBuffer: 4096);
        await raw.HandshakeAsync(PeerRole.Scheduler);
        long from = fx.Cell.Version;
        await raw.SendAsync(7, new WatchObjects { FromResourceVersion = from, Kind = "", Tenant = "" });

        await using var writer = await ControlClient.ConnectAsync(fx.EndPoint);
        var acked = new List<long>();
        for (int i = 0; i < 60; i++)
        {
            var w = NewWorkload($"w{i}");
            w.Metadata.Labels["pad"] = new string('p', 8000);
            acked.Add((await writer.CreateAsync(w)).Metadata.ResourceVersion);
        }
        await Wait.UntilAsync(() => fx.Server.TransportMetrics.ErrorsSent(ErrorCode.WatchTooSlow) == 1, "the slow watch cut off");

        // Now read: the events sent before the cut, then the typed error for the watch's id; the connection is open.
        var seen = new List<long>();
        while (true)
        {
            var f = await raw.ReadFrameAsync();
            Assert.NotNull(f);
            Assert.Equal(7u, f.Value.Rid);
            if (f.Value.Type == MessageType.Error)
            {
                Assert.True(Codec.TryDecode<ErrorMessage>(new ReadOnlySequence<byte>(f.Value.Body), out var err, out _));
                Assert.Equal(ErrorCode.WatchTooSlow, err.Code);
                break;
            }
            Assert.True(Codec.TryDecode<WatchEventMessage>(new ReadOnlySequence<byte>(f.Value.Body), out var ev, out _));
            seen.Add(ev.ResourceVersion);
        }
        Assert.True(seen.Count < acked.Count);
        await raw.SendAsync(8, new WatchObjects { FromResourceVersion = seen.Count == 0 ? from : seen[^1], Kind = "", Tenant = "" });
        while (seen.Count < acked.Count)
        {
            var f = await raw.ReadFrameAsync();
            Assert.NotNull(f);
            Assert.Equal(MessageType.WatchEvent, f.Value.Type);
            Assert.Equal(8u, f.Value.Rid);
            Assert.True(Codec.TryDecode<WatchEventMessage>(new ReadOnlySequence<byte>(f.Value.Body), out var ev, out _));
            seen.Add(ev.ResourceVersion);
        }
        Assert.Equal(acked, seen);

        // StopWatch: answered once, then nothing more for that watch; a second stop finds nothing open.
        await raw.SendAsync(9, new StopWatch { Watch = 8 });
        var stopped = await raw.ExpectAsync<WatchStopped>();
        Assert.True(stopped.Stopped);
        Assert.Equal(acked[^1], stopped.LastResourceVersion);
        await raw.SendAsync(10, new StopWatch { Watch = 8 });
        Assert.False((await raw.ExpectAsync<WatchStopped>()).Stopped);
        Assert.Equal(0, await WaitForWatchers(store, 0));
    }

    [Fact]
    public async Task A_server_without_an_object_store_answers_UnknownMessageType()
    {
        await using var fx = ServerFixture.Start();
        await using var c = await ControlClient.ConnectAsync(fx.EndPoint);
        var e = await Assert.ThrowsAsync<AgentRequestException>(() => c.GetAsync(new ObjectKey(Workload.KindName, "default", "web")));
        Assert.Equal(ErrorCode.UnknownMessageType, e.Code);
        // The connection goes on.
        Assert.False((await c.QueryJobAsync(new JobId(1))).Found);
    }
}
