using System.Text.Json.Nodes;
using SafetyNotebooks.IO;

namespace SafetyNotebooks.Alignment;

/// <summary>
/// One principle of a constitution (Bai et al. 2022, "Constitutional AI"): the request that asks a model to critique a
/// response under the principle, the request that asks it to rewrite the response accordingly (SL-CAI), and the
/// multiple-choice question that asks a feedback model which of two responses follows it better (RL-CAI / RLAIF).
/// </summary>
/// <param name="Id">A short unique name (JSON <c>id</c>), e.g. <c>no-insults</c>.</param>
/// <param name="CritiqueRequest">Asks for a critique of the last response under this principle (JSON <c>critique_request</c>).</param>
/// <param name="RevisionRequest">Asks for a rewrite of that response that fixes what the critique found (JSON <c>revision_request</c>).</param>
/// <param name="ComparisonRequest">The question put to the feedback model above options (A) and (B) (JSON <c>comparison_request</c>).</param>
public sealed record ConstitutionalPrinciple(string Id, string CritiqueRequest, string RevisionRequest, string ComparisonRequest);

/// <summary>
/// A constitution as data: a list of <see cref="ConstitutionalPrinciple"/>s read from a JSONL file, one principle per line:
/// <code>{"id": "no-insults", "critique_request": "…", "revision_request": "…", "comparison_request": "…"}</code>
/// Every problem (bad JSON, a missing or empty field, an unknown field, a repeated id) is an error naming the file and the
/// line. The pipelines sample principles from it with a seeded <see cref="Random"/>, as Bai et al. sample one principle per
/// critique–revision step and per comparison.
/// </summary>
public sealed class Constitution
{
    const string Shape = "{\"id\", \"critique_request\", \"revision_request\", \"comparison_request\"}";
    static readonly string[] Fields = ["id", "critique_request", "revision_request", "comparison_request"];

    /// <summary>A constitution of the given principles (at least one; ids distinct and non-empty, every request non-empty).</summary>
    public Constitution(IEnumerable<ConstitutionalPrinciple> principles)
    {
        ArgumentNullException.ThrowIfNull(principles);
        Principles = principles.ToArray();
        if (Principles.Count == 0) throw new ArgumentException("A constitution needs at least one principle.", nameof(principles));
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in Principles)
        {
            if (p is null) throw new ArgumentException("A constitution's principles must not be null.", nameof(principles));
            foreach (var (name, value) in new[] { ("Id", p.Id), ("CritiqueRequest", p.CritiqueRequest), ("RevisionRequest", p.RevisionRequest), ("ComparisonRequest", p.ComparisonRequest) })
                if (string.IsNullOrWhiteSpace(value)) throw new ArgumentException($"Principle '{p.Id}' has an empty {name}; every principle needs an id and all three requests.", nameof(principles));
            if (!seen.Add(p.Id)) throw new ArgumentException($"Two principles are called '{p.Id}'; give each principle its own id.", nameof(principles));
        }
    }

    /// <summary>The principles, in file order.</summary>
    public IReadOnlyList<ConstitutionalPrinciple> Principles { get; }

    /// <summary>The principle called <paramref name="id"/>, or an error listing the ids there are.</summary>
    public ConstitutionalPrinciple this[string id] => Principles.FirstOrDefault(p => p.Id == id)
        ?? throw new KeyNotFoundException($"The constitution has no principle '{id}'; it has: {string.Join(", ", Principles.Select(p => p.Id))}.");

    /// <summary>One principle drawn uniformly with <paramref name="rng"/>.</summary>
    public ConstitutionalPrinciple Sample(Random rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        return Principles[rng.Next(Principles.Count)];
    }

    /// <summary>Reads a constitution from a JSONL file (see the class summary for the line format).</summary>
    public static Constitution Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var principles = new List<ConstitutionalPrinciple>();
        var lines = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (line, node) in Jsonl.Read(path, Shape))
        {
            foreach (var (key, _) in node)
                if (!Fields.Contains(key))
                    throw new FormatException($"{path}:{line}: unknown field \"{key}\"; a principle has exactly the fields {string.Join(", ", Fields)}.");
            string Field(string name)
            {
                var s = node.RequireString(name, path, line);
                if (string.IsNullOrWhiteSpace(s)) throw new FormatException($"{path}:{line}: field \"{name}\" is empty; write the request out.");
                return s.Trim();
            }
            var p = new ConstitutionalPrinciple(Field("id"), Field("critique_request"), Field("revision_request"), Field("comparison_request"));
            if (lines.TryGetValue(p.Id, out var first))
                throw new FormatException($"{path}:{line}: principle id \"{p.Id}\" is already used on line {first}; give each principle its own id.");
            lines[p.Id] = line;
            principles.Add(p);
        }
        if (principles.Count == 0) throw new FormatException($"{path}: no principles; write one {Shape} object per line.");
        return new Constitution(principles);
    }
}
