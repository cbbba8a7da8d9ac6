using System.Globalization;
using System.Text.Json;
using Omega.Scheduling.Pipeline;

namespace Omega.ControlPlane;

/// <summary>The outcome of a policy operation (documented in docs/control-plane.md, "SchedulerPolicy revisions").</summary>
public enum PolicyStatus : byte
{
    /// <summary>Done and durable.</summary>
    Ok = 0,

    /// <summary>The document or settings are invalid; the message names the field.</summary>
    Invalid = 1,

    /// <summary>No such revision.</summary>
    RevisionNotFound = 2,

    /// <summary>Undo with no earlier revision in the history.</summary>
    NothingToUndo = 3,

    /// <summary>Another writer changed the policy at the same time; re-read and retry.</summary>
    Conflict = 4,

    /// <summary>The object store refused the write (full, closed); the message says why.</summary>
    StoreError = 5,
}

/// <summary>The result of a policy operation.</summary>
/// <param name="Status">The outcome.</param>
/// <param name="Revision">The revision staged or made active (0 when none).</param>
/// <param name="Message">A one-line description.</param>
public readonly record struct PolicyResult(PolicyStatus Status, int Revision, string Message)
{
    /// <summary>True when <see cref="Status"/> is <see cref="PolicyStatus.Ok"/>.</summary>
    public bool IsOk => Status == PolicyStatus.Ok;
}

/// <summary>One revision as listed by <see cref="PolicyRevisions.History"/>.</summary>
/// <param name="Revision">The revision number.</param>
/// <param name="State"><c>active</c>, <c>staged</c> (never promoted) or <c>superseded</c>.</param>
/// <param name="Created">When it was staged.</param>
/// <param name="Summary">Its settings in one line.</param>
public sealed record PolicyRevisionInfo(int Revision, string State, DateTimeOffset? Created, string Summary);

/// <summary>
/// SchedulerPolicy revisions over the <see cref="ObjectStore"/> (issue 12; docs/control-plane.md, "SchedulerPolicy
/// revisions"): stage a new revision, promote one, roll back, list the history. Every write is a durable object write
/// (the cell's journal), so the active revision survives a restart: construct over the reopened store and call
/// <see cref="Load"/>. The active revision is compiled once per promotion into an immutable <see cref="CompiledPolicy"/>
/// and published by reference into <see cref="Source"/>, which the engine's workers read once per decision without a lock.
/// </summary>
/// <remarks>
/// Objects: <c>{policy}.r{N}</c> holds revision N (immutable once staged); <c>{policy}</c> is the pointer, whose spec is a
/// copy of the active revision plus the promotion history. Promotion and rollback are one write of the pointer with its
/// resourceVersion as precondition, so two operators racing get one <see cref="PolicyStatus.Conflict"/>, never a mix.
/// The source is published after the write is durable: a decision never names a revision that could be lost.
/// </remarks>
public sealed class PolicyRevisions : IDisposable
{
    /// <summary>The default policy's name.</summary>
    public const string DefaultPolicy = "default";

    /// <summary>History entries kept in the pointer.</summary>
    public const int MaxHistory = 100;

    private readonly ObjectStore _store;
    private readonly TimeProvider _time;
    // Serializes stage/promote/rollback in this process. An AsyncGate, not a SemaphoreSlim: a contended waiter resumes on
    // the releasing thread instead of the pool, which keeps the deterministic simulation on one thread (AsyncGate's remarks).
    private readonly AsyncGate _gate = new();

    /// <summary>Creates the revision manager of policy <paramref name="policy"/> publishing into <paramref name="source"/>.</summary>
    public PolicyRevisions(ObjectStore store, PolicySource source, TimeProvider? time = null, string policy = DefaultPolicy)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        Source = source ?? throw new ArgumentNullException(nameof(source));
        _time = time ?? TimeProvider.System;
        ArgumentException.ThrowIfNullOrEmpty(policy);
        Policy = policy;
    }

    /// <summary>The policy's name.</summary>
    public string Policy { get; }

    /// <inheritdoc />
    public void Dispose()
    {
        // Nothing to release: the gate holds no OS resource. Kept so hosts that dispose it keep compiling.
    }

    /// <summary>Where the active compiled policy is published (hand it to <c>SchedulingOptions.Policy</c>).</summary>
    public PolicySource Source { get; }

    /// <summary>The active revision (0 = the built-in policy).</summary>
    public int ActiveRevision => Source.Current.Revision;

    /// <summary>Reads the pointer from the store and publishes its revision (at startup, after a restart). Returns it.</summary>
    public int Load()
    {
        var pointer = _store.Get<SchedulerPolicy>("", Policy);
        if (pointer is null || pointer.Spec.Revision == 0) { Source.Publish(CompiledPolicy.Default); return 0; }
        var settings = pointer.Spec.ToSettings();
        // A pointer that no longer validates (written by a newer release with more plugins) keeps the built-in policy
        // rather than stopping the scheduler; the operator sees the revision at 0 in rollout history.
        if (settings.Validate() is not null) { Source.Publish(CompiledPolicy.Default); return 0; }
        Source.Publish(settings.Compile(pointer.Spec.Revision));
        return pointer.Spec.Revision;
    }

    /// <summary>
    /// Parses a policy document: a SchedulerPolicy object (<c>{"kind":"SchedulerPolicy","spec":{...}}</c>) or a bare spec
    /// (<c>{"weights":{...},"filters":{...},"parameters":{...},"priorityRules":[...]}</c>), JSON. Validates it.
    /// </summary>
    public static bool TryParse(string json, out SchedulerPolicySettings settings, out string? error)
    {
        settings = new SchedulerPolicySettings();
        error = null;
        if (string.IsNullOrWhiteSpace(json)) { error = "the document is empty"; return false; }
        SchedulerPolicySpec? spec;
        try
        {
            using var doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 32 });
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) { error = "the document must be a JSON object"; return false; }
            if (root.TryGetProperty("kind", out var kind))
            {
                if (kind.ValueKind != JsonValueKind.String || kind.GetString() != SchedulerPolicy.KindName) { error = $"kind must be {SchedulerPolicy.KindName}"; return false; }
                if (!root.TryGetProperty("spec", out var specElement)) { error = "the document has no spec"; return false; }
                spec = specElement.Deserialize<SchedulerPolicySpec>(ObjectCodec.Options);
            }
            else spec = root.Deserialize<SchedulerPolicySpec>(ObjectCodec.Options);
        }
        catch (JsonException e)
        {
            error = $"malformed JSON: {e.Message}";
            return false;
        }
        if (spec is null) { error = "the spec is null"; return false; }
        settings = spec.ToSettings();
        error = settings.Validate();
        return error is null;
    }

    /// <summary>Stages <paramref name="settings"/> as the next revision (not active until promoted).</summary>
    public async ValueTask<PolicyResult> StageAsync(SchedulerPolicySettings settings, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(settings);
        if (settings.Validate() is { } problem) return new PolicyResult(PolicyStatus.Invalid, 0, problem);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Another process may stage at the same time: the create of an existing name fails and we take the next one.
            for (int attempt = 0; attempt < 8; attempt++)
            {
                int next = HighestRevision() + 1;
                var obj = new SchedulerPolicy();
                obj.Metadata.Name = RevisionName(next);
                obj.Spec = SpecOf(settings, next);
                var r = await _store.CreateAsync(obj, cancellationToken).ConfigureAwait(false);
                if (r.IsOk) return new PolicyResult(PolicyStatus.Ok, next, $"staged {Policy} revision {next}");
                if (r.Status != ObjectStatus.AlreadyExists) return FromStore(r);
            }
            return new PolicyResult(PolicyStatus.Conflict, 0, "other writers kept taking the next revision number; retry");
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Makes revision <paramref name="revision"/> active (durably), then publishes it to <see cref="Source"/>.</summary>
    public ValueTask<PolicyResult> PromoteAsync(int revision, CancellationToken cancellationToken = default)
        => ActivateAsync(revision, "promote", cancellationToken);

    /// <summary>
    /// Rolls back: makes <paramref name="toRevision"/> active, or (null) the revision that was active before the current
    /// one. <see cref="PolicyStatus.NothingToUndo"/> when the history has no earlier revision.
    /// </summary>
    public async ValueTask<PolicyResult> RollbackAsync(int? toRevision = null, CancellationToken cancellationToken = default)
    {
        if (toRevision is { } to) return await ActivateAsync(to, "rollback", cancellationToken).ConfigureAwait(false);
        var pointer = _store.Get<SchedulerPolicy>("", Policy);
        if (pointer is null || pointer.Spec.History.Count == 0) return new PolicyResult(PolicyStatus.NothingToUndo, 0, "no revision was ever promoted");
        int previous = pointer.Spec.History[^1].From;
        if (previous == 0) return new PolicyResult(PolicyStatus.NothingToUndo, pointer.Spec.Revision, $"revision {pointer.Spec.Revision} was the first promoted; nothing to undo to");
        return await ActivateAsync(previous, "rollback", cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Every revision, oldest first, with its state; and the promotion history (from the pointer).</summary>
    public (IReadOnlyList<PolicyRevisionInfo> Revisions, IReadOnlyList<PolicyHistoryEntry> History) History()
    {
        var pointer = _store.Get<SchedulerPolicy>("", Policy);
        int active = pointer?.Spec.Revision ?? 0;
        var promoted = new HashSet<int>();
        if (pointer is not null) foreach (var h in pointer.Spec.History) promoted.Add(h.Revision);
        var list = new List<PolicyRevisionInfo>();
        foreach (var (n, obj) in Revisions())
        {
            string state = n == active ? "active" : promoted.Contains(n) ? "superseded" : "staged";
            list.Add(new PolicyRevisionInfo(n, state, obj.Metadata.CreationTimestamp, Summarize(obj.Spec)));
        }
        return (list, pointer?.Spec.History ?? []);
    }

    /// <summary>One line describing a spec's settings (filters off, weights, parameters, rules).</summary>
    public static string Summarize(SchedulerPolicySpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var parts = new List<string>();
        foreach (var (k, on) in spec.Filters) if (!on) parts.Add($"-{k}");
        foreach (var (k, w) in spec.Weights) parts.Add(string.Create(CultureInfo.InvariantCulture, $"{k}={w}"));
        foreach (var (k, v) in spec.Parameters) parts.Add($"{k}={v}");
        foreach (var r in spec.PriorityRules) parts.Add($"preempt(>={r.AtLeast})={(r.Preempt ? "yes" : "no")}");
        return parts.Count == 0 ? "(defaults)" : string.Join(' ', parts);
    }

    private async ValueTask<PolicyResult> ActivateAsync(int revision, string action, CancellationToken cancellationToken)
    {
        var target = _store.Get<SchedulerPolicy>("", RevisionName(revision));
        if (target is null) return new PolicyResult(PolicyStatus.RevisionNotFound, revision, $"{Policy} has no revision {revision}");
        var settings = target.Spec.ToSettings();
        if (settings.Validate() is { } problem) return new PolicyResult(PolicyStatus.Invalid, revision, problem);
        var compiled = settings.Compile(revision);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var pointer = _store.Get<SchedulerPolicy>("", Policy);
            int from = pointer?.Spec.Revision ?? 0;
            var spec = SpecOf(settings, revision);
            spec.History = pointer is null ? new() : [.. pointer.Spec.History];
            spec.History.Add(new PolicyHistoryEntry(revision, from, action, _time.GetUtcNow()));
            if (spec.History.Count > MaxHistory) spec.History.RemoveRange(0, spec.History.Count - MaxHistory);
            ObjectResult r;
            if (pointer is null)
            {
                var obj = new SchedulerPolicy();
                obj.Metadata.Name = Policy;
                obj.Spec = spec;
                r = await _store.CreateAsync(obj, cancellationToken).ConfigureAwait(false);
                if (r.Status == ObjectStatus.AlreadyExists) return new PolicyResult(PolicyStatus.Conflict, revision, "another writer created the policy at the same time; retry");
            }
            else
            {
                // The precondition is the resourceVersion read above: a concurrent promotion makes this one a Conflict.
                pointer.Spec = spec;
                r = await _store.UpdateAsync(pointer, cancellationToken).ConfigureAwait(false);
            }
            if (!r.IsOk) return FromStore(r);
            // Durable: publish. Decisions that start from now on use (and record) this revision.
            Source.Publish(compiled);
            return new PolicyResult(PolicyStatus.Ok, revision, $"{Policy} revision {revision} active ({action} from {from})");
        }
        finally
        {
            _gate.Release();
        }
    }

    private static PolicyResult FromStore(ObjectResult r) => r.Status switch
    {
        ObjectStatus.Conflict => new PolicyResult(PolicyStatus.Conflict, 0, r.Message ?? "conflict"),
        ObjectStatus.Invalid => new PolicyResult(PolicyStatus.Invalid, 0, r.Message ?? "invalid"),
        _ => new PolicyResult(PolicyStatus.StoreError, 0, $"{r.Status}: {r.Message}"),
    };

    private static SchedulerPolicySpec SpecOf(SchedulerPolicySettings s, int revision) => new()
    {
        Weights = new Dictionary<string, double>(s.Weights, StringComparer.Ordinal),
        Filters = new Dictionary<string, bool>(s.Filters, StringComparer.Ordinal),
        Parameters = new Dictionary<string, string>(s.Parameters, StringComparer.Ordinal),
        PriorityRules = [.. s.PriorityRules],
        Revision = revision,
    };

    private string RevisionName(int revision) => string.Create(CultureInfo.InvariantCulture, $"{Policy}.r{revision}");

    private int HighestRevision()
    {
        int max = 0;
        foreach (var (n, _) in Revisions()) max = Math.Max(max, n);
        return max;
    }

    private List<(int Revision, SchedulerPolicy Object)> Revisions()
    {
        var result = new List<(int, SchedulerPolicy)>();
        string prefix = Policy + ".r";
        string? after = null;
        while (true)
        {
            var page = _store.List(new ObjectFilter(SchedulerPolicy.KindName, ""), 1000, after);
            foreach (var o in page.Items)
                if (o is SchedulerPolicy p && p.Metadata.Name.StartsWith(prefix, StringComparison.Ordinal)
                    && int.TryParse(p.Metadata.Name.AsSpan(prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int n))
                    result.Add((n, p));
            if (page.Continue is null) break;
            after = page.Continue;
        }
        result.Sort(static (a, b) => a.Item1.CompareTo(b.Item1));
        return result;
    }
}
