using Microsoft.Extensions.AI;

namespace SafetyNotebooks.Evaluation.Guardrails;

/// <summary>
/// Rails configured in YAML (read with <see cref="SafeYaml"/>), for <c>safety-notebooks guard</c> and for notebooks:
/// <code>
/// refusal: "I'm sorry, but I can't help with that."
/// max_reasks: 1
/// input:
///   - rail: injection              # injection | pii | topic | secret
///     on_fail: refuse              # refuse | fix | filter | reask (output only) | exception
///   - rail: pii
///     kinds: [EMAIL, PHONE, CREDIT_CARD, IBAN, SSN, IP_ADDRESS]
///     on_fail: fix                 # anonymize
///   - rail: topic
///     keywords: [lockpicking, explosives]
///     on_fail: refuse
/// output:
///   - rail: secret
///     secrets: [AMBER-OSPREY-17]
///     on_fail: refuse
///   - rail: pii
///     on_fail: fix
/// </code>
/// </summary>
public sealed class GuardrailsConfig
{
    /// <summary>The canned refusal.</summary>
    public string Refusal { get; set; } = GuardedChatClient.DefaultRefusal;
    /// <summary>How many times an output rail with <c>reask</c> asks the model again.</summary>
    public int MaxReasks { get; set; } = 1;
    /// <summary>Input rails, in order.</summary>
    public List<RailSpec> Input { get; set; } = new();
    /// <summary>Output rails, in order.</summary>
    public List<RailSpec> Output { get; set; } = new();

    /// <summary>One rail.</summary>
    public sealed class RailSpec
    {
        /// <summary>injection, pii, topic or secret.</summary>
        public string Rail { get; set; } = "";
        /// <summary>refuse, fix, filter, reask or exception.</summary>
        public string OnFail { get; set; } = "refuse";
        /// <summary>pii: the kinds to detect (default all).</summary>
        public List<string>? Kinds { get; set; }
        /// <summary>topic: blocked keywords.</summary>
        public List<string>? Keywords { get; set; }
        /// <summary>secret: the protected strings.</summary>
        public List<string>? Secrets { get; set; }
        /// <summary>injection: extra patterns (regular expressions) added to the defaults.</summary>
        public List<string>? Patterns { get; set; }
    }

    /// <summary>Reads and validates a rails config.</summary>
    public static GuardrailsConfig Load(string path)
    {
        var cfg = SafeYaml.Load<GuardrailsConfig>(path, "Rails config");
        cfg.Validate(path);
        return cfg;
    }

    /// <summary>Checks every rail spec; errors name the stage, position and field.</summary>
    public GuardrailsConfig Validate(string where = "rails config")
    {
        if (Input.Count + Output.Count == 0) throw new InvalidDataException($"{where}: no rails; add 'input' and/or 'output' rails.");
        foreach (var (stage, list) in new[] { ("input", Input), ("output", Output) })
            for (int i = 0; i < list.Count; i++)
            {
                var r = list[i];
                string at = $"{where}: {stage} rail {i + 1} ('{r.Rail}')";
                if (r.Rail is not ("injection" or "pii" or "topic" or "secret")) throw new InvalidDataException($"{at}: unknown rail; use injection, pii, topic or secret.");
                if (!Enum.TryParse<OnFail>(r.OnFail, ignoreCase: true, out var onFail)) throw new InvalidDataException($"{at}: on_fail '{r.OnFail}' is not one of refuse, fix, filter, reask, exception.");
                if (onFail == OnFail.Reask && stage == "input") throw new InvalidDataException($"{at}: reask applies to output rails only (the model has not answered yet).");
                if (r.Rail == "topic" && (r.Keywords is null || r.Keywords.Count == 0)) throw new InvalidDataException($"{at}: needs 'keywords'.");
                if (r.Rail == "secret" && (r.Secrets is null || r.Secrets.Count == 0 || r.Secrets.Any(string.IsNullOrWhiteSpace))) throw new InvalidDataException($"{at}: needs non-empty 'secrets'.");
                if (r.Rail == "pii" && r.Kinds?.FirstOrDefault(k => !Pii.Kinds.Contains(k)) is { } bad) throw new InvalidDataException($"{at}: unknown PII kind '{bad}'; use {string.Join(", ", Pii.Kinds)}.");
            }
        return this;
    }

    /// <summary>The input rails as rules.</summary>
    public IReadOnlyList<RailRule> InputRules() => Input.Select(Build).ToList();
    /// <summary>The output rails as rules.</summary>
    public IReadOnlyList<RailRule> OutputRules() => Output.Select(Build).ToList();

    /// <summary>A <see cref="GuardedChatClient"/> around <paramref name="inner"/> with these rails.</summary>
    public GuardedChatClient Wrap(IChatClient inner) => new(inner, InputRules(), OutputRules(), Refusal, MaxReasks);

    static RailRule Build(RailSpec r)
    {
        IRail rail = r.Rail switch
        {
            "injection" => new InjectionRail(r.Patterns is null ? null : InjectionRail.DefaultPatterns.Concat(r.Patterns)),
            "pii" => new PiiRail(r.Kinds),
            "topic" => new TopicRail(r.Keywords!),
            _ => new SecretRail(r.Secrets!),
        };
        return new RailRule(rail, Enum.Parse<OnFail>(r.OnFail, ignoreCase: true));
    }
}
