namespace SafetyNotebooks.Evaluation.Governance;

/// <summary>An ISO/IEC 42001 Annex A control area: its number and title.</summary>
public sealed record ControlArea(string Id, string Title);

/// <summary>One checklist item (this project's wording, not the standard's) with the evidence found for it.</summary>
public sealed record ChecklistItem(string Area, string Item, IReadOnlyList<string> Evidence, bool Met);

/// <summary>
/// A checklist over the control areas of ISO/IEC 42001:2023 Annex A (A.2 to A.10, by their titles). The items are this project's
/// own short descriptions of what to show for each area — the standard's control text is copyrighted and not reproduced; read it
/// in the standard. Each item links to evidence: the result files (by kind), the generated documents, the system description,
/// and any files the description lists under <c>evidence:</c>. An item without evidence is a gap, not a failure of the tool.
/// </summary>
public static class Iso42001Checklist
{
    /// <summary>The Annex A control areas.</summary>
    public static readonly IReadOnlyList<ControlArea> Areas =
    [
        new("A.2", "Policies related to AI"),
        new("A.3", "Internal organization"),
        new("A.4", "Resources for AI systems"),
        new("A.5", "Assessing impacts of AI systems"),
        new("A.6", "AI system life cycle"),
        new("A.7", "Data for AI systems"),
        new("A.8", "Information for interested parties of AI systems"),
        new("A.9", "Use of AI systems"),
        new("A.10", "Third-party and customer relationships"),
    ];

    /// <summary>Builds the checklist; <paramref name="link"/> turns a file path into the link the document prints.</summary>
    public static IReadOnlyList<ChecklistItem> Build(SystemDescription system, EvaluationEvidence evidence, Func<string, string> link)
    {
        var items = new List<ChecklistItem>();
        string sys = system.SourcePath.Length > 0 ? $"[{Path.GetFileName(system.SourcePath)}]({link(system.SourcePath)})" : "system description";
        List<string> Listed(string area) => (system.Evidence is { } e && e.TryGetValue(area, out var files) ? files : [])
            .Select(f => $"[{f}]({link(system.ResolveEvidence(f))})").ToList();
        List<string> Files(ResultKind kind) => evidence.Sources.Where(s => s.Kind == kind).Select(s => $"[{Path.GetFileName(s.Path)}]({link(s.Path)})").ToList();
        void Add(string area, string item, IEnumerable<string> ev)
        {
            var list = ev.ToList();
            items.Add(new ChecklistItem(area, item, list, list.Count > 0));
        }

        Add("A.2", "A written AI policy covers this system and is reviewed on a schedule.", Listed("A.2"));
        Add("A.3", "An accountable owner is named for the system and for each risk.", [$"{sys} (`owner`: {system.Owner})", "[risk-register.md](risk-register.md)", .. Listed("A.3")]);
        Add("A.3", "People can report concerns about the system, and reports reach the owner.", Listed("A.3").Skip(0));
        Add("A.4", "The model, its data, tools and compute are documented.", ["[model-card.md](model-card.md)", .. Listed("A.4")]);
        Add("A.5", "Impacts on individuals, groups and society are assessed and the assessment is kept.", ["[impact-assessment.md](impact-assessment.md)", "[eu-ai-act.md](eu-ai-act.md)", .. Listed("A.5")]);
        Add("A.6", "The system is verified and validated against its requirements before release (task evaluations with intervals).", [.. Files(ResultKind.Eval), .. Files(ResultKind.Metric), .. Listed("A.6")]);
        Add("A.6", "The system is tested adversarially (red teaming) and the attack success rates are recorded.", [.. Files(ResultKind.Scan)]);
        Add("A.6", "Operation is monitored and events are logged (e.g. guardrail decisions).", [.. Files(ResultKind.Guard)]);
        Add("A.6", "Technical documentation of the system is kept up to date (regenerated from the results).", ["[model-card.md](model-card.md)"]);
        Add("A.7", "Data used for training and evaluation is documented: provenance, quality, preparation.", [$"{sys} (`training_data`)", .. Listed("A.7")]);
        Add("A.8", "Users and other interested parties get the information they need (capabilities, limits, intended use).", ["[model-card.md](model-card.md)", .. Listed("A.8")]);
        Add("A.8", "A process exists to communicate incidents to those affected and to authorities.", Listed("A.8").Skip(0));
        Add("A.9", "The intended use is defined and use outside it is discouraged.", [$"{sys} (`intended_use`, `out_of_scope_uses`)", .. Listed("A.9")]);
        Add("A.10", "Responsibilities shared with suppliers (models, data, services) and customers are allocated.", Listed("A.10"));
        return items;
    }
}
