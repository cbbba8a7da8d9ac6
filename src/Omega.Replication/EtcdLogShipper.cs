using System.Buffers.Binary;
using System.Diagnostics;
using dotnet_etcd;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Omega.Storage;

namespace Omega.Replication;

/// <summary>
/// The leader's <see cref="IJournalReplicator"/>: writes each journal group to etcd as fenced transactions
/// (<see cref="LogEntry"/>), one entry per piece of at most <see cref="ReplicationOptions.MaxEntryBytes"/>.
/// </summary>
/// <remarks>
/// <para>Every write is <c>if CreateRevision(election key) == epoch AND Version(entry key) == 0 then Put(entry)</c>:
/// once this replica's lease lapsed (its election key was deleted, or re-created by the next leader at a later
/// revision) the compare fails AT ETCD, whatever this process believes, so a paused or partitioned old leader can never
/// append after its successor started. The second compare forbids overwriting an entry.</para>
/// <para>A transport failure leaves the outcome unknown; the retry then finds the entry present. It is this replica's
/// own earlier write exactly when the election key still has our epoch: no other writer can have put that key during
/// our epoch, and the key did not exist when we caught up at the start of it.</para>
/// </remarks>
internal sealed class EtcdLogShipper : IJournalReplicator
{
    private readonly EtcdClient _client;
    private readonly ReplicationOptions _options;
    private readonly ByteString _leaderKey;
    private readonly long _epoch;
    private readonly Action<string> _fenced;
    private volatile bool _stopped;
    private static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(1);

    public EtcdLogShipper(EtcdClient client, ReplicationOptions options, ByteString leaderKey, long epoch, Action<string> fenced)
    {
        _client = client;
        _options = options;
        _leaderKey = leaderKey;
        _epoch = epoch;
        _fenced = fenced;
    }

    /// <summary>Entries written (for tests and metrics).</summary>
    public long EntriesWritten => Interlocked.Read(ref _entries);

    private long _entries;

    /// <summary>Refuses every later group (the node knows it lost the election before etcd told a write).</summary>
    public void Stop() => _stopped = true;

    public void Replicate(ReadOnlySpan<byte> group, long firstSequence, long lastSequence, long lastCellVersion)
    {
        int max = _options.MaxEntryBytes - LogEntry.HeaderSize;
        if (group.Length <= max)
        {
            Put(LogEntry.Encode(group, firstSequence, lastSequence, lastCellVersion), firstSequence);
            return;
        }
        // Split at element boundaries: every entry holds whole elements, so a prefix of entries is a valid log prefix.
        int start = 0, offset = 0;
        long pieceFirst = firstSequence, pieceLast = 0, pieceVersion = 0;
        while (offset < group.Length)
        {
            int len = BinaryPrimitives.ReadInt32LittleEndian(group[offset..]);
            if (4 + len > max) throw new ReplicationFencedException($"a journal element of {len} bytes does not fit in one etcd entry of at most {_options.MaxEntryBytes} bytes");
            if (offset + 4 + len - start > max)
            {
                Put(LogEntry.Encode(group[start..offset], pieceFirst, pieceLast, pieceVersion), pieceFirst);
                start = offset;
                pieceFirst = pieceLast + 1;
            }
            var (_, last, version) = LogEntry.Element(group.Slice(offset + 4, len));
            pieceLast = last;
            pieceVersion = version;
            offset += 4 + len;
        }
        Put(LogEntry.Encode(group[start..], pieceFirst, pieceLast, pieceVersion), pieceFirst);
    }

    private void Put(byte[] value, long firstSequence)
    {
        if (_stopped) throw new ReplicationFencedException($"replica lost the election of epoch {_epoch}; not writing sequence {firstSequence}");
        var key = ByteString.CopyFromUtf8(LogEntry.Key(_options.Prefix, firstSequence));
        var txn = new TxnRequest();
        txn.Compare.Add(new Compare { Key = _leaderKey, Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = _epoch });
        txn.Compare.Add(new Compare { Key = key, Target = Compare.Types.CompareTarget.Version, Result = Compare.Types.CompareResult.Equal, Version = 0 });
        txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = key, Value = ByteString.CopyFrom(value) } });
        txn.Failure.Add(new RequestOp { RequestRange = new RangeRequest { Key = _leaderKey, KeysOnly = true } });
        txn.Failure.Add(new RequestOp { RequestRange = new RangeRequest { Key = key, KeysOnly = true } });
        var clock = Stopwatch.StartNew();
        bool retried = false;
        while (true)
        {
            TxnResponse r;
            try
            {
                // Each attempt gets at most a second: a stalled member (defragmenting) is left for another one rather
                // than waited on; the unknown outcome of an abandoned attempt is resolved by the retry (see remarks).
                r = _client.Transaction(txn, deadline: DateTime.UtcNow + (_options.ShipTimeout < AttemptTimeout ? _options.ShipTimeout : AttemptTimeout));
            }
            catch (Exception e) when (clock.Elapsed < _options.ShipTimeout
                && (e is RpcException { StatusCode: StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Internal or StatusCode.Unknown }
                    // the client can surface an attempt's deadline as a cancelled task instead of DeadlineExceeded
                    or OperationCanceledException))
            {
                retried = true;
                Thread.Sleep(50); // a member restarting or a leader change inside etcd: retry on the committer thread
                continue;
            }
            catch (Exception e) when (e is RpcException or OperationCanceledException)
            {
                Fail($"etcd unreachable for {clock.Elapsed.TotalSeconds:0.0} s writing sequence {firstSequence}: {(e is RpcException rpc ? rpc.Status.Detail : e.Message)}", e);
                throw; // unreachable: Fail throws
            }
            if (r.Succeeded)
            {
                Interlocked.Increment(ref _entries);
                return;
            }
            var leader = r.Responses[0].ResponseRange.Kvs;
            var entry = r.Responses[1].ResponseRange.Kvs;
            bool stillOurs = leader.Count == 1 && leader[0].CreateRevision == _epoch;
            if (stillOurs && entry.Count == 1 && retried)
            {
                // Our own earlier attempt committed before its reply was lost (see remarks).
                Interlocked.Increment(ref _entries);
                return;
            }
            Fail(stillOurs
                ? $"log entry {firstSequence} already exists in epoch {_epoch}: the log was written by someone else"
                : $"fenced: the election key's revision is {(leader.Count == 1 ? leader[0].CreateRevision : 0)}, not this replica's epoch {_epoch}", null);
        }
    }

    private void Fail(string reason, Exception? inner)
    {
        _stopped = true;
        _fenced(reason);
        throw new ReplicationFencedException(reason, inner);
    }
}
