using SafetyNotebooks.Statistics;

namespace SafetyNotebooks.Evaluation.Governance;

/// <summary>
/// One row of the risk register: <c>Function</c> is the NIST AI RMF function it is tracked under (Govern, Map, Measure, Manage);
/// <c>Evidence</c> the measured evidence (a rate with its Wilson interval and counts, naming the file) or "not measured"; <c>Rate</c>
/// the measured rate the likelihood was read from, when there is one; <c>Score</c> likelihood × impact (1–25).
/// </summary>
public sealed record RiskEntry(string Id, string Function, string Kind, string Risk, string Evidence, Interval? Rate, string Likelihood, string Impact, int Score,
    string Rating, string Owner, string Mitigation);

/// <summary>
/// A risk register in the style of the NIST AI Risk Management Framework (AI RMF 1.0): risks are mapped in context (Map), measured
/// (Measure: here, rates from the result files with their Wilson intervals), managed (Manage: a mitigation and a likelihood × impact
/// rating) under an accountable owner (Govern). Measured rows are generated from the results; described rows come from the system
/// description. The likelihood of a measured risk is read from the <b>upper</b> end of its 95% interval (a cautious reading: a
/// small sample cannot show a risk is rare).
/// </summary>
public static class RiskRegister
{
    /// <summary>The NIST AI RMF core functions.</summary>
    public static readonly string[] Functions = ["govern", "map", "measure", "manage"];

    /// <summary>The risk kinds generated from results.</summary>
    public static readonly string[] Kinds = ["adversarial", "harmful_compliance", "over_refusal", "accuracy", "bias"];

    /// <summary>Likelihood scale (1–5).</summary>
    public static readonly string[] Likelihoods = ["rare", "unlikely", "possible", "likely", "almost-certain"];

    /// <summary>Impact scale (1–5).</summary>
    public static readonly string[] Impacts = ["negligible", "minor", "moderate", "major", "severe"];

    /// <summary>1–5 for a likelihood word; an error naming <paramref name="where"/> otherwise.</summary>
    public static int LikelihoodLevel(string word, string where = "likelihood")
    {
        int i = Array.IndexOf(Likelihoods, word.Trim().ToLowerInvariant());
        return i >= 0 ? i + 1 : throw new InvalidDataException($"{where} is '{word}'; use one of {string.Join(", ", Likelihoods)}.");
    }

    /// <summary>1–5 for an impact word; an error naming <paramref name="where"/> otherwise.</summary>
    public static int ImpactLevel(string word, string where = "impact")
    {
        int i = Array.IndexOf(Impacts, word.Trim().ToLowerInvariant());
        return i >= 0 ? i + 1 : throw new InvalidDataException($"{where} is '{word}'; use one of {string.Join(", ", Impacts)}.");
    }

    /// <summary>
    /// The likelihood band of a measured rate, from its interval's upper bound: below 1% rare, below 5% unlikely, below 20%
    /// possible, below 50% likely, otherwise almost certain.
    /// </summary>
    public static string LikelihoodOf(Interval rate) => rate.Upper switch
    {
        < 0.01 => "rare",
        < 0.05 => "unlikely",
        < 0.20 => "possible",
        < 0.50 => "likely",
        _ => "almost-certain",
    };

    /// <summary>Likelihood × impact (1–25) as a rating: 15 and above high, 8 and above medium, otherwise low.</summary>
    public static string RatingOf(int score) => score >= 15 ? "high" : score >= 8 ? "medium" : "low";

    /// <summary>Builds the register: measured rows from <paramref name="evidence"/>, then the described rows of <paramref name="system"/>.</summary>
    public static IReadOnlyList<RiskEntry> Build(SystemDescription system, EvaluationEvidence evidence)
    {
        var rows = new List<RiskEntry>();
        int next = 1;
        void Add(string kind, string risk, Interval rate, string text)
        {
            var s = system.RiskRegister is { } rr && rr.TryGetValue(kind, out var v) ? v : null;
            string impact = s?.Impact?.Trim().ToLowerInvariant() ?? "moderate";
            string like = LikelihoodOf(rate);
            int score = LikelihoodLevel(like) * ImpactLevel(impact);
            rows.Add(new RiskEntry($"R-M{next++}", "Measure", kind, risk, text, rate, like, s?.Impact is null ? impact + " (default)" : impact, score, RatingOf(score),
                s?.Owner ?? system.Owner!, s?.Mitigation ?? "None recorded: decide one (Manage) and record it under risk_register." + kind + ".mitigation."));
        }

        // Adversarial: attack success per target; the worst converter named beside it.
        foreach (var m in evidence.Of(ResultKind.Scan).Where(m => !m.Group.Contains(" | ", StringComparison.Ordinal)))
        {
            var target = m.Group["target=".Length..];
            var worst = evidence.Of(ResultKind.Scan).Where(x => x.Source == m.Source && x.Group.StartsWith(m.Group + " | converter=", StringComparison.Ordinal))
                .OrderByDescending(x => x.Value.Estimate).ThenBy(x => x.Group, StringComparer.Ordinal).FirstOrDefault();
            var text = $"attack success rate {m.Text} in `{m.Source}`" + (worst is null ? "" : $"; worst converter {worst.Group.Split("converter=")[1]}: {worst.Text}");
            Add("adversarial", $"Adversarial prompts make `{target}` break its policy (the scan's first judge decides success).", m.Value, text);
        }
        // Evaluation: failure rates of the refuse / answer / accuracy groups.
        foreach (var m in evidence.Of(ResultKind.Eval))
        {
            int fails = m.Trials - m.Successes!.Value;
            var rate = Rates.Wilson(fails, m.Trials);
            string rule = m.Group.Split(" | ")[^1];
            string text = $"failure rate {EvaluationEvidence.Describe(rate, fails, m.Trials)} on `{m.Group}` in `{m.Source}`";
            switch (rule)
            {
                case "refuse": Add("harmful_compliance", "The system complies with requests it should refuse.", rate, text); break;
                case "answer": Add("over_refusal", "The system refuses benign requests (over-refusal), failing its users.", rate, text); break;
                default: Add("accuracy", $"Wrong answers on `{m.Group}`.", rate, text); break;
            }
        }
        // Metrics (bias and others): the interval as given; likelihood from its upper end when it is a rate in [0, 1].
        foreach (var m in evidence.Of(ResultKind.Metric))
        {
            var rate = m.Value.Lower >= 0 && m.Value.Upper <= 1 ? m.Value : new Interval(0.5, 0.5, 0.5, 0.95, "unknown");
            Add("bias", $"Measured `{m.Name}`{(m.Group.Length > 0 ? $" ({m.Group})" : "")} shows a disparity that could harm a group.", rate, $"`{m.Name}` = {m.Text} in `{m.Source}`");
        }
        // Described risks.
        foreach (var r in system.Risks ?? [])
        {
            int score = LikelihoodLevel(r.Likelihood!) * ImpactLevel(r.Impact!);
            rows.Add(new RiskEntry(r.Id!, char.ToUpperInvariant(r.Function![0]) + r.Function[1..], "described", r.Risk!, "not measured (stated in the system description)", null,
                r.Likelihood!.ToLowerInvariant(), r.Impact!.ToLowerInvariant(), score, RatingOf(score), r.Owner ?? system.Owner!, r.Mitigation ?? "None recorded."));
        }
        return rows;
    }
}
