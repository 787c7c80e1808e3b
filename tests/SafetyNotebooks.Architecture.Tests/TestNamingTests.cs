using System.Text.RegularExpressions;

namespace SafetyNotebooks.Architecture.Tests;

/// <summary>
/// One test naming style across tests/: a sentence with underscores, e.g.
/// <c>Every_padded_row_matches_the_row_run_alone</c> or <c>Load_strict_rejects_mismatch</c>. Words are lower case;
/// acronyms (<c>GPT2</c>, <c>KV</c>, <c>RMS</c>) and a few proper names (<c>TorchSharp</c>, <c>Llama</c>) keep their case.
/// The sentence says what the test shows; xUnit prints it with the underscores, so failures read as claims.
/// </summary>
public class TestNamingTests
{
    static readonly HashSet<string> ProperNames =
        ["NaN", "NeoX", "TransformerLens", "PyTorch", "TorchSharp", "SafetyNotebooks", "Jupyter", "Hugging", "Face", "Llama", "Plotly", "McNemar"];

    static readonly Regex TestAttribute = new(@"\[(Fact|Theory|SkippableFact|SkippableTheory)\b", RegexOptions.Compiled);
    static readonly Regex Method = new(@"public\s+(?:async\s+)?(?:Task|void)\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(", RegexOptions.Compiled);

    /// <summary>True when <paramref name="name"/> follows the style.</summary>
    public static bool FollowsStyle(string name)
    {
        var words = name.Split('_');
        if (words.Length < 2 || words.Any(w => w.Length == 0)) return false;
        if (!(ProperNames.Contains(words[0]) || Regex.IsMatch(words[0], "^([A-Z][a-z0-9]*|[A-Z][A-Z0-9]+s?)$"))) return false;
        return words.Skip(1).All(w => ProperNames.Contains(w) || Regex.IsMatch(w, "^([a-z0-9]+|[A-Z][A-Z0-9]*s?|[A-Z][a-z0-9]+)$"));
    }

    [Theory]
    [InlineData("Every_padded_row_matches_the_row_run_alone", true)]
    [InlineData("GPT2_parity_holds_to_1e4", true)]
    [InlineData("Starts_when_TorchSharp_loads_on_linux_x64", true)]
    [InlineData("LoadStrictRejectsMismatch", false)]   // PascalCase
    [InlineData("Load_StrictRejectsMismatch", false)]  // mixed
    [InlineData("load_strict_rejects_mismatch", false)] // no capital
    public void The_style_check_accepts_sentences_and_rejects_camel_case(string name, bool expected) =>
        Assert.Equal(expected, FollowsStyle(name));

    [Fact]
    public void Every_test_method_is_named_as_a_sentence()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root != null && !File.Exists(Path.Combine(root.FullName, "SafetyNotebooks.sln"))) root = root.Parent;
        Assert.NotNull(root);
        var bad = new List<string>();
        int seen = 0;
        foreach (var file in Directory.EnumerateFiles(Path.Combine(root!.FullName, "tests"), "*.cs", SearchOption.AllDirectories))
        {
            if (file.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}") || file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}")) continue;
            bool pending = false;
            foreach (var line in File.ReadLines(file))
            {
                if (TestAttribute.IsMatch(line)) pending = true;
                var m = Method.Match(line);
                if (!m.Success) continue;
                if (pending) { seen++; if (!FollowsStyle(m.Groups[1].Value)) bad.Add($"{Path.GetRelativePath(root.FullName, file)}: {m.Groups[1].Value}"); }
                pending = false;
            }
        }
        Assert.True(seen > 100, $"found only {seen} test methods under tests/: is the scan broken?");
        Assert.True(bad.Count == 0, "test naming rule 'a sentence with underscores' is broken by:\n  " + string.Join("\n  ", bad) +
            "\nName tests like Every_padded_row_matches_the_row_run_alone (see tests/SafetyNotebooks.Architecture.Tests/TestNamingTests.cs).");
    }
}
