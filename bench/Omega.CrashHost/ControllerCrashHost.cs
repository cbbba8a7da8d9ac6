using System.Globalization;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.ControlPlane.Controllers;
using Omega.Hosting;

namespace Omega.CrashHost;

/// <summary>
/// The process the controller crash driver kills (<c>controllers-host</c>): Omega's composition root (AddOmega: FASTER
/// store, engine, TCP server, object store, workload controller) on a durable directory and a fixed loopback port, where
/// the driver's agents (in the driver's process: they outlive each kill, as real agents outlive a server crash) report
/// their replicas started, then ready, and re-report after each restart. On start it first <b>verifies</b> the state the previous
/// (killed) run left, once the controllers converge, and prints <c>verified ...</c>; then it runs a seeded stream of
/// workload creates, scales, template changes (rollouts) and deletes through the object store, appending every acknowledged write to the ack file
/// (and printing <c>op N</c>) until it is killed.
/// </summary>
/// <remarks>
/// The checks read the real state (the cell's allocations and the store's objects) after recovery; they are done in the
/// restarted process because the wire API for objects is not here yet, but nothing of the killed process's memory
/// survives into them: only what the store recovered.
/// </remarks>
internal static class ControllerCrashHost
{
    public const string Tenant = "crash";
    public const int Agents = 6;
    public const int MaxWorkloads = 8;
    public const int MaxReplicas = 4; // 8 workloads x 4 replicas x 1 core at most: fits 6 nodes of 8 cores with room

    public static async Task<int> RunAsync(string dir, string ackFile, int port, int seed, int cycle, bool verifyOnly, int convergeSeconds)
    {
        var rng = new Random(seed);
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.Services.AddOmega(o =>
        {
            o.CellName = "controller-crash";
            // The driver's agents present no credential: this host is about workloads across SIGKILL, not about who may
            // connect (credentials across kill -9 have their own test), so authentication stays off explicitly.
            o.Authentication = false;
            o.DataDirectory = dir;
            o.Listen = string.Create(CultureInfo.InvariantCulture, $"127.0.0.1:{port}");
            o.Tenants.Add(Tenant);
            o.BatchWorkers = 1;
            o.ServiceWorkers = 1;
            o.Seed = seed;
            // Checkpoints often, so kills land inside them too.
            o.Storage.CheckpointInterval = TimeSpan.FromMilliseconds(50 + rng.Next(250));
            o.Storage.JournalMemorySizeBits = 24;
            o.Storage.JournalPageSizeBits = 20;
            o.Storage.JournalSegmentSizeBits = 22;
            o.Storage.StoreIndexBuckets = 1 << 14;
            o.Storage.StoreMemorySizeBits = 24;
            o.Storage.StorePageSizeBits = 20;
            o.Storage.StoreSegmentSizeBits = 24;
            // The restarted engine commits only once the killed one's scheduler leases lapse: keep that pause short.
            o.SchedulerLease = TimeSpan.FromSeconds(2);
            o.ControllerRunner.ResyncPeriod = TimeSpan.FromSeconds(2);
            o.WorkloadController.ParkedRetryDelay = TimeSpan.FromSeconds(1);
        });
        using var host = builder.Build();
        await host.StartAsync();
        var runtime = host.Services.GetRequiredService<OmegaRuntime>();
        Console.Out.WriteLine("ready");

        // ------------------------------------------------------------------ verify what the killed run left
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var problems = new List<string>();
        bool converged = false;
        int polls = 0;
        while (clock.Elapsed < TimeSpan.FromSeconds(convergeSeconds))
        {
            // Converged and every invariant checked on one and the same reading: agents re-report readiness after each
            // restart, so a second, later reading could catch a replica between running and ready and call that a
            // violation of a state that had converged.
            problems.Clear();
            if (Check(runtime, ackFile, problems, final: true) && problems.Count == 0) { converged = true; break; }
            if (++polls % 40 == 0)
            {
                // Every 2 s while waiting: what is still missing (diagnostics; the driver prints it with --verbose).
                var why = new List<string>();
                Check(runtime, ackFile, why, final: true);
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"waiting {clock.Elapsed.TotalSeconds:F0}s: {string.Join(" | ", why.Take(3))}"));
            }
            await Task.Delay(50);
        }
        // Not converged: problems holds what the last reading found wrong (the invariants and what is still missing).
        if (!converged) problems.Insert(0, $"not converged within {convergeSeconds} s");
        int workloads = runtime.Objects.List(new ObjectFilter(Workload.KindName)).Items.Count;
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"verified cycle {cycle}: {workloads} workloads, {ReplicaBindings(runtime.Cell).Count} replica bindings, converged in {clock.Elapsed.TotalMilliseconds:F0} ms, violations {problems.Count}{(problems.Count > 0 ? ": " + string.Join(" | ", problems.Take(5)) : "")}"));
        Console.Out.Flush();
        if (verifyOnly || problems.Count > 0)
        {
            await host.StopAsync();
            return problems.Count > 0 ? 1 : 0;
        }

        // ------------------------------------------------------------------ the stream of writes (until killed)
        using var acks = new StreamWriter(new FileStream(ackFile, FileMode.Append, FileAccess.Write, FileShare.Read), System.Text.Encoding.ASCII);
        long op = 0;
        var objects = runtime.Objects;
        while (true)
        {
            var current = objects.List(new ObjectFilter(Workload.KindName)).Items.Cast<Workload>().Where(w => w.Metadata.DeletionTimestamp is null).ToList();
            int pick = rng.Next(100);
            if (current.Count < 2 || (pick < 35 && current.Count < MaxWorkloads))
            {
                string name = string.Create(CultureInfo.InvariantCulture, $"w{cycle}-{op}");
                int replicas = 1 + rng.Next(MaxReplicas);
                var r = await objects.CreateAsync(new Workload
                {
                    Metadata = new ObjectMeta { Name = name, Tenant = Tenant },
                    Spec = new WorkloadSpec { Replicas = replicas, MaxUnavailable = 1 + rng.Next(2), Resources = new ResourceRequest { CpuMillis = 500 + 250 * rng.Next(3), MemoryBytes = 1L << 30 }, Scheduler = rng.Next(2) == 0 ? "batch" : "service" },
                });
                if (r.IsOk) Ack(acks, $"C {name} {r.Object!.Metadata.Generation} {replicas}");
            }
            else if (pick < 80)
            {
                var w = current[rng.Next(current.Count)];
                // A third of the updates change the template (a rollout: every replica is replaced within maxSurge), the
                // others the replica count.
                if (rng.Next(3) == 0) w.Spec.Resources.CpuMillis = 500 + 250 * rng.Next(3);
                else w.Spec.Replicas = rng.Next(MaxReplicas + 1);
                var r = await objects.UpdateAsync(w);
                if (r.IsOk) Ack(acks, $"S {w.Metadata.Name} {r.Object!.Metadata.Generation} {w.Spec.Replicas}");
            }
            else
            {
                var w = current[rng.Next(current.Count)];
                Ack(acks, $"d {w.Metadata.Name}"); // from here on the workload may legitimately be gone
                var r = await objects.DeleteAsync(w.Key);
                if (r.IsOk) Ack(acks, $"D {w.Metadata.Name}");
            }
            op++;
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"op {op}"));
            await Task.Delay(5 + rng.Next(40));
        }
    }

    private static void Ack(StreamWriter acks, string line)
    {
        acks.Write(line);
        acks.Write('\n');
        acks.Flush(); // to the OS: survives SIGKILL of this process
    }

    private static List<Allocation> ReplicaBindings(Cell cell) => cell.GetAllocations().Where(a => (a.Task.Job.Value & WorkloadController.JobIdSpace) != 0).ToList();

    /// <summary>
    /// True when every workload has converged (deleted ones gone; the others at their spec, observedGeneration caught
    /// up, every replica bound and ready). With <paramref name="final"/>, records every invariant violation instead.
    /// </summary>
    private static bool Check(OmegaRuntime runtime, string ackFile, List<string> problems, bool final)
    {
        var cell = runtime.Cell;
        var all = runtime.Objects.List(new ObjectFilter(Workload.KindName), 10_000).Items.Cast<Workload>().ToList();
        var byUid = all.ToDictionary(w => w.Metadata.Uid);
        bool converged = true;
        foreach (var w in all)
        {
            var s = w.Status;
            if (w.Metadata.DeletionTimestamp is not null) { converged = false; if (final) problems.Add($"{w.Metadata.Name} still terminating"); continue; }
            if (s.ObservedGeneration != w.Metadata.Generation || s.Desired != w.Spec.Replicas || s.Bound != w.Spec.Replicas || s.Ready != w.Spec.Replicas || s.Retired.Count > 0)
            {
                converged = false;
                if (final) problems.Add($"{w.Metadata.Name}: generation {w.Metadata.Generation} observed {s.ObservedGeneration}, replicas {w.Spec.Replicas} desired {s.Desired} bound {s.Bound} ready {s.Ready} retired {s.Retired.Count} pending {s.PendingReason} serial {s.NextSerial}");
            }
            // Rollouts finish: every replica runs the target template, which is the spec's (the deadline is far away).
            if (s.Rollout.Phase != RolloutPhases.Complete || s.Replicas.Exists(r => r.Revision != s.Rollout.Revision)
                || RolloutController.Find(s, s.Rollout.Revision) is not { } t || t.Spec.Resources.CpuMillis != w.Spec.Resources.CpuMillis)
            {
                converged = false;
                if (final) problems.Add($"{w.Metadata.Name}: rollout {s.Rollout.Phase} revision {s.Rollout.Revision} stable {s.Rollout.StableRevision}, replica revisions {string.Join(",", s.Replicas.Select(r => r.Revision))}, spec cpu {w.Spec.Resources.CpuMillis}");
            }
        }
        // Bindings: one per live replica slot, none for a retired serial or a workload that is gone.
        var perWorkload = new Dictionary<long, int>();
        foreach (var a in ReplicaBindings(cell))
        {
            long uid = (a.Task.Job.Value & ~WorkloadController.JobIdSpace) >> WorkloadController.SerialBits;
            int serial = (int)(a.Task.Job.Value & ((1 << WorkloadController.SerialBits) - 1));
            if (!byUid.TryGetValue(uid, out var w)) { converged = false; if (final) problems.Add($"leaked binding {a.Task}: workload uid {uid} is gone"); continue; }
            if (!w.Status.Replicas.Exists(r => r.Serial == serial)) { converged = false; if (final) problems.Add($"binding {a.Task} of {w.Metadata.Name} is for serial {serial}, not a live replica"); continue; }
            if (a.Resources.CpuMillis != w.Spec.Resources.CpuMillis) { converged = false; if (final) problems.Add($"binding {a.Task} of {w.Metadata.Name} holds {a.Resources.CpuMillis}m, the spec asks {w.Spec.Resources.CpuMillis}m"); }
            perWorkload[uid] = perWorkload.GetValueOrDefault(uid) + 1;
        }
        foreach (var w in all)
        {
            if (w.Metadata.DeletionTimestamp is not null) continue;
            if (w.Status.Replicas.Select(r => r.Slot).Distinct().Count() != w.Status.Replicas.Count) { converged = false; if (final) problems.Add($"{w.Metadata.Name}: two serials for one slot"); }
            if (perWorkload.GetValueOrDefault(w.Metadata.Uid) != w.Spec.Replicas) converged = false;
        }
        if (!final) return converged;

        // No capacity leaked or double-counted: the cell's own audit (node totals = sum of bindings, no task bound twice).
        foreach (var p in cell.Audit()) problems.Add("audit: " + p);
        // Every acknowledged write is reflected: an acked create exists unless a delete was issued after it; an acked
        // scale is at or below the current generation; an acked delete is gone.
        var byName = all.ToDictionary(w => w.Metadata.Name, StringComparer.Ordinal);
        var last = new Dictionary<string, (char Op, long Generation)>(StringComparer.Ordinal);
        if (File.Exists(ackFile))
        {
            string text = File.ReadAllText(ackFile);
            int end = text.LastIndexOf('\n');
            if (end > 0)
            {
                foreach (var line in text[..end].Split('\n'))
                {
                    var p = line.Split(' ');
                    if (p.Length < 2) continue;
                    long gen = p.Length > 2 ? long.Parse(p[2], CultureInfo.InvariantCulture) : 0;
                    if (p[0] is "d" or "D" || !last.TryGetValue(p[1], out var prev) || prev.Op is not ('d' or 'D')) last[p[1]] = (p[0][0], gen);
                }
            }
        }
        foreach (var (name, (op, gen)) in last)
        {
            bool exists = byName.TryGetValue(name, out var w);
            if (op == 'D' && exists) problems.Add($"{name}: deletion acknowledged, but it exists");
            if (op is 'C' or 'S' && !exists) problems.Add($"{name}: write acknowledged at generation {gen}, but it is gone");
            if (op is 'C' or 'S' && exists && w!.Metadata.Generation < gen) problems.Add($"{name}: generation {w.Metadata.Generation} below the acknowledged {gen}");
        }
        return converged;
    }
}
