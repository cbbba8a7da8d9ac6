using Omega.Cells;
using Xunit.Abstractions;

namespace Omega.Storage.Tests;

/// <summary>
/// The durability seam without FASTER: a recording journal attached to a cell receives one record per mutation, in
/// sequence order, and replaying those records into a <see cref="CellRestorer"/> rebuilds an identical cell.
/// </summary>
public sealed class JournalSeamTests
{
    private readonly ITestOutputHelper _output;

    public JournalSeamTests(ITestOutputHelper output) => _output = output;

    private sealed class RecordingJournal : ICellJournal
    {
        public List<byte[]> Records { get; } = new();

        public long LastVersion { get; private set; }

        public void Append(long sequence, long cellVersion, ReadOnlySpan<byte> record)
        {
            Assert.Equal(Records.Count + 1, sequence);
            Assert.True(cellVersion >= LastVersion, "records arrive in version order");
            var (_, seq, version) = CellRecord.ReadHeader(record);
            Assert.Equal(sequence, seq);
            Assert.Equal(cellVersion, version);
            LastVersion = cellVersion;
            Records.Add(record.ToArray());
        }
    }

    [Fact]
    public void Replaying_the_journal_rebuilds_an_identical_cell()
    {
        int baseSeed = Environment.GetEnvironmentVariable("OMEGA_TEST_SEED") is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        _output.WriteLine($"seed {baseSeed} (OMEGA_TEST_SEED={baseSeed} to replay)");
        for (int round = 0; round < 20; round++)
        {
            int seed = baseSeed + round;
            using var tmp = new TempStore();
            var journal = new RecordingJournal();
            using var cell = new Cell(new CellOptions { Time = tmp.Time }, journal);
            var work = new Workload(seed);
            work.Setup(cell);
            int steps = 50 + round * 25;
            work.Run(cell, steps);
            Assert.Equal(journal.Records.Count, cell.JournalSequence);

            using var restorer = new CellRestorer(new CellOptions { Time = tmp.Time });
            foreach (var r in journal.Records) Assert.True(restorer.Replay(r));
            using var rebuilt = restorer.Complete();
            Assert.True(CellDump.Of(cell) == CellDump.Of(rebuilt), $"seed {seed}: replayed cell differs");
            Assert.Equal(cell.Audit(), rebuilt.Audit()); // the workload may lower a quota below usage; that shows in both
            Workload.AssertRetriesReplay(rebuilt, work.Keyed);
        }
    }

    [Fact]
    public void A_gap_in_the_journal_is_refused()
    {
        using var tmp = new TempStore();
        var journal = new RecordingJournal();
        using var cell = new Cell(new CellOptions { Time = tmp.Time }, journal);
        var work = new Workload(1);
        work.Setup(cell);
        work.Run(cell, 50);
        using var restorer = new CellRestorer();
        restorer.Replay(journal.Records[0]);
        Assert.Throws<InvalidDataException>(() => restorer.Replay(journal.Records[2]));
        // Records already included are skipped, not applied twice.
        Assert.False(restorer.Replay(journal.Records[0]));
    }

    [Fact]
    public void A_cell_without_a_journal_appends_nothing_and_a_second_journal_is_refused()
    {
        using var plain = new Cell();
        plain.AddNode(new NodeSpec("n", new ResourceVector(1000, 1000)));
        Assert.Equal(0, plain.JournalSequence);
        Assert.False(plain.IsJournaled);
        var journal = new RecordingJournal();
        plain.AttachJournal(journal);
        plain.SetTenantQuota(new TenantId(0), null);
        Assert.Single(journal.Records);
        Assert.Throws<InvalidOperationException>(() => plain.AttachJournal(new RecordingJournal()));
    }
}
