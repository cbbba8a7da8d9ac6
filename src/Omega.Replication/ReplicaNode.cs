using System.Diagnostics;
using System.Globalization;
using dotnet_etcd;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Omega.Storage;

namespace Omega.Replication;

/// <summary>
/// One replica of a replicated cell (issue 16; docs/high-availability.md). It opens its local FASTER store as a standby
/// (<see cref="CellStore.OpenReplica"/>), tails the replicated log in etcd into it, and campaigns for the election
/// key. Winning, it first catches up to the log's end, then promotes its store (every later journal group is written
/// to etcd as a fenced transaction before it counts as durable), opens the <see cref="Gate"/> and completes
/// <see cref="Leadership"/>. While it leads it publishes progress, trims the log and compacts etcd.
/// </summary>
/// <remarks>
/// <para>A leader that loses its session or has a write fenced is deposed for good (<see cref="Deposed"/>): its
/// in-memory cell may hold records etcd refused, so it must not go back to following. The host stops and a supervisor
/// restarts it as a standby from its local store (which, by the ship-first order, holds only what etcd holds); this is
/// what Kubernetes' controller-manager does on a lost lease too.</para>
/// <para>Threading: one loop (the campaign, the tail, the catch-up and the promotion) runs on the thread pool; the
/// store's <see cref="IReplicaStore.Apply"/> and <see cref="IReplicaStore.Promote"/> are only called from it.</para>
/// </remarks>
public sealed class ReplicaNode : IAsyncDisposable
{
    private readonly ReplicationOptions _options;
    private readonly StorageOptions _storage;
    private readonly ILogger _logger;
    private readonly LeaderGate _gate = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly CancellationTokenSource _deposed = new();
    private readonly TaskCompletionSource<ICellStore> _leadership = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ByteString _leaderKey;
    private readonly string _logPrefix;
    private readonly string _logEnd;
    private EtcdClient? _client;
    private readonly List<EtcdClient> _memberClients = new();
    private IReplicaStore? _store;
    private Task? _main;
    private EtcdLogShipper? _shipper;
    private long _lease;
    private long _epoch;
    private long _appliedRevision;
    private int _deposedOnce;
    private string? _observedLeader;
    private DateTime _lastSeenHeldUtc;

    /// <summary>
    /// The file in the data directory that holds the etcd lease id of the process using it (decimal). A restarted replica
    /// revokes the lease it names: see <see cref="RevokePredecessorLeaseAsync"/>.
    /// </summary>
    public const string LeaseFileName = "replica.lease";

    /// <summary>Creates a replica; <see cref="StartAsync"/> opens it.</summary>
    /// <param name="options">The replication settings (validated here).</param>
    /// <param name="storage">The local store's settings (its data directory must be this replica's own).</param>
    /// <param name="logger">Events 1300-1329 (null: none).</param>
    public ReplicaNode(ReplicationOptions options, StorageOptions storage, ILogger? logger = null)
    {
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _storage = storage ?? throw new ArgumentNullException(nameof(storage));
        if (options.Validate() is { } problem) throw new ArgumentException($"replication options: {problem}", nameof(options));
        _logger = logger ?? NullLogger.Instance;
        _leaderKey = ByteString.CopyFromUtf8(options.Prefix + "leader");
        _logPrefix = LogEntry.LogPrefix(options.Prefix);
        _logEnd = options.Prefix + "log0"; // '0' follows '/': the end of the log/ range
    }

    /// <summary>The leadership as the server sees it.</summary>
    public LeaderGate Gate => _gate;

    /// <summary>This replica's name.</summary>
    public string Name => _options.ReplicaName;

    /// <summary>The local store (a standby's until promoted; then the same object serves as the <see cref="ICellStore"/>).</summary>
    public IReplicaStore Store => _store ?? throw new InvalidOperationException("not started");

    /// <summary>Completes with the promoted store once this replica leads (caught up); faults if it can never lead (its tail failed).</summary>
    public Task<ICellStore> Leadership => _leadership.Task;

    /// <summary>Cancelled when leadership, once won, is lost (session lost, a write fenced, or etcd unreachable past the ship timeout).</summary>
    public CancellationToken Deposed => _deposed.Token;

    /// <summary>The etcd revision of the last log entry applied from the log (a standby's position; a takeover replays only entries after it).</summary>
    public long AppliedRevision => Interlocked.Read(ref _appliedRevision);

    /// <summary>The current session's etcd lease id (0 when none).</summary>
    public long LeaseId => Interlocked.Read(ref _lease);

    /// <summary>This replica's epoch while it leads (the election key's create revision); 0 otherwise.</summary>
    public long Epoch => Interlocked.Read(ref _epoch);

    /// <summary>Log entries this replica wrote to etcd while leading.</summary>
    public long EntriesWritten => _shipper?.EntriesWritten ?? 0;

    internal EtcdClient Client => _client ?? throw new InvalidOperationException("not started");

    /// <summary>Opens the local store and the etcd connection and starts following and campaigning. Returns at once.</summary>
    public Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (_client is not null) throw new InvalidOperationException("already started");
        cancellationToken.ThrowIfCancellationRequested();
        _store = CellStore.OpenReplica(_storage);
        _client = new EtcdClient(string.Join(",", _options.Endpoints));
        // One client (channel) per member for the keepalives, so no member's stall can hold another's renewal.
        foreach (var e in _options.Endpoints) _memberClients.Add(new EtcdClient(e));
        Log.ReplicaOpened(_logger, _options.ReplicaName, _options.Cluster, _store.AppliedSequence, _store.AppliedVersion);
        _main = Task.Run(RunAsync, CancellationToken.None);
        return Task.CompletedTask;
    }

    private async Task RunAsync()
    {
        var stop = _stop.Token;
        try
        {
            await RevokePredecessorLeaseAsync(stop).ConfigureAwait(false);
            while (!stop.IsCancellationRequested)
            {
                long lease;
                try
                {
                    lease = (await Client.LeaseGrantAsync(new LeaseGrantRequest { TTL = _options.LeaseTtlSeconds }, cancellationToken: stop).ConfigureAwait(false)).ID;
                }
                catch (RpcException e)
                {
                    Log.EtcdError(_logger, _options.ReplicaName, "lease grant", e.Status.Detail);
                    await Task.Delay(_options.PollInterval, stop).ConfigureAwait(false);
                    continue;
                }
                Interlocked.Exchange(ref _lease, lease);
                await RecordLeaseAsync(lease).ConfigureAwait(false);
                using var session = CancellationTokenSource.CreateLinkedTokenSource(stop);
                var keepAlive = KeepAliveAsync(lease, session);
                try
                {
                    long epoch = await CampaignAsync(lease, session.Token).ConfigureAwait(false);
                    await LeadAsync(epoch, session.Token).ConfigureAwait(false);
                    // Deposed (or stopping): give the key up now rather than when the lease lapses, so a standby takes
                    // over at once when this replica still held it (a write that timed out, not one that was fenced).
                    if (!stop.IsCancellationRequested) await ResignAsync().ConfigureAwait(false);
                    return; // a leader never goes back to following (see remarks)
                }
                catch (Exception e) when (e is OperationCanceledException or RpcException && session.IsCancellationRequested && !stop.IsCancellationRequested && Interlocked.Read(ref _epoch) == 0 && !_leadership.Task.IsCompleted)
                {
                    // A standby's session lapsed (etcd unreachable for a lease TTL, or this process starved past it): take
                    // a new one and go on. A call in flight when the session ended fails either way: cancelled, or
                    // refused by etcd because the lease is gone ("requested lease not found").
                }
                finally
                {
                    await session.CancelAsync().ConfigureAwait(false);
                    try
                    {
                        await keepAlive.ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        // stopped
                    }
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // disposed
        }
#pragma warning disable CA1031 // the loop reports what stops it (a broken log, a store failure) through Leadership and the log
        catch (Exception e)
#pragma warning restore CA1031
        {
            Log.TailFailed(_logger, _options.ReplicaName, e.Message);
            _leadership.TrySetException(e);
            Depose($"replica loop failed: {e.Message}");
        }
        finally
        {
            _leadership.TrySetCanceled();
        }
    }

    // ---------------------------------------------------------------- session

    /// <summary>
    /// Revokes the etcd lease of the previous process that used this data directory (named by <see cref="LeaseFileName"/>),
    /// so that a leader that crashed and was restarted by its supervisor hands the election key over at once, instead of
    /// after its lease's TTL (docs/high-availability.md, "A restarted replica revokes its predecessor's lease").
    /// </summary>
    /// <remarks>
    /// Why this is safe: it runs after <see cref="CellStore.OpenReplica"/> took the data directory's lock (an exclusive
    /// flock, which the kernel releases only when its holder dies or closes it), so the process that wrote the file is no
    /// longer running: a paused (SIGSTOP) predecessor still holds the lock, and this replica would not have started. A dead
    /// leader's lease protects nobody. A write the dead leader had sent to etcd is ordered against the revocation by etcd's
    /// raft log: before it, it is a valid write of its epoch that the next leader's catch-up reads; after it, its compare on
    /// the election key fails. Best effort: a failure only means the old lease lapses by its TTL, as before.
    /// </remarks>
    private async Task RevokePredecessorLeaseAsync(CancellationToken ct)
    {
        string file = Path.Combine(Store.DataDirectory, LeaseFileName);
        string text;
        try
        {
            if (!File.Exists(file)) return;
            text = (await File.ReadAllTextAsync(file, ct).ConfigureAwait(false)).Trim();
        }
        catch (IOException)
        {
            return;
        }
        if (!long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out long previous) || previous == 0) return;
        try
        {
            await Client.LeaseRevokeAsync(new LeaseRevokeRequest { ID = previous }, deadline: DateTime.UtcNow.AddSeconds(2), cancellationToken: ct).ConfigureAwait(false);
            Log.PredecessorLeaseRevoked(_logger, _options.ReplicaName, previous);
        }
        catch (RpcException e)
        {
            // Usually "requested lease not found": it lapsed already, or the predecessor resigned on a clean stop. (Stopping
            // while this call ran also lands here; the loop then sees the stop.)
            if (!ct.IsCancellationRequested) Log.PredecessorLeaseNotRevoked(_logger, _options.ReplicaName, previous, e.Status.Detail);
        }
    }

    /// <summary>Writes this session's lease id to <see cref="LeaseFileName"/> (temporary file, then rename: never a torn id).</summary>
    private async Task RecordLeaseAsync(long lease)
    {
        if (lease == 0 || _store is null) return;
        string file = Path.Combine(_store.DataDirectory, LeaseFileName);
        try
        {
            await File.WriteAllTextAsync(file + ".tmp", lease.ToString(CultureInfo.InvariantCulture)).ConfigureAwait(false);
            File.Move(file + ".tmp", file, overwrite: true);
        }
        catch (IOException)
        {
            // Best effort: without the file a successor waits for this lease's TTL, as before the file existed.
        }
    }

    /// <summary>
    /// Keeps the lease alive through every etcd member at once; cancels <paramref name="session"/> when etcd says the lease
    /// is gone, or when no member confirmed a renewal for <see cref="ReplicationOptions.SessionGiveUp"/> (default 2 TTLs).
    /// </summary>
    /// <remarks>
    /// <para>Why one keepalive stream per member, concurrently (docs/high-availability.md, "Keeping the lease"): a member
    /// stalled by a defragmentation or a pause (SIGSTOP, a long GC, a full disk) holds every call sent to it without an
    /// answer. With ONE stream, the renewal waits for a deadline and then for a retry that the client's round robin may
    /// send to the same stalled member again, and two such waits exceed a 2 s TTL (the soak's lapses). With a stream to
    /// each member, the healthy ones keep renewing whatever one member does. When the stalled member is etcd's raft
    /// leader, every member's renewal waits for a new raft leader (about one election timeout); that leader then
    /// refreshes every lease to a full TTL (etcd's lessor promotion), so the lease survives the stall.</para>
    /// <para>A renewal counts from when its request was SENT (etcd refreshed the lease after that), never from when
    /// the answer arrived. The give-up bound only ends a session etcd can no longer confirm; it is not what makes the
    /// leader safe: every write of a leader is fenced at etcd, so a leader that believes it leads a little too long
    /// can only have its writes refused (and is deposed by that refusal).</para>
    /// </remarks>
    private async Task KeepAliveAsync(long lease, CancellationTokenSource session)
    {
        var ct = session.Token;
        var renewal = new LeaseRenewal(Stopwatch.GetTimestamp());
        using var lost = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var members = new Task[_memberClients.Count];
        for (int i = 0; i < members.Length; i++) members[i] = KeepAliveThroughAsync(_memberClients[i], _options.Endpoints[i], lease, renewal, lost);
        string reason = "stopped";
        long giveUpTicks = (long)(_options.EffectiveSessionGiveUp.TotalSeconds * Stopwatch.Frequency);
        var check = TimeSpan.FromMilliseconds(Math.Max(20, _options.LeaseTtlSeconds * 1000 / 8.0));
        try
        {
            while (!lost.IsCancellationRequested)
            {
                await Task.Delay(check, lost.Token).ConfigureAwait(false);
                long unconfirmed = Stopwatch.GetTimestamp() - renewal.LastConfirmedSentAt;
                if (unconfirmed >= giveUpTicks)
                {
                    reason = $"no etcd member confirmed a renewal for {(double)unconfirmed / Stopwatch.Frequency:0.0} s";
                    break;
                }
            }
        }
        catch (OperationCanceledException) when (lost.IsCancellationRequested)
        {
            // a member said the lease is gone (renewal.Gone), or the session ended
        }
        if (renewal.Gone is { } gone) reason = gone;
        await lost.CancelAsync().ConfigureAwait(false);
        foreach (var m in members)
        {
            try
            {
                await m.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // stopped
            }
        }
        if (ct.IsCancellationRequested && renewal.Gone is null) return; // the session ended for another reason (stopping, deposed)
        Log.SessionLost(_logger, _options.ReplicaName, lease, reason);
        if (Interlocked.Read(ref _epoch) != 0) Depose($"session lost: {reason}");
        await session.CancelAsync().ConfigureAwait(false);
    }

    /// <summary>The shared state of one lease's per-member keepalive loops.</summary>
    private sealed class LeaseRenewal(long startedAt)
    {
        private long _lastConfirmedSentAt = startedAt;

        /// <summary>The send time (Stopwatch ticks) of the newest request some member confirmed.</summary>
        public long LastConfirmedSentAt => Interlocked.Read(ref _lastConfirmedSentAt);

        /// <summary>Set when a member answered that the lease no longer exists (authoritative: the lessor is etcd's raft leader's).</summary>
        public volatile string? Gone;

        public void Confirmed(long sentAt)
        {
            long seen = Interlocked.Read(ref _lastConfirmedSentAt);
            while (sentAt > seen)
            {
                long was = Interlocked.CompareExchange(ref _lastConfirmedSentAt, sentAt, seen);
                if (was == seen) return;
                seen = was;
            }
        }
    }

    /// <summary>One member's keepalive loop: a stream to that member only, renewed every TTL/4, re-opened when it fails or an answer takes a TTL.</summary>
    private async Task KeepAliveThroughAsync(EtcdClient member, string endpoint, long lease, LeaseRenewal renewal, CancellationTokenSource lost)
    {
        var ct = lost.Token;
        var interval = TimeSpan.FromMilliseconds(_options.LeaseTtlSeconds * 1000 / 4.0);
        var answerDeadline = TimeSpan.FromSeconds(_options.LeaseTtlSeconds);
        while (!ct.IsCancellationRequested)
        {
            try
            {
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(ct);
                using var call = member.GetConnection().LeaseClient.LeaseKeepAlive(cancellationToken: attempt.Token);
                while (true)
                {
                    // This member may stall for seconds (a defragmentation); the other members' loops renew meanwhile, so
                    // waiting here costs nothing but this stream, which is abandoned after a TTL and re-opened.
                    attempt.CancelAfter(answerDeadline);
                    long sentAt = Stopwatch.GetTimestamp();
                    await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = lease }, attempt.Token).ConfigureAwait(false);
                    if (!await call.ResponseStream.MoveNext(attempt.Token).ConfigureAwait(false)) break;
                    attempt.CancelAfter(Timeout.InfiniteTimeSpan);
                    if (call.ResponseStream.Current.TTL <= 0)
                    {
                        renewal.Gone ??= $"etcd ({endpoint}) says the lease expired";
                        await lost.CancelAsync().ConfigureAwait(false);
                        return;
                    }
                    renewal.Confirmed(sentAt);
                    await Task.Delay(interval, ct).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (RpcException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (RpcException)
            {
                // this member is down, restarting or stalled past the deadline: the others renew meanwhile
            }
            catch (OperationCanceledException)
            {
                // no answer within a TTL from this member
            }
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(100), ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    // ---------------------------------------------------------------- standby: tail + campaign

    private async Task<long> CampaignAsync(long lease, CancellationToken ct)
    {
        var value = ByteString.CopyFromUtf8(_options.ReplicaName + "\n" + _options.AdvertiseAddress);
        var txn = new TxnRequest();
        txn.Compare.Add(new Compare { Key = _leaderKey, Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = 0 });
        txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = _leaderKey, Value = value, Lease = lease } });
        txn.Failure.Add(new RequestOp { RequestRange = new RangeRequest { Key = _leaderKey } });
        var progressClock = Stopwatch.StartNew();
        var lastBootstrap = Stopwatch.StartNew();
        bool first = true, bootstrapped = false;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            try
            {
                bool atEnd;
                try
                {
                    // A bounded round: a standby slower than the leader must come back here to look at its lag and the
                    // election key, rather than stay inside one endless replay (the soak's 8.7M-record standby).
                    atEnd = await TailAsync(_options.TailPagesPerRound, ct).ConfigureAwait(false);
                }
                catch (ReplicaBehindLogException behind) when (_options.SnapshotBootstrap)
                {
                    // Behind the trimmed log: it must not campaign (it could not catch up if it won), nor publish a
                    // progress that holds back the trim. Bootstrap from the leader's snapshot, then tail again.
                    Interlocked.Exchange(ref _lagRecords, long.MaxValue);
                    await BootstrapFromSnapshotAsync(behind.Message, ct).ConfigureAwait(false);
                    await Task.Delay(_options.PollInterval, ct).ConfigureAwait(false);
                    continue;
                }
                long lag = atEnd ? 0 : await LagAsync(ct).ConfigureAwait(false);
                Interlocked.Exchange(ref _lagRecords, lag);
                if (first || progressClock.Elapsed >= _options.ProgressInterval)
                {
                    await PublishProgressAsync(lease, ct).ConfigureAwait(false);
                    progressClock.Restart();
                    first = false;
                }
                if (lag > _options.MaxStandbyLagRecords)
                {
                    // Beyond the bound: never a candidate (a winner must first replay all of it). With a leader, a snapshot
                    // is cheaper than replaying a tail that may grow faster than this replica applies; at most one attempt
                    // per SnapshotRetryInterval, tailing in between. Without a leader the log is static: keep replaying.
                    var election = await Client.GetAsync(new RangeRequest { Key = _leaderKey }, deadline: CallDeadline(), cancellationToken: ct).ConfigureAwait(false);
                    if (election.Kvs.Count == 1) ObserveLeader(election.Kvs[0]);
                    if (_options.SnapshotBootstrap && election.Kvs.Count == 1 && (!bootstrapped || lastBootstrap.Elapsed >= SnapshotRetryInterval))
                    {
                        bootstrapped = true;
                        lastBootstrap.Restart();
                        Log.LagBeyondBound(_logger, _options.ReplicaName, lag, _options.MaxStandbyLagRecords);
                        await BootstrapFromSnapshotAsync($"{lag} records behind the log's end, more than the bound of {_options.MaxStandbyLagRecords}", ct).ConfigureAwait(false);
                    }
                    continue;
                }
                var r = await Client.TransactionAsync(txn, deadline: CallDeadline(), cancellationToken: ct).ConfigureAwait(false);
                if (r.Succeeded) return r.Header.Revision; // the put's revision is the key's create revision: our epoch
                var kvs = r.Responses[0].ResponseRange.Kvs;
                if (kvs.Count == 1)
                {
                    _lastSeenHeldUtc = DateTime.UtcNow;
                    ObserveLeader(kvs[0]);
                }
            }
            catch (RpcException e) when (!ct.IsCancellationRequested)
            {
                Log.EtcdError(_logger, _options.ReplicaName, "campaign", e.Status.Detail);
            }
            await Task.Delay(_options.PollInterval, ct).ConfigureAwait(false);
        }
    }

    /// <summary>How long a standby beyond the lag bound waits between two snapshot attempts (it tails meanwhile).</summary>
    private static readonly TimeSpan SnapshotRetryInterval = TimeSpan.FromSeconds(5);

    private long _lagRecords;

    /// <summary>
    /// This standby's lag at its last look: journal records between the newest entry of the log in etcd and what it applied
    /// (0 when it had read to the end; <see cref="long.MaxValue"/> when the log was trimmed past it). See
    /// <see cref="ReplicationOptions.MaxStandbyLagRecords"/>.
    /// </summary>
    public long LagRecords => Interlocked.Read(ref _lagRecords);

    /// <summary>
    /// A deadline for one etcd call of the standby loop or the leader's maintenance: a member stalled for good (paused,
    /// or cut off without a reset) would otherwise hold the call, and with it the loop, forever.
    /// </summary>
    private static DateTime CallDeadline() => DateTime.UtcNow.AddSeconds(10);

    private void ObserveLeader(Mvccpb.KeyValue kv)
    {
        string v = kv.Value.ToStringUtf8();
        int nl = v.IndexOf('\n', StringComparison.Ordinal);
        string name = nl < 0 ? v : v[..nl];
        string address = nl < 0 ? "" : v[(nl + 1)..];
        if (!string.Equals(_observedLeader, v, StringComparison.Ordinal))
        {
            _observedLeader = v;
            Log.LeaderObserved(_logger, _options.ReplicaName, name, address, kv.CreateRevision);
        }
        _gate.Set(false, address, kv.CreateRevision);
    }

    /// <summary>Records between the newest log entry's first sequence and the applied sequence (0 when the log is empty or applied).</summary>
    private async Task<long> LagAsync(CancellationToken ct)
    {
        var newest = await Client.GetAsync(new RangeRequest
        {
            Key = ByteString.CopyFromUtf8(_logPrefix),
            RangeEnd = ByteString.CopyFromUtf8(_logEnd),
            SortOrder = RangeRequest.Types.SortOrder.Descend,
            SortTarget = RangeRequest.Types.SortTarget.Key,
            Limit = 1,
            KeysOnly = true,
        }, deadline: CallDeadline(), cancellationToken: ct).ConfigureAwait(false);
        if (newest.Kvs.Count == 0) return 0;
        return Math.Max(0, LogEntry.SequenceOfKey(newest.Kvs[0].Key.Span) - Store.AppliedSequence);
    }

    private Task<PutResponse> PublishProgressAsync(long lease, CancellationToken ct)
        => Client.PutAsync(new PutRequest
        {
            Key = ByteString.CopyFromUtf8(_options.Prefix + "replicas/" + _options.ReplicaName),
            // What this replica's own disk holds (not what it applied in memory): a restart resumes from there, so the
            // trim must keep everything after it.
            Value = ByteString.CopyFromUtf8(Store.LocalDurableSequence.ToString(CultureInfo.InvariantCulture)),
            Lease = lease,
        }, deadline: CallDeadline(), cancellationToken: ct);

    /// <summary>
    /// Applies the entries after the store's applied sequence, at most <paramref name="maxPages"/> pages of 64; returns
    /// true when it read to the log's end (as of that read).
    /// </summary>
    private async Task<bool> TailAsync(int maxPages, CancellationToken ct)
    {
        var store = Store;
        long next = store.AppliedSequence + 1;
        // The entry holding `next` may start before it (the local journal recovered to the middle of an entry): the
        // newest key at or below next's key. Entries are applied whole; records already applied are skipped.
        var find = new RangeRequest
        {
            Key = ByteString.CopyFromUtf8(_logPrefix),
            RangeEnd = ByteString.CopyFromUtf8(LogEntry.Key(_options.Prefix, next) + "\0"),
            SortOrder = RangeRequest.Types.SortOrder.Descend,
            SortTarget = RangeRequest.Types.SortTarget.Key,
            Limit = 1,
            KeysOnly = true,
        };
        var found = await Client.GetAsync(find, deadline: CallDeadline(), cancellationToken: ct).ConfigureAwait(false);
        ByteString from = found.Kvs.Count == 1 ? found.Kvs[0].Key : ByteString.CopyFromUtf8(_logPrefix);
        // One page read ahead: the next page's key is known from the current page's last header before the page is
        // applied, so etcd's read (and its transfer, up to 64 entries of 512 KiB) overlaps the apply. A standby slower
        // than the leader (the soak's) spent its time alternating the two.
        Task<RangeResponse>? pending = ReadPage(from, ct);
        try
        {
            for (int page = 0; page < maxPages; page++)
            {
                var r = await pending!.ConfigureAwait(false);
                pending = null;
                if (r.More && r.Kvs.Count > 0 && page + 1 < maxPages)
                {
                    var (_, lastOfPage, _) = LogEntry.ReadHeader(r.Kvs[^1].Value.Span);
                    pending = ReadPage(ByteString.CopyFromUtf8(LogEntry.Key(_options.Prefix, Math.Max(next, lastOfPage + 1))), ct);
                }
                foreach (var kv in r.Kvs)
                {
                    var value = kv.Value.Span;
                    var (firstSeq, lastSeq, _) = LogEntry.ReadHeader(value);
                    if (lastSeq < next) continue;
                    if (firstSeq > next)
                        throw new ReplicaBehindLogException($"replica {_options.ReplicaName} needs sequence {next} but the log in etcd starts at {firstSeq} (trimmed)"
                            + (_options.SnapshotBootstrap ? "" : ": bootstrap it from a copy of another replica's data directory, or enable snapshot bootstrap"));
                    store.Apply(value[LogEntry.HeaderSize..]);
                    next = lastSeq + 1;
                    Interlocked.Exchange(ref _appliedRevision, kv.ModRevision);
                }
                if (!r.More) return true;
                if (pending is null) return false; // the round's last page
            }
            return false;
        }
        finally
        {
            // A read ahead left behind by a failure (or the round's end) is observed, never left unobserved.
            if (pending is not null) _ = pending.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    private Task<RangeResponse> ReadPage(ByteString from, CancellationToken ct)
        => Client.GetAsync(new RangeRequest { Key = from, RangeEnd = ByteString.CopyFromUtf8(_logEnd), Limit = 64 }, deadline: CallDeadline(), cancellationToken: ct);

    // ---------------------------------------------------------------- snapshot bootstrap (docs/protocol.md, "Replica snapshots")

    /// <summary>Snapshots installed by this replica (a new or far-behind replica's bootstrap).</summary>
    public long SnapshotsInstalled => Interlocked.Read(ref _snapshotsInstalled);

    private long _snapshotsInstalled;

    /// <summary>
    /// Pulls a snapshot from the leader named by the election key, checks its length, SHA-256, sequence and version,
    /// installs it into a fresh directory beside this replica's, swaps the directories and reopens the store there. A
    /// failure is logged and retried by the caller's loop (the old directory stays in place until the swap).
    /// </summary>
    private async Task BootstrapFromSnapshotAsync(string reason, CancellationToken ct)
    {
        var election = await Client.GetAsync(new RangeRequest { Key = _leaderKey }, deadline: CallDeadline(), cancellationToken: ct).ConfigureAwait(false);
        if (election.Kvs.Count == 0)
        {
            Log.SnapshotNoLeader(_logger, _options.ReplicaName);
            return;
        }
        string v = election.Kvs[0].Value.ToStringUtf8();
        int nl = v.IndexOf('\n', StringComparison.Ordinal);
        string address = nl < 0 ? "" : v[(nl + 1)..];
        _gate.Set(false, address, election.Kvs[0].CreateRevision);
        Log.SnapshotNeeded(_logger, _options.ReplicaName, reason, address);
        if (!Omega.Transport.FrameClient.TryParseEndPoint(address, out var endpoint) || endpoint is null)
        {
            Log.SnapshotFailed(_logger, _options.ReplicaName, address, "the leader's advertised address is not HOST:PORT");
            return;
        }
        string dataDir = Store.DataDirectory;
        string download = dataDir + ".snapshot";
        var clock = Stopwatch.StartNew();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(_options.SnapshotTimeout);
        try
        {
            var snapshot = await DownloadAsync(endpoint, download, timeout.Token).ConfigureAwait(false);
            await OnDedicatedThread(() => Install(download, snapshot)).ConfigureAwait(false);
            Interlocked.Increment(ref _snapshotsInstalled);
            // The swapped-in directory does not have the lease file yet: a crash from now on must still hand the lease on.
            await RecordLeaseAsync(Interlocked.Read(ref _lease)).ConfigureAwait(false);
            Log.SnapshotInstalled(_logger, _options.ReplicaName, snapshot.Id, address, snapshot.Sequence, snapshot.CellVersion, snapshot.TotalBytes, clock.Elapsed.TotalMilliseconds);
        }
        catch (Exception e) when (!ct.IsCancellationRequested && e is Omega.Agent.AgentRequestException or IOException or System.Net.Sockets.SocketException
            or InvalidDataException or TimeoutException or OperationCanceledException or Omega.Transport.TransportSecurityException)
        {
            Log.SnapshotFailed(_logger, _options.ReplicaName, address, e.Message);
        }
        finally
        {
            TryDelete(download);
        }
    }

    /// <summary>Streams the leader's snapshot into <paramref name="path"/>, keeping a few reads in flight, and verifies it.</summary>
    private async Task<Omega.Agent.SnapshotDescriptor> DownloadAsync(System.Net.EndPoint leader, string path, CancellationToken ct)
    {
        var transport = _options.SnapshotTransport ?? new Omega.Transport.TransportOptions();
        await using var client = await Omega.Agent.ControlClient.ConnectAsync([leader], transport, "replica:" + _options.ReplicaName, _options.SnapshotToken,
            cancellationToken: ct).ConfigureAwait(false);
        var d = await client.BeginSnapshotAsync(_options.ReplicaName, Store.AppliedSequence, ct).ConfigureAwait(false);
        if (d.Format != Omega.Storage.ReplicaSnapshot.Format) throw new InvalidDataException($"snapshot format {d.Format} is not {Omega.Storage.ReplicaSnapshot.Format}");
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        var inFlight = new Queue<(long Offset, Task<ReadOnlyMemory<byte>> Read)>();
        try
        {
            await using (var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous))
            {
                long next = 0, written = 0;
                while (written < d.TotalBytes)
                {
                    // Pipelined pull: at most SnapshotReadsInFlight chunks requested and not yet written (the memory budget).
                    while (inFlight.Count < _options.SnapshotReadsInFlight && next < d.TotalBytes)
                    {
                        inFlight.Enqueue((next, client.ReadSnapshotAsync(d.Id, next, ct)));
                        next += Math.Min(d.ChunkBytes, d.TotalBytes - next);
                    }
                    var (offset, read) = inFlight.Dequeue();
                    var data = await read.ConfigureAwait(false);
                    long expected = Math.Min(d.ChunkBytes, d.TotalBytes - offset);
                    if (data.Length != expected) throw new InvalidDataException($"snapshot chunk at {offset} has {data.Length} bytes, expected {expected}");
                    hash.AppendData(data.Span);
                    await file.WriteAsync(data, ct).ConfigureAwait(false);
                    written += data.Length;
                }
                await file.FlushAsync(ct).ConfigureAwait(false);
            }
        }
        finally
        {
            // Reads still in flight after a failure end with the connection; observe them.
            while (inFlight.Count > 0)
            {
                try
                {
                    await inFlight.Dequeue().Read.ConfigureAwait(false);
                }
#pragma warning disable CA1031 // only observed: the first failure is what the caller reports
                catch (Exception)
#pragma warning restore CA1031
                {
                }
            }
        }
        byte[] digest = hash.GetHashAndReset();
        if (!System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(digest, d.Sha256))
            throw new InvalidDataException($"snapshot {d.Id}: SHA-256 mismatch after {d.TotalBytes} bytes");
        return d;
    }

    /// <summary>
    /// Installs the verified snapshot file: into <c>DATA.installing</c>, then <c>DATA</c> is swapped for it and the store
    /// reopened there. A crash in between leaves either the old directory or none (a restart then bootstraps again).
    /// </summary>
    private void Install(string path, Omega.Agent.SnapshotDescriptor d)
    {
        using (var check = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            Span<byte> header = stackalloc byte[Omega.Storage.ReplicaSnapshot.HeaderSize];
            check.ReadExactly(header);
            var (seq, version, _) = Omega.Storage.ReplicaSnapshot.ReadHeader(header);
            if (seq != d.Sequence || version != d.CellVersion)
                throw new InvalidDataException($"snapshot {d.Id} says sequence {seq} (v{version}) inside, {d.Sequence} (v{d.CellVersion}) in SnapshotBegin");
        }
        var old = Store;
        string dataDir = old.DataDirectory;
        string staging = dataDir + ".installing";
        string retired = dataDir + ".replaced";
        DeleteDirectory(staging);
        using (var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan))
        {
            var (seq, version) = CellStore.InstallSnapshot(_storage.WithDataDirectory(staging), file);
            if (seq != d.Sequence || version != d.CellVersion) throw new InvalidDataException($"installed snapshot at {seq} (v{version}), expected {d.Sequence} (v{d.CellVersion})");
        }
        old.Dispose();
        _store = null;
        try
        {
            DeleteDirectory(retired);
            Directory.Move(dataDir, retired);
            Directory.Move(staging, dataDir);
            DeleteDirectory(retired);
        }
        finally
        {
            // Whatever the directory holds now (the snapshot, or the old store if the swap failed), the loop goes on over it.
            _store = CellStore.OpenReplica(_storage.WithDataDirectory(dataDir));
        }
        if (_store.AppliedSequence != d.Sequence || _store.AppliedVersion != d.CellVersion)
            throw new InvalidDataException($"the reopened store is at sequence {_store.AppliedSequence} (v{_store.AppliedVersion}), the snapshot at {d.Sequence} (v{d.CellVersion})");
    }

    private static void DeleteDirectory(string dir)
    {
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }

    private static void TryDelete(string file)
    {
        try
        {
            File.Delete(file);
        }
        catch (IOException)
        {
            // best effort: the next bootstrap overwrites it
        }
    }

    // Blocking store work (FASTER's writes, checkpoint and recovery, the promotion's flush) belongs on a thread of its own, not the pool.
    private static Task OnDedicatedThread(Action work)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        new Thread(() =>
        {
            try
            {
                work();
                done.SetResult();
            }
#pragma warning disable CA1031 // handed to the awaiting caller
            catch (Exception e)
#pragma warning restore CA1031
            {
                done.SetException(e);
            }
        }) { IsBackground = true, Name = "omega-replica-store" }.Start();
        return done.Task;
    }

    // ---------------------------------------------------------------- leader

    private async Task LeadAsync(long epoch, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var wonUtc = DateTime.UtcNow;
        long appliedBefore = Store.AppliedSequence;
        // Catch up to the log's end. Every read now is at a revision after our key's creation, when the previous leader's
        // key was already gone: its later writes all fail their compare, so the log we read is final up to our epoch.
        while (true)
        {
            try
            {
                await TailAsync(int.MaxValue, ct).ConfigureAwait(false);
                break;
            }
            catch (RpcException e) when (!ct.IsCancellationRequested && e.StatusCode is StatusCode.DeadlineExceeded or StatusCode.Unavailable)
            {
                // A read held by a stalled member (its deadline) or a member restarting: read on from what was applied.
                // The session (its own keepalives) decides whether this replica still holds the key.
                Log.EtcdError(_logger, _options.ReplicaName, "catch-up", e.Status.Detail);
            }
        }
        var caughtUpUtc = DateTime.UtcNow;
        long replayed = Store.AppliedSequence - appliedBefore;
        Interlocked.Exchange(ref _epoch, epoch);
        _shipper = new EtcdLogShipper(Client, _options, _leaderKey, epoch, reason => Depose(reason));
        // Promote flushes everything applied to the local journal first (WaitForAll: disk I/O for as long as the standby's
        // unflushed tail), which must not hold a pool thread (the pool starving is how a leader once missed its keepalive).
        var replica = Store;
        var shipper = _shipper;
        ICellStore store = null!;
        await OnDedicatedThread(() => store = replica.Promote(shipper)).ConfigureAwait(false);
        var promotedUtc = DateTime.UtcNow;
        _gate.Timeline = new TakeoverTimeline(_lastSeenHeldUtc, wonUtc, caughtUpUtc, promotedUtc, replayed);
        Log.TakeoverSteps(_logger, _options.ReplicaName, epoch, _lastSeenHeldUtc == default ? "never" : _lastSeenHeldUtc.ToString("HH:mm:ss.fff", CultureInfo.InvariantCulture),
            wonUtc.ToString("HH:mm:ss.fff", CultureInfo.InvariantCulture), (caughtUpUtc - wonUtc).TotalMilliseconds, replayed, (promotedUtc - caughtUpUtc).TotalMilliseconds);
        _gate.Set(true, _options.AdvertiseAddress, epoch);
        Log.Elected(_logger, _options.ReplicaName, epoch, store.DurableSequence, store.DurableVersion, clock.Elapsed.TotalMilliseconds);
        _leadership.TrySetResult(store);
        long lastCompactedAt = 0, seenRevision = 0;
        var compactClock = Stopwatch.StartNew();
        var trimClock = Stopwatch.StartNew();
        try
        {
            while (!ct.IsCancellationRequested && !_deposed.IsCancellationRequested)
            {
                await Task.Delay(_options.ProgressInterval, ct).ConfigureAwait(false);
                try
                {
                    await PublishProgressAsync(Interlocked.Read(ref _lease), ct).ConfigureAwait(false);
                    if (trimClock.Elapsed >= _options.TrimInterval)
                    {
                        trimClock.Restart();
                        long revision = await TrimAsync(store, epoch, ct).ConfigureAwait(false);
                        if (_options.CompactionInterval > TimeSpan.Zero && compactClock.Elapsed >= _options.CompactionInterval)
                        {
                            compactClock.Restart();
                            // Compact to the revision seen one interval ago: history younger than that stays for watchers.
                            if (seenRevision > lastCompactedAt)
                            {
                                await Client.CompactAsync(new CompactionRequest { Revision = seenRevision }, deadline: CallDeadline(), cancellationToken: ct).ConfigureAwait(false);
                                Log.Compacted(_logger, _options.ReplicaName, seenRevision);
                                lastCompactedAt = seenRevision;
                            }
                            seenRevision = revision;
                        }
                    }
                }
                catch (RpcException e) when (!ct.IsCancellationRequested)
                {
                    // Maintenance is best effort; the next round retries (a compaction at an already compacted revision lands here too).
                    Log.EtcdError(_logger, _options.ReplicaName, "maintenance", e.Status.Detail);
                }
            }
        }
        catch (OperationCanceledException) when (!_stop.IsCancellationRequested)
        {
            Depose("session lost");
        }
    }

    /// <summary>
    /// Deletes entries every live replica has applied (keeping <see cref="ReplicationOptions.RetainEntries"/>), and in any
    /// case entries beyond <see cref="ReplicationOptions.MaxRetainEntries"/>. Fenced like the log writes. Returns etcd's revision.
    /// </summary>
    private async Task<long> TrimAsync(ICellStore store, long epoch, CancellationToken ct)
    {
        long minApplied = store.DurableSequence;
        var progress = await Client.GetAsync(new RangeRequest
        {
            Key = ByteString.CopyFromUtf8(_options.Prefix + "replicas/"),
            RangeEnd = ByteString.CopyFromUtf8(_options.Prefix + "replicas0"),
        }, deadline: CallDeadline(), cancellationToken: ct).ConfigureAwait(false);
        foreach (var kv in progress.Kvs)
            if (long.TryParse(kv.Value.ToStringUtf8(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long seq)) minApplied = Math.Min(minApplied, seq);
        var newest = await Client.GetAsync(new RangeRequest
        {
            Key = ByteString.CopyFromUtf8(_logPrefix),
            RangeEnd = ByteString.CopyFromUtf8(_logEnd),
            SortOrder = RangeRequest.Types.SortOrder.Descend,
            SortTarget = RangeRequest.Types.SortTarget.Key,
            Limit = _options.MaxRetainEntries,
            KeysOnly = true,
        }, deadline: CallDeadline(), cancellationToken: ct).ConfigureAwait(false);
        var keys = newest.Kvs;
        // Candidate A: below the entry holding minApplied+1 (everything before it every live replica has), but keeping
        // the newest RetainEntries. Candidate C: below the MaxRetainEntries-th newest, whatever anyone has applied.
        long cutA = 0;
        for (int i = 0; i < keys.Count; i++)
        {
            long first = LogEntry.SequenceOfKey(keys[i].Key.Span);
            if (first <= minApplied + 1)
            {
                cutA = first;
                break;
            }
        }
        long cutRetain = keys.Count > _options.RetainEntries && _options.RetainEntries > 0 ? LogEntry.SequenceOfKey(keys[_options.RetainEntries - 1].Key.Span) : (keys.Count > 0 && _options.RetainEntries == 0 ? long.MaxValue : 0);
        long cutMax = newest.More || newest.Count > keys.Count ? LogEntry.SequenceOfKey(keys[^1].Key.Span) : 0;
        long cut = Math.Max(Math.Min(cutA, cutRetain), cutMax);
        if (cut <= 0 || cut == long.MaxValue) return newest.Header.Revision;
        var txn = new TxnRequest();
        txn.Compare.Add(new Compare { Key = _leaderKey, Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = epoch });
        txn.Success.Add(new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = ByteString.CopyFromUtf8(_logPrefix), RangeEnd = ByteString.CopyFromUtf8(LogEntry.Key(_options.Prefix, cut)) } });
        var r = await Client.TransactionAsync(txn, deadline: CallDeadline(), cancellationToken: ct).ConfigureAwait(false);
        if (!r.Succeeded)
        {
            Depose($"fenced while trimming: the election key is no longer at epoch {epoch}");
            return r.Header.Revision;
        }
        long deleted = r.Responses[0].ResponseDeleteRange.Deleted;
        if (deleted > 0) Log.Trimmed(_logger, _options.ReplicaName, cut, deleted);
        return r.Header.Revision;
    }

    private void Depose(string reason)
    {
        if (Interlocked.Exchange(ref _deposedOnce, 1) != 0) return;
        long epoch = Interlocked.Exchange(ref _epoch, 0);
        _shipper?.Stop();
        _gate.Set(false, null, 0);
        if (epoch != 0 && !_stop.IsCancellationRequested) Log.Deposed(_logger, _options.ReplicaName, epoch, reason);
        try
        {
            _deposed.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // disposing
        }
    }

    /// <summary>
    /// Gives the leadership up at once (revokes the session's lease, which deletes the election key), so a standby takes
    /// over without waiting for the lease to lapse. Used on a clean shutdown. Not an error on a standby.
    /// </summary>
    public async Task ResignAsync()
    {
        long lease = Interlocked.Read(ref _lease);
        if (lease == 0 || _client is null) return;
        _shipper?.Stop();
        try
        {
            await _client.LeaseRevokeAsync(new LeaseRevokeRequest { ID = lease }, deadline: DateTime.UtcNow.AddSeconds(2)).ConfigureAwait(false);
        }
        catch (RpcException)
        {
            // the lease lapses by itself within its TTL
        }
    }

    /// <summary>Stops following or leading (resigning), and closes the local store unless it was promoted (then its owner closes it).</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested) return;
        bool leading = Interlocked.Read(ref _epoch) != 0;
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_main is not null)
        {
            try
            {
                await _main.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // stopped
            }
        }
        if (leading) await ResignAsync().ConfigureAwait(false);
        else if (Interlocked.Read(ref _lease) is long lease and not 0 && _client is not null)
        {
            try
            {
                await _client.LeaseRevokeAsync(new LeaseRevokeRequest { ID = lease }, deadline: DateTime.UtcNow.AddSeconds(2)).ConfigureAwait(false);
            }
            catch (RpcException)
            {
                // lapses by itself
            }
        }
        _gate.Set(false, null, 0);
        if (_store is { IsPromoted: false } store) store.Dispose();
        _client?.Dispose();
        foreach (var m in _memberClients) m.Dispose();
        _stop.Dispose();
        _deposed.Dispose();
    }
}
