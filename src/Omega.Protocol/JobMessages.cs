using MessagePack;

namespace Omega.Protocol;

// Version 4, the job verbs (docs/protocol.md, section 8, "Job verbs"): StopJob, WatchJob/JobEvent, StopJobWatch.

internal struct StopJob : IWireMessage<StopJob>
{
    /// <summary>The longest reason accepted (it goes to the audit log).</summary>
    public const int MaxReasonLength = 1024;

    public long JobId;
    public string Reason;

    public static MessageType Type => MessageType.StopJob;

    public readonly void Write(ref MessagePackWriter w)
    {
        bool reason = !string.IsNullOrEmpty(Reason);
        w.WriteMapHeader(reason ? 2 : 1);
        w.Write(0); w.Write(JobId);
        if (reason) { w.Write(1); w.Write(Reason); }
    }

    public static StopJob Read(ref MessagePackReader r)
    {
        var m = new StopJob { Reason = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.JobId = r.ReadInt64(); break;
                // Read up to a bound above the limit, so an over-long reason is InvalidRequest (typed), not MalformedBody.
                case 1: m.Reason = Codec.ReadString(ref r, MaxReasonLength * 4); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct StopJobReply : IWireMessage<StopJobReply>
{
    /// <summary>0 stopped now, 1 already stopped, 2 already completed.</summary>
    public byte Outcome;
    public int Dequeued;
    public int Released;
    public string Message;

    public static MessageType Type => MessageType.StopJobReply;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(4);
        w.Write(0); w.Write(Outcome);
        w.Write(1); w.Write(Dequeued);
        w.Write(2); w.Write(Released);
        w.Write(3); w.Write(Message ?? "");
    }

    public static StopJobReply Read(ref MessagePackReader r)
    {
        var m = new StopJobReply { Message = "" };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Outcome = r.ReadByte(); break;
                case 1: m.Dequeued = r.ReadInt32(); break;
                case 2: m.Released = r.ReadInt32(); break;
                case 3: m.Message = Codec.ReadString(ref r, 4096); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct WatchJob : IWireMessage<WatchJob>
{
    public long JobId;

    public static MessageType Type => MessageType.WatchJob;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(1);
        w.Write(0); w.Write(JobId);
    }

    public static WatchJob Read(ref MessagePackReader r)
    {
        var m = default(WatchJob);
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.JobId = r.ReadInt64(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

/// <summary>A job's state pushed on a watch: JobStatusReply's keys 0-9 and key 10 <c>final</c>.</summary>
internal struct JobEventMessage : IWireMessage<JobEventMessage>
{
    public JobStatusReply Status;
    public bool Final;

    public static MessageType Type => MessageType.JobEvent;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(11);
        w.Write(0); w.Write(Status.Found);
        w.Write(1); w.Write(Status.Phase);
        w.Write(2); w.Write(Status.Pending);
        w.Write(3); w.Write(Status.Bound);
        w.Write(4); w.Write(Status.Completed);
        w.Write(5); w.Write(Status.Attempts);
        w.Write(6); w.Write(Status.Generation);
        w.Write(7); w.Write(Status.Reason ?? "");
        w.Write(8); w.Write(Status.Unreachable);
        w.Write(9); w.Write(Status.Degraded);
        w.Write(10); w.Write(Final);
    }

    public static JobEventMessage Read(ref MessagePackReader r)
    {
        var m = new JobEventMessage { Status = new JobStatusReply { Reason = "" } };
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Status.Found = r.ReadBoolean(); break;
                case 1: m.Status.Phase = r.ReadInt32(); break;
                case 2: m.Status.Pending = r.ReadInt32(); break;
                case 3: m.Status.Bound = r.ReadInt32(); break;
                case 4: m.Status.Completed = r.ReadInt32(); break;
                case 5: m.Status.Attempts = r.ReadInt32(); break;
                case 6: m.Status.Generation = r.ReadInt32(); break;
                case 7: m.Status.Reason = Codec.ReadString(ref r, 4096); break;
                case 8: m.Status.Unreachable = r.ReadInt32(); break;
                case 9: m.Status.Degraded = r.ReadBoolean(); break;
                case 10: m.Final = r.ReadBoolean(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}

internal struct StopJobWatch : IWireMessage<StopJobWatch>
{
    public uint Watch;

    public static MessageType Type => MessageType.StopJobWatch;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(1);
        w.Write(0); w.Write(Watch);
    }

    public static StopJobWatch Read(ref MessagePackReader r)
    {
        var m = default(StopJobWatch);
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

internal struct JobWatchStopped : IWireMessage<JobWatchStopped>
{
    public uint Watch;
    public bool Stopped;

    public static MessageType Type => MessageType.JobWatchStopped;

    public readonly void Write(ref MessagePackWriter w)
    {
        w.WriteMapHeader(2);
        w.Write(0); w.Write(Watch);
        w.Write(1); w.Write(Stopped);
    }

    public static JobWatchStopped Read(ref MessagePackReader r)
    {
        var m = default(JobWatchStopped);
        int n = Codec.ReadMap(ref r);
        for (int i = 0; i < n; i++)
        {
            switch (Codec.ReadKey(ref r))
            {
                case 0: m.Watch = r.ReadUInt32(); break;
                case 1: m.Stopped = r.ReadBoolean(); break;
                default: Codec.Skip(ref r); break;
            }
        }
        Codec.EndContainer(ref r);
        return m;
    }
}
