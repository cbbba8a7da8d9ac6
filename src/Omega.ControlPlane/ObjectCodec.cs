using System.Text.Json;

namespace Omega.ControlPlane;

/// <summary>
/// JSON encoding of API objects (System.Text.Json, camelCase, nulls omitted). <see cref="Deserialize"/> reads the
/// <c>kind</c> field and builds the matching type, so the wire layer can accept any kind's document.
/// </summary>
public static class ObjectCodec
{
    private static readonly Dictionary<string, Func<ApiObject>> Factories = new(StringComparer.Ordinal)
    {
        [Workload.KindName] = static () => new Workload(),
        [SchedulingRequest.KindName] = static () => new SchedulingRequest(),
        [Reservation.KindName] = static () => new Reservation(),
        [SchedulerPolicy.KindName] = static () => new SchedulerPolicy(),
        [Quota.KindName] = static () => new Quota(),
        [RecoveryBudget.KindName] = static () => new RecoveryBudget(),
        [Decision.KindName] = static () => new Decision(),
        [Binding.KindName] = static () => new Binding(),
        // regops (issue 13): human overrides and simulated node pools.
        [Override.KindName] = static () => new Override(),
        [NodePool.KindName] = static () => new NodePool(),
        // drill13 (issue 13): a tenant's durable global and per-region budgets for the regional schedulers.
        [RegionalBudget.KindName] = static () => new RegionalBudget(),
    };

    /// <summary>The serializer options used for every document (camelCase, nulls omitted, case-insensitive reads).</summary>
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
        WriteIndented = false,
        MaxDepth = 32,
    };

    /// <summary>The kinds this release knows.</summary>
    public static IReadOnlyCollection<string> Kinds => Factories.Keys;

    /// <summary>True when <paramref name="kind"/> is a known kind.</summary>
    public static bool IsKnownKind(string kind) => Factories.ContainsKey(kind);

    /// <summary>Encodes an object as UTF-8 JSON.</summary>
    public static byte[] Serialize(ApiObject obj)
    {
        ArgumentNullException.ThrowIfNull(obj);
        return JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), Options);
    }

    /// <summary>
    /// Decodes a document of any known kind. Returns null with <paramref name="error"/> set when the JSON is malformed,
    /// has no or an unknown <c>kind</c>, or an unsupported <c>apiVersion</c>.
    /// </summary>
    public static ApiObject? Deserialize(ReadOnlySpan<byte> json, out string? error)
    {
        error = null;
        string? kind;
        try
        {
            kind = ReadKind(json);
        }
        catch (JsonException e)
        {
            error = $"malformed JSON: {e.Message}";
            return null;
        }
        if (kind is null) { error = "the document has no \"kind\""; return null; }
        if (!Factories.TryGetValue(kind, out var factory)) { error = $"unknown kind '{kind}'"; return null; }
        var type = factory().GetType();
        ApiObject? obj;
        try
        {
            obj = (ApiObject?)JsonSerializer.Deserialize(json, type, Options);
        }
        catch (JsonException e)
        {
            error = $"invalid {kind}: {e.Message}";
            return null;
        }
        if (obj is null) { error = "the document is null"; return null; }
        if (!string.Equals(obj.ApiVersion, ApiObject.CurrentApiVersion, StringComparison.Ordinal))
        {
            error = $"unsupported apiVersion '{obj.ApiVersion}' (expected {ApiObject.CurrentApiVersion})";
            return null;
        }
        obj.Metadata ??= new ObjectMeta();
        obj.Metadata.Finalizers ??= new();
        obj.Metadata.OwnerReferences ??= new();
        obj.Metadata.Labels ??= new(StringComparer.Ordinal);
        return obj;
    }

    /// <summary>Decodes a document that must be of type <typeparamref name="T"/>; throws <see cref="FormatException"/> otherwise.</summary>
    public static T Deserialize<T>(ReadOnlySpan<byte> json) where T : ApiObject
        => Deserialize(json, out var error) as T ?? throw new FormatException(error ?? $"the document is not a {typeof(T).Name}");

    /// <summary>A deep copy through JSON.</summary>
    public static T Clone<T>(T obj) where T : ApiObject => (T)Deserialize(Serialize(obj), out _)!;

    internal static byte[] SerializeValue<T>(T value) => JsonSerializer.SerializeToUtf8Bytes(value, Options);

    internal static T CloneValue<T>(T value) => JsonSerializer.Deserialize<T>(SerializeValue(value), Options)!;

    private static string? ReadKind(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 32 });
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) throw new JsonException("the document is not a JSON object");
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            bool isKind = reader.ValueTextEquals("kind"u8) || reader.ValueTextEquals("Kind"u8);
            reader.Read();
            if (isKind) return reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
            reader.Skip();
        }
        return null;
    }
}
