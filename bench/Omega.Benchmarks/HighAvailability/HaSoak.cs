using Omega.Bench.Shared;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Omega.Benchmarks.ControlPlane;
using Omega.Cells;
using Omega.Replication;
using Omega.Storage;

namespace Omega.Benchmarks.HighAvailability;

/// <summary>
/// Issue 16: the high-availability soak. A 3-member etcd (child processes of <c>etcd</c> on loopback ports, in temporary
/// directories, with etcd's DEFAULT 2 GiB space quota; or an existing cluster with <c>--etcd URLS</c>), two replicas in
/// this process (a leader and a standby, each on its own FASTER directory), and <c>--committers</c> closed-loop
/// committers on the leader, each committing transactions of <c>--claims</c> bindings and releasing the previous ones
/// (so the cell stays bounded while the log grows at full rate). The leader trims the log and compacts etcd; this runner
/// defragments each member in turn every <c>--defrag-every</c> seconds. Every 5 s it samples commit latency (durable =
/// committed by etcd), the members' backend size, alarms and the standby's lag. At the end the leader resigns and the
/// standby, promoted, must hold exactly the leader's bindings.
/// If the leader is deposed meanwhile (its session lapsed: a loaded machine), the standby takes over, the committers
/// follow it, the deposed replica restarts as a standby, and the takeover is counted and timed.
/// <code>ha-soak --minutes 10 [--committers 4] [--claims 64] [--defrag-every 60] [--lease-ttl 2] [--etcd URL,URL,URL] [--out DIR]</code>
/// Fails (exit 1) on an etcd alarm, a backend over <c>--max-db-mb</c> (default 1024), or a standby that differs.
/// </summary>
internal static class HaSoak
{
    private sealed record Window(double AtS, long Commits, long Claims, LatencySummary Latency, long MaxDb, long MaxDbInUse, long Lag, bool Defrag, string Alarms);

    public static int Run(string[] args)
    {
        var o = BenchOutput.Options(args);
        double minutes = o.Double("minutes", 10);
        int committers = o.Int("committers", 4), claims = o.Int("claims", 64), defragEvery = o.Int("defrag-every", 60), maxDbMb = o.Int("max-db-mb", 1024), ttl = o.Int("lease-ttl", 2);
        string outDir = o.GetValueOrDefault("out") ?? Path.Combine(Path.GetTempPath(), "omega-ha-soak");
        Directory.CreateDirectory(outDir);
        var facts = BenchOutput.Environment("ha-soak");
        string root = Path.Combine(Path.GetTempPath(), "omega-ha-soak-" + Guid.NewGuid().ToString("N")[..8]);
        using var etcd = o.TryGetValue("etcd", out var urls) ? null : EtcdLauncher.Start(EtcdLauncher.FindBinary(), Path.Combine(root, "etcd"), 3, "s");
        etcd?.WaitHealthyAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult(); // the runner's main thread, not the pool
        var endpoints = etcd?.Endpoints ?? urls!.Split(',', StringSplitOptions.RemoveEmptyEntries);
        Console.WriteLine($"etcd: {string.Join(",", endpoints)}{(etcd is null ? " (given)" : " (3 children, default quota)")}; {committers} committers x {claims} claims; defrag every {defragEvery} s; {minutes} min");
        try
        {
            return RunAsync(endpoints, root, minutes, committers, claims, defragEvery, maxDbMb, ttl, outDir, facts).GetAwaiter().GetResult();
        }
        finally
        {
            try
            {
                Directory.Delete(root, true);
            }
            catch (IOException)
            {
                // best effort
            }
        }
    }

    private static ReplicationOptions Replica(IReadOnlyList<string> endpoints, string name, string cluster, int ttl, int port)
    {
        // The advertised address is where this replica serves snapshots while it leads (ServeSnapshots): a standby
        // beyond the lag bound, or behind the trimmed log, bootstraps from it.
        var r = new ReplicationOptions
        {
            Cluster = cluster, ReplicaName = name, AdvertiseAddress = $"127.0.0.1:{port}", LeaseTtlSeconds = ttl,
            TrimInterval = TimeSpan.FromSeconds(2), CompactionInterval = TimeSpan.FromSeconds(10), RetainEntries = 200, MaxRetainEntries = 1000,
        };
        foreach (var e in endpoints) r.Endpoints.Add(e);
        return r;
    }

    /// <summary>The two replicas; the leader's store; a generation that changes at every takeover.</summary>
    private sealed class Pair
    {
        public readonly Lock Gate = new();
        public ReplicaNode[] Nodes = new ReplicaNode[2];
        public int LeaderIndex;
        public ICellStore Leader = null!;
        public int Generation;
        public readonly List<double> TakeoverMs = new();

        public (ICellStore Store, int Generation) Current
        {
            get
            {
                lock (Gate) return (Leader, Generation);
            }
        }
    }

    private static async Task<int> RunAsync(IReadOnlyList<string> endpoints, string root, double minutes, int committers, int claims, int defragEvery, int maxDbMb, int ttl, string outDir, Dictionary<string, object> facts)
    {
        string cluster = "soak" + Guid.NewGuid().ToString("N")[..6];
        var ports = EtcdLauncher.FreePorts(2);
        ReplicaNode NewNode(int i) => new(Replica(endpoints, i == 0 ? "a" : "b", cluster, ttl, ports[i]), new StorageOptions { DataDirectory = Path.Combine(root, i == 0 ? "a" : "b") });
        var pair = new Pair();
        var servers = new Omega.Server.OmegaServer?[2];
        // The leader's Omega server, for snapshots only (the committers are in process): no authentication on loopback.
        void ServeSnapshots(int i, ReplicaNode node, ICellStore store)
        {
            var server = new Omega.Server.OmegaServer(store.Cell, null, new IPEndPoint(IPAddress.Loopback, ports[i]), new Omega.Server.ServerOptions
            {
                Name = node.Name, Leadership = node.Gate, Snapshots = new ReplicaSnapshotSource(node.Store), Publisher = null, LifecyclePeriod = null,
            });
            server.Start();
            servers[i] = server;
        }
        pair.Nodes[0] = NewNode(0);
        await pair.Nodes[0].StartAsync();
        pair.Leader = await pair.Nodes[0].Leadership.WaitAsync(TimeSpan.FromSeconds(60));
        ServeSnapshots(0, pair.Nodes[0], pair.Leader);
        pair.Nodes[1] = NewNode(1);
        await pair.Nodes[1].StartAsync();

        var cell0 = pair.Leader.Cell;
        var nodes = new NodeId[64];
        for (int i = 0; i < nodes.Length; i++) nodes[i] = cell0.AddNode(new NodeSpec($"n{i}", new ResourceVector(1L << 40, 1L << 50)));
        var window = new LatencyRecorder();
        var all = new LatencyRecorder();
        var defragWindow = new LatencyRecorder();
        long commits = 0, claimCount = 0, refused = 0;
        int defragging = 0;
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(minutes));

        // A takeover (the leader deposed: its session lapsed under load, say): the other replica leads once caught up;
        // the deposed one restarts as a standby from its own directory, as a supervisor would restart omega serve.
        var supervisor = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                var deposed = pair.Nodes[pair.LeaderIndex];
                var fired = new TaskCompletionSource();
                using (deposed.Deposed.Register(() => fired.TrySetResult()))
                using (stop.Token.Register(() => fired.TrySetResult()))
                    await fired.Task;
                if (stop.IsCancellationRequested) return;
                var clock = Stopwatch.StartNew();
                int other = 1 - pair.LeaderIndex;
                var store = await pair.Nodes[other].Leadership.WaitAsync(TimeSpan.FromSeconds(60));
                double ms = clock.Elapsed.TotalMilliseconds;
                ICellStore old;
                lock (pair.Gate)
                {
                    old = pair.Leader;
                    pair.Leader = store;
                    pair.LeaderIndex = other;
                    pair.Generation++;
                    pair.TakeoverMs.Add(ms);
                }
                Console.WriteLine($"  TAKEOVER: {(other == 0 ? "a" : "b")} leads {ms:0} ms after the deposition; restarting the deposed replica as a standby");
                if (servers[1 - other] is { } oldServer) await oldServer.DisposeAsync();
                servers[1 - other] = null;
                ServeSnapshots(other, pair.Nodes[other], store);
                await deposed.DisposeAsync();
                old.Dispose();
                var fresh = NewNode(1 - other);
                await fresh.StartAsync();
                pair.Nodes[1 - other] = fresh;
            }
        });
        var workers = new Task[committers];
        for (int w = 0; w < committers; w++)
        {
            int id = w;
            workers[w] = Task.Run(async () =>
            {
                int gen = -1;
                ICellStore store = null!;
                SchedulerLease lease = default;
                var previous = new List<TaskId>(claims);
                long job = (long)id << 40;
                var rng = new Random(id);
                while (!stop.IsCancellationRequested)
                {
                    var (cur, g) = pair.Current;
                    if (g != gen)
                    {
                        store = cur;
                        gen = g;
                        previous.Clear();
                        var acquired = store.Cell.AcquireLease($"soak-{id}-{g}", TimeSpan.FromHours(1));
                        if (acquired.Status != LeaseStatus.Granted)
                        {
                            await Task.Delay(10);
                            gen = -1;
                            continue;
                        }
                        lease = acquired.Lease;
                    }
                    var tx = new Transaction(lease);
                    var these = new List<TaskId>(claims);
                    for (int c = 0; c < claims; c++)
                    {
                        var t = new TaskId(job, c);
                        tx.Add(new Claim(t, nodes[rng.Next(nodes.Length)], new ResourceVector(10, 1 << 20), 0));
                        these.Add(t);
                    }
                    job++;
                    long start = Stopwatch.GetTimestamp();
                    CommitResult r;
                    try
                    {
                        r = await store.CommitDurableAsync(tx);
                    }
                    catch (IOException)
                    {
                        // Not acknowledged (the leader was deposed): wait for the next one.
                        Interlocked.Increment(ref refused);
                        while (pair.Current.Generation == gen && !stop.IsCancellationRequested) await Task.Delay(20);
                        continue;
                    }
                    long ticks = Stopwatch.GetTimestamp() - start;
                    window.AddTicks(ticks);
                    all.AddTicks(ticks);
                    if (Volatile.Read(ref defragging) != 0) defragWindow.AddTicks(ticks);
                    Interlocked.Increment(ref commits);
                    Interlocked.Add(ref claimCount, r.AppliedCount);
                    foreach (var t in previous) store.Cell.Release(t);
                    previous = these;
                }
            });
        }
        var defrags = new List<(string Endpoint, double Ms)>();
        var defragger = Task.Run(async () =>
        {
            int next = 0;
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(defragEvery), stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                string ep = endpoints[next++ % endpoints.Count];
                Volatile.Write(ref defragging, 1);
                // Never the raft leader (its stall would hold every lease renewal): leadership moves away first.
                var took = await EtcdMaintenance.DefragmentMemberAsync(endpoints, ep);
                Volatile.Write(ref defragging, 0);
                lock (defrags) defrags.Add((ep, took.TotalMilliseconds));
                Console.WriteLine($"  defragmented {ep} in {took.TotalMilliseconds:0} ms");
            }
        });
        var windows = new List<Window>();
        var clock = Stopwatch.StartNew();
        long lastCommits = 0, lastClaims = 0;
        bool alarm = false;
        long maxDb = 0;
        Console.WriteLine("   t s  commits/s   claims/s   p50 ms   p99 ms   max ms   db MB  in-use MB  standby lag  defrag  alarms");
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(5), stop.Token);
            }
            catch (OperationCanceledException)
            {
                // the last window
            }
            var lat = window.Summarize();
            window = new LatencyRecorder();
            long dbMax = 0, inUseMax = 0;
            var alarms = new List<string>();
            foreach (var ep in endpoints)
            {
                var s = await EtcdMaintenance.StatusAsync(ep);
                dbMax = Math.Max(dbMax, s.DbSize);
                inUseMax = Math.Max(inUseMax, s.DbSizeInUse);
                foreach (var al in s.Alarms) if (!alarms.Contains(al)) alarms.Add(al);
            }
            alarm |= alarms.Count > 0;
            maxDb = Math.Max(maxDb, dbMax);
            long c = Interlocked.Read(ref commits), cl = Interlocked.Read(ref claimCount);
            double dt = 5;
            long lag;
            lock (pair.Gate)
            {
                var standby = pair.Nodes[1 - pair.LeaderIndex];
                lag = pair.Leader.DurableSequence - (standby.Leadership.IsCompleted ? pair.Leader.DurableSequence : SafeApplied(standby));
            }
            var wnd = new Window(clock.Elapsed.TotalSeconds, c - lastCommits, cl - lastClaims, lat, dbMax, inUseMax, lag, Volatile.Read(ref defragging) != 0, string.Join(";", alarms));
            windows.Add(wnd);
            lastCommits = c;
            lastClaims = cl;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{wnd.AtS,6:0}  {wnd.Commits / dt,9:0}  {wnd.Claims / dt,9:0}  {lat.Ms(lat.P50Us),7}  {lat.Ms(lat.P99Us),7}  {lat.Ms(lat.MaxUs),7}  {dbMax / 1048576.0,6:0.0}  {inUseMax / 1048576.0,9:0.0}  {wnd.Lag,11}  {(wnd.Defrag ? "yes" : ""),6}  {wnd.Alarms}"));
        }
        await Task.WhenAll(workers);
        await defragger;
        await supervisor;

        // The end check: the standby catches up, the leader resigns, and the promoted standby holds exactly the leader's bindings.
        var leaderNode = pair.Nodes[pair.LeaderIndex];
        var standbyNode = pair.Nodes[1 - pair.LeaderIndex];
        var leader = pair.Leader;
        // The committers' last releases are cell changes no one awaited: make them durable (in etcd) before comparing, or
        // the resignation below refuses the group holding them and the standby rightly lacks them (a false DIFFERENT).
        await leader.WaitForDurableAsync(leader.Cell.JournalSequence).AsTask().WaitAsync(TimeSpan.FromSeconds(60));
        var catchUp = Stopwatch.StartNew();
        while (SafeApplied(standbyNode) < leader.DurableSequence && catchUp.Elapsed < TimeSpan.FromSeconds(60)) await Task.Delay(50);
        int leaderBindings = leader.Cell.AllocationCount;
        long leaderVersion = leader.Cell.Version;
        await leaderNode.ResignAsync();
        var promoted = await standbyNode.Leadership.WaitAsync(TimeSpan.FromSeconds(30));
        bool same = promoted.Cell.AllocationCount == leaderBindings && promoted.Cell.Version == leaderVersion;
        foreach (var server in servers)
            if (server is not null) await server.DisposeAsync();
        Console.WriteLine($"standby snapshots installed (the last standby): {standbyNode.SnapshotsInstalled} (a standby beyond the lag bound of {Replica(endpoints, "x", cluster, ttl, 1).MaxStandbyLagRecords:N0} records bootstraps from the leader's snapshot)");
        var total = all.Summarize();
        var during = defragWindow.Summarize();
        Console.WriteLine($"commits {commits:N0} ({claimCount:N0} bindings) in {clock.Elapsed.TotalSeconds:0} s: {commits / clock.Elapsed.TotalSeconds:0} commits/s, {claimCount / clock.Elapsed.TotalSeconds:0} bindings/s; {refused} not acknowledged at depositions");
        Console.WriteLine($"commit latency (durable in etcd): {total.Human}; during defragmentations: {during.Human}");
        Console.WriteLine($"etcd backend max {maxDb / 1048576.0:0.0} MB (limit for this run {maxDbMb} MB); alarms: {(alarm ? "YES" : "none")}; defrags {defrags.Count} (max {(defrags.Count > 0 ? defrags.Max(d => d.Ms) : 0):0} ms)");
        Console.WriteLine($"takeovers during the soak: {pair.TakeoverMs.Count}{(pair.TakeoverMs.Count > 0 ? $" (max {pair.TakeoverMs.Max():0} ms after the deposition)" : "")}");
        Console.WriteLine($"standby after the final takeover: {promoted.Cell.AllocationCount:N0} bindings at v{promoted.Cell.Version:N0}; leader had {leaderBindings:N0} at v{leaderVersion:N0}: {(same ? "identical" : "DIFFERENT")}");
        string csv = Path.Combine(outDir, "ha-soak.csv");
        await File.WriteAllLinesAsync(csv, windows.Select(w => string.Create(CultureInfo.InvariantCulture,
            $"{w.AtS:0},{w.Commits},{w.Claims},{w.Latency.P50Us},{w.Latency.P99Us},{w.Latency.MaxUs},{w.MaxDb},{w.MaxDbInUse},{w.Lag},{(w.Defrag ? 1 : 0)},{w.Alarms}"))
            .Prepend("t_s,commits,claims,p50_us,p99_us,max_us,db_bytes,db_in_use_bytes,standby_lag_records,defrag,alarms"));
        Console.WriteLine($"windows: {csv}");
        facts["minutes"] = minutes;
        facts["commits"] = commits;
        facts["bindings"] = claimCount;
        facts["commit_latency"] = total.Json;
        facts["commit_latency_during_defrag"] = during.Json;
        facts["etcd_db_max_bytes"] = maxDb;
        facts["alarm"] = alarm;
        facts["defrags"] = defrags.Count;
        facts["takeovers"] = pair.TakeoverMs.Count;
        facts["standby_identical"] = same;
        BenchOutput.Json(facts);
        promoted.Dispose();
        leader.Dispose();
        await leaderNode.DisposeAsync();
        await standbyNode.DisposeAsync();
        return !alarm && maxDb <= (long)maxDbMb << 20 && same ? 0 : 1;
    }

    private static long SafeApplied(ReplicaNode n)
    {
        try
        {
            return n.Store.AppliedSequence;
        }
        catch (InvalidOperationException)
        {
            return 0; // not started yet
        }
    }
}
