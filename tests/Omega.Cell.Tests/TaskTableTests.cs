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

    // prof15: consecutive indexes of one job share a home group (4 task-table slots, 8 node-index slots), so a run of a
    // job's tasks touches one line instead of one line per task; the groups themselves still spread over the table.
    [Theory]
    [InlineData(4, 1 << 20)]
    [InlineData(8, 1 << 20)]
    public void Consecutive_indexes_of_a_job_share_a_home_group_and_groups_spread(int group, int length)
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        Func<TaskId, int, int> home = group == 4 ? TaskTable.HomeSlot : NodeBindings.HomeSlot;
        var groups = new HashSet<int>();
        int runs = 2_000;
        for (int r = 0; r < runs; r++)
        {
            long job = rng.Next(1, 1_000_000);
            int first = rng.Next(-1_000, 1_000_000) & ~(group - 1);
            int h = home(new TaskId(job, first), length);
            Assert.True(h % group == 0, $"seed {seed}: the group of j{job}/{first} starts at {h}, not a multiple of {group}");
            for (int i = 1; i < group; i++)
                Assert.True(home(new TaskId(job, first + i), length) == h + i, $"seed {seed}: j{job}/{first + i} is not beside j{job}/{first}");
            groups.Add(h);
        }
        // 2,000 random groups over length / group places: nearly all distinct if they spread (a birthday bound).
        Assert.True(groups.Count > runs * 9 / 10, $"seed {seed}: only {groups.Count} distinct home groups for {runs} runs");
    }

    // The runs of one job that the grouped hash keeps together, including negative indexes (a hostile commit's), through
    // growth and backward-shift deletion inside long runs.
    [Fact]
    public void Behaves_like_a_dictionary_with_runs_of_consecutive_indexes()
    {
        int seed = Environment.TickCount & 0x7fffffff;
        output.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        var table = new TaskTable();
        var model = new Dictionary<TaskId, NodeId>();
        for (int op = 0; op < 100_000; op++)
        {
            int k = rng.Next(6_000);
            var task = new TaskId(k / 64 + 1, k % 64 - 9);
            var node = new NodeId(rng.Next(1_000));
            if (rng.Next(3) == 0) Assert.True(model.Remove(task) == table.Remove(task), $"seed {seed} op {op}: Remove disagrees");
            else Assert.True(model.TryAdd(task, node) == table.TryAdd(task, node), $"seed {seed} op {op}: TryAdd disagrees");
        }
        Assert.Equal(model.Count, table.Count);
        foreach (var (task, node) in model)
            Assert.True(table.TryGetValue(task, out var n) && n == node, $"seed {seed}: {task} lost or wrong at the end");
    }
}
