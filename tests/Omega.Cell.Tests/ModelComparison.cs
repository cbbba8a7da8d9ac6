using System.Text;

namespace Omega.Cells.Tests;

/// <summary>Compares a real cell with a <see cref="CellModel"/> through the public API only.</summary>
internal static class ModelComparison
{
    /// <summary>Returns null when the cell and the model agree, otherwise a description of every difference found.</summary>
    public static string? Difference(Cell cell, CellModel model, int tenants = 4)
    {
        var sb = new StringBuilder();
        if (cell.Version != model.Version) sb.AppendLine($"cell version {cell.Version}, model {model.Version}");

        var snap = cell.Snapshot();
        if (snap.Version != model.Version) sb.AppendLine($"snapshot version {snap.Version}, model {model.Version}");
        if (snap.NodeCount != model.Nodes.Count) sb.AppendLine($"snapshot node count {snap.NodeCount}, model {model.Nodes.Count}");
        for (int i = 0; i < Math.Max(snap.NodeCount, model.Nodes.Count) + 1; i++)
        {
            var read = snap.TryGetNode(new NodeId(i), out var view);
            if (i >= model.Nodes.Count || model.Nodes[i].Status == NodeStatus.Removed)
            {
                if (read != SnapshotRead.NotFound) sb.AppendLine($"n{i}: read {read}, model says it does not exist");
                continue;
            }
            var m = model.Nodes[i];
            if (read != SnapshotRead.Ok) { sb.AppendLine($"n{i}: read {read}"); continue; }
            var expected = Describe(m.Spec, m.Status, m.Version, m.Allocated, m.TaskCount);
            var actual = Describe(view.Spec, view.Status, view.Version, view.Allocated, view.TaskCount);
            if (expected != actual) sb.AppendLine($"n{i}: cell {actual}, model {expected}");
            if (!cell.TryGetNodeId(m.Spec.Name, out var byName) || byName.Value != i) sb.AppendLine($"n{i}: name {m.Spec.Name} does not resolve to it");

            var onNode = cell.GetAllocationsOnNode(new NodeId(i)).OrderBy(a => a.Task.ToString(), StringComparer.Ordinal).ToList();
            var modelOnNode = model.Allocations.Values.Where(a => a.Node.Value == i).OrderBy(a => a.Task.ToString(), StringComparer.Ordinal).ToList();
            if (!onNode.SequenceEqual(modelOnNode)) sb.AppendLine($"n{i}: bindings [{string.Join("; ", onNode)}], model [{string.Join("; ", modelOnNode)}]");
        }

        var bindings = cell.GetAllocations().OrderBy(a => a.Task.ToString(), StringComparer.Ordinal).ToList();
        var modelBindings = model.Allocations.Values.OrderBy(a => a.Task.ToString(), StringComparer.Ordinal).ToList();
        if (!bindings.SequenceEqual(modelBindings))
            sb.AppendLine($"bindings [{string.Join("; ", bindings)}], model [{string.Join("; ", modelBindings)}]");
        if (cell.AllocationCount != model.Allocations.Count) sb.AppendLine($"allocation count {cell.AllocationCount}, model {model.Allocations.Count}");
        foreach (var task in model.Allocations.Keys)
            if (!cell.TryGetAllocation(task, out var a) || a != model.Allocations[task]) sb.AppendLine($"TryGetAllocation({task}) disagrees");

        for (int t = 0; t < tenants; t++)
        {
            var (usage, quota) = cell.GetTenantUsage(new TenantId(t));
            ResourceVector? modelQuota = model.TenantQuota.TryGetValue(t, out var q) ? q : null;
            if (usage != model.Usage(t) || quota != modelQuota) sb.AppendLine($"tenant t{t}: usage {usage} quota {quota}, model {model.Usage(t)} quota {modelQuota}");
        }

        // Audit reports a tenant whose quota was lowered below its usage (SetTenantQuota allows that; commits then
        // refuse new claims for it). Anything else it reports is a broken invariant.
        var audit = cell.Audit().Where(p => !p.Contains("over quota", StringComparison.Ordinal)).ToList();
        if (audit.Count > 0) sb.AppendLine("audit: " + string.Join("; ", audit));
        int overQuota = cell.Audit().Count(p => p.Contains("over quota", StringComparison.Ordinal));
        int modelOverQuota = model.TenantQuota.Count(q => !model.Usage(q.Key).FitsWithin(q.Value));
        if (overQuota != modelOverQuota) sb.AppendLine($"audit reports {overQuota} tenants over quota, model {modelOverQuota}");
        return sb.Length == 0 ? null : sb.ToString();
    }

    public static string Describe(NodeSpec spec, NodeStatus status, long version, ResourceVector allocated, int taskCount)
        => $"{spec.Name} cap=({spec.Capacity.CpuMillis},{spec.Capacity.MemoryBytes},{spec.Capacity.Gpus}) {status} v{version} "
            + $"alloc=({allocated.CpuMillis},{allocated.MemoryBytes},{allocated.Gpus}) tasks={taskCount}";
}
