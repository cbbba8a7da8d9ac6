using Xunit.Abstractions;

namespace Omega.Cells.Tests;

/// <summary>
/// The cell's open-addressed task index (issue 14: it replaced a <c>Dictionary&lt;TaskId, NodeId&gt;</c> inside the commit
/// lock) behaves exactly like the dictionary under a seeded random sequence of adds, overwrites, lookups and removals,
/// through growth and long probe runs (backward-shift deletion must keep every remaining task reachable).
/// </summary>
public sealed class TaskTableTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(64, 40_000)]      // few distinct tasks: long-lived probe runs, many removals inside them
    [InlineData(20_000, 200_000)] // growth from 16 slots to thousands
    public void Behaves_like_a_dictionary_under_random_operations(int distinctTasks, int operations)
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}, {distinctTasks} tasks, {operations} operations");
        var rng = new Random(seed);
        var table = new TaskTable();
        var model = new Dictionary<TaskId, NodeId>();
        for (int op = 0; op < operations; op++)
        {
            // Dense job ids and indexes, as the cell sees them; the jobs repeat so tasks of one job share the high bits.
            int k = rng.Next(distinctTasks);
            var task = new TaskId(k / 7 + 1, k % 7);
            var node = new NodeId(rng.Next(1_000));
            string at = $"seed {seed} op {op} ({task})";
            switch (rng.Next(5))
            {
                case 0:
                case 1:
                    Assert.True(model.TryAdd(task, node) == table.TryAdd(task, node), $"{at}: TryAdd disagrees");
                    break;
                case 2:
                    Assert.True(model.Remove(task, out var m) == table.Remove(task, out var t), $"{at}: Remove disagrees");
                    Assert.True(m == t, $"{at}: Remove returned {t}, the model {m}");
                    break;
                case 3:
                    model[task] = node;
                    table[task] = node;
                    break;
                default:
                    Assert.True(model.TryGetValue(task, out var mv) == table.TryGetValue(task, out var tv) && mv == tv, $"{at}: lookup disagrees");
                    Assert.True(model.ContainsKey(task) == table.ContainsKey(task), $"{at}: ContainsKey disagrees");
                    break;
            }
            Assert.True(model.Count == table.Count, $"{at}: count {table.Count}, the model {model.Count}");
        }
        // Every remaining task is reachable and the enumeration holds exactly the model's entries.
        foreach (var (task, node) in model)
            Assert.True(table.TryGetValue(task, out var n) && n == node, $"seed {seed}: {task} lost or wrong at the end");
        var seen = new Dictionary<TaskId, NodeId>();
        foreach (var (task, node) in table) Assert.True(seen.TryAdd(task, node), $"seed {seed}: {task} enumerated twice");
        Assert.Equal(model.OrderBy(p => p.Key.Job.Value).ThenBy(p => p.Key.Index), seen.OrderBy(p => p.Key.Job.Value).ThenBy(p => p.Key.Index));
    }

    [Fact]
    public void EnsureCapacity_keeps_the_entries_and_a_negative_node_is_refused()
    {
        var table = new TaskTable();
        for (int i = 0; i < 10; i++) Assert.True(table.TryAdd(new TaskId(1, i), new NodeId(i)));
        table.EnsureCapacity(100_000);
        for (int i = 0; i < 10; i++) Assert.True(table.TryGetValue(new TaskId(1, i), out var n) && n.Value == i);
        Assert.Equal(10, table.Count);
        Assert.Throws<ArgumentOutOfRangeException>(() => table.TryAdd(new TaskId(2, 0), new NodeId(-1)));
    }
}
