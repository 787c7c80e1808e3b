using System.Text;
using System.Text.Json.Nodes;

namespace SafetyNotebooks.Cli.Notebooks;

/// <summary>
/// Makes learner editions: the committed notebooks are solution editions; in a learner edition each
/// region between <c>// BEGIN SOLUTION</c> and <c>// END SOLUTION</c> becomes a
/// <c>throw new NotImplementedException(...)</c> stub (indentation kept), code cells tagged
/// <c>solution</c> become a "your code here" cell, markdown cells tagged <c>solution</c> are dropped,
/// and all outputs are cleared.
/// </summary>
public static class LearnerExporter
{
    public const string BeginMarker = "// BEGIN SOLUTION";
    public const string EndMarker = "// END SOLUTION";
    public const string Stub = "throw new NotImplementedException(\"Exercise: write your solution here, run this cell, then run the check below.\");";

    /// <summary>
    /// Returns the learner edition of a notebook (the input is not changed) and how many solutions were hidden.
    /// When <paramref name="targetDirectory"/> is given, relative <c>#r "path"</c> references are rewritten so they
    /// still point at the same files from there (the setup cell's library path).
    /// </summary>
    public static (NotebookDocument Learner, int Hidden) Export(NotebookDocument solution, string? targetDirectory = null)
    {
        var doc = solution.Clone();
        int hidden = 0;
        var keep = new JsonArray();
        for (int i = 0; i < doc.Cells.Count; i++)
        {
            var cell = (JsonObject)doc.Cells[i]!.DeepClone();
            var type = cell["cell_type"]?.GetValue<string>();
            bool tagged = NotebookDocument.Tags(cell).Contains("solution");
            if (type == "markdown" && tagged) { hidden++; continue; }
            if (type == "code")
            {
                if (tagged)
                {
                    NotebookDocument.SetSource(cell, "// Your code here (this cell's solution is in the solution edition).\n");
                    hidden++;
                }
                else
                {
                    var (text, n) = StripSolutions(NotebookDocument.Source(cell), solution.Name, i + 1);
                    hidden += n;
                    if (targetDirectory != null) text = RebaseReferences(text, Path.GetDirectoryName(Path.GetFullPath(solution.Path))!, targetDirectory);
                    NotebookDocument.SetSource(cell, text);
                }
                cell["outputs"] = new JsonArray();
                cell["execution_count"] = null;
            }
            keep.Add(cell);
        }
        doc.Root["cells"] = keep;
        doc.Root["metadata"] ??= new JsonObject();
        doc.Root["metadata"]!["safety_notebooks"] = new JsonObject { ["edition"] = "learner" };
        return (doc, hidden);
    }

    static readonly System.Text.RegularExpressions.Regex ReferenceLine =
        new(@"^(\s*#r\s+"")(?!nuget:)([^""]+)("")", System.Text.RegularExpressions.RegexOptions.Multiline);

    /// <summary>Rewrites relative <c>#r "file"</c> paths written for <paramref name="fromDir"/> so they work from <paramref name="toDir"/>.</summary>
    public static string RebaseReferences(string source, string fromDir, string toDir) =>
        ReferenceLine.Replace(source, m =>
        {
            var path = m.Groups[2].Value;
            if (Path.IsPathRooted(path)) return m.Value;
            var absolute = Path.GetFullPath(Path.Combine(fromDir, path));
            var rebased = Path.GetRelativePath(Path.GetFullPath(toDir), absolute).Replace('\\', '/');
            return m.Groups[1].Value + rebased + m.Groups[3].Value;
        });

    /// <summary>Replaces each marked region of <paramref name="source"/> with the stub; errors name the notebook and cell.</summary>
    public static (string Text, int Regions) StripSolutions(string source, string notebook = "notebook", int cellNumber = 0)
    {
        var lines = source.Replace("\r\n", "\n").Split('\n');
        var sb = new StringBuilder();
        int regions = 0;
        bool inside = false;
        for (int li = 0; li < lines.Length; li++)
        {
            var line = lines[li];
            var trimmed = line.Trim();
            if (trimmed.StartsWith(BeginMarker, StringComparison.Ordinal))
            {
                if (inside) throw new UserError($"{notebook}, cell {cellNumber}, line {li + 1}: '{BeginMarker}' inside another solution region; close the first with '{EndMarker}'.");
                inside = true;
                regions++;
                var indent = line[..(line.Length - line.TrimStart().Length)];
                sb.Append(indent).Append(Stub);
                if (li < lines.Length - 1) sb.Append('\n');
                continue;
            }
            if (trimmed.StartsWith(EndMarker, StringComparison.Ordinal))
            {
                if (!inside) throw new UserError($"{notebook}, cell {cellNumber}, line {li + 1}: '{EndMarker}' without a '{BeginMarker}' before it.");
                inside = false;
                continue;
            }
            if (inside) continue;
            sb.Append(line);
            if (li < lines.Length - 1) sb.Append('\n');
        }
        if (inside) throw new UserError($"{notebook}, cell {cellNumber}: '{BeginMarker}' is never closed; add '{EndMarker}' after the solution.");
        return (sb.ToString(), regions);
    }
}
