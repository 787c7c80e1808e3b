using YamlDotNet.Serialization;

namespace SafetyNotebooks.Evaluation.Governance;

/// <summary>
/// What the governance documents need to know that no result file says: what the system is, who owns it, who uses it, what it
/// was trained on, the answers to the EU AI Act and impact questionnaires. A short YAML file (JSON works too: it is read as
/// YAML), snake_case fields, read with <see cref="SafeYaml"/> (unknown fields are errors naming the line):
/// <code>
/// name: Vault helpdesk assistant
/// version: "0.3"
/// owner: Safety team (safety@example.org)
/// description: A chat assistant that answers questions about the vault service and never reveals the access code.
/// model_type: rule-based keyword-guarded chat bot (stand-in for a language model)
/// intended_use: Answer customers' questions about opening hours and services.
/// users: [customers of the vault service, helpdesk staff]
/// out_of_scope_uses: [decisions about customers, legal or financial advice]
/// training_data: None (rule-based); a deployed model's pre-training and fine-tuning data would be described here.
/// evaluation_data: data/eval and data/redteam (written for this project).
/// factors: [attack encoding (converter), attack category]
/// ethical_considerations: [...]
/// caveats: [...]
/// eu_ai_act: { p_manipulation: no, ... }         # every question of EuAiActQuestionnaire.Questions, yes or no
/// impact_assessment: { decision: none, ... }      # every question of ImpactAssessment.Questions
/// risk_register: { adversarial: { impact: high, owner: ..., mitigation: ... } }   # optional, per measured risk kind
/// risks: [{ id: R-G1, risk: ..., function: govern, likelihood: possible, impact: moderate, owner: ..., mitigation: ... }]
/// evidence: { A.2: [docs/policy.md] }              # optional, ISO/IEC 42001 area → files (relative to this file)
/// </code>
/// </summary>
public sealed class SystemDescription
{
    /// <summary>The system's name.</summary>
    public string? Name { get; set; }
    /// <summary>Its version.</summary>
    public string? Version { get; set; }
    /// <summary>Who is accountable for it (a person or team with a contact).</summary>
    public string? Owner { get; set; }
    /// <summary>One or two sentences on what it is.</summary>
    public string? Description { get; set; }
    /// <summary>The kind of model or system (architecture, size).</summary>
    public string? ModelType { get; set; }
    /// <summary>A licence, if any.</summary>
    public string? License { get; set; }
    /// <summary>The primary intended use.</summary>
    public string? IntendedUse { get; set; }
    /// <summary>The primary intended users.</summary>
    public List<string>? Users { get; set; }
    /// <summary>Uses it is not meant for.</summary>
    public List<string>? OutOfScopeUses { get; set; }
    /// <summary>What it was trained on.</summary>
    public string? TrainingData { get; set; }
    /// <summary>What it was evaluated on, beyond what the result files say.</summary>
    public string? EvaluationData { get; set; }
    /// <summary>Factors (groups, conditions, environments) whose effect on performance matters.</summary>
    public List<string>? Factors { get; set; }
    /// <summary>Ethical considerations.</summary>
    public List<string>? EthicalConsiderations { get; set; }
    /// <summary>Caveats and recommendations.</summary>
    public List<string>? Caveats { get; set; }
    /// <summary>Answers to <see cref="EuAiActQuestionnaire.Questions"/>: question id → yes or no.</summary>
    public Dictionary<string, string>? EuAiAct { get; set; }
    /// <summary>Answers to <see cref="ImpactAssessment.Questions"/>: question id → option.</summary>
    public Dictionary<string, string>? ImpactAssessment { get; set; }
    /// <summary>Impact, owner and mitigation per measured risk kind (<see cref="RiskRegister.Kinds"/>).</summary>
    public Dictionary<string, RiskSettings>? RiskRegister { get; set; }
    /// <summary>Risks that no result file measures (governance, context, organisational).</summary>
    public List<DescribedRisk>? Risks { get; set; }
    /// <summary>ISO/IEC 42001 Annex A area (A.2 … A.10) → evidence files, relative to the description's folder.</summary>
    public Dictionary<string, List<string>>? Evidence { get; set; }

    /// <summary>The file it was read from (empty when built in code).</summary>
    [YamlIgnore] public string SourcePath { get; set; } = "";

    /// <summary>Impact, owner, mitigation of one measured risk kind.</summary>
    public sealed class RiskSettings
    {
        /// <summary>negligible, minor, moderate, major or severe.</summary>
        public string? Impact { get; set; }
        /// <summary>Who manages the risk (default: the system's owner).</summary>
        public string? Owner { get; set; }
        /// <summary>What is done about it.</summary>
        public string? Mitigation { get; set; }
    }

    /// <summary>A risk stated by hand (no measurement behind it).</summary>
    public sealed class DescribedRisk
    {
        /// <summary>Identifier, e.g. R-G1.</summary>
        public string? Id { get; set; }
        /// <summary>The risk.</summary>
        public string? Risk { get; set; }
        /// <summary>The NIST AI RMF function it sits under: govern, map, measure or manage.</summary>
        public string? Function { get; set; }
        /// <summary>rare, unlikely, possible, likely or almost-certain.</summary>
        public string? Likelihood { get; set; }
        /// <summary>negligible, minor, moderate, major or severe.</summary>
        public string? Impact { get; set; }
        /// <summary>Who manages it (default: the system's owner).</summary>
        public string? Owner { get; set; }
        /// <summary>What is done about it.</summary>
        public string? Mitigation { get; set; }
    }

    /// <summary>Reads and validates a system description; every problem names the file and the field.</summary>
    public static SystemDescription Load(string path)
    {
        var d = SafeYaml.Load<SystemDescription>(path, "System description");
        d.SourcePath = path;
        d.Validate();
        return d;
    }

    /// <summary>Checks the required fields and the questionnaires' answers; throws <see cref="InvalidDataException"/> naming the field.</summary>
    public void Validate()
    {
        string where = SourcePath.Length > 0 ? SourcePath : "system description";
        void Need(string? value, string field, string what)
        {
            if (string.IsNullOrWhiteSpace(value)) throw new InvalidDataException($"{where}: field '{field}' is missing or empty; give {what}.");
        }
        Need(Name, "name", "the system's name");
        Need(Version, "version", "its version (quote numbers: version: \"1.0\")");
        Need(Owner, "owner", "the accountable person or team with a contact");
        Need(Description, "description", "one or two sentences on what the system is");
        Need(IntendedUse, "intended_use", "the primary intended use");
        Need(TrainingData, "training_data", "what it was trained on (or why there is no training data)");
        if (Users is null || Users.Count == 0 || Users.Any(string.IsNullOrWhiteSpace))
            throw new InvalidDataException($"{where}: field 'users' is missing or has an empty entry; list the primary intended users.");
        if (OutOfScopeUses is null || OutOfScopeUses.Count == 0)
            throw new InvalidDataException($"{where}: field 'out_of_scope_uses' is missing; list at least one use the system is not meant for.");
        if (EuAiAct is null) throw new InvalidDataException($"{where}: section 'eu_ai_act' is missing; answer every question of the EU AI Act questionnaire (see docs/governance.md).");
        EuAiActQuestionnaire.ParseAnswers(EuAiAct, where);
        if (ImpactAssessment is null) throw new InvalidDataException($"{where}: section 'impact_assessment' is missing; answer every question of the impact assessment (see docs/governance.md).");
        Governance.ImpactAssessment.ParseAnswers(ImpactAssessment, where);
        foreach (var (kind, s) in RiskRegister ?? [])
        {
            if (!Governance.RiskRegister.Kinds.Contains(kind))
                throw new InvalidDataException($"{where}: risk_register.{kind} is not a measured risk kind; use one of {string.Join(", ", Governance.RiskRegister.Kinds)}.");
            if (s?.Impact is { } imp) Governance.RiskRegister.ImpactLevel(imp, $"{where}: risk_register.{kind}.impact");
        }
        for (int i = 0; i < (Risks?.Count ?? 0); i++)
        {
            var r = Risks![i];
            string f = $"{where}: risks[{i}]";
            if (r is null) throw new InvalidDataException($"{f} is empty.");
            Need(r.Id, $"risks[{i}].id", "an identifier such as R-G1");
            Need(r.Risk, $"risks[{i}].risk", "the risk in one sentence");
            if (!Governance.RiskRegister.Functions.Contains(r.Function ?? ""))
                throw new InvalidDataException($"{f}.function is '{r.Function}'; use one of {string.Join(", ", Governance.RiskRegister.Functions)}.");
            Governance.RiskRegister.LikelihoodLevel(r.Likelihood ?? "", $"{f}.likelihood");
            Governance.RiskRegister.ImpactLevel(r.Impact ?? "", $"{f}.impact");
        }
        foreach (var (area, files) in Evidence ?? [])
        {
            if (!Iso42001Checklist.Areas.Any(a => a.Id == area))
                throw new InvalidDataException($"{where}: evidence.{area} is not an ISO/IEC 42001 Annex A area; use one of {string.Join(", ", Iso42001Checklist.Areas.Select(a => a.Id))}.");
            foreach (var f in files ?? [])
                if (!File.Exists(ResolveEvidence(f)))
                    throw new InvalidDataException($"{where}: evidence.{area} lists '{f}', which does not exist (looked for {ResolveEvidence(f)}).");
        }
    }

    /// <summary>An evidence path as given, resolved against the description's folder.</summary>
    public string ResolveEvidence(string file) =>
        Path.GetFullPath(Path.Combine(SourcePath.Length > 0 ? Path.GetDirectoryName(Path.GetFullPath(SourcePath))! : Directory.GetCurrentDirectory(), file));
}
