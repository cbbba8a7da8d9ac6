using System.Diagnostics;
using System.Globalization;
using Omega.Cells;
using Omega.Storage;

namespace Omega.CrashHost;

/// <summary>The totals of a crash run.</summary>
internal sealed class CrashSummary
{
    public int Seed;
    public int Cycles;
    public int KillsDuringCheckpoint;
    public long AckedTransactions;
    public long AckedBindingsChecked;
    public long IdempotentRetries;
    public long LostAcknowledgedBindings;
    public long DoubleBindings;
    public long OvercommittedNodes;
    public long IdempotencyMismatches;
    public long AuditProblems;
    public long TornTailWarnings;
    // Issue 15 (compactCheck): opens that recovered from the compact checkpoint, and how many of them differed from a
    // full scan of the same directory.
    public long CompactRecoveries;
    public long CompactScanMismatches;
    public List<double> RecoveryMs = new();
    public List<string> Failures = new();

    public bool Ok => LostAcknowledgedBindings == 0 && DoubleBindings == 0 && OvercommittedNodes == 0 && IdempotencyMismatches == 0 && AuditProblems == 0 && CompactScanMismatches == 0 && Failures.Count == 0;

    public override string ToString()
    {
        var ms = RecoveryMs.OrderBy(x => x).ToList();
        double p50 = ms.Count > 0 ? ms[ms.Count / 2] : 0, max = ms.Count > 0 ? ms[^1] : 0;
        return string.Create(CultureInfo.InvariantCulture,
            $"seed {Seed}: {Cycles} cycles ({KillsDuringCheckpoint} killed while a checkpoint was running), {AckedTransactions} acknowledged transactions, "
            + $"{AckedBindingsChecked} acknowledged-binding checks, {IdempotentRetries} idempotent retries; "
            + $"lost acknowledged bindings {LostAcknowledgedBindings}, double bindings {DoubleBindings}, overcommitted nodes {OvercommittedNodes}, "
            + $"idempotency mismatches {IdempotencyMismatches}, audit problems {AuditProblems}, torn-tail warnings {TornTailWarnings}; "
            + $"compact-checkpoint recoveries {CompactRecoveries} (differing from the full scan: {CompactScanMismatches}); "
            + $"recovery p50 {p50:F0} ms max {max:F0} ms; {(Ok ? "OK" : "FAILED: " + string.Join("; ", Failures.Take(5)))}");
    }
}

/// <summary>
/// Runs the crash harness: starts the host as a child process, kills it with SIGKILL (Process.Kill on Linux) at a random
/// moment — after a random number of acknowledgements, or right as a checkpoint starts — then opens the store itself
/// and checks every invariant against everything the host recorded as acknowledged, over all cycles so far.
/// </summary>
internal sealed class CrashDriver
{
    private readonly string _hostPath;
    private readonly string _workDir;
    private readonly Action<string> _log;
    private readonly bool _ackEarly;
    private readonly bool _compactCheck;

    /// <param name="compactCheck">
    /// Issue 15: before each verification, recover the directory once by the full scan of FasterKV's log
    /// (<see cref="StorageOptions.UseCompactCheckpoint"/> false) and require the compact-checkpoint recovery that is then
    /// verified to produce the same cell; after it, take a checkpoint so the next cycle always has a compact one.
    /// </param>
    public CrashDriver(string hostPath, string workDir, Action<string> log, bool ackEarly = false, bool compactCheck = false)
    {
        _compactCheck = compactCheck;
        _ackEarly = ackEarly;
        _hostPath = hostPath;
        _workDir = workDir;
        _log = log;
    }

    private string DataDir => Path.Combine(_workDir, "data");

    public async Task<CrashSummary> RunAsync(int cycles, int seed, TimeSpan perCycleTimeout)
    {
        Directory.CreateDirectory(_workDir);
        var rng = new Random(seed);
        var summary = new CrashSummary { Seed = seed };
        for (int cycle = 1; cycle <= cycles; cycle++)
        {
            string ackFile = Path.Combine(_workDir, string.Create(CultureInfo.InvariantCulture, $"acks-{cycle}.log"));
            bool atCheckpoint = rng.Next(3) == 0;
            int killAfterAcks = rng.Next(20, 400);
            int checkpointMs = rng.Next(30, 150);
            bool duringCheckpoint = await RunAndKillAsync(cycle, ackFile, rng.Next(), atCheckpoint, killAfterAcks, checkpointMs, perCycleTimeout);
            if (duringCheckpoint) summary.KillsDuringCheckpoint++;
            await VerifyAsync(cycle, summary, rng);
            summary.Cycles = cycle;
            if (cycle % 10 == 0 || cycle == cycles) _log($"cycle {cycle}: {summary}");
            if (!summary.Ok) break;
        }
        return summary;
    }

    private async Task<bool> RunAndKillAsync(int cycle, string ackFile, int hostSeed, bool atCheckpoint, int killAfterAcks, int checkpointMs, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (_hostPath.EndsWith(".dll", StringComparison.Ordinal))
        {
            psi.FileName = "dotnet";
            psi.ArgumentList.Add(_hostPath);
        }
        else psi.FileName = _hostPath;
        foreach (var a in new[] { "host", "--dir", DataDir, "--acks", ackFile, "--cycle", cycle.ToString(CultureInfo.InvariantCulture),
                     "--seed", hostSeed.ToString(CultureInfo.InvariantCulture), "--checkpoint-ms", checkpointMs.ToString(CultureInfo.InvariantCulture) })
            psi.ArgumentList.Add(a);
        if (_ackEarly)
        {
            psi.ArgumentList.Add("--ack-early");
            psi.ArgumentList.Add("1");
        }
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start the crash host");
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        bool inCheckpoint = false, killed = false;
        try
        {
            while (true)
            {
                string? line = await p.StandardOutput.ReadLineAsync(cts.Token);
                if (line is null) break;
                if (line == "cp+")
                {
                    inCheckpoint = true;
                    if (atCheckpoint && killAfterAcks <= 0) { p.Kill(); killed = true; break; }
                }
                else if (line == "cp-") inCheckpoint = false;
                else if (line.StartsWith("acked ", StringComparison.Ordinal))
                {
                    long n = long.Parse(line.AsSpan(6), CultureInfo.InvariantCulture);
                    if (n >= killAfterAcks)
                    {
                        if (atCheckpoint) killAfterAcks = 0; // now wait for the next checkpoint to start
                        else { p.Kill(); killed = true; break; }
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
            p.Kill();
            throw new TimeoutException($"cycle {cycle}: the host did not reach its kill point in {timeout}; stderr: {await stderr}");
        }
        await p.WaitForExitAsync();
        if (!killed) throw new InvalidOperationException($"cycle {cycle}: the host exited by itself with {p.ExitCode}: {await stderr}");
        return inCheckpoint;
    }

    private async Task VerifyAsync(int cycle, CrashSummary s, Random rng)
    {
        var transactions = new List<AckedTransaction>();
        var intents = new HashSet<(long, int)>();
        long acksThisCycle = 0;
        var cycleOf = new List<int>();   // the host cycle (and so the scheduler identity) that committed each transaction
        for (int c = 1; c <= cycle; c++)
        {
            int before = transactions.Count;
            AckLog.Read(Path.Combine(_workDir, string.Create(CultureInfo.InvariantCulture, $"acks-{c}.log")), transactions, intents);
            if (c == cycle) acksThisCycle = transactions.Count - before;
            while (cycleOf.Count < transactions.Count) cycleOf.Add(c);
        }
        s.AckedTransactions += acksThisCycle;
        var options = HostRun.Options(DataDir);
        options.Warning = w => { if (w.Contains("torn", StringComparison.Ordinal)) s.TornTailWarnings++; };
        options.CheckpointOnDispose = false;
        // Idempotency keys are scoped to the scheduler identity (issue 10), so a retry must come from the identity that
        // committed: the killed host's. Its lease is still unexpired in real time; a clock a day ahead sees it expired,
        // so the verifier can take the identity over (same scheduler id, new token) as a restarted host would.
        options.Cell.Time = new AheadClock(TimeSpan.FromDays(1));
        string? scanned = null;
        if (_compactCheck)
        {
            var scanOptions = HostRun.Options(DataDir);
            scanOptions.CheckpointOnDispose = false;
            scanOptions.UseCompactCheckpoint = false;
            scanOptions.Warning = options.Warning;
            scanOptions.Cell.Time = options.Cell.Time;
            using var full = CellStore.Open(scanOptions);
            scanned = Dump(full.Cell);
        }
        var clock = Stopwatch.StartNew();
        using var store = CellStore.Open(options);
        s.RecoveryMs.Add(clock.Elapsed.TotalMilliseconds);
        var cell = store.Cell;
        if (_compactCheck)
        {
            if (store.Recovery.FromCompactCheckpoint) s.CompactRecoveries++;
            if (store.Recovery.CompactCheckpointFallback is { } why) s.Failures.Add($"cycle {cycle}: the compact checkpoint was refused: {why}");
            if (Dump(cell) != scanned)
            {
                s.CompactScanMismatches++;
                s.Failures.Add($"cycle {cycle}: the compact-checkpoint recovery differs from the full scan");
            }
        }

        var audit = cell.Audit();
        s.AuditProblems += audit.Count;
        foreach (var a in audit.Take(3)) s.Failures.Add($"cycle {cycle}: audit: {a}");
        var snap = cell.Snapshot();
        for (int i = 0; i < cell.NodeCount; i++)
        {
            if (snap.TryGetNode(new NodeId(i), out var v) == SnapshotRead.Ok && !v.Allocated.FitsWithin(v.Capacity))
            {
                s.OvercommittedNodes++;
                s.Failures.Add($"cycle {cycle}: node n{i} over capacity");
            }
        }
        // Every acknowledged binding is present with its generation, unless a release of it was issued.
        foreach (var t in transactions)
        {
            foreach (var c in t.Claims)
            {
                if (c.Status != (int)ClaimStatus.Applied) continue;
                var task = new TaskId(c.Job, c.Index);
                if (intents.Contains((c.Job, c.Index))) continue;
                s.AckedBindingsChecked++;
                if (!cell.TryGetAllocation(task, out var a))
                {
                    s.LostAcknowledgedBindings++;
                    s.Failures.Add($"cycle {cycle}: acknowledged binding {task} (v{t.Version}) is missing");
                }
                else if (a.Generation != t.Version || a.Node.Value != c.Node)
                {
                    s.DoubleBindings++;
                    s.Failures.Add($"cycle {cycle}: {task} acknowledged at v{t.Version} on n{c.Node} but bound at v{a.Generation} on {a.Node}");
                }
            }
        }
        // Every acknowledged idempotency key, retried, returns its original result (all of this cycle's, a sample of older ones).
        var leases = new Dictionary<int, SchedulerLease>();
        var tx = new Transaction(default(SchedulerLease));
        for (int i = 0; i < transactions.Count; i++)
        {
            bool thisCycle = i >= transactions.Count - acksThisCycle;
            if (!thisCycle && rng.Next(20) != 0) continue;
            var t = transactions[i];
            if (!leases.TryGetValue(cycleOf[i], out var lease))
            {
                var granted = cell.AcquireLease(string.Create(CultureInfo.InvariantCulture, $"crash-host-{cycleOf[i]}"), TimeSpan.FromMinutes(1));
                if (!granted.Succeeded)
                {
                    s.Failures.Add($"cycle {cycle}: could not take over scheduler crash-host-{cycleOf[i]} to retry its keys: {granted.Status}");
                    continue;
                }
                leases[cycleOf[i]] = lease = granted.Lease;
            }
            var mode = CommitMode.Incremental;
            // The mode is part of the transaction's identity; the host used both. Try the recorded outcome's shape.
            tx.Reset(lease, mode, ConflictDetection.Fine, new IdempotencyKey(t.KeyHigh, t.KeyLow));
            foreach (var c in t.Claims) tx.Add(new Claim(new TaskId(c.Job, c.Index), new NodeId(c.Node), new ResourceVector(c.Cpu, c.Memory), 0));
            var r = cell.Commit(tx);
            if (r.Status == TransactionStatus.IdempotencyKeyReused)
            {
                tx.Mode = CommitMode.AllOrNothing;
                r = cell.Commit(tx);
            }
            s.IdempotentRetries++;
            bool same = r.Replayed && (int)r.Status == t.Status && r.CellVersion == t.Version;
            for (int k = 0; same && k < t.Claims.Count; k++) same = (int)r[k] == t.Claims[k].Status;
            if (!same)
            {
                s.IdempotencyMismatches++;
                s.Failures.Add($"cycle {cycle}: retry of key {t.KeyHigh:x}/{t.KeyLow:x} gave {r}, acknowledged {(TransactionStatus)t.Status} v{t.Version}");
            }
        }
        foreach (var l in leases.Values) cell.ReleaseLease(l);
        if (_compactCheck)
        {
            await store.WaitForDurableAsync(cell.JournalSequence);
            await store.CheckpointAsync();
        }
    }

    /// <summary>What a recovery produced, as text: versions, every node's view and every binding (for compact vs scan).</summary>
    private static string Dump(Cell cell)
    {
        var sb = new System.Text.StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"v{cell.Version} seq{cell.JournalSequence} nodes {cell.NodeCount}\n");
        var snap = cell.Snapshot();
        for (int i = 0; i < cell.NodeCount; i++)
            if (snap.TryGetNode(new NodeId(i), out var v) == SnapshotRead.Ok)
                sb.Append(CultureInfo.InvariantCulture, $"n{i} {v.Spec.Name} {v.Status} v{v.Version} {v.Allocated} {v.TaskCount}\n");
        foreach (var a in cell.GetAllocations().OrderBy(a => a.Task.Job.Value).ThenBy(a => a.Task.Index)) sb.Append(a).Append('\n');
        return sb.ToString();
    }

    /// <summary>The system clock shifted forward, so leases granted by a killed host look expired.</summary>
    private sealed class AheadClock(TimeSpan ahead) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + ahead;
    }
}
