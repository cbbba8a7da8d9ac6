using System.Text.Json;
using Omega.Cells;
using Omega.Scheduling;

namespace Omega.Server;

/// <summary>
/// The JSON documents of the structured operator replies (protocol version 3; docs/protocol.md, section 8, "Operator
/// messages", "Structured replies"): the statistics of <c>Inspect Stats</c> and a decision record of <c>Explain</c>.
/// Tools (<c>omega stats -o json</c>, dashboards, scripts in any language) read fields instead of parsing lines whose
/// format is free to change. Built only when a client asks (format 1), on the request path of an operator command,
/// never on a placement path.
/// </summary>
internal static class StructuredReports
{
    private static readonly JsonWriterOptions Compact = new() { Indented = false };

    /// <summary>The Stats document: the cell, outcome counters, each scheduler kind, and node liveness.</summary>
    public static byte[] Stats(Cell cell, SchedulingEngine? engine, NodeLifecycleController lifecycle)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, Compact))
        {
            w.WriteStartObject();
            w.WriteString("apiVersion", "omega/v1");
            w.WriteString("kind", "Stats");
            w.WriteStartObject("cell");
            w.WriteString("name", cell.Name);
            w.WriteNumber("version", cell.Version);
            w.WriteNumber("nodes", cell.NodeCount);
            w.WriteNumber("bindings", cell.AllocationCount);
            w.WriteEndObject();
            var k = cell.Counters;
            // Only the codes counted at least once, as the text form does: a reader treats an absent code as zero.
            w.WriteStartObject("transactions");
            foreach (var st in Enum.GetValues<TransactionStatus>())
                if (k.Transactions(st) > 0) w.WriteNumber(st.ToString(), k.Transactions(st));
            w.WriteEndObject();
            w.WriteStartObject("claims");
            foreach (var st in Enum.GetValues<ClaimStatus>())
                if (k.Claims(st) > 0) w.WriteNumber(st.ToString(), k.Claims(st));
            w.WriteEndObject();
            w.WriteStartArray("schedulers");
            if (engine is not null)
                foreach (var name in engine.Kinds)
                {
                    var (useful, wasted) = engine.Busyness(name);
                    var (placed, clean, conflicted) = engine.Totals(name);
                    w.WriteStartObject();
                    w.WriteString("name", name);
                    w.WriteNumber("queueDepth", engine.QueueDepth(name));
                    w.WriteNumber("oldestQueuedSeconds", engine.OldestQueuedAge(name).TotalSeconds);
                    w.WriteStartObject("busyness");
                    w.WriteNumber("useful", useful);
                    w.WriteNumber("wasted", wasted);
                    w.WriteEndObject();
                    w.WriteNumber("placements", placed);
                    w.WriteNumber("cleanTransactions", clean);
                    w.WriteNumber("conflictedTransactions", conflicted);
                    w.WriteEndObject();
                }
            w.WriteEndArray();
            w.WriteStartObject("lifecycle");
            w.WriteNumber("leaseMilliseconds", lifecycle.LeaseMilliseconds);
            w.WriteBoolean("brakeEngaged", lifecycle.BrakeEngaged);
            w.WriteNumber("heldBack", lifecycle.HeldBack);
            w.WriteNumber("suspect", lifecycle.SuspectCount);
            w.WriteNumber("massSilenceTicks", lifecycle.MassSilenceCount);
            w.WriteNumber("stalls", lifecycle.StallCount);
            w.WriteNumber("heardByReceive", lifecycle.HeardByReceiveCount);
            w.WriteNumber("returned", lifecycle.ReturnedCount);
            w.WriteStartObject("evictions");
            w.WriteNumber("lease_expired", lifecycle.EvictedFor(EvictionReason.LeaseExpired));
            w.WriteNumber("domain_confirmed_lost", lifecycle.EvictedFor(EvictionReason.DomainConfirmedLost));
            w.WriteNumber("registration_expired", lifecycle.ExpiredRegistrationCount);
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return buffer.ToArray();
    }

    /// <summary>A decision record as JSON, with its entry for <paramref name="task"/> (what <c>omega explain -o json</c> prints).</summary>
    public static byte[] Decision(DecisionRecord r, TaskId task)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, Compact))
        {
            w.WriteStartObject();
            w.WriteString("apiVersion", "omega/v1");
            w.WriteString("kind", "DecisionRecord");
            w.WriteString("task", task.ToString());
            w.WriteNumber("job", r.Job.Value);
            w.WriteNumber("jobGeneration", r.JobGeneration);
            w.WriteNumber("attempt", r.Attempt);
            w.WriteString("scheduler", r.Scheduler);
            w.WriteNumber("worker", r.Worker);
            w.WriteNumber("fencingToken", r.Token.Value);
            w.WriteString("at", r.At.UtcDateTime);
            w.WriteNumber("queueSeconds", r.QueueTime.TotalSeconds);
            w.WriteNumber("decisionSeconds", r.DecisionTime.TotalSeconds);
            w.WriteNumber("commitSeconds", r.CommitTime.TotalSeconds);
            w.WriteNumber("snapshotVersion", r.SnapshotVersion);
            w.WriteNumber("policyRevision", r.PolicyRevision);
            w.WriteNumber("nodesConsidered", r.NodesConsidered);
            w.WriteNumber("feasible", r.Feasible);
            w.WriteStartObject("filteredByReason");
            foreach (var (reason, count) in r.FilteredByReason) w.WriteNumber(reason.ToString(), count);
            w.WriteEndObject();
            w.WriteStartArray("topScores");
            foreach (var (node, score) in r.TopScores)
            {
                w.WriteStartObject();
                w.WriteNumber("node", node.Value);
                w.WriteNumber("score", score);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (r.ForTask(task.Index) is { } t)
            {
                w.WriteStartObject("taskDecision");
                w.WriteNumber("index", t.TaskIndex);
                if (t.Node is { } n) w.WriteNumber("node", n.Value); else w.WriteNull("node");
                if (t.NodeName is { } nn) w.WriteString("nodeName", nn); else w.WriteNull("nodeName");
                w.WriteNumber("score", t.Score);
                if (t.Claim is { } claim) w.WriteString("claim", claim.ToString()); else w.WriteNull("claim");
                w.WriteStartArray("victims");
                if (t.Victims is { } victims) foreach (var v in victims) w.WriteStringValue(v.ToString());
                w.WriteEndArray();
                w.WriteEndObject();
            }
            else w.WriteNull("taskDecision");
            if (r.CommitStatus is { } cs) w.WriteString("commitStatus", cs.ToString()); else w.WriteNull("commitStatus");
            w.WriteNumber("commitVersion", r.CommitVersion);
            w.WriteString("outcome", r.Outcome);
            w.WriteString("nextOwner", r.NextOwner);
            w.WriteStartObject("tenantUsage");
            w.WriteNumber("cpuMillis", r.TenantUsage.CpuMillis);
            w.WriteNumber("memoryBytes", r.TenantUsage.MemoryBytes);
            w.WriteEndObject();
            if (r.TenantQuota is { } q)
            {
                w.WriteStartObject("tenantQuota");
                w.WriteNumber("cpuMillis", q.CpuMillis);
                w.WriteNumber("memoryBytes", q.MemoryBytes);
                w.WriteEndObject();
            }
            else w.WriteNull("tenantQuota");
            if (r.Origin is { } o)
            {
                w.WriteStartObject("origin");
                w.WriteString("tenant", o.Tenant);
                w.WriteString("workload", o.Workload);
                w.WriteNumber("generation", o.Generation);
                w.WriteNumber("slot", o.Slot);
                w.WriteEndObject();
            }
            else w.WriteNull("origin");
            w.WriteEndObject();
        }
        return buffer.ToArray();
    }
}
