using Omega.Cells;

namespace Omega.Dst;

/// <summary>
/// A scheduler's link to the cell, as the wire client sees it: every commit carries an idempotency key (the scheduler
/// protocol's rule), and a reply may be lost after the commit applied, in which case the client retries the same
/// transaction. Between the lost reply and the retry other schedulers may commit (<see cref="Interleave"/>): the
/// duplicate-reservation race. Also the checkers' eyes on the commit path: a commit applied under a stale token, and a
/// retry whose outcome differs from the original, are violations.
/// </summary>
public sealed class RemoteCommitter : ICellCommitter
{
    private readonly DstSimulation _sim;
    private readonly Cell _cell;
    private readonly ulong _client;
    private ulong _next;

    internal RemoteCommitter(DstSimulation sim, Cell cell, ulong clientId)
    {
        _sim = sim;
        _cell = cell;
        _client = clientId;
    }

    /// <summary>Runs between a lost reply and its retry (another scheduler's step).</summary>
    public Action? Interleave { get; set; }

    /// <summary>When set, decides whether this commit's reply is lost (else the run's fault dice decide).</summary>
    public Func<Transaction, bool>? LoseReply { get; set; }

    /// <summary>Commits lost and retried so far.</summary>
    public int Retries { get; private set; }

    /// <inheritdoc />
    public CommitResult Commit(Transaction tx)
    {
        ArgumentNullException.ThrowIfNull(tx);
        if (tx.Key.IsNone) tx.Key = new IdempotencyKey(_client, ++_next);
        bool stale = _sim.IsStale(_cell, tx.Scheduler, tx.Token);
        var r = _cell.Commit(tx);
        if (r.AppliedCount > 0 && stale)
            _sim.Fail("stale-token", $"a commit by scheduler {tx.Scheduler} with token {tx.Token.Value} applied {r.AppliedCount} claim(s) at v{r.CellVersion}, but the identity's current token is {_cell.GetCurrentToken(_cell.LeaseName(tx.Scheduler) ?? "")?.Value} or its lease lapsed");
        bool lost = LoseReply is { } decide ? decide(tx) : _sim.FaultChance(0.06);
        if (!lost) return r;
        var status = r.Status;
        long version = r.CellVersion;
        int applied = r.AppliedCount;
        var claims = r.ClaimStatuses.ToArray(); // the result's buffer is the transaction's: copy before the retry
        Retries++;
        _sim.Count(DstFault.CommitTimeout);
        _sim.Event($"commit reply lost (scheduler {tx.Scheduler}, {status}, v{version}, applied {applied}); retrying");
        Interleave?.Invoke();
        var again = _cell.Commit(tx);
        if (applied > 0 && (again.Status != status || again.AppliedCount != applied || !again.ClaimStatuses.Span.SequenceEqual(claims)))
            _sim.Fail("retry-binds-once", $"the retry of a committed transaction (v{version}, {applied} applied) got {again.Status} with {again.AppliedCount} applied: a timeout-after-commit retry must return the original outcome");
        return again;
    }

    /// <inheritdoc />
    public ReleaseStatus Release(TaskId task, long expectedGeneration = 0) => _cell.Release(task, expectedGeneration);

    /// <inheritdoc />
    public LeaseResult AcquireLease(string name, TimeSpan duration)
    {
        var r = _cell.AcquireLease(name, duration);
        if (r.Status == LeaseStatus.Granted) _sim.LeaseGranted(name, r.Lease);
        return r;
    }

    /// <inheritdoc />
    public LeaseResult RenewLease(SchedulerLease lease, TimeSpan duration)
    {
        var r = _cell.RenewLease(lease, duration);
        if (r.Succeeded) _sim.LeaseGranted(lease.Name, r.Lease);
        return r;
    }

    /// <inheritdoc />
    public LeaseStatus ReleaseLease(SchedulerLease lease) => _cell.ReleaseLease(lease);

    /// <inheritdoc />
    public TenantOpStatus SetTenantQuota(TenantId tenant, ResourceVector? limit) => _cell.SetTenantQuota(tenant, limit);
}
