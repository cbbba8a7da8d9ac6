using System.Globalization;

namespace Omega.Storage.Log;

/// <summary>
/// The journal's address layout (page and segment size) is fixed when it is created: FasterLog addresses map to segment
/// files and pages by these sizes, so reopening with other sizes would read the wrong bytes. The first open records them
/// in <c>journal/GEOMETRY</c>; later opens use the recorded sizes (with a warning if the options differ).
/// </summary>
internal static class JournalGeometry
{
    public static void Apply(string journalDir, StorageOptions options)
    {
        string path = Path.Combine(journalDir, "GEOMETRY");
        if (!File.Exists(path))
        {
            File.WriteAllText(path + ".tmp", string.Create(CultureInfo.InvariantCulture, $"page {options.JournalPageSizeBits}\nsegment {options.JournalSegmentSizeBits}\n"));
            File.Move(path + ".tmp", path, overwrite: true);
            return;
        }
        int page = -1, segment = -1;
        foreach (var line in File.ReadAllLines(path))
        {
            var parts = line.Split(' ');
            if (parts.Length != 2 || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int v)) continue;
            if (parts[0] == "page") page = v;
            else if (parts[0] == "segment") segment = v;
        }
        if (page is < 9 or > 30 || segment < page || segment > 40) throw new StorageCorruptionException($"journal geometry file {path} is malformed", path);
        if (page != options.JournalPageSizeBits || segment != options.JournalSegmentSizeBits)
            options.Warning($"the journal was created with page 2^{page} and segment 2^{segment}; using those instead of the configured 2^{options.JournalPageSizeBits} and 2^{options.JournalSegmentSizeBits}");
        options.JournalPageSizeBits = page;
        options.JournalSegmentSizeBits = segment;
    }
}
