using System.Text;
using Microsoft.Extensions.Time.Testing;
using Omega.Cells;

namespace Omega.ControlPlane.Tests;

public class ObjectStoreTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Generation_moves_only_on_spec_changes_and_resourceVersion_is_the_cell_version()
    {
        using var cell = new Cell();
        using var store = new ObjectStore(cell);
        var created = await store.CreateAsync(Objects.Workload("web"));
        Assert.True(created.IsOk, created.Message);
        var w = (Workload)created.Object!;
        Assert.Equal(1, w.Metadata.Generation);
        Assert.Equal(cell.Version, w.Metadata.ResourceVersion);
        Assert.Equal(w.Metadata.ResourceVersion, w.Metadata.Uid);

        // A label change: new resourceVersion, same generation.
        w.Metadata.Labels["app"] = "web";
        var labelled = (Workload)(await store.UpdateAsync(w)).Object!;
        Assert.Equal(1, labelled.Metadata.Generation);
        Assert.True(labelled.Metadata.ResourceVersion > w.Metadata.ResourceVersion);

        // A status write: never a generation bump, and the spec it carries is ignored.
        labelled.Status.Ready = 2;
        labelled.Spec.Replicas = 99;
        var st = (Workload)(await store.UpdateStatusAsync(labelled)).Object!;
        Assert.Equal(1, st.Metadata.Generation);
        Assert.Equal(3, st.Spec.Replicas);
        Assert.Equal(2, st.Status.Ready);

        // A spec change bumps it, keeps the status, and keeps the uid.
        st.Spec.Replicas = 5;
        st.Status.Ready = 0;
        var scaled = (Workload)(await store.UpdateAsync(st)).Object!;
        Assert.Equal(2, scaled.Metadata.Generation);
        Assert.Equal(2, scaled.Status.Ready);
        Assert.Equal(w.Metadata.Uid, scaled.Metadata.Uid);

        // The same spec again: no write at all (no resourceVersion churn).
        var again = (Workload)(await store.UpdateAsync(scaled)).Object!;
        Assert.Equal(scaled.Metadata.ResourceVersion, again.Metadata.ResourceVersion);
        Assert.Equal(2, again.Metadata.Generation);
    }

    [Fact]
    public void Conditions_change_their_transition_time_only_when_the_status_flips()
    {
        var t0 = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        var list = new List<Condition>();
        Assert.True(Conditions.Set(list, "Available", ConditionStatus.False, "ReplicasUnavailable", "0 of 3", 1, t0));
        Assert.True(Conditions.Set(list, "Available", ConditionStatus.False, "ReplicasUnavailable", "1 of 3", 2, t0.AddSeconds(5)));
        Assert.Equal(t0, list[0].LastTransitionTime);
        Assert.Equal(2, list[0].ObservedGeneration);
        Assert.False(Conditions.Set(list, "Available", ConditionStatus.False, "ReplicasUnavailable", "1 of 3", 2, t0.AddSeconds(6)));
        Assert.True(Conditions.Set(list, "Available", ConditionStatus.True, "MinimumReplicasAvailable", "3 of 3", 2, t0.AddSeconds(9)));
        Assert.Equal(t0.AddSeconds(9), list[0].LastTransitionTime);
        Assert.Single(list);
        Assert.True(Conditions.IsTrue(list, "Available"));
    }

    [Fact]
    public async Task Two_writers_with_the_same_resourceVersion_one_wins_one_gets_Conflict()
    {
        using var cell = new Cell();
        using var store = new ObjectStore(cell);
        await store.CreateAsync(Objects.Workload("web"));
        var a = (Workload)store.Get(new ObjectKey("Workload", "t1", "web")).Object!;
        var b = (Workload)store.Get(new ObjectKey("Workload", "t1", "web")).Object!;
        a.Spec.Replicas = 4;
        b.Spec.Replicas = 7;
        var ra = await store.UpdateAsync(a);
        var rb = await store.UpdateAsync(b);
        Assert.Equal(ObjectStatus.Ok, ra.Status);
        Assert.Equal(ObjectStatus.Conflict, rb.Status);
        Assert.Equal(1, store.Rejections(ObjectStatus.Conflict));
        Assert.Equal(4, store.Get<Workload>("t1", "web")!.Spec.Replicas);
        // A stale delete is refused too; create of an existing key is AlreadyExists.
        Assert.Equal(ObjectStatus.Conflict, (await store.DeleteAsync(a.Key, b.Metadata.ResourceVersion)).Status);
        Assert.Equal(ObjectStatus.AlreadyExists, (await store.CreateAsync(Objects.Workload("web"))).Status);
        // The cell's own compare-and-set refuses a write that skipped the store's check.
        Assert.Equal(ObjectWriteStatus.VersionMismatch, cell.PutObject(a.Key.ToString(), "{}"u8, b.Metadata.ResourceVersion, out _, out _));
    }

    [Fact]
    public async Task Invalid_and_oversized_objects_get_typed_errors()
    {
        using var cell = new Cell();
        using var store = new ObjectStore(cell, new ObjectStoreOptions { MaxObjectBytes = 2048, MaxObjects = 2 });
        var bad = Objects.Workload("Bad_Name");
        Assert.Equal(ObjectStatus.Invalid, (await store.CreateAsync(bad)).Status);
        var neg = Objects.Workload("neg", replicas: -1);
        Assert.Equal(ObjectStatus.Invalid, (await store.CreateAsync(neg)).Status);
        var big = Objects.Workload("big");
        for (int i = 0; i < 200; i++) big.Metadata.Labels[$"k{i}"] = new string('x', 20);
        Assert.Equal(ObjectStatus.Invalid, (await store.CreateAsync(big)).Status); // > 64 labels
        var large = Objects.Workload("large");
        large.Spec.NodeSelector["k"] = new string('x', 4000);
        Assert.Equal(ObjectStatus.TooLarge, (await store.CreateAsync(large)).Status);
        Assert.True((await store.CreateAsync(Objects.Workload("a"))).IsOk);
        Assert.True((await store.CreateAsync(Objects.Workload("b"))).IsOk);
        Assert.Equal(ObjectStatus.TooManyObjects, (await store.CreateAsync(Objects.Workload("c"))).Status);
        Assert.Null(ObjectCodec.Deserialize("{\"kind\":\"Nope\"}"u8, out var err));
        Assert.Contains("unknown kind", err);
    }

    [Fact]
    public async Task Finalizers_block_deletion_until_removed()
    {
        using var cell = new Cell();
        using var store = new ObjectStore(cell);
        var w = Objects.Workload("web");
        w.Metadata.Finalizers.Add("test/cleanup");
        var created = (Workload)(await store.CreateAsync(w)).Object!;
        var del = await store.DeleteAsync(created.Key);
        Assert.True(del.IsOk);
        Assert.False(del.Removed);
        var terminating = store.Get<Workload>("t1", "web")!;
        Assert.NotNull(terminating.Metadata.DeletionTimestamp);
        // The spec is frozen while terminating.
        terminating.Spec.Replicas = 9;
        Assert.Equal(ObjectStatus.Terminating, (await store.UpdateAsync(terminating)).Status);
        terminating = store.Get<Workload>("t1", "web")!;
        terminating.Metadata.Finalizers.Clear();
        var last = await store.UpdateAsync(terminating);
        Assert.True(last.IsOk);
        Assert.True(last.Removed);
        Assert.Equal(ObjectStatus.NotFound, store.Get(created.Key).Status);
        Assert.Equal(0, cell.ObjectCount);
    }

    [Fact]
    public async Task Watch_resumes_from_a_resourceVersion_with_nothing_lost_or_repeated()
    {
        using var cell = new Cell();
        using var store = new ObjectStore(cell);
        var list = store.List(new ObjectFilter(Workload.KindName));
        Assert.Equal(WatchStatus.Ok, store.Watch(list.ResourceVersion, new ObjectFilter(Workload.KindName), out var watcher));
        var seen = new List<long>();
        for (int i = 0; i < 10; i++) await store.CreateAsync(Objects.Workload($"w{i}"));
        for (int i = 0; i < 4; i++) seen.Add((await watcher!.ReadAsync().AsTask().WaitAsync(Timeout))!.ResourceVersion);
        long resumeFrom = watcher!.LastResourceVersion;
        watcher.Dispose(); // the "disconnect"
        for (int i = 10; i < 15; i++) await store.CreateAsync(Objects.Workload($"w{i}"));
        cell.AddNode(new NodeSpec("n1", ResourceVector.FromCoresAndGiB(4, 8))); // a cell change between object versions
        await store.DeleteAsync(new ObjectKey("Workload", "t1", "w0"));

        Assert.Equal(WatchStatus.Ok, store.Watch(resumeFrom, new ObjectFilter(Workload.KindName), out var resumed));
        var types = new List<WatchEventType>();
        while (seen.Count < 16)
        {
            var ev = (await resumed!.ReadAsync().AsTask().WaitAsync(Timeout))!;
            seen.Add(ev.ResourceVersion);
            types.Add(ev.Type);
        }
        Assert.Equal(16, seen.Distinct().Count());
        Assert.Equal(seen.Order(), seen);
        Assert.Equal(WatchEventType.Deleted, types[^1]);
        Assert.Equal("w0", resumed!.LastResourceVersion == seen[^1] ? "w0" : "?");
    }

    [Fact]
    public async Task After_a_reopen_the_list_version_is_watchable_even_when_cell_changes_followed_the_last_object_write()
    {
        using var cell = new Cell();
        using (var first = new ObjectStore(cell))
            Assert.True((await first.CreateAsync(Objects.Workload("web"))).IsOk);
        // Cell changes after the last object write, then a reopen (what a restart does): the history floor is the cell
        // version, above the last object write. Listing at the last write's version would make every watch Expired.
        cell.AddNode(new NodeSpec("n1", ResourceVector.FromCoresAndGiB(4, 8)));
        using var store = new ObjectStore(cell);
        var list = store.List(new ObjectFilter(Workload.KindName));
        Assert.Single(list.Items);
        Assert.Equal(WatchStatus.Ok, store.Watch(list.ResourceVersion, new ObjectFilter(Workload.KindName), out var watcher));
        using (watcher)
        {
            var created = await store.CreateAsync(Objects.Workload("api"));
            var ev = await watcher!.ReadAsync().AsTask().WaitAsync(Timeout);
            Assert.Equal(created.ResourceVersion, ev!.ResourceVersion);
        }
    }

    [Fact]
    public async Task A_watch_from_before_the_history_window_is_Expired()
    {
        using var cell = new Cell();
        using var store = new ObjectStore(cell, new ObjectStoreOptions { HistoryCapacity = 8, MaxWatcherLag = 8 });
        long start = store.ResourceVersion;
        Assert.Equal(WatchStatus.Ok, store.Watch(start, default, out var early));
        early!.Dispose();
        for (int i = 0; i < 20; i++) await store.CreateAsync(Objects.Workload($"w{i}"));
        Assert.Equal(WatchStatus.Expired, store.Watch(start, default, out _));
        Assert.Equal(WatchStatus.Ok, store.Watch(store.HistoryFloor, default, out var ok));
        ok!.Dispose();
        Assert.Equal(WatchStatus.InvalidVersion, store.Watch(cell.Version + 5, default, out _));
    }

    [Fact]
    public async Task A_slow_watcher_is_cut_off_and_resumes_from_its_last_version()
    {
        using var cell = new Cell();
        using var store = new ObjectStore(cell, new ObjectStoreOptions { HistoryCapacity = 64, MaxWatcherLag = 4 });
        Assert.Equal(WatchStatus.Ok, store.Watch(store.ResourceVersion, default, out var slow));
        Assert.Equal(WatchStatus.Ok, store.Watch(store.ResourceVersion, new ObjectFilter(Quota.KindName), out var other));
        for (int i = 0; i < 3; i++) await store.CreateAsync(Objects.Workload($"w{i}"));
        var first = (await slow!.ReadAsync().AsTask().WaitAsync(Timeout))!;
        for (int i = 3; i < 10; i++) await store.CreateAsync(Objects.Workload($"w{i}"));
        Assert.Equal(WatchTermination.TooSlow, slow.Termination);
        Assert.Equal(1, store.WatchersCutOff);
        Assert.Null(await slow.ReadAsync().AsTask().WaitAsync(Timeout));
        // A watcher filtered to another kind did not fall behind on events it never reads.
        Assert.Equal(WatchTermination.None, other!.Termination);
        Assert.Equal(first.ResourceVersion, slow.LastResourceVersion);
        Assert.Equal(WatchStatus.Ok, store.Watch(slow.LastResourceVersion, default, out var resumed));
        var names = new List<string>();
        for (int i = 0; i < 9; i++) names.Add((await resumed!.ReadAsync().AsTask().WaitAsync(Timeout))!.Key.Name);
        Assert.Equal(Enumerable.Range(1, 9).Select(i => $"w{i}"), names);
    }

    [Fact]
    public async Task Watch_delivers_only_durable_changes()
    {
        using var cell = new Cell();
        var gate = new TaskCompletionSource();
        using var store = new ObjectStore(cell, durability: DurabilityWaiter.From((v, ct) => new ValueTask(gate.Task.WaitAsync(ct))));
        Assert.Equal(WatchStatus.Ok, store.Watch(store.ResourceVersion, default, out var watcher));
        var write = store.CreateAsync(Objects.Workload("web")).AsTask();
        var read = watcher!.ReadAsync().AsTask();
        Assert.False(write.IsCompleted); // not acknowledged before durable
        Assert.False(read.IsCompleted);  // nor shown to a watcher
        gate.SetResult();
        Assert.True((await write.WaitAsync(Timeout)).IsOk);
        Assert.Equal("web", (await read.WaitAsync(Timeout))!.Key.Name);
    }

    [Fact]
    public async Task A_repeated_delete_of_a_terminating_object_is_acknowledged_only_once_the_deletion_is_durable()
    {
        // Found by the deterministic simulation (seed 101, docs/testing.md): a retried delete returned Ok at once for an
        // object whose deletionTimestamp write was not yet durable, so a crash could lose an acknowledged deletion.
        using var cell = new Cell();
        long durable = 0;
        var gates = new List<(long Version, TaskCompletionSource Done)>();
        using var store = new ObjectStore(cell, durability: DurabilityWaiter.From((v, ct) =>
        {
            if (v <= durable) return ValueTask.CompletedTask;
            var g = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (gates) gates.Add((v, g));
            return new ValueTask(g.Task.WaitAsync(ct));
        }));
        void MakeDurable(long v)
        {
            durable = v;
            lock (gates) foreach (var (gv, g) in gates) if (gv <= v) g.TrySetResult();
        }
        var w = Objects.Workload("web");
        w.Metadata.Finalizers.Add("example.com/hold");
        var created = store.CreateAsync(w).AsTask();
        MakeDurable(cell.Version);
        Assert.True((await created.WaitAsync(Timeout)).IsOk);
        var first = store.DeleteAsync(w.Key).AsTask();   // writes the deletionTimestamp: not durable yet
        var retry = store.DeleteAsync(w.Key).AsTask();   // the client's retry: nothing to write, but nothing durable either
        Assert.False(first.IsCompleted);
        Assert.False(retry.IsCompleted);
        MakeDurable(cell.Version);
        var r = await retry.WaitAsync(Timeout);
        Assert.True(r.IsOk);
        Assert.NotNull(r.Object!.Metadata.DeletionTimestamp);
        Assert.True((await first.WaitAsync(Timeout)).IsOk);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Objects_survive_a_reopen_of_a_durable_store(bool checkpoint)
    {
        using var dir = new TempDir();
        long uid, rv;
        using (var cs = dir.Open())
        {
            using var store = new ObjectStore(cs.Cell, durability: TempDir.Durability(cs));
            var w = (Workload)(await store.CreateAsync(Objects.Workload("web"))).Object!;
            await store.CreateAsync(Objects.Workload("gone"));
            w.Spec.Replicas = 6;
            w = (Workload)(await store.UpdateAsync(w)).Object!;
            w.Status.Ready = 4;
            w = (Workload)(await store.UpdateStatusAsync(w)).Object!;
            await store.DeleteAsync(new ObjectKey("Workload", "t1", "gone"));
            var p = new SchedulerPolicy();
            p.Metadata.Name = "default";
            p.Spec.Weights["domain-spread"] = 2.5;
            Assert.True((await store.CreateAsync(p)).IsOk);
            uid = w.Metadata.Uid;
            rv = w.Metadata.ResourceVersion;
            Assert.True(cs.DurableVersion >= rv);
            if (checkpoint)
            {
                await cs.CheckpointAsync();
                var late = store.Get<Workload>("t1", "web")!;
                late.Metadata.Labels["after"] = "checkpoint";
                rv = (await store.UpdateAsync(late)).ResourceVersion; // replayed from the journal on top of the checkpoint
            }
        }
        using (var cs = dir.Open())
        {
            using var store = new ObjectStore(cs.Cell, durability: TempDir.Durability(cs));
            var w = store.Get<Workload>("t1", "web")!;
            Assert.Equal(6, w.Spec.Replicas);
            Assert.Equal(4, w.Status.Ready);
            Assert.Equal(2, w.Metadata.Generation);
            Assert.Equal(uid, w.Metadata.Uid);
            Assert.Equal(rv, w.Metadata.ResourceVersion);
            Assert.Equal(checkpoint ? "checkpoint" : null, w.Metadata.Labels.GetValueOrDefault("after"));
            Assert.Null(store.Get<Workload>("t1", "gone"));
            Assert.Equal(2.5, store.Get<SchedulerPolicy>("", "default")!.Spec.Weights["domain-spread"]);
            Assert.Equal(2, store.Count);
            // The precondition still holds across the restart.
            w.Spec.Replicas = 1;
            w.Metadata.ResourceVersion = rv - 1;
            Assert.Equal(ObjectStatus.Conflict, (await store.UpdateAsync(w)).Status);
            // New writes continue the one total order.
            w.Metadata.ResourceVersion = rv;
            Assert.True((await store.UpdateAsync(w)).ResourceVersion > rv);
        }
    }

    [Fact]
    public void Objects_round_trip_as_kubernetes_shaped_json()
    {
        var w = Objects.Workload("web");
        w.Metadata.Labels["app"] = "web";
        Conditions.Set(w.Status.Conditions, "Available", ConditionStatus.True, "MinimumReplicasAvailable", "", 1, DateTimeOffset.UnixEpoch);
        string json = Encoding.UTF8.GetString(ObjectCodec.Serialize(w));
        Assert.StartsWith("{\"apiVersion\":\"omega/v1\",\"kind\":\"Workload\",\"metadata\":{\"name\":\"web\",\"tenant\":\"t1\"", json);
        Assert.Contains("\"spec\":{\"type\":\"Service\",\"replicas\":3", json);
        Assert.Contains("\"status\":\"True\"", json);
        var back = ObjectCodec.Deserialize<Workload>(Encoding.UTF8.GetBytes(json));
        Assert.Equal(json, Encoding.UTF8.GetString(ObjectCodec.Serialize(back)));
    }
}
