using System.Buffers;
using MessagePack;

namespace Omega.Protocol;

// Control-plane object messages (docs/protocol.md, section 8, "Objects"; protocol version 2). Objects travel as UTF-8
// JSON documents in `bin` fields: this layer carries the bytes and never parses JSON (it does not know the object
// model; the server hands the bytes to the object store's codec).

/// <summary>Reading and writing the JSON document fields of object messages.</summary>
internal static class ObjectFields
{
    /// <summary>Most objects one ObjectList carries (the ListObjects limit).</summary>
    public const int MaxListItems = 10_000;

    /// <summary>Reads a JSON document: MessagePack bin (what writers send) or str; nil reads as empty. Copied out of the frame.</summary>
    public static byte[] ReadDocument(ref MessagePackReader r)
    {
        if (r.TryReadNil()) return Array.Empty<byte>();
        ReadOnlySequence<byte>? seq = r.NextMessagePackType switch
        {
            MessagePackType.Binary => r.ReadBytes(),
            MessagePackType.String => r.ReadStringSequence(),
            _ => throw new ProtocolViolationException("an object must be bin or str (UTF-8 JSON)"),
        };
        return seq is { } s ? s.ToArray() : Array.Empty<byte>();
    }

    /// <summary>Writes a JSON document as bin.</summary>
    public static void WriteDocument(ref MessagePackWriter w, ReadOnlyMemory<byte> json) => w.Write(json.Span);

    public static ObjectWrite ReadWrite(ref MessagePackReader r)
    {
        var m = new ObjectWrite { Object = Array.Empty<byte>() };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Object = ReadDocument(ref r); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }

    public static void WriteWrite(ref MessagePackWriter w, in ObjectWrite m)
    {
        w.WriteMapHeader(1);
        w.Write(0); WriteDocument(ref w, m.Object);
    }
}

/// <summary>The body of CreateObject, UpdateObject and UpdateObjectStatus: key 0 the object (bin, UTF-8 JSON).</summary>
internal struct ObjectWrite
{
    public ReadOnlyMemory<byte> Object;
}

/// <summary>CreateObject: key 0 object (JSON).</summary>
internal struct CreateObject : IWireMessage<CreateObject>
{
    public ObjectWrite Body;

    public static MessageType Type => MessageType.CreateObject;

    public readonly void Write(ref MessagePackWriter w) => ObjectFields.WriteWrite(ref w, Body);

    public static CreateObject Read(ref MessagePackReader r) => new() { Body = ObjectFields.ReadWrite(ref r) };
}

/// <summary>UpdateObject: key 0 object (JSON; its metadata.resourceVersion is the precondition).</summary>
internal struct UpdateObject : IWireMessage<UpdateObject>
{
    public ObjectWrite Body;

    public static MessageType Type => MessageType.UpdateObject;

    public readonly void Write(ref MessagePackWriter w) => ObjectFields.WriteWrite(ref w, Body);

    public static UpdateObject Read(ref MessagePackReader r) => new() { Body = ObjectFields.ReadWrite(ref r) };
}

/// <summary>UpdateObjectStatus: key 0 object (JSON; only its status and metadata.resourceVersion are used).</summary>
internal struct UpdateObjectStatus : IWireMessage<UpdateObjectStatus>
{
    public ObjectWrite Body;

    public static MessageType Type => MessageType.UpdateObjectStatus;

    public readonly void Write(ref MessagePackWriter w) => ObjectFields.WriteWrite(ref w, Body);

    public static UpdateObjectStatus Read(ref MessagePackReader r) => new() { Body = ObjectFields.ReadWrite(ref r) };
}

/// <summary>ObjectReply: key 0 object (JSON), key 1 resource version, key 2 removed (written only when true).</summary>
internal struct ObjectReply : IWireMessage<ObjectReply>
{
    public ReadOnlyMemory<byte> Object;
    public long ResourceVersion;
    public bool Removed;

    public static MessageType Type => MessageType.ObjectReply;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(Removed ? 3 : 2);
        w.Write(0); ObjectFields.WriteDocument(ref w, Object);
        w.Write(1); w.Write(ResourceVersion);
        if (Removed) { w.Write(2); w.Write(true); }
    }

    public static ObjectReply Read(ref MessagePackReader r)
    {
        var m = new ObjectReply { Object = Array.Empty<byte>() };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Object = ObjectFields.ReadDocument(ref r); break;
                case 1: m.ResourceVersion = r.ReadInt64(); break;
                case 2: m.Removed = r.ReadBoolean(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>GetObject: key 0 kind, 1 tenant, 2 name.</summary>
internal struct GetObject : IWireMessage<GetObject>
{
    public string Kind;
    public string Tenant;
    public string Name;

    public static MessageType Type => MessageType.GetObject;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(3);
        w.Write(0); w.Write(Kind ?? "");
        w.Write(1); w.Write(Tenant ?? "");
        w.Write(2); w.Write(Name ?? "");
    }

    public static GetObject Read(ref MessagePackReader r)
    {
        var m = new GetObject { Kind = "", Tenant = "", Name = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Kind = Codec.ReadString(ref r); break;
                case 1: m.Tenant = Codec.ReadString(ref r); break;
                case 2: m.Name = Codec.ReadString(ref r); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>DeleteObject: key 0 kind, 1 tenant, 2 name, 3 resource version precondition (0: unconditional).</summary>
internal struct DeleteObject : IWireMessage<DeleteObject>
{
    public string Kind;
    public string Tenant;
    public string Name;
    public long ResourceVersion;

    public static MessageType Type => MessageType.DeleteObject;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(4);
        w.Write(0); w.Write(Kind ?? "");
        w.Write(1); w.Write(Tenant ?? "");
        w.Write(2); w.Write(Name ?? "");
        w.Write(3); w.Write(ResourceVersion);
    }

    public static DeleteObject Read(ref MessagePackReader r)
    {
        var m = new DeleteObject { Kind = "", Tenant = "", Name = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Kind = Codec.ReadString(ref r); break;
                case 1: m.Tenant = Codec.ReadString(ref r); break;
                case 2: m.Name = Codec.ReadString(ref r); break;
                case 3: m.ResourceVersion = r.ReadInt64(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>ListObjects: key 0 kind, 1 tenant (empty: all), 2 label selector, 3 limit (0: 500), 4 continue token.</summary>
internal struct ListObjects : IWireMessage<ListObjects>
{
    public string Kind;
    public string Tenant;
    public Dictionary<string, string>? LabelSelector;
    public int Limit;
    public string Continue;

    public static MessageType Type => MessageType.ListObjects;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(5);
        w.Write(0); w.Write(Kind ?? "");
        w.Write(1); w.Write(Tenant ?? "");
        w.Write(2); Codec.WriteLabels(ref w, LabelSelector);
        w.Write(3); w.Write(Limit);
        w.Write(4); w.Write(Continue ?? "");
    }

    public static ListObjects Read(ref MessagePackReader r)
    {
        var m = new ListObjects { Kind = "", Tenant = "", Continue = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Kind = Codec.ReadString(ref r); break;
                case 1: m.Tenant = Codec.ReadString(ref r); break;
                case 2: m.LabelSelector = Codec.ReadLabels(ref r); break;
                case 3: m.Limit = r.ReadInt32(); break;
                case 4: m.Continue = Codec.ReadString(ref r, 1024); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>ObjectList: key 0 resource version, 1 items (array of JSON documents), 2 continue token (empty: last page).</summary>
internal struct ObjectList : IWireMessage<ObjectList>
{
    public long ResourceVersion;
    public IReadOnlyList<ReadOnlyMemory<byte>> Items;
    public string Continue;

    public static MessageType Type => MessageType.ObjectList;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(3);
        w.Write(0); w.Write(ResourceVersion);
        var items = Items ?? Array.Empty<ReadOnlyMemory<byte>>();
        w.Write(1); w.WriteArrayHeader(items.Count);
        for (int i = 0; i < items.Count; i++) ObjectFields.WriteDocument(ref w, items[i]);
        w.Write(2); w.Write(Continue ?? "");
    }

    public static ObjectList Read(ref MessagePackReader r)
    {
        var m = new ObjectList { Items = Array.Empty<ReadOnlyMemory<byte>>(), Continue = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.ResourceVersion = r.ReadInt64(); break;
                case 1:
                    int count = Codec.ReadArray(ref r, ObjectFields.MaxListItems);
                    var items = new ReadOnlyMemory<byte>[count];
                    for (int j = 0; j < count; j++) items[j] = ObjectFields.ReadDocument(ref r);
                    Codec.EndContainer(ref r);
                    m.Items = items;
                    break;
                case 2: m.Continue = Codec.ReadString(ref r, 1024); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>WatchObjects: key 0 from resource version, 1 kind, 2 tenant (empty: all).</summary>
internal struct WatchObjects : IWireMessage<WatchObjects>
{
    public long FromResourceVersion;
    public string Kind;
    public string Tenant;

    public static MessageType Type => MessageType.WatchObjects;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(3);
        w.Write(0); w.Write(FromResourceVersion);
        w.Write(1); w.Write(Kind ?? "");
        w.Write(2); w.Write(Tenant ?? "");
    }

    public static WatchObjects Read(ref MessagePackReader r)
    {
        var m = new WatchObjects { Kind = "", Tenant = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.FromResourceVersion = r.ReadInt64(); break;
                case 1: m.Kind = Codec.ReadString(ref r); break;
                case 2: m.Tenant = Codec.ReadString(ref r); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>The type of a watch event on the wire (docs/protocol.md).</summary>
public enum WireWatchEventType : byte
{
    /// <summary>The object was created.</summary>
    Added = 0,

    /// <summary>The object changed (spec, metadata or status; also marked terminating).</summary>
    Modified = 1,

    /// <summary>The object was removed; the document is its last state.</summary>
    Deleted = 2,
}

/// <summary>WatchEvent (pushed with the watch's request id): key 0 type, 1 resource version, 2 object (JSON).</summary>
internal struct WatchEventMessage : IWireMessage<WatchEventMessage>
{
    public WireWatchEventType EventType;
    public long ResourceVersion;
    public ReadOnlyMemory<byte> Object;

    public static MessageType Type => MessageType.WatchEvent;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(3);
        w.Write(0); w.Write((byte)EventType);
        w.Write(1); w.Write(ResourceVersion);
        w.Write(2); ObjectFields.WriteDocument(ref w, Object);
    }

    public static WatchEventMessage Read(ref MessagePackReader r)
    {
        var m = new WatchEventMessage { Object = Array.Empty<byte>() };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.EventType = (WireWatchEventType)r.ReadByte(); break;
                case 1: m.ResourceVersion = r.ReadInt64(); break;
                case 2: m.Object = ObjectFields.ReadDocument(ref r); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>StopWatch: key 0 the watch's request id.</summary>
internal struct StopWatch : IWireMessage<StopWatch>
{
    public uint Watch;

    public static MessageType Type => MessageType.StopWatch;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(1);
        w.Write(0); w.Write(Watch);
    }

    public static StopWatch Read(ref MessagePackReader r)
    {
        var m = default(StopWatch);
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Watch = r.ReadUInt32(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>WatchStopped: key 0 the watch's request id, 1 last resource version, 2 stopped (false: no such watch was open).</summary>
internal struct WatchStopped : IWireMessage<WatchStopped>
{
    public uint Watch;
    public long LastResourceVersion;
    public bool Stopped;

    public static MessageType Type => MessageType.WatchStopped;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(3);
        w.Write(0); w.Write(Watch);
        w.Write(1); w.Write(LastResourceVersion);
        w.Write(2); w.Write(Stopped);
    }

    public static WatchStopped Read(ref MessagePackReader r)
    {
        var m = default(WatchStopped);
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Watch = r.ReadUInt32(); break;
                case 1: m.LastResourceVersion = r.ReadInt64(); break;
                case 2: m.Stopped = r.ReadBoolean(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}
