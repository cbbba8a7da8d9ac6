using System.Buffers;
using Omega.Cells;
using Omega.Protocol;
using Xunit.Abstractions;

namespace Omega.Wire.Tests;

/// <summary>Seeded mutation fuzzing of valid frames: in-process against every decoder, and over loopback against the server.</summary>
public sealed class FuzzTests(ITestOutputHelper output)
{
    private static byte[] Mutate(Random rng, byte[] src)
    {
        var b = new List<byte>(src);
        int edits = 1 + rng.Next(4);
        for (int e = 0; e < edits; e++)
        {
            switch (rng.Next(7))
            {
                case 0 when b.Count > 0: b[rng.Next(b.Count)] ^= (byte)(1 << rng.Next(8)); break;
                case 1 when b.Count > 0: b[rng.Next(b.Count)] = (byte)rng.Next(256); break;
                case 2: b.Insert(rng.Next(b.Count + 1), (byte)rng.Next(256)); break;
                case 3 when b.Count > 0: b.RemoveAt(rng.Next(b.Count)); break;
                case 4 when b.Count > 0:
                {
                    // Interesting MessagePack markers: containers, big lengths, never-used byte.
                    byte[] marks = [0xdc, 0xdd, 0xde, 0xdf, 0xc4, 0xc5, 0xc6, 0xd9, 0xda, 0xdb, 0xc1, 0xff, 0x9f, 0x8f];
                    b[rng.Next(b.Count)] = marks[rng.Next(marks.Length)];
                    break;
                }
                case 5 when b.Count > 1:
                {
                    int at = rng.Next(b.Count), len = Math.Min(b.Count - at, 1 + rng.Next(8));
                    b.InsertRange(rng.Next(b.Count), b.GetRange(at, len));
                    break;
                }
                default: if (b.Count > 0) b.RemoveRange(rng.Next(b.Count), 0); break;
            }
        }
        return b.ToArray();
    }

    private delegate bool Decoder(in ReadOnlySequence<byte> body);

    private static readonly Decoder[] Decoders =
    [
        (in ReadOnlySequence<byte> s) => Codec.TryDecode<Hello>(s, out _, out _),
        (in ReadOnlySequence<byte> s) => Codec.TryDecode<Register>(s, out _, out _),
        (in ReadOnlySequence<byte> s) => Codec.TryDecode<Heartbeat>(s, out _, out _),
        (in ReadOnlySequence<byte> s) => Codec.TryDecode<Bindings>(s, out _, out _),
        (in ReadOnlySequence<byte> s) => Codec.TryDecode<TaskReport>(s, out _, out _),
        (in ReadOnlySequence<byte> s) => Codec.TryDecode<Commit>(s, out _, out _),
        (in ReadOnlySequence<byte> s) => Codec.TryDecode<SyncReply>(s, out _, out _),
        (in ReadOnlySequence<byte> s) => Codec.TryDecode<SubmitJob>(s, out _, out _),
        (in ReadOnlySequence<byte> s) => Codec.TryDecode<ErrorMessage>(s, out _, out _),
    ];

    [Fact]
    public void Mutated_bodies_never_throw_from_any_decoder()
    {
        int seed = Environment.GetEnvironmentVariable("OMEGA_FUZZ_SEED") is { } s ? int.Parse(s) : Random.Shared.Next();
        output.WriteLine($"fuzz seed {seed} (rerun with OMEGA_FUZZ_SEED={seed})");
        var rng = new Random(seed);
        var bodies = ProtocolDocTests.Examples.Select(e => e.Bytes[9..]).ToArray();
        int accepted = 0;
        for (int i = 0; i < 30_000; i++)
        {
            var m = Mutate(rng, bodies[rng.Next(bodies.Length)]);
            var seq = new ReadOnlySequence<byte>(m);
            foreach (var d in Decoders)
                if (d(seq)) accepted++;
        }
        output.WriteLine($"{accepted} mutated bodies decoded as valid");
        // The framer on mutated whole frames: never throws, never reads past the limit.
        for (int i = 0; i < 30_000; i++)
        {
            var ex = ProtocolDocTests.Examples[rng.Next(ProtocolDocTests.Examples.Length)].Bytes;
            var seq = new ReadOnlySequence<byte>(Mutate(rng, ex));
            var st = Frame.TryRead(ref seq, 256, out var f);
            if (st == FrameReadStatus.Ok) Assert.True(f.Body.Length <= 256 - 5);
        }
    }

    /// <summary>How the fuzzed connections present themselves (issue 11).</summary>
    public enum Credentials
    {
        /// <summary>The server runs without authentication.</summary>
        Off,

        /// <summary>Authentication on; each fuzzed connection presents a valid credential, then mutated frames.</summary>
        Authenticated,

        /// <summary>Authentication on; each fuzzed connection presents a mutated or missing token (refused), then mutated frames.</summary>
        Unauthenticated,
    }

    [Theory]
    [InlineData(false, Credentials.Off)]
    [InlineData(true, Credentials.Off)]
    [InlineData(true, Credentials.Authenticated)]
    [InlineData(true, Credentials.Unauthenticated)]
    public async Task Mutated_frames_over_loopback_never_harm_the_server(bool tls, Credentials credentials)
    {
        int seed = Environment.GetEnvironmentVariable("OMEGA_FUZZ_SEED") is { } s ? int.Parse(s) : Random.Shared.Next();
        output.WriteLine($"fuzz seed {seed} (rerun with OMEGA_FUZZ_SEED={seed})");
        var rng = new Random(seed);
        await using var fx = ServerFixture.Start(o => o.Transport.MaxFrameLength = 16 * 1024, tls: tls, auth: credentials != Credentials.Off);
        output.WriteLine((tls ? "over TLS 1.3" : "plaintext") + ", credentials " + credentials);
        var n = fx.Cell.AddNode(new NodeSpec("fuzz-node", new ResourceVector(100_000, 1L << 40)));
        using var good = await RawClient.ConnectAsync(fx.EndPoint);
        var reg = await good.RegisterAsync("good", new ResourceVector(1000, 1 << 20));
        var agentFrames = ProtocolDocTests.Examples.Where(e => e.Name is "register" or "heartbeat" or "task-report" or "drain").Select(e => e.Bytes).ToArray();
        var schedFrames = ProtocolDocTests.Examples.Where(e => e.Name is "acquire-lease" or "renew-lease" or "sync" or "commit" or "query-job" or "submit-job").Select(e => e.Bytes).ToArray();
        for (int conn = 0; conn < 60; conn++)
        {
            bool agent = rng.Next(2) == 0;
            using var c = await RawClient.ConnectAsync(fx.EndPoint);
            var role = agent ? PeerRole.Agent : PeerRole.Scheduler;
            string? token = credentials switch
            {
                Credentials.Authenticated => fx.DefaultToken(role, "fuzz"),
                // A token mutated in one character, or none: refused at Hello, the frames behind it are never handled.
                Credentials.Unauthenticated => rng.Next(4) == 0 ? null : MutateToken(rng, fx.DefaultToken(role, "fuzz")),
                _ => null,
            };
            await c.SendAsync(1, new Hello { Version = Frame.ProtocolVersion, Role = role, Name = "fuzz", Token = token });
            var pool = agent ? agentFrames : schedFrames;
            var stream = new List<byte>();
            for (int k = 0; k < 20; k++) stream.AddRange(rng.Next(3) == 0 ? pool[rng.Next(pool.Length)] : Mutate(rng, pool[rng.Next(pool.Length)]));
            try { await c.SendAsync(stream.ToArray()); }
            catch (System.Net.Sockets.SocketException) { }
            await c.ShutdownSendAsync();
            Assert.True(await c.WaitClosedAsync());
            // After every connection: the server still serves the good agent and the cell is consistent.
            await good.SendAsync((uint)(100 + conn), new Heartbeat { NodeId = reg.NodeId, LastVersion = 0 });
            Assert.Equal(NodeStatus.Schedulable, (await good.ExpectAsync<HeartbeatAck>()).Status);
            Assert.Empty(fx.Cell.Audit());
        }
        output.WriteLine($"frames received {fx.Server.TransportMetrics.FramesReceived}, malformed {fx.Server.TransportMetrics.ErrorsSent(ErrorCode.MalformedBody)}, unauthenticated {fx.Server.TransportMetrics.ErrorsSent(ErrorCode.Unauthenticated)}, denied {fx.Server.TransportMetrics.ErrorsSent(ErrorCode.PermissionDenied)}");
        if (credentials == Credentials.Unauthenticated)
        {
            // No refused connection got anything done: every one was closed at Hello.
            Assert.Equal(60, fx.Server.TransportMetrics.ErrorsSent(ErrorCode.Unauthenticated));
            Assert.Equal(0, fx.Server.TransportMetrics.ErrorsSent(ErrorCode.MalformedBody));
        }
    }

    private static string MutateToken(Random rng, string token)
    {
        var chars = token.ToCharArray();
        int at = 7 + rng.Next(chars.Length - 7);
        char c;
        do c = "0123456789abcdefABCDEF-_."[rng.Next(25)]; while (c == chars[at]);
        chars[at] = c;
        return new string(chars);
    }
}
