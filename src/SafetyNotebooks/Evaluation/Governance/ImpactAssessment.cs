namespace SafetyNotebooks.Evaluation.Governance;

/// <summary>A question of the impact assessment: its options and the points each gives (impact questions add risk, mitigation questions subtract it).</summary>
public sealed record ImpactQuestion(string Id, string Area, string Text, bool Mitigation, IReadOnlyList<(string Option, int Points)> Options);

/// <summary>The scored assessment.</summary>
public sealed record ImpactResult(int RawImpact, int MaxImpact, int Mitigation, int MaxMitigation, bool MitigationDeduction, double CurrentImpact, int Level,
    IReadOnlyList<(ImpactQuestion Question, string Answer, int Points, string Basis)> Answers);

/// <summary>
/// An algorithmic impact assessment in the style of the Government of Canada's Algorithmic Impact Assessment (the questionnaire
/// of the Treasury Board's Directive on Automated Decision-Making): impact questions score risk, mitigation questions score
/// safeguards, and the impact level I–IV is the share of the maximum impact score (0–25%, 26–50%, 51–75%, 76–100%), reduced by
/// 15% when the mitigation score reaches 80% of its maximum — the scoring scheme the Canadian tool publishes. The questions and
/// their points are this project's short teaching version (the official tool has dozens of questions); four mitigation answers
/// are not asked but read from the evaluation results (evaluated with intervals, red-teamed, guardrails screened, bias measured).
/// </summary>
public static class ImpactAssessment
{
    /// <summary>The questions answered in the system description (<c>impact_assessment:</c>).</summary>
    public static readonly IReadOnlyList<ImpactQuestion> Questions =
    [
        new("decision", "Decision", "What role does the system play in decisions about people?", false, [("none", 0), ("supports", 1), ("recommends", 2), ("decides", 4)]),
        new("reversibility", "Impact", "How reversible are the effects of a wrong output?", false, [("reversible", 1), ("difficult", 2), ("irreversible", 4)]),
        new("duration", "Impact", "How long do the effects of a wrong output last?", false, [("brief", 1), ("lasting", 2), ("permanent", 4)]),
        new("rights", "Impact", "How much can an output affect people's rights, health, economic interests or access to services?", false, [("none", 0), ("low", 1), ("moderate", 2), ("high", 4)]),
        new("vulnerable_groups", "Impact", "Does it affect children or people in vulnerable situations?", false, [("no", 0), ("yes", 3)]),
        new("scale", "Impact", "How many people does it reach?", false, [("few", 1), ("many", 2), ("very_many", 3)]),
        new("personal_data", "Data", "What personal data does it process?", false, [("none", 0), ("personal", 1), ("sensitive", 3)]),
        new("explainability", "Algorithm", "Can its outputs be explained to the people affected?", false, [("explainable", 0), ("partly", 1), ("opaque", 2)]),
        new("human_review", "Mitigation", "Does a human review outputs before they affect someone?", true, [("no", 0), ("yes", 2)]),
        new("recourse", "Mitigation", "Can affected people contest an output and get a human answer?", true, [("no", 0), ("yes", 2)]),
        new("monitoring", "Mitigation", "Is the system monitored in operation (logs reviewed, incidents reported)?", true, [("no", 0), ("yes", 2)]),
        new("consultation", "Mitigation", "Were affected groups or independent experts consulted?", true, [("no", 0), ("yes", 1)]),
    ];

    /// <summary>Mitigation answers read from the evaluation results, with their points.</summary>
    public static readonly IReadOnlyList<(string Id, string Text, ResultKind Kind, int Points)> Measured =
    [
        ("evaluated", "Evaluated on task data with confidence intervals (evaluation harness results)", ResultKind.Eval, 2),
        ("red_teamed", "Red-teamed with an adversarial scan (attack success rates)", ResultKind.Scan, 2),
        ("guardrails", "Inputs screened by guardrails (decisions logged)", ResultKind.Guard, 1),
        ("bias_measured", "Bias or other interval-valued metrics measured (metric files)", ResultKind.Metric, 2),
    ];

    /// <summary>Reads the answers; an unknown question, a missing one or an unknown option is an error naming the field.</summary>
    public static IReadOnlyDictionary<string, string> ParseAnswers(IReadOnlyDictionary<string, string> raw, string where = "answers")
    {
        var byId = Questions.ToDictionary(q => q.Id);
        var answers = new Dictionary<string, string>();
        foreach (var (id, value) in raw)
        {
            if (!byId.TryGetValue(id, out var q))
                throw new InvalidDataException($"{where}: impact_assessment.{id} is not a question of the impact assessment; questions: {string.Join(", ", Questions.Select(x => x.Id))}.");
            var v = (value ?? "").Trim().ToLowerInvariant();
            if (v == "true") v = "yes";
            if (v == "false") v = "no";
            if (!q.Options.Any(o => o.Option == v))
                throw new InvalidDataException($"{where}: impact_assessment.{id} is '{value}'; answer one of {string.Join(", ", q.Options.Select(o => o.Option))}.");
            answers[id] = v;
        }
        var missing = Questions.Where(q => !answers.ContainsKey(q.Id)).Select(q => q.Id).ToList();
        if (missing.Count > 0) throw new InvalidDataException($"{where}: impact_assessment is missing answers to {string.Join(", ", missing)}.");
        return answers;
    }

    /// <summary>Scores the answers, with the measured mitigations taken from <paramref name="evidence"/>.</summary>
    public static ImpactResult Score(IReadOnlyDictionary<string, string> answers, EvaluationEvidence evidence)
    {
        var rows = new List<(ImpactQuestion, string, int, string)>();
        int raw = 0, maxRaw = 0, mit = 0, maxMit = 0;
        foreach (var q in Questions)
        {
            var a = answers.TryGetValue(q.Id, out var v) ? v : throw new ArgumentException($"No answer to impact question '{q.Id}'.", nameof(answers));
            int pts = q.Options.Single(o => o.Option == a).Points, max = q.Options.Max(o => o.Points);
            if (q.Mitigation) { mit += pts; maxMit += max; } else { raw += pts; maxRaw += max; }
            rows.Add((q, a, pts, "system description"));
        }
        foreach (var (id, text, kind, points) in Measured)
        {
            bool has = evidence.Has(kind);
            var files = string.Join(", ", evidence.Sources.Where(s => s.Kind == kind).Select(s => Path.GetFileName(s.Path)));
            mit += has ? points : 0; maxMit += points;
            rows.Add((new ImpactQuestion(id, "Mitigation (measured)", text, true, [("no", 0), ("yes", points)]), has ? "yes" : "no", has ? points : 0,
                has ? $"results: {files}" : "no result file of this kind"));
        }
        bool deduct = mit >= 0.8 * maxMit;
        double current = deduct ? raw * 0.85 : raw;
        double share = current / maxRaw;
        int level = share <= 0.25 ? 1 : share <= 0.50 ? 2 : share <= 0.75 ? 3 : 4;
        return new ImpactResult(raw, maxRaw, mit, maxMit, deduct, current, level, rows);
    }

    /// <summary>The level as a Roman numeral.</summary>
    public static string Roman(int level) => level switch { 1 => "I", 2 => "II", 3 => "III", _ => "IV" };
}
