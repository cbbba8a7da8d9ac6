using Omega.Agent;
using Omega.Cells;
using Omega.ControlPlane;
using Omega.Protocol;
using Omega.Scheduling.Pipeline;

namespace Omega.Wire.Tests;

/// <summary>Policy (0x68) and ExplainWorkload (0x6A) over loopback TCP.</summary>
public class PolicyWireTests
{
    [Fact]
    public async Task Policy_apply_history_undo_and_explain_workload_over_the_wire()
    {
        ObjectStore? store = null;
        PolicyRevisions? revisions = null;
        DecisionArchive? archive = null;
        await using var fx = ServerFixture.Start(
            seed: cell => store = new ObjectStore(cell),
            configure: o =>
            {
                revisions = new PolicyRevisions(store!, new PolicySource());
                archive = new DecisionArchive(store!);
                o.Policies = revisions;
                o.Decisions = archive;
            });
        try
        {
            await using var c = await ControlClient.ConnectAsync(fx.EndPoint, "operator");
            var bad = await c.PolicyAsync(5, """{"weights":{"nope":1}}""");
            Assert.Equal((int)PolicyStatus.Invalid, bad.Status);
            Assert.Contains("weights.nope", bad.Message, StringComparison.Ordinal);

            var a = await c.PolicyAsync(5, """{"weights":{"bin-packing":2}}""");
            Assert.Equal((0, 1), (a.Status, a.Revision));
            var staged = await c.PolicyAsync(1, """{"kind":"SchedulerPolicy","spec":{"weights":{"bin-packing":4}}}""");
            Assert.Equal((0, 2), (staged.Status, staged.Revision));
            Assert.Equal(1, revisions!.ActiveRevision); // staged only
            Assert.Equal(0, (await c.PolicyAsync(2, revision: 2)).Status);
            Assert.Equal(2, revisions.ActiveRevision);

            var history = await c.PolicyAsync(4);
            Assert.Equal(0, history.Status);
            Assert.Contains(history.Lines, l => l.StartsWith("revision 2 active", StringComparison.Ordinal));
            Assert.Contains(history.Lines, l => l.StartsWith("revision 1 superseded", StringComparison.Ordinal));

            var undo = await c.PolicyAsync(3);
            Assert.Equal((0, 1), (undo.Status, undo.Revision));
            Assert.Equal(1, revisions.ActiveRevision);
            Assert.Equal((int)PolicyStatus.RevisionNotFound, (await c.PolicyAsync(2, revision: 9)).Status);

            var unknownOp = await Assert.ThrowsAsync<AgentRequestException>(() => c.PolicyAsync(9));
            Assert.Equal(ErrorCode.UnknownPolicyOperation, unknownOp.Code);

            var (found, text) = await c.ExplainWorkloadAsync("default", "nothing-here", 1);
            Assert.False(found);
            Assert.Contains("no decision record is kept for generation 1", text, StringComparison.Ordinal);
            // The connection is still usable after the typed error.
            Assert.Equal(0, (await c.PolicyAsync(4)).Status);
        }
        finally
        {
            revisions?.Dispose();
            if (archive is not null) await archive.DisposeAsync();
            store?.Dispose();
        }
    }

    [Fact]
    public async Task A_server_without_a_control_plane_answers_with_a_typed_error()
    {
        await using var fx = ServerFixture.Start();
        await using var c = await ControlClient.ConnectAsync(fx.EndPoint, "operator");
        var e = await Assert.ThrowsAsync<AgentRequestException>(() => c.PolicyAsync(4));
        Assert.Equal(ErrorCode.ControlPlaneUnavailable, e.Code);
        e = await Assert.ThrowsAsync<AgentRequestException>(() => c.ExplainWorkloadAsync("default", "w", 0));
        Assert.Equal(ErrorCode.ControlPlaneUnavailable, e.Code);
    }
}
