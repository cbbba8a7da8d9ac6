using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;
using YamlDotNet.Serialization;

namespace Omega.Cli.Run;

/// <summary>
/// Manifests for <c>omega apply -f</c>: YAML (one or more documents separated by <c>---</c>) or JSON (a JSON document is
/// YAML too), turned into the objects' JSON documents; and YAML output for <c>-o yaml</c>.
/// </summary>
internal static class Manifests
{
    /// <summary>Each document of <paramref name="text"/> as UTF-8 JSON. Throws <see cref="FormatException"/> with the line on bad input.</summary>
    public static List<byte[]> ToJsonDocuments(string text)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            throw new FormatException($"line {e.Start.Line}: {e.Message}", e);
        }
        var docs = new List<byte[]>();
        foreach (var doc in stream.Documents)
        {
            if (doc.RootNode is YamlScalarNode { Value: null or "" }) continue; // an empty document (a trailing ---)
            var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer))
                Write(w, doc.RootNode);
            docs.Add(buffer.ToArray());
        }
        return docs;
    }

    // YAML scalars carry no type: a plain scalar that reads as a number, a boolean or null becomes one (YAML 1.2 core
    // schema); a quoted one is always a string, so "0123" stays a string when quoted.
    private static void Write(Utf8JsonWriter w, YamlNode node)
    {
        switch (node)
        {
            case YamlMappingNode map:
                w.WriteStartObject();
                foreach (var (k, v) in map.Children)
                {
                    w.WritePropertyName(k is YamlScalarNode s ? s.Value ?? "" : throw new FormatException($"line {k.Start.Line}: keys must be scalars"));
                    Write(w, v);
                }
                w.WriteEndObject();
                break;
            case YamlSequenceNode seq:
                w.WriteStartArray();
                foreach (var item in seq.Children) Write(w, item);
                w.WriteEndArray();
                break;
            case YamlScalarNode scalar:
                string value = scalar.Value ?? "";
                if (scalar.Style is ScalarStyle.SingleQuoted or ScalarStyle.DoubleQuoted or ScalarStyle.Literal or ScalarStyle.Folded) w.WriteStringValue(value);
                else if (value is "" or "~" or "null" or "Null" or "NULL") w.WriteNullValue();
                else if (value is "true" or "True" or "TRUE") w.WriteBooleanValue(true);
                else if (value is "false" or "False" or "FALSE") w.WriteBooleanValue(false);
                else if (long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l)) w.WriteNumberValue(l);
                else if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && double.IsFinite(d)) w.WriteNumberValue(d);
                else w.WriteStringValue(value);
                break;
            default:
                throw new FormatException($"line {node.Start.Line}: anchors and aliases are not supported");
        }
    }

    /// <summary>A JSON document as YAML (strings that would read back as another type are quoted).</summary>
    public static string JsonToYaml(ReadOnlySpan<byte> json)
    {
        var node = JsonNode.Parse(json);
        var serializer = new SerializerBuilder().WithQuotingNecessaryStrings().Build();
        return serializer.Serialize(ToPlain(node));
    }

    private static object? ToPlain(JsonNode? node) => node switch
    {
        null => null,
        JsonObject o => o.ToDictionary(p => p.Key, p => ToPlain(p.Value)),
        JsonArray a => a.Select(ToPlain).ToList(),
        JsonValue v when v.TryGetValue<long>(out var l) => l,
        JsonValue v when v.TryGetValue<double>(out var d) => d,
        JsonValue v when v.TryGetValue<bool>(out var b) => b,
        JsonValue v => v.ToString(),
        _ => node.ToJsonString(),
    };

    /// <summary>Indented JSON of one document.</summary>
    public static string Indent(ReadOnlySpan<byte> json)
    {
        using var doc = JsonDocument.Parse(json.ToArray());
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
            doc.WriteTo(w);
        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}
