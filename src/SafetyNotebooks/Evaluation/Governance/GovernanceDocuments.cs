using System.Globalization;

namespace SafetyNotebooks.Evaluation.Governance;

/// <summary>
/// Generates the governance documents from a system description and evaluation results: a model card (Mitchell et al. 2019), an
/// EU AI Act risk-tier questionnaire, an ISO/IEC 42001 Annex A checklist, a NIST AI RMF-style risk register and an algorithmic
/// impact assessment (Canada AIA style). Every number comes from the result files through <see cref="EvaluationEvidence"/>;
/// the output is deterministic (no dates or clocks), so regenerating from the same files gives the same documents.
/// </summary>
public static class GovernanceDocuments
{
    /// <summary>The file stems, in order.</summary>
    public static readonly string[] Slugs = ["model-card", "eu-ai-act", "iso-42001", "risk-register", "impact-assessment"];

    /// <summary>All five documents. <paramref name="outputDir"/> is where they will be written (links to evidence are relative to it).</summary>
    public static IReadOnlyList<GovernanceDocument> Generate(SystemDescription system, EvaluationEvidence evidence, string outputDir = ".")
    {
        ArgumentNullException.ThrowIfNull(system);
        ArgumentNullException.ThrowIfNull(evidence);
        system.Validate();
        string Link(string path) => Path.GetRelativePath(Path.GetFullPath(outputDir), Path.GetFullPath(path)).Replace('\\', '/');
        return [ModelCard(system, evidence, Link), EuAiAct(system, evidence), Iso42001(system, evidence, Link), Register(system, evidence), Impact(system, evidence)];
    }

    /// <summary>Writes each document as <c>slug.md</c> and <c>slug.html</c> into <paramref name="outputDir"/>; returns the paths written.</summary>
    public static IReadOnlyList<string> Write(IReadOnlyList<GovernanceDocument> documents, string outputDir)
    {
        Directory.CreateDirectory(outputDir);
        var written = new List<string>();
        foreach (var d in documents)
        {
            var md = Path.Combine(outputDir, d.Slug + ".md");
            var html = Path.Combine(outputDir, d.Slug + ".html");
            File.WriteAllText(md, d.ToMarkdown());
            File.WriteAllText(html, d.ToHtml());
            written.Add(md); written.Add(html);
        }
        return written;
    }

    static readonly CultureInfo Ci = CultureInfo.InvariantCulture;

    static string Or(string? s, string fallback = "Not stated in the system description.") => string.IsNullOrWhiteSpace(s) ? fallback : s.Trim();

    static Block SourcesTable(EvaluationEvidence evidence) => new Table(["file", "kind", "lines", "SHA-256 (first 12)"],
        evidence.Sources.Select(s => (IReadOnlyList<string>)[$"`{Path.GetFileName(s.Path)}`", s.Kind.ToString().ToLowerInvariant(), s.Lines.ToString(Ci), $"`{s.Sha256}`"]).ToList());

    static Block MeasurementTable(IEnumerable<Measurement> ms, string what) => new Table([what, "metric", "value [95% interval] (counts)", "source"],
        ms.Select(m => (IReadOnlyList<string>)[m.Group, m.Name, m.Text, $"`{m.Source}`"]).ToList());

    static string Header(SystemDescription s) => $"{s.Name} {s.Version}";

    static GovernanceDocument ModelCard(SystemDescription s, EvaluationEvidence ev, Func<string, string> link)
    {
        var b = new List<Block>
        {
            new Heading(1, $"Model card: {Header(s)}"),
            new Note("Generated from the system description and the evaluation result files; every number below is computed from those files " +
                     "(rates with Wilson 95% intervals, failed calls excluded). Sections follow Mitchell et al., \"Model Cards for Model Reporting\" (FAT* 2019)."),
            new Heading(2, "Model details"),
            new Bullets([$"**Name and version:** {s.Name} {s.Version}", $"**Owner (contact):** {s.Owner}", $"**Description:** {s.Description}",
                $"**Model type:** {Or(s.ModelType)}", $"**Licence:** {Or(s.License)}"]),
            new Heading(2, "Intended use"),
            new Bullets([$"**Primary intended use:** {s.IntendedUse}", $"**Primary intended users:** {string.Join("; ", s.Users!)}",
                $"**Out-of-scope uses:** {string.Join("; ", s.OutOfScopeUses!)}"]),
            new Heading(2, "Factors"),
        };
        var groupings = new List<string>();
        if (ev.Has(ResultKind.Eval)) groupings.Add("evaluation task × dimension × scoring rule (" + string.Join(", ", ev.Of(ResultKind.Eval).Select(m => $"`{m.Group}`")) + ")");
        if (ev.Has(ResultKind.Scan)) groupings.Add("attack converter and attack category, per target (" +
            string.Join(", ", ev.Of(ResultKind.Scan).Select(m => m.Group.Split(" | ")[^1]).Where(g => !g.StartsWith("target=", StringComparison.Ordinal)).Distinct()) + ")");
        if (ev.Has(ResultKind.Metric)) groupings.Add("metric groups (" + string.Join(", ", ev.Of(ResultKind.Metric).Select(m => $"`{m.Name}{(m.Group.Length > 0 ? " | " + m.Group : "")}`")) + ")");
        b.Add(new Bullets([.. (s.Factors ?? []).Select(f => $"**Relevant factor:** {f}"), .. groupings.Select(g => $"**Evaluated by:** {g}")]));
        b.Add(new Heading(2, "Metrics"));
        var metrics = new List<string>();
        if (ev.Has(ResultKind.Eval)) metrics.Add("**Accuracy** (`acc`, multiple choice by log-likelihood) and **pass rate** per scoring rule (`exact`, `contains`, `regex`; `refuse`: harmful requests refused; `answer`: benign requests answered, so 1 − pass rate is over-refusal).");
        if (ev.Has(ResultKind.Scan)) metrics.Add("**Attack success rate (ASR)**: share of attacks the scan's first judge counts as successful.");
        if (ev.Has(ResultKind.Guard)) metrics.Add("**Guardrail action shares**: share of screened inputs per action (allow, refuse, fix, …).");
        if (ev.Has(ResultKind.Metric)) metrics.Add("**Interval-valued metrics** as their files give them (e.g. bias scores).");
        metrics.Add("**Uncertainty:** Wilson score 95% intervals for every rate; counts shown as (successes/trials).");
        b.Add(new Bullets(metrics));
        b.Add(new Heading(2, "Evaluation data"));
        b.Add(new Paragraph(Or(s.EvaluationData, "The result files below; the data sets behind them are named by their tasks.")));
        b.Add(SourcesTable(ev));
        b.Add(new Heading(2, "Training data"));
        b.Add(new Paragraph(s.TrainingData!));
        b.Add(new Heading(2, "Quantitative analyses"));
        if (ev.Has(ResultKind.Eval)) { b.Add(new Heading(3, "Task results")); b.Add(MeasurementTable(ev.Of(ResultKind.Eval), "task | dimension | rule")); }
        if (ev.Has(ResultKind.Scan)) { b.Add(new Heading(3, "Red-teaming (attack success rate)")); b.Add(MeasurementTable(ev.Of(ResultKind.Scan), "group")); }
        if (ev.Has(ResultKind.Guard)) { b.Add(new Heading(3, "Guardrail decisions")); b.Add(MeasurementTable(ev.Of(ResultKind.Guard), "action")); }
        if (ev.Has(ResultKind.Metric)) { b.Add(new Heading(3, "Other metrics")); b.Add(MeasurementTable(ev.Of(ResultKind.Metric), "group")); }
        b.Add(new Heading(2, "Ethical considerations"));
        b.Add(new Bullets((s.EthicalConsiderations ?? ["None stated in the system description: add `ethical_considerations`."]).ToList()));
        b.Add(new Heading(2, "Caveats and recommendations"));
        var caveats = new List<string>(s.Caveats ?? []);
        var wide = ev.Measurements.Where(m => m.Successes is not null && m.Value.Width > 0.3).ToList();
        if (wide.Count > 0)
        {
            var widest = wide.OrderByDescending(m => m.Value.Width).ThenBy(m => m.Group, StringComparer.Ordinal).First();
            caveats.Add($"{wide.Count} of {ev.Measurements.Count} rates have 95% intervals wider than 30 points (the widest: `{widest.Group}`, {widest.Text}); " +
                "do not read small differences between such groups as real.");
        }
        if (caveats.Count == 0) caveats.Add("None stated.");
        b.Add(new Bullets(caveats));
        return new GovernanceDocument("model-card", $"Model card: {Header(s)}", b);
    }

    static GovernanceDocument EuAiAct(SystemDescription s, EvaluationEvidence ev)
    {
        var answers = EuAiActQuestionnaire.ParseAnswers(s.EuAiAct!, s.SourcePath);
        var a = EuAiActQuestionnaire.Classify(answers);
        var b = new List<Block>
        {
            new Heading(1, $"EU AI Act risk-tier questionnaire: {Header(s)}"),
            new Note(EuAiActQuestionnaire.Disclaimer),
            new Paragraph($"**Tier: {EuAiActQuestionnaire.Name(a.Tier)}**" + (a.GeneralPurposeModel ? $"; the provider also has the obligations of a general-purpose AI model provider{(a.SystemicRisk ? " with systemic risk" : "")}." : ".")),
            new Heading(2, "Findings"),
            new Table(["finding", "rests on"], a.Findings.Select(f => (IReadOnlyList<string>)[f.Text, f.Articles]).ToList()),
            new Heading(2, "Obligations that follow"),
            new Table(["obligation", "article"], a.Obligations.Select(f => (IReadOnlyList<string>)[f.Text, f.Articles]).ToList()),
            new Heading(2, "Answers"),
            new Table(["section", "question", "answer", "article"], EuAiActQuestionnaire.Questions.Select(q =>
                (IReadOnlyList<string>)[q.Section, q.Text, answers[q.Id] ? "**yes**" : "no", q.Articles]).ToList()),
            new Heading(2, "Measured evidence for accuracy, robustness and cybersecurity (Art. 15)"),
            new Paragraph(a.Tier == EuRiskTier.HighRisk
                ? "A high-risk system must declare its levels of accuracy and robustness (Art. 15(3)); these are the levels measured so far."
                : "Not required for this tier; recorded here because the measurements exist and good practice (Art. 95 codes of conduct) asks for them."),
            MeasurementTable(ev.Measurements.Where(m => m.Kind != ResultKind.Scan || !m.Group.Contains(" | ", StringComparison.Ordinal)), "group"),
            new Paragraph("Source: Regulation (EU) 2024/1689 of 13 June 2024 (Artificial Intelligence Act), OJ L, 12.7.2024; article numbers as in the final text."),
        };
        return new GovernanceDocument("eu-ai-act", $"EU AI Act questionnaire: {Header(s)}", b);
    }

    static GovernanceDocument Iso42001(SystemDescription s, EvaluationEvidence ev, Func<string, string> link)
    {
        var items = Iso42001Checklist.Build(s, ev, link);
        var b = new List<Block>
        {
            new Heading(1, $"ISO/IEC 42001 Annex A checklist: {Header(s)}"),
            new Note("Control areas of ISO/IEC 42001:2023 Annex A by title; the items are this project's own short descriptions, not the standard's text. " +
                     "Read the standard for the controls themselves. An item without evidence is a gap to close, not a finding of non-conformity."),
            new Paragraph(string.Create(Ci, $"**{items.Count(i => i.Met)} of {items.Count} items have evidence**; {items.Count(i => !i.Met)} are gaps.")),
        };
        foreach (var area in Iso42001Checklist.Areas)
        {
            b.Add(new Heading(2, $"{area.Id} {area.Title}"));
            b.Add(new Table(["item", "status", "evidence"], items.Where(i => i.Area == area.Id).Select(i =>
                (IReadOnlyList<string>)[i.Item, i.Met ? "evidence linked" : "**gap**", i.Evidence.Count == 0 ? "—" : string.Join("\n", i.Evidence)]).ToList()));
            if (area.Id == "A.6")
            {
                var key = ev.Measurements.Where(m => m.Kind != ResultKind.Scan || !m.Group.Contains(" | ", StringComparison.Ordinal)).ToList();
                if (key.Count > 0) b.Add(new Bullets(key.Select(m => $"`{m.Group}` {m.Name}: {m.Text}").ToList()));
            }
        }
        return new GovernanceDocument("iso-42001", $"ISO/IEC 42001 checklist: {Header(s)}", b);
    }

    static GovernanceDocument Register(SystemDescription s, EvaluationEvidence ev)
    {
        var rows = RiskRegister.Build(s, ev);
        var b = new List<Block>
        {
            new Heading(1, $"Risk register: {Header(s)}"),
            new Note("In the style of the NIST AI Risk Management Framework (AI RMF 1.0): each risk is mapped to its context (Map), measured where the results allow " +
                     "(Measure), rated and mitigated (Manage) under an accountable owner (Govern). Measured likelihoods are read from the upper end of the 95% " +
                     "Wilson interval: below 1% rare, 5% unlikely, 20% possible, 50% likely, otherwise almost certain. Rating = likelihood (1–5) × impact (1–5): " +
                     "15 and above high, 8 and above medium."),
            new Table(["id", "function", "risk (Map)", "evidence (Measure)", "likelihood", "impact", "rating", "owner (Govern)", "mitigation (Manage)"],
                rows.Select(r => (IReadOnlyList<string>)[r.Id, r.Function, r.Risk, r.Evidence, r.Likelihood, r.Impact, string.Create(Ci, $"{r.Rating} ({r.Score})"), r.Owner, r.Mitigation]).ToList()),
            new Heading(2, "By function"),
            new Bullets(RiskRegister.Functions.Select(f => string.Create(Ci,
                $"**{char.ToUpperInvariant(f[0]) + f[1..]}:** {rows.Count(r => r.Function.Equals(f, StringComparison.OrdinalIgnoreCase))} risks")).ToList()),
            new Heading(2, "Sources"),
            SourcesTable(ev),
        };
        return new GovernanceDocument("risk-register", $"Risk register: {Header(s)}", b);
    }

    static GovernanceDocument Impact(SystemDescription s, EvaluationEvidence ev)
    {
        var r = ImpactAssessment.Score(ImpactAssessment.ParseAnswers(s.ImpactAssessment!, s.SourcePath), ev);
        var b = new List<Block>
        {
            new Heading(1, $"Algorithmic impact assessment: {Header(s)}"),
            new Note("In the style of the Government of Canada's Algorithmic Impact Assessment (Directive on Automated Decision-Making): impact questions score " +
                     "risk, mitigation questions score safeguards, the level is the share of the maximum impact score (I: up to 25%, II: 50%, III: 75%, IV: above), " +
                     "and 15% is deducted when mitigation reaches 80% of its maximum. The questions and points are this project's short teaching version, " +
                     "not the official questionnaire; four mitigation answers are read from the evaluation results."),
            new Paragraph(string.Create(Ci, $"**Impact level {ImpactAssessment.Roman(r.Level)}**: raw impact {r.RawImpact} of {r.MaxImpact}; mitigation {r.Mitigation} of {r.MaxMitigation} " +
                $"({EvaluationEvidence.Pct(r.Mitigation / (double)r.MaxMitigation)}){(r.MitigationDeduction ? ", at least 80%, so 15% is deducted" : ", below 80%, no deduction")}; " +
                $"current impact {r.CurrentImpact:0.##} = {EvaluationEvidence.Pct(r.CurrentImpact / r.MaxImpact)} of the maximum.")),
            new Heading(2, "System"),
            new Bullets([$"**Owner:** {s.Owner}", $"**Purpose:** {s.IntendedUse}", $"**Affected users:** {string.Join("; ", s.Users!)}", $"**Not for:** {string.Join("; ", s.OutOfScopeUses!)}"]),
            new Heading(2, "Answers"),
            new Table(["area", "question", "answer", "points", "basis"], r.Answers.Select(x =>
                (IReadOnlyList<string>)[x.Question.Area, x.Question.Text, x.Answer, (x.Question.Mitigation ? "−" : "+") + x.Points.ToString(Ci), x.Basis]).ToList()),
            new Heading(2, "Measured evidence behind the mitigation answers"),
            MeasurementTable(ev.Measurements.Where(m => m.Kind != ResultKind.Scan || !m.Group.Contains(" | ", StringComparison.Ordinal)), "group"),
            new Heading(2, "What this assessment cannot show"),
            new Bullets(["Harms outside the tested tasks, attacks and groups: the measurements bound only what was measured.",
                "Whether the answers in the system description are true: the assessment scores what it is told.",
                "How the people affected see the system: that needs consultation, not a questionnaire."]),
        };
        return new GovernanceDocument("impact-assessment", $"Algorithmic impact assessment: {Header(s)}", b);
    }
}
