using System.Diagnostics;

namespace Omega.Replication.Tests;

/// <summary>Awaiting a condition with a deadline (no fixed sleeps), shared by the replication tests.</summary>
internal static class TestWait
{
    /// <summary>Polls <paramref name="condition"/> every 20 ms until it holds; throws with <paramref name="what"/> after <paramref name="timeout"/>.</summary>
    public static async Task Until(Func<bool> condition, TimeSpan timeout, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > timeout) throw new TimeoutException($"timed out after {timeout.TotalSeconds} s waiting for {what}");
            await Task.Delay(20);
        }
    }
}
