using System.Globalization;

namespace Omega.Scheduling.Pipeline;

/// <summary>
/// A priority rule: jobs with a priority at or above <see cref="AtLeast"/> (and below the next rule's) may preempt when
/// <see cref="Preempt"/> is true. The rule with the highest <see cref="AtLeast"/> not above a job's priority applies;
/// with no matching rule a job may preempt when its priority is above zero (the engine's default).
/// </summary>
public sealed class PriorityRule
{
    /// <summary>The lowest priority the rule covers.</summary>
    public int AtLeast { get; set; }

    /// <summary>Whether jobs the rule covers may preempt lower-priority tasks.</summary>
    public bool Preempt { get; set; }
}

/// <summary>
/// Scheduler policy as data (issue 12, "SchedulerPolicy with revisions"): switches, weights and parameters over the fixed
/// set of filter and scorer plugins (<see cref="SchedulerPolicySettings.FilterNames"/>, <see cref="SchedulerPolicySettings.ScorerNames"/>),
/// and priority rules. Missing entries keep the default pipeline's values. Validated by <see cref="Validate"/> and turned
/// into an immutable <see cref="CompiledPolicy"/> by <see cref="Compile"/>.
/// </summary>
public sealed class SchedulerPolicySettings
{
    /// <summary>The filters, in the order they run. <c>node-health</c>, <c>resource-fit</c> and <c>topology</c> (data residency is a hard gate) cannot be switched off.</summary>
    public static IReadOnlyList<string> FilterNames { get; } = ["node-health", "resource-fit", "required-labels", "taints", "tenant-quota", "group-anti-affinity", "topology"];

    /// <summary>The scorers.</summary>
    public static IReadOnlyList<string> ScorerNames { get; } = ["bin-packing", "domain-spread", "job-anti-affinity", "group-spread", "topology"];

    /// <summary>The parameters (sampling; <see cref="SamplingOptions"/>) with their allowed ranges.</summary>
    public static IReadOnlyList<(string Name, int Min, int Max)> ParameterRanges { get; } =
        [("feasibleFloor", 1, 4096), ("maxPool", 1, 65_536), ("probesPerCandidate", 1, 1024), ("minProbes", 1, 1_000_000)];

    /// <summary>The largest allowed weight.</summary>
    public const double MaxWeight = 1000;

    /// <summary>The default weights (the pipeline's historical ones).</summary>
    public static IReadOnlyDictionary<string, double> DefaultWeights { get; } = new Dictionary<string, double>(StringComparer.Ordinal)
    {
        ["bin-packing"] = 1.0, ["domain-spread"] = 0.5, ["job-anti-affinity"] = 0.5, ["group-spread"] = 1.0,
        // Heavier than the rest together: a region preference must win over packing (it is neutral for jobs without one).
        ["topology"] = 5.0,
    };

    /// <summary>Filter switches by name (true = on). Missing: on.</summary>
    public Dictionary<string, bool> Filters { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Scorer weights by name. Missing: <see cref="DefaultWeights"/>; 0 switches a scorer off.</summary>
    public Dictionary<string, double> Weights { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Parameters by name (see <see cref="ParameterRanges"/>), as decimal integers.</summary>
    public Dictionary<string, string> Parameters { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Priority rules (see <see cref="PriorityRule"/>).</summary>
    public List<PriorityRule> PriorityRules { get; set; } = new();

    /// <summary>Null when the settings are valid, else a one-line reason naming the field.</summary>
    public string? Validate()
    {
        if (Filters is null || Weights is null || Parameters is null || PriorityRules is null) return "filters, weights, parameters and priorityRules must not be null";
        foreach (var (name, on) in Filters)
        {
            if (!Contains(FilterNames, name)) return $"filters.{name}: unknown filter (known: {string.Join(", ", FilterNames)})";
            if (!on && name is "node-health" or "resource-fit" or "topology") return $"filters.{name}: cannot be switched off";
        }
        foreach (var (name, w) in Weights)
        {
            if (!Contains(ScorerNames, name)) return $"weights.{name}: unknown scorer (known: {string.Join(", ", ScorerNames)})";
            if (!double.IsFinite(w) || w < 0 || w > MaxWeight) return $"weights.{name}: must be a number in [0, {MaxWeight}]";
        }
        foreach (var (name, text) in Parameters)
        {
            int r = RangeIndex(name);
            if (r < 0) return $"parameters.{name}: unknown parameter";
            var (_, min, max) = ParameterRanges[r];
            if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) || v < min || v > max)
                return $"parameters.{name}: must be an integer in [{min}, {max}]";
        }
        for (int i = 0; i < PriorityRules.Count; i++)
        {
            if (PriorityRules[i] is null) return $"priorityRules[{i}]: must not be null";
            for (int j = 0; j < i; j++)
                if (PriorityRules[j].AtLeast == PriorityRules[i].AtLeast) return $"priorityRules[{i}]: atLeast {PriorityRules[i].AtLeast} appears twice";
        }
        if (PriorityRules.Count > 64) return "priorityRules: at most 64 rules";
        return null;
    }

    /// <summary>Compiles valid settings into the immutable policy of <paramref name="revision"/>.</summary>
    /// <exception cref="ArgumentException">The settings are invalid (call <see cref="Validate"/> first).</exception>
    public CompiledPolicy Compile(int revision)
    {
        if (Validate() is { } problem) throw new ArgumentException(problem, nameof(revision));
        var filters = new List<IFilter>();
        foreach (var name in FilterNames)
            if (!Filters.TryGetValue(name, out bool on) || on) filters.Add(CreateFilter(name));
        var scorers = new List<(IScorer, double)>();
        foreach (var name in ScorerNames)
        {
            double w = Weights.TryGetValue(name, out var x) ? x : DefaultWeights[name];
            if (w > 0) scorers.Add((CreateScorer(name), w));
        }
        var sampling = new SamplingOptions();
        foreach (var (name, text) in Parameters)
        {
            int v = int.Parse(text, NumberStyles.Integer, CultureInfo.InvariantCulture);
            switch (name)
            {
                case "feasibleFloor": sampling.FeasibleFloor = v; break;
                case "maxPool": sampling.MaxPool = v; break;
                case "probesPerCandidate": sampling.ProbesPerCandidate = v; break;
                case "minProbes": sampling.MinProbes = v; break;
            }
        }
        var rules = new PriorityRule[PriorityRules.Count];
        for (int i = 0; i < rules.Length; i++) rules[i] = new PriorityRule { AtLeast = PriorityRules[i].AtLeast, Preempt = PriorityRules[i].Preempt };
        Array.Sort(rules, static (a, b) => a.AtLeast.CompareTo(b.AtLeast));
        return new CompiledPolicy(revision, filters, scorers, sampling, rules);
    }

    /// <summary>A new instance of the named filter plugin.</summary>
    public static IFilter CreateFilter(string name) => name switch
    {
        "node-health" => new NodeHealthFilter(),
        "resource-fit" => new ResourceFitFilter(),
        "required-labels" => new RequiredLabelsFilter(),
        "taints" => new TaintFilter(),
        "tenant-quota" => new TenantQuotaFilter(),
        "group-anti-affinity" => new GroupAntiAffinityFilter(),
        "topology" => new TopologyFilter(),
        _ => throw new ArgumentException($"unknown filter '{name}'", nameof(name)),
    };

    /// <summary>A new instance of the named scorer plugin.</summary>
    public static IScorer CreateScorer(string name) => name switch
    {
        "bin-packing" => new BinPackingScorer(),
        "domain-spread" => new FailureDomainSpreadScorer(),
        "job-anti-affinity" => new JobAntiAffinityScorer(),
        "group-spread" => new GroupSpreadScorer(),
        "topology" => new TopologyScorer(),
        _ => throw new ArgumentException($"unknown scorer '{name}'", nameof(name)),
    };

    private static bool Contains(IReadOnlyList<string> names, string name)
    {
        for (int i = 0; i < names.Count; i++)
            if (string.Equals(names[i], name, StringComparison.Ordinal)) return true;
        return false;
    }

    private static int RangeIndex(string name)
    {
        for (int i = 0; i < ParameterRanges.Count; i++)
            if (string.Equals(ParameterRanges[i].Name, name, StringComparison.Ordinal)) return i;
        return -1;
    }
}

/// <summary>
/// An immutable, compiled scheduler policy: the plugin instances, weights, sampling and priority rules of one revision.
/// Plugins are stateless, so one compiled policy is shared by every worker; a decision reads the current one once
/// (<see cref="PolicySource.Current"/>) and uses it throughout, so a promotion never mixes two revisions in one decision.
/// </summary>
public sealed class CompiledPolicy
{
    private readonly PriorityRule[] _rules;

    /// <summary>Creates a compiled policy.</summary>
    public CompiledPolicy(int revision, IReadOnlyList<IFilter> filters, IReadOnlyList<(IScorer Scorer, double Weight)> scorers, SamplingOptions? sampling = null, IReadOnlyList<PriorityRule>? priorityRules = null)
    {
        ArgumentNullException.ThrowIfNull(filters);
        ArgumentNullException.ThrowIfNull(scorers);
        Revision = revision;
        Filters = [.. filters];
        Scorers = new IScorer[scorers.Count];
        Weights = new double[scorers.Count];
        for (int i = 0; i < scorers.Count; i++) (Scorers[i], Weights[i]) = scorers[i];
        Sampling = sampling ?? new SamplingOptions();
        _rules = priorityRules is null ? [] : [.. priorityRules];
    }

    /// <summary>The default policy (revision 0: nothing promoted yet).</summary>
    public static CompiledPolicy Default { get; } = new SchedulerPolicySettings().Compile(0);

    /// <summary>The revision, named in every decision record made with it.</summary>
    public int Revision { get; }

    internal IFilter[] Filters { get; }

    internal IScorer[] Scorers { get; }

    internal double[] Weights { get; }

    internal SamplingOptions Sampling { get; }

    /// <summary>The names of the enabled filters, in order.</summary>
    public IEnumerable<string> FilterNames => Filters.Select(f => f.Name);

    /// <summary>The enabled scorers and their weights.</summary>
    public IEnumerable<(string Name, double Weight)> ScorerWeights => Scorers.Select((s, i) => (s.Name, Weights[i]));

    /// <summary>Whether a job of <paramref name="priority"/> may preempt under the priority rules.</summary>
    public bool MayPreempt(int priority)
    {
        // Rules are sorted by AtLeast; few, so a linear scan from the top (no allocation).
        for (int i = _rules.Length - 1; i >= 0; i--)
            if (priority >= _rules[i].AtLeast) return _rules[i].Preempt;
        return priority > 0;
    }
}

/// <summary>
/// Where workers read the active policy: one reference, swapped whole by <see cref="Publish"/> (a promotion or rollback)
/// and read with one volatile load per decision. No lock on the hot path: a worker mid-decision keeps the object it read.
/// </summary>
public sealed class PolicySource
{
    private CompiledPolicy _current;

    /// <summary>Creates a source holding <paramref name="initial"/> (default: <see cref="CompiledPolicy.Default"/>).</summary>
    public PolicySource(CompiledPolicy? initial = null) => _current = initial ?? CompiledPolicy.Default;

    /// <summary>The active policy.</summary>
    public CompiledPolicy Current => Volatile.Read(ref _current);

    /// <summary>Makes <paramref name="policy"/> the active policy for every decision that starts after this returns.</summary>
    public void Publish(CompiledPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        Volatile.Write(ref _current, policy);
    }
}
