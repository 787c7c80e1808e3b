using Microsoft.Extensions.AI;

namespace SafetyNotebooks.Evaluation.Guardrails;

/// <summary>
/// Rails configured in YAML (read with <see cref="SafeYaml"/>), for <c>safety-notebooks guard</c> and for notebooks:
/// <code>
/// refusal: "I'm sorry, but I can't help with that."
/// max_reasks: 1
/// input:
///   - rail: injection              # injection | pii | topic | secret | dialog | toxicity | selfcheck (output)
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
/// More rails: <c>dialog</c> (input; <c>flows:</c> a Colang-style flow file, path relative to the config; <c>threshold:</c> least
/// similarity of a user form, default 0.5; <c>unmatched: allow|refuse</c>; <c>on_fail: refuse</c> answers with the flow's bot
/// message), <c>toxicity</c> (<c>data:</c> a labelled JSONL whose <c>train</c> split the classifier is fitted on; <c>threshold</c>,
/// default 0.5), <c>selfcheck</c> (output; <c>samples</c>, default 4; <c>temperature</c>, default 1.0; <c>score: overlap|avg_neg_logprob|max_neg_logprob</c>;
/// <c>threshold</c>, default 0.5).
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
        /// <summary>injection, pii, topic, secret, dialog, toxicity or selfcheck.</summary>
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
        /// <summary>dialog: the flow file (relative paths are relative to the config file).</summary>
        public string? Flows { get; set; }
        /// <summary>dialog: least user-form similarity; toxicity: least probability; selfcheck: largest sentence score allowed.</summary>
        public double? Threshold { get; set; }
        /// <summary>dialog: <c>allow</c> (the model answers turns no flow covers; default) or <c>refuse</c> (only the flows' paths are open).</summary>
        public string? Unmatched { get; set; }
        /// <summary>toxicity: the labelled JSONL (relative to the config file); the classifier is fitted on its <c>train</c> split.</summary>
        public string? Data { get; set; }
        /// <summary>selfcheck: extra answers sampled per reply.</summary>
        public int? Samples { get; set; }
        /// <summary>selfcheck: sampling temperature (> 0).</summary>
        public double? Temperature { get; set; }
        /// <summary>selfcheck: <c>overlap</c> (default), <c>avg_neg_logprob</c> or <c>max_neg_logprob</c>.</summary>
        public string? Score { get; set; }
    }

    /// <summary>Folder that relative paths in the config (flows, data) are resolved against; set by <see cref="Load"/>.</summary>
    public string BaseDirectory { get; set; } = ".";

    /// <summary>Reads and validates a rails config.</summary>
    public static GuardrailsConfig Load(string path)
    {
        var cfg = SafeYaml.Load<GuardrailsConfig>(path, "Rails config");
        cfg.BaseDirectory = Path.GetDirectoryName(Path.GetFullPath(path))!;
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
                if (r.Rail is not ("injection" or "pii" or "topic" or "secret" or "dialog" or "toxicity" or "selfcheck"))
                    throw new InvalidDataException($"{at}: unknown rail; use injection, pii, topic, secret, dialog, toxicity or selfcheck.");
                if (!Enum.TryParse<OnFail>(r.OnFail, ignoreCase: true, out var onFail)) throw new InvalidDataException($"{at}: on_fail '{r.OnFail}' is not one of refuse, fix, filter, reask, exception.");
                if (onFail == OnFail.Reask && stage == "input") throw new InvalidDataException($"{at}: reask applies to output rails only (the model has not answered yet).");
                if (r.Rail == "topic" && (r.Keywords is null || r.Keywords.Count == 0)) throw new InvalidDataException($"{at}: needs 'keywords'.");
                if (r.Rail == "secret" && (r.Secrets is null || r.Secrets.Count == 0 || r.Secrets.Any(string.IsNullOrWhiteSpace))) throw new InvalidDataException($"{at}: needs non-empty 'secrets'.");
                if (r.Rail == "dialog")
                {
                    if (stage == "output") throw new InvalidDataException($"{at}: dialog rails decide the turn before the model answers; put them under 'input'.");
                    if (string.IsNullOrWhiteSpace(r.Flows)) throw new InvalidDataException($"{at}: needs 'flows', a flow file such as flows.co.");
                    if (r.Unmatched is not (null or "allow" or "refuse")) throw new InvalidDataException($"{at}: unmatched '{r.Unmatched}' is not allow or refuse.");
                    if (r.Threshold is < 0 or > 1) throw new InvalidDataException($"{at}: threshold {r.Threshold} must be a similarity in [0, 1].");
                    var flows = Resolve(r.Flows);
                    try { DialogFlows.Load(flows); }
                    catch (FileNotFoundException) { throw new InvalidDataException($"{at}: flow file '{flows}' does not exist."); }
                    catch (InvalidDataException e) { throw new InvalidDataException($"{at}: {e.Message}"); }
                }
                if (r.Rail == "toxicity")
                {
                    if (string.IsNullOrWhiteSpace(r.Data)) throw new InvalidDataException($"{at}: needs 'data', a labelled JSONL such as toxicity-labelled.jsonl.");
                    if (!File.Exists(Resolve(r.Data))) throw new InvalidDataException($"{at}: data file '{Resolve(r.Data)}' does not exist.");
                    if (r.Threshold is < 0 or > 1) throw new InvalidDataException($"{at}: threshold {r.Threshold} must be a probability in [0, 1].");
                }
                if (r.Rail == "selfcheck")
                {
                    if (stage == "input") throw new InvalidDataException($"{at}: the self-check scores the model's reply; put it under 'output'.");
                    if (r.Samples is < 1 or > 20) throw new InvalidDataException($"{at}: samples {r.Samples} must be between 1 and 20.");
                    if (r.Temperature is { } t && !(t > 0 && t <= 2)) throw new InvalidDataException($"{at}: temperature {t} must be in (0, 2]; samples at 0 only repeat the answer.");
                    if (r.Score is not (null or "overlap" or "avg_neg_logprob" or "max_neg_logprob")) throw new InvalidDataException($"{at}: score '{r.Score}' is not overlap, avg_neg_logprob or max_neg_logprob.");
                }
                if (r.Rail is not ("dialog" or "toxicity" or "selfcheck") && (r.Flows ?? r.Data ?? r.Unmatched ?? r.Score) is not null || r.Rail is not ("selfcheck") && (r.Samples ?? (object?)r.Temperature) is not null)
                    throw new InvalidDataException($"{at}: has a field that rail does not use (flows, data, unmatched, samples, temperature, score belong to dialog, toxicity and selfcheck).");
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

    string Resolve(string path) => Path.IsPathRooted(path) ? path : Path.GetFullPath(Path.Combine(BaseDirectory, path));

    RailRule Build(RailSpec r)
    {
        IRail rail = r.Rail switch
        {
            "injection" => new InjectionRail(r.Patterns is null ? null : InjectionRail.DefaultPatterns.Concat(r.Patterns)),
            "pii" => new PiiRail(r.Kinds),
            "topic" => new TopicRail(r.Keywords!),
            "dialog" => new DialogRail(DialogFlows.Load(Resolve(r.Flows!)), r.Threshold ?? 0.5, r.Unmatched == "refuse"),
            "toxicity" => new ToxicityRail(ToxicityClassifier.Train(ToxicityClassifier.LoadJsonl(Resolve(r.Data!)).Where(e => e.Split == "train").ToList()), r.Threshold ?? 0.5),
            "selfcheck" => new SelfCheckRail(r.Samples ?? 4, (float)(r.Temperature ?? 1.0), r.Threshold ?? 0.5,
                r.Score switch { "avg_neg_logprob" => SelfCheckScore.AvgNegLogprob, "max_neg_logprob" => SelfCheckScore.MaxNegLogprob, _ => SelfCheckScore.Overlap }),
            _ => new SecretRail(r.Secrets!),
        };
        return new RailRule(rail, Enum.Parse<OnFail>(r.OnFail, ignoreCase: true));
    }
}
