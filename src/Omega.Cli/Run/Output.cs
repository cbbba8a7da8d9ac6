using System.CommandLine;
using System.Text.Json;

namespace Omega.Cli.Run;

/// <summary>How a command prints its answer (<c>-o</c>).</summary>
internal enum OutputFormat
{
    /// <summary>Lines for people (the default); their format may change between versions.</summary>
    Text,

    /// <summary>One JSON document (with <c>stats --watch</c>: one per line); field names are stable (docs/cli.md).</summary>
    Json,

    /// <summary>The JSON document as YAML (with <c>stats --watch</c>: documents separated by <c>---</c>).</summary>
    Yaml,

    /// <summary>Text with every column or fact the command knows (for <c>stats</c>: the rates too).</summary>
    Wide,
}

/// <summary>
/// The <c>-o json|yaml|wide</c> flag every operator command shares (kubectl's and nomad's convention), and the printing
/// of documents. A machine-readable answer goes to stdout whole; errors stay one line on stderr with the exit code of
/// docs/cli.md, so a script reads stdout only when the exit code is 0.
/// </summary>
internal static class Output
{
    /// <summary>A fresh <c>--output</c>/<c>-o</c> option (each command owns its options).</summary>
    public static Option<string?> Option() => new("--output", "-o") { Description = "json, yaml or wide (default: text for people)." };

    /// <summary>Parses the flag; an unknown value is one line on stderr naming <paramref name="command"/> (the caller exits 2).</summary>
    public static bool TryParse(string command, string? value, out OutputFormat format)
    {
        switch (value)
        {
            case null or "" or "text": format = OutputFormat.Text; return true;
            case "json": format = OutputFormat.Json; return true;
            case "yaml": format = OutputFormat.Yaml; return true;
            case "wide": format = OutputFormat.Wide; return true;
            default:
                Console.Error.WriteLine($"omega {command}: -o must be json, yaml or wide, not '{value}'");
                format = OutputFormat.Text;
                return false;
        }
    }

    /// <summary>True for the machine-readable formats (json and yaml).</summary>
    public static bool IsDocument(this OutputFormat format) => format is OutputFormat.Json or OutputFormat.Yaml;

    /// <summary>Prints one document: indented JSON, or YAML; <paramref name="compact"/> prints JSON on one line (for a stream of documents).</summary>
    public static void Print(ReadOnlySpan<byte> json, OutputFormat format, bool compact = false)
    {
        if (format == OutputFormat.Yaml) Console.Write(Manifests.JsonToYaml(json));
        else if (compact) Console.WriteLine(System.Text.Encoding.UTF8.GetString(json));
        else Console.WriteLine(Manifests.Indent(json));
    }

    /// <summary>Builds a document with <paramref name="write"/> (which writes the members of the top-level object after apiVersion and kind).</summary>
    public static byte[] Document(string kind, Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("apiVersion", "omega/v1");
            w.WriteString("kind", kind);
            write(w);
            w.WriteEndObject();
        }
        return buffer.ToArray();
    }

    /// <summary>A listing's lines as a document: <c>{"kind":KIND,"total":N,"lines":[...]}</c>.</summary>
    public static byte[] Lines(string kind, int total, IReadOnlyList<string> lines, Action<Utf8JsonWriter>? extra = null) => Document(kind, w =>
    {
        extra?.Invoke(w);
        w.WriteNumber("total", total);
        w.WriteStartArray("lines");
        foreach (var l in lines) w.WriteStringValue(l);
        w.WriteEndArray();
    });

    /// <summary>Writes a resource vector as <c>"name":{"cpuMillis":C,"memoryBytes":M}</c> (the units of the wire).</summary>
    public static void Resources(Utf8JsonWriter w, string name, ResourceVector v)
    {
        w.WriteStartObject(name);
        w.WriteNumber("cpuMillis", v.CpuMillis);
        w.WriteNumber("memoryBytes", v.MemoryBytes);
        w.WriteEndObject();
    }

    /// <summary>Writes a Unix-milliseconds time as an RFC 3339 UTC string, or null for 0 ("never").</summary>
    public static void Time(Utf8JsonWriter w, string name, long unixMs)
    {
        if (unixMs == 0) w.WriteNull(name);
        else w.WriteString(name, DateTimeOffset.FromUnixTimeMilliseconds(unixMs).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>
    /// Prints a command's answer: the document in json or yaml, else the text lines (<paramref name="text"/> gets
    /// whether <c>-o wide</c> was asked). The one place a command chooses between the two, so every command behaves alike.
    /// </summary>
    public static void Emit(OutputFormat format, string kind, Action<Utf8JsonWriter> document, Action<bool> text)
    {
        if (format.IsDocument()) Print(Document(kind, document), format);
        else text(format == OutputFormat.Wide);
    }

    /// <summary>The answer of an Operate command (drain, undrain, remove, checkpoint, confirm-lost) as a document.</summary>
    public static byte[] Operate(string operation, string target, Omega.Protocol.OperateStatus status, string message) => Document("OperateResult", w =>
    {
        w.WriteString("operation", operation);
        w.WriteString("target", target);
        w.WriteString("status", status.ToString());
        w.WriteString("message", message);
    });

    /// <summary>Prints an Operate answer in <paramref name="format"/>; returns the exit code (0 Ok, else 1 with the line on stderr).</summary>
    public static int PrintOperate(string command, string operation, string target, Omega.Protocol.OperateStatus status, string message, OutputFormat format)
    {
        bool ok = status == Omega.Protocol.OperateStatus.Ok;
        if (!ok)
        {
            Console.Error.WriteLine($"omega {command}: {status}: {message}");
            return 1;
        }
        if (format.IsDocument()) Print(Operate(operation, target, status, message), format);
        else Console.WriteLine(message);
        return 0;
    }
}
