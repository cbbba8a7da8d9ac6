using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Omega;

/// <summary>
/// A fixed-width vector of resource quantities: CPU in millicores, memory in bytes, GPUs, and local disk in bytes.
/// </summary>
/// <remarks>
/// The four dimensions are stored as one 256-bit value so that the hot-path fit test
/// (<c>used + request &lt;= capacity</c> in every dimension) is a single vector compare.
/// Adding a dimension means widening <see cref="Dimensions"/> and the storage; the arithmetic stays element-wise.
/// Quantities are never negative in a valid vector and never above <see cref="MaxQuantity"/>;
/// <see cref="IsValidRequest"/> checks both. The bound keeps every sum the cell forms (a node's allocation, a tenant's
/// usage over up to 1,024 nodes of the largest size) inside a signed 64-bit value, and <see cref="Fits"/> is written so
/// that it cannot wrap even when a request is near <see cref="long.MaxValue"/>: before this bound, a request of
/// 1e12 GiB made <c>used + request</c> wrap negative and "fit" on any node (issue 10, defect 1).
/// </remarks>
public readonly struct ResourceVector : IEquatable<ResourceVector>
{
    /// <summary>The number of resource dimensions.</summary>
    public const int Dimensions = 4;

    /// <summary>
    /// The largest quantity a valid request or capacity may hold in any dimension: 2^53 (about 9e15; 8 PiB of memory,
    /// 9e12 cores). Also the largest integer a double holds exactly, so conversions from user input are exact below it.
    /// </summary>
    public const long MaxQuantity = 1L << 53;

    private static readonly Vector256<long> MaxVector = Vector256.Create(MaxQuantity);

    private readonly Vector256<long> _v;

    private ResourceVector(Vector256<long> v) => _v = v;

    /// <summary>Creates a vector from its quantities.</summary>
    /// <param name="cpuMillis">CPU in millicores (1000 = one core).</param>
    /// <param name="memoryBytes">Memory in bytes.</param>
    /// <param name="gpus">Whole GPUs.</param>
    /// <param name="diskBytes">Local disk in bytes.</param>
    public ResourceVector(long cpuMillis, long memoryBytes, long gpus = 0, long diskBytes = 0)
        => _v = Vector256.Create(cpuMillis, memoryBytes, gpus, diskBytes);

    /// <summary>The all-zero vector.</summary>
    public static ResourceVector Zero => default;

    /// <summary>CPU in millicores.</summary>
    public long CpuMillis => _v.GetElement(0);

    /// <summary>Memory in bytes.</summary>
    public long MemoryBytes => _v.GetElement(1);

    /// <summary>Whole GPUs.</summary>
    public long Gpus => _v.GetElement(2);

    /// <summary>Local disk in bytes.</summary>
    public long DiskBytes => _v.GetElement(3);

    /// <summary>Returns the quantity in dimension <paramref name="index"/> (0 = CPU, 1 = memory, 2 = GPUs, 3 = disk).</summary>
    public long this[int index] => _v.GetElement(index);

    /// <summary>Convenience constructor: whole cores and GiB of memory (for trusted values; user input goes through <see cref="TryFromCoresAndGiB"/>).</summary>
    public static ResourceVector FromCoresAndGiB(double cores, double memoryGiB, long gpus = 0)
        => new((long)Math.Round(cores * 1000), (long)Math.Round(memoryGiB * 1024 * 1024 * 1024), gpus);

    /// <summary>
    /// Converts user input (cores and GiB) into a vector, refusing what has no valid vector: NaN, infinities, negative
    /// values and quantities above <see cref="MaxQuantity"/>. A plain cast would turn NaN into 0 and 1e12 GiB into
    /// <see cref="long.MaxValue"/>, both silently wrong.
    /// </summary>
    /// <returns>False (and the zero vector) when either value cannot be represented.</returns>
    public static bool TryFromCoresAndGiB(double cores, double memoryGiB, out ResourceVector vector)
    {
        vector = default;
        double cpu = Math.Round(cores * 1000), mem = Math.Round(memoryGiB * 1024 * 1024 * 1024);
        // Written as "in range" tests so that NaN (which compares false with everything) fails them.
        if (!(cpu >= 0 && cpu <= MaxQuantity) || !(mem >= 0 && mem <= MaxQuantity)) return false;
        vector = new ResourceVector((long)cpu, (long)mem);
        return true;
    }

    /// <summary>Element-wise sum.</summary>
    public static ResourceVector operator +(ResourceVector a, ResourceVector b) => new(a._v + b._v);

    /// <summary>Element-wise difference.</summary>
    public static ResourceVector operator -(ResourceVector a, ResourceVector b) => new(a._v - b._v);

    /// <summary>Element-wise sum (named alternative to the operator).</summary>
    public static ResourceVector Add(ResourceVector left, ResourceVector right) => left + right;

    /// <summary>Element-wise difference (named alternative to the operator).</summary>
    public static ResourceVector Subtract(ResourceVector left, ResourceVector right) => left - right;

    /// <summary>True when every dimension of this vector is less than or equal to the same dimension of <paramref name="limit"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool FitsWithin(ResourceVector limit) => Vector256.LessThanOrEqualAll(_v, limit._v);

    /// <summary>
    /// True when <c>used + request</c> fits within <c>capacity</c> in every dimension. Overflow-safe: it compares
    /// <c>request &lt;= capacity - used</c>, and the difference of two non-negative longs cannot wrap, so a huge request
    /// can never wrap around into a "fit". Callers pass non-negative <paramref name="used"/> and
    /// <paramref name="capacity"/> (the cell's invariants); a negative request never fits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Fits(ResourceVector used, ResourceVector request, ResourceVector capacity)
        => Vector256.LessThanOrEqualAll(request._v, capacity._v - used._v) && Vector256.GreaterThanOrEqualAll(request._v, Vector256<long>.Zero);

    /// <summary>True when no dimension is negative.</summary>
    public bool IsNonNegative => Vector256.GreaterThanOrEqualAll(_v, Vector256<long>.Zero);

    /// <summary>True when the vector is a valid request or capacity: every dimension in [0, <see cref="MaxQuantity"/>].</summary>
    public bool IsValidRequest
        => Vector256.GreaterThanOrEqualAll(_v, Vector256<long>.Zero) && Vector256.LessThanOrEqualAll(_v, MaxVector);

    /// <summary>True when every dimension is zero.</summary>
    public bool IsZero => _v == Vector256<long>.Zero;

    /// <summary>Element-wise minimum.</summary>
    public static ResourceVector Min(ResourceVector a, ResourceVector b) => new(Vector256.Min(a._v, b._v));

    /// <summary>Element-wise maximum.</summary>
    public static ResourceVector Max(ResourceVector a, ResourceVector b) => new(Vector256.Max(a._v, b._v));

    /// <inheritdoc />
    public bool Equals(ResourceVector other) => _v == other._v;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is ResourceVector other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(CpuMillis, MemoryBytes, Gpus, DiskBytes);

    /// <summary>Equality.</summary>
    public static bool operator ==(ResourceVector left, ResourceVector right) => left.Equals(right);

    /// <summary>Inequality.</summary>
    public static bool operator !=(ResourceVector left, ResourceVector right) => !left.Equals(right);

    /// <inheritdoc />
    public override string ToString()
        => $"cpu={CpuMillis}m mem={MemoryBytes / (1024 * 1024)}MiB gpu={Gpus} disk={DiskBytes / (1024 * 1024)}MiB";
}
