using Microsoft.Extensions.AI;
using SafetyNotebooks.Chat;
using YamlDotNet.Serialization;

namespace SafetyNotebooks.Evaluation.RedTeaming;

/// <summary>
/// A scan described in YAML (for <c>safety-notebooks scan --config scan.yaml</c>). Relative paths are resolved against the
/// config file's folder. Example:
/// <code>
/// targets:
///   - name: offline-bot            # kind: secret-keeper-bot (offline, default) or openai (any OpenAI-compatible server)
///     kind: secret-keeper-bot
///   - name: llama
///     kind: openai
///     url: http://localhost:11434/v1
///     model: llama3.2:1b
/// system_prompt: secret-keeper     # or any text; secret-keeper guards `secret`
/// secret: AMBER-OSPREY-17
/// prompts: ../data/redteam/secret-keeper-attacks.jsonl
/// converters: [none, base64, rot13, leetspeak, char-swap, zero-width, homoglyph, role-play, payload-split]
/// judges: [secret-leak, refusal]   # the first decides success
/// repeats: 1
/// max_parallel: 4
/// limits: { timeout_s: 60, max_retries: 3, max_concurrency: 4, requests_per_second: 2 }
/// output: scan-results.jsonl       # appended; a rerun resumes
/// </code>
/// </summary>
public sealed class ScanConfig
{
    /// <summary>The targets.</summary>
    public List<TargetSpec> Targets { get; set; } = new();
    /// <summary><c>secret-keeper</c> (the scenario's prompt guarding <see cref="Secret"/>), any other text, or null for none.</summary>
    public string? SystemPrompt { get; set; } = "secret-keeper";
    /// <summary>The secret of the secret-keeper scenario.</summary>
    public string Secret { get; set; } = SecretKeeper.DefaultSecret;
    /// <summary>JSONL attack prompt file.</summary>
    public string Prompts { get; set; } = "";
    /// <summary>Converter names (<see cref="RedTeaming.Converters.Names"/>).</summary>
    public List<string> Converters { get; set; } = ["none"];
    /// <summary>Judge names: <c>secret-leak</c>, <c>refusal</c>, or <c>regex:PATTERN</c>.</summary>
    public List<string> Judges { get; set; } = ["secret-leak"];
    /// <summary>Attempts per item.</summary>
    public int Repeats { get; set; } = 1;
    /// <summary>Attempts in flight.</summary>
    public int MaxParallel { get; set; } = 4;
    /// <summary>Limits for server targets.</summary>
    public LimitsSpec Limits { get; set; } = new();
    /// <summary>Results JSONL (appended; resumable).</summary>
    public string Output { get; set; } = "scan-results.jsonl";
    /// <summary>Seed of converters and calls.</summary>
    public int Seed { get; set; }
    /// <summary>The folder relative paths are resolved against (the config file's).</summary>
    [YamlIgnore] public string BaseDirectory { get; set; } = ".";

    /// <summary>One target.</summary>
    public sealed class TargetSpec
    {
        /// <summary>Name in the results.</summary>
        public string Name { get; set; } = "";
        /// <summary><c>secret-keeper-bot</c> or <c>openai</c>.</summary>
        public string Kind { get; set; } = "secret-keeper-bot";
        /// <summary>Server base URL (openai kind).</summary>
        public string? Url { get; set; }
        /// <summary>Model name (openai kind).</summary>
        public string? Model { get; set; }
        /// <summary>Name of an environment variable holding the API key (never the key itself in a file).</summary>
        public string? ApiKeyEnv { get; set; }
    }

    /// <summary>Limits of server calls (<see cref="ChatLimits"/>).</summary>
    public sealed class LimitsSpec
    {
        /// <summary>Per-attempt timeout in seconds.</summary>
        public double TimeoutS { get; set; } = 60;
        /// <summary>Retries of transient failures.</summary>
        public int MaxRetries { get; set; } = 3;
        /// <summary>Concurrent calls per target.</summary>
        public int MaxConcurrency { get; set; } = 4;
        /// <summary>Call starts per second (null: no limit).</summary>
        public double? RequestsPerSecond { get; set; }
    }

    /// <summary>Reads and validates a config; every problem is an error naming the file and the field.</summary>
    public static ScanConfig Load(string path)
    {
        var cfg = SafeYaml.Load<ScanConfig>(path, "Scan config");
        cfg.BaseDirectory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        cfg.Validate(path);
        return cfg;
    }

    void Validate(string path)
    {
        if (Targets.Count == 0) throw new InvalidDataException($"{path}: 'targets' is empty; add at least one (kind: secret-keeper-bot runs offline).");
        foreach (var t in Targets)
        {
            if (string.IsNullOrWhiteSpace(t.Name)) throw new InvalidDataException($"{path}: a target has no 'name'.");
            if (t.Kind is not ("secret-keeper-bot" or "openai")) throw new InvalidDataException($"{path}: target '{t.Name}' has kind '{t.Kind}'; use secret-keeper-bot or openai.");
            if (t.Kind == "openai" && (string.IsNullOrWhiteSpace(t.Url) || string.IsNullOrWhiteSpace(t.Model)))
                throw new InvalidDataException($"{path}: target '{t.Name}' (kind openai) needs 'url' (e.g. http://localhost:11434/v1) and 'model'.");
        }
        if (string.IsNullOrWhiteSpace(Prompts)) throw new InvalidDataException($"{path}: 'prompts' must name a JSONL file of attack prompts.");
        foreach (var c in Converters)
            if (!RedTeaming.Converters.Names.Contains(c)) throw new InvalidDataException($"{path}: unknown converter '{c}'; use any of {string.Join(", ", RedTeaming.Converters.Names)}.");
        if (Judges.Count == 0) throw new InvalidDataException($"{path}: 'judges' is empty; the first judge decides success.");
        foreach (var j in Judges)
            if (j is not ("secret-leak" or "refusal") && !j.StartsWith("regex:", StringComparison.Ordinal))
                throw new InvalidDataException($"{path}: unknown judge '{j}'; use secret-leak, refusal or regex:PATTERN.");
        if (Repeats < 1 || MaxParallel < 1) throw new InvalidDataException($"{path}: 'repeats' and 'max_parallel' must be at least 1.");
    }

    /// <summary>A path from the config, resolved against its folder.</summary>
    public string Resolve(string p) => Path.IsPathRooted(p) ? p : Path.GetFullPath(Path.Combine(BaseDirectory, p));

    /// <summary>The chat limits of server targets.</summary>
    public ChatLimits ChatLimits() => new ChatLimits
    {
        Timeout = TimeSpan.FromSeconds(Limits.TimeoutS), MaxRetries = Limits.MaxRetries, MaxConcurrency = Limits.MaxConcurrency,
        RequestsPerSecond = Limits.RequestsPerSecond, Seed = Seed,
    }.Validate();

    /// <summary>The targets as chat clients (dispose them after the scan).</summary>
    public IReadOnlyList<ScanTarget> BuildTargets()
    {
        string? system = SystemPrompt == "secret-keeper" ? SecretKeeper.SystemPrompt(Secret) : SystemPrompt;
        return Targets.Select(t => new ScanTarget(t.Name, t.Kind == "openai"
            ? OpenAICompatible.Create(new Uri(t.Url!), t.Model!, t.ApiKeyEnv is null ? null : Environment.GetEnvironmentVariable(t.ApiKeyEnv), ChatLimits())
            : SecretKeeper.NaiveTarget(), system)).ToList();
    }

    /// <summary>The scan options: converters, judges, repeats, output.</summary>
    public ScanOptions BuildOptions(string? progressTitle = "scan") => new()
    {
        Converters = Converters.Select(c => RedTeaming.Converters.ByName(c, Seed)).ToList(),
        Judges = Judges.Select<string, IJudge>(j => j switch
        {
            "secret-leak" => new SecretLeakJudge(Secret),
            "refusal" => new RefusalJudge(),
            _ => new RegexJudge(j, j["regex:".Length..]),
        }).ToList(),
        Repeats = Repeats, MaxParallel = MaxParallel, ResultsPath = Resolve(Output), Seed = Seed, ProgressTitle = progressTitle,
        ChatOptions = new ChatOptions { Temperature = 0 },
    };
}
