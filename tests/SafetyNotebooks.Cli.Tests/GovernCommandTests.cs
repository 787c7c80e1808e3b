using SafetyNotebooks.Cli.Commands;
using SafetyNotebooks.Cli.Notebooks;
using Xunit;

namespace SafetyNotebooks.Cli.Tests;

public class GovernCommandTests
{
    static readonly string Example = Path.Combine(TestNotebooks.RepoRoot, "data", "governance", "vault-assistant.yaml");

    static string ScanLine(int i, bool success) =>
        $$"""{"key":"bot|p{{i}}|none|0","target":"bot","prompt_id":"p{{i}}","category":"direct","converter":"none","repeat":0,"sent":"x","reply":"y","error":null,"success":{{(success ? "true" : "false")}},"reason":"","judges":{},"latency_ms":1}""";

    [Fact]
    public async Task Eval_results_written_by_the_eval_command_reach_all_five_documents_in_markdown_and_html()
    {
        var dir = Directory.CreateTempSubdirectory("govern-cli-");
        try
        {
            // The eval command's own output (a tiny checkpoint, one benign generation item) and a scan file: 1 of 4 attacks succeed.
            var gen = Path.Combine(dir.FullName, "tiny-gen.jsonl");
            File.WriteAllLines(gen, ["""{"id": "g", "prompt": "Say hi", "scoring": "answer"}"""]);
            var results = Path.Combine(dir.FullName, "results");
            await EvalCommand.RunAsync(gen, Path.Combine(TestNotebooks.RepoRoot, "data", "hf-gpt2-tiny"), null, Path.Combine(results, "eval.jsonl"), dir.FullName, TextWriter.Null, CancellationToken.None);
            File.WriteAllLines(Path.Combine(results, "scan.jsonl"), [ScanLine(0, true), ScanLine(1, false), ScanLine(2, false), ScanLine(3, false)]);
            var outDir = Path.Combine(dir.FullName, "governance");
            var console = new StringWriter();
            Assert.Equal(0, GovernCommand.Run(Example, [results], outDir, console));
            Assert.Contains("Limited risk", console.ToString());
            foreach (var slug in new[] { "model-card", "eu-ai-act", "iso-42001", "risk-register", "impact-assessment" })
            {
                var md = File.ReadAllText(Path.Combine(outDir, slug + ".md"));
                // 1 of 4: Wilson 95% [4.6%, 69.9%] worked by hand.
                Assert.Contains("25.0% [4.6%, 69.9%] (1/4)", md);
                var html = File.ReadAllText(Path.Combine(outDir, slug + ".html"));
                Assert.StartsWith("<!DOCTYPE html>", html);
                Assert.Contains("25.0% [4.6%, 69.9%] (1/4)", html);
                Assert.Contains("tiny-gen | safety | answer", html);   // the eval command's line, read back
            }
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void Missing_and_malformed_inputs_are_user_errors_naming_the_file()
    {
        var dir = Directory.CreateTempSubdirectory("govern-bad-");
        try
        {
            var scan = Path.Combine(dir.FullName, "scan.jsonl");
            File.WriteAllLines(scan, [ScanLine(0, true), "{not json"]);
            var e = Assert.Throws<UserError>(() => GovernCommand.Run(Example, [scan], dir.FullName, TextWriter.Null));
            Assert.Contains("scan.jsonl:2", e.Message);
            Assert.Contains("does not exist", Assert.Throws<UserError>(() => GovernCommand.Run(Path.Combine(dir.FullName, "nope.yaml"), [scan], dir.FullName, TextWriter.Null)).Message);
            Assert.Contains("neither a file nor a folder", Assert.Throws<UserError>(() => GovernCommand.Run(Example, [Path.Combine(dir.FullName, "missing")], dir.FullName, TextWriter.Null)).Message);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void The_command_line_declares_govern_with_required_system_and_results()
    {
        var parse = Program.BuildCommandLine().Parse(["govern", "--results", "x"]);
        Assert.Contains(parse.Errors, e => e.Message.Contains("--system"));
        Assert.Empty(Program.BuildCommandLine().Parse(["govern", "--system", "s.yaml", "--results", "a", "b", "--out", "o"]).Errors);
    }
}
