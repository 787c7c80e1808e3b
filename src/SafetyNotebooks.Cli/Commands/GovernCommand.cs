using SafetyNotebooks.Cli.Notebooks;
using SafetyNotebooks.Evaluation.Governance;

namespace SafetyNotebooks.Cli.Commands;

/// <summary>
/// <c>safety-notebooks govern --system system.yaml --results artifacts/eval artifacts/scan --out artifacts/governance</c>: generates
/// the governance documents (model card, EU AI Act questionnaire, ISO/IEC 42001 checklist, risk register, impact assessment) as
/// Markdown and offline HTML from a system description and the result files of <c>eval</c>, <c>scan</c> and <c>guard</c>.
/// </summary>
public static class GovernCommand
{
    /// <summary>Generates and writes the documents; returns 0, or throws <see cref="UserError"/> naming the file and field at fault.</summary>
    public static int Run(string systemPath, IReadOnlyList<string> results, string outDir, TextWriter console)
    {
        SystemDescription system;
        EvaluationEvidence evidence;
        IReadOnlyList<GovernanceDocument> docs;
        try
        {
            system = SystemDescription.Load(systemPath);
            evidence = EvaluationEvidence.Load(results);
            docs = GovernanceDocuments.Generate(system, evidence, outDir);
        }
        catch (Exception e) when (e is FileNotFoundException or InvalidDataException or FormatException or ArgumentException)
        {
            throw new UserError(e.Message);
        }
        foreach (var s in evidence.Sources) console.WriteLine($"read {s.Kind.ToString().ToLowerInvariant(),-6} {s.Path} ({s.Lines} lines, sha256 {s.Sha256})");
        var tier = EuAiActQuestionnaire.Classify(EuAiActQuestionnaire.ParseAnswers(system.EuAiAct!, systemPath)).Tier;
        console.WriteLine($"EU AI Act tier (teaching aid, not legal advice): {EuAiActQuestionnaire.Name(tier)}");
        foreach (var path in GovernanceDocuments.Write(docs, outDir)) console.WriteLine($"wrote {path}");
        return 0;
    }
}
