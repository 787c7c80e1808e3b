using System.Text.Json.Nodes;
using SafetyNotebooks.Cli.Notebooks;

namespace SafetyNotebooks.Cli.Tests.Notebooks;

public class LearnerExporterTests
{
    [Fact]
    public void Solution_region_becomes_an_indented_stub()
    {
        var source = "double Square(double x)\n{\n    // BEGIN SOLUTION\n    var y = x * x;\n    return y;\n    // END SOLUTION\n}";
        var (text, n) = LearnerExporter.StripSolutions(source);
        Assert.Equal(1, n);
        Assert.Equal("double Square(double x)\n{\n    " + LearnerExporter.Stub + "\n}", text);
    }

    [Fact]
    public void Unbalanced_markers_name_the_notebook_and_cell()
    {
        var open = Assert.Throws<UserError>(() => LearnerExporter.StripSolutions("// BEGIN SOLUTION\nx", "n.ipynb", 4));
        Assert.Contains("n.ipynb, cell 4", open.Message);
        Assert.Contains("never closed", open.Message);
        Assert.Contains("without a", Assert.Throws<UserError>(() => LearnerExporter.StripSolutions("x\n// END SOLUTION", "n.ipynb", 2)).Message);
    }

    [Fact]
    public void Export_hides_solutions_clears_outputs_and_leaves_the_input_alone()
    {
        var doc = NotebookDocument.Parse(TestNotebooks.Json(
            "md:# Lesson", "int F() {\n// BEGIN SOLUTION\nreturn 1;\n// END SOLUTION\n}", "tag:solution|var secret = 42;", "tag:solution|md:The answer is 42", "F()"), "l.ipynb");
        ((JsonObject)doc.Cells[4]!)["outputs"] = new JsonArray(new JsonObject { ["output_type"] = "stream", ["name"] = "stdout", ["text"] = "1" });
        var (learner, hidden) = LearnerExporter.Export(doc);
        Assert.Equal(3, hidden);
        var cells = learner.Cells.OfType<JsonObject>().ToList();
        Assert.Equal(4, cells.Count); // the tagged markdown cell is gone
        Assert.Contains(LearnerExporter.Stub, NotebookDocument.Source(cells[1]));
        Assert.DoesNotContain("return 1", NotebookDocument.Source(cells[1]));
        Assert.StartsWith("// Your code here", NotebookDocument.Source(cells[2]));
        Assert.Empty((JsonArray)cells[3]["outputs"]!);
        Assert.Equal("learner", learner.Root["metadata"]!["safety_notebooks"]!["edition"]!.GetValue<string>());
        Assert.Contains("return 1", NotebookDocument.Source((JsonObject)doc.Cells[1]!)); // original untouched
    }
}

public class LearnerReferenceTests
{
    [Fact]
    public void Relative_library_references_are_rebased_for_the_output_folder()
    {
        var src = "#r \"../src/Lib/bin/Lib.dll\"\n#r \"nuget:Foo, 1.0\"\nvar x = 1;";
        var text = LearnerExporter.RebaseReferences(src, "/repo/notebooks", "/repo/artifacts/learner");
        Assert.Equal("#r \"../../src/Lib/bin/Lib.dll\"\n#r \"nuget:Foo, 1.0\"\nvar x = 1;", text);
        Assert.Equal(src, LearnerExporter.RebaseReferences(src, "/repo/notebooks", "/repo/notebooks"));
    }

    [Fact]
    public void The_default_learner_folder_sits_beside_notebooks_so_an_edition_copied_into_notebooks_still_finds_the_library()
    {
        // learner/ and notebooks/ are at the same depth: the rebased path is the solution's own, valid from both folders.
        var src = "#r \"../src/SafetyNotebooks.Interactive/bin/Release/net10.0/SafetyNotebooks.Interactive.dll\"";
        Assert.Equal(src, LearnerExporter.RebaseReferences(src, "/repo/notebooks", "/repo/learner"));
        // The committed notebooks' own #r line, read from notebooks/ and from learner/, names the same file.
        var root = TestNotebooks.RepoRoot;
        var doc = NotebookDocument.Load(Path.Combine(root, "notebooks", "00-environment-and-tensors.ipynb"));
        var setup = string.Join("\n", doc.Cells.Select(c => NotebookDocument.Source((System.Text.Json.Nodes.JsonObject)c!)));
        var dll = System.Text.RegularExpressions.Regex.Match(setup, @"#r ""(\.\./src/[^""]+)""").Groups[1].Value;
        Assert.StartsWith("../src/", dll);
        Assert.Equal(Path.GetFullPath(Path.Combine(root, "notebooks", dll)), Path.GetFullPath(Path.Combine(root, "learner", dll)));
    }
}
