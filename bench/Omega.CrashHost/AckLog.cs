using System.Globalization;
using System.Text;

namespace Omega.CrashHost;

/// <summary>One acknowledged (durable) keyed transaction, as the host recorded it after the acknowledgement.</summary>
internal sealed record AckedTransaction(ulong KeyHigh, ulong KeyLow, int Status, long Version, List<AckedClaim> Claims);

/// <summary>One claim of an acknowledged transaction and the status it got.</summary>
internal sealed record AckedClaim(long Job, int Index, int Node, long Cpu, long Memory, int Status);

/// <summary>
/// The host's record of what it was told durably, one line per event, written to the OS after each acknowledgement so it
/// survives SIGKILL (a line cut by the kill has no newline and is ignored):
/// <c>T keyHi keyLo status version n (job index node cpu mem status)*n</c> an acknowledged transaction;
/// <c>X job index</c> a release is about to be issued (from here on the binding may legitimately be gone);
/// <c>R job index</c> the release was acknowledged.
/// </summary>
internal static class AckLog
{
    public static string FormatTransaction(AckedTransaction t)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"T {t.KeyHigh} {t.KeyLow} {t.Status} {t.Version} {t.Claims.Count}");
        foreach (var c in t.Claims) sb.Append(CultureInfo.InvariantCulture, $" {c.Job} {c.Index} {c.Node} {c.Cpu} {c.Memory} {c.Status}");
        return sb.ToString();
    }

    /// <summary>Reads every complete line of an ack file.</summary>
    public static void Read(string path, List<AckedTransaction> transactions, HashSet<(long, int)> releaseIntents)
    {
        if (!File.Exists(path)) return;
        string text = File.ReadAllText(path);
        int end = text.LastIndexOf('\n');
        if (end < 0) return;
        foreach (var line in text[..end].Split('\n'))
        {
            var p = line.Split(' ');
            switch (p[0])
            {
                case "T":
                {
                    int n = int.Parse(p[5], CultureInfo.InvariantCulture);
                    var claims = new List<AckedClaim>(n);
                    for (int i = 0; i < n; i++)
                    {
                        int b = 6 + i * 6;
                        claims.Add(new AckedClaim(long.Parse(p[b], CultureInfo.InvariantCulture), int.Parse(p[b + 1], CultureInfo.InvariantCulture), int.Parse(p[b + 2], CultureInfo.InvariantCulture),
                            long.Parse(p[b + 3], CultureInfo.InvariantCulture), long.Parse(p[b + 4], CultureInfo.InvariantCulture), int.Parse(p[b + 5], CultureInfo.InvariantCulture)));
                    }
                    transactions.Add(new AckedTransaction(ulong.Parse(p[1], CultureInfo.InvariantCulture), ulong.Parse(p[2], CultureInfo.InvariantCulture),
                        int.Parse(p[3], CultureInfo.InvariantCulture), long.Parse(p[4], CultureInfo.InvariantCulture), claims));
                    break;
                }
                case "X":
                    releaseIntents.Add((long.Parse(p[1], CultureInfo.InvariantCulture), int.Parse(p[2], CultureInfo.InvariantCulture)));
                    break;
            }
        }
    }
}
