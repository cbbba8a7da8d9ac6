using Xunit.Abstractions;
namespace Omega.Dst.Tests;
public sealed class ScratchTests(ITestOutputHelper output)
{
    [Fact]
    public void Scratch()
    {
        long s = long.Parse(Environment.GetEnvironmentVariable("DST_SEED") ?? "23");
        for (int i = 0; i < int.Parse(Environment.GetEnvironmentVariable("DST_REPS") ?? "3"); i++)
        {
            var r = DstSimulation.RunSeed(s, new DstOptions { FullTrace = true });
            File.WriteAllLines($"/tmp/dst-run{i}.txt", r.Trace);
            output.WriteLine(r.ToString().Split('\n')[0]);
        }
    }
}
