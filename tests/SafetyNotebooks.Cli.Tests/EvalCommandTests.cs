using System.Text.Json.Nodes;
using SafetyNotebooks.Cli.Commands;
using SafetyNotebooks.Cli.Notebooks;
using Xunit;

namespace SafetyNotebooks.Cli.Tests;

public class EvalCommandTests
{
    static readonly string Checkpoint = Path.Combine(TestNotebooks.RepoRoot, "data", "hf-gpt2-tiny");

    [Fact]
    public async Task A_local_checkpoint_runs_choice_and_generation_tasks_and_a_rerun_resumes()
    {
        var dir = Directory.CreateTempSubdirectory("eval-");
        try
        {
            var mc = Path.Combine(dir.FullName, "tiny-mc.jsonl");
            File.WriteAllLines(mc, ["""{"id": "a", "question": "2+2?", "options": ["4", "5"], "answer": 0}""",
                                    """{"id": "b", "question": "sky?", "options": ["red", "blue", "green"], "answer": 1}"""]);
            var gen = Path.Combine(dir.FullName, "tiny-gen.jsonl");
            File.WriteAllLines(gen, ["""{"id": "g", "prompt": "Say hi", "scoring": "answer"}"""]);
            var outPath = Path.Combine(dir.FullName, "results.jsonl");
            var console = new StringWriter();
            Assert.Equal(0, await EvalCommand.RunAsync($"{mc},{gen}", Checkpoint, null, outPath, dir.FullName, console, CancellationToken.None));
            var lines = File.ReadAllLines(outPath).Select(l => JsonNode.Parse(l)!).ToList();
            Assert.Equal(3, lines.Count);
            Assert.Equal(["mc", "mc", "gen"], lines.Select(l => (string)l["kind"]!));
            Assert.True(File.Exists(Path.ChangeExtension(outPath, ".html")));
            Assert.Contains("tiny-mc | safety | acc", console.ToString());

            var again = new StringWriter();
            await EvalCommand.RunAsync($"{mc},{gen}", Checkpoint, null, outPath, dir.FullName, again, CancellationToken.None);
            Assert.Equal(3, File.ReadAllLines(outPath).Length);
            Assert.Contains("(3 resumed)", again.ToString());
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public async Task Unknown_tasks_models_and_items_too_long_for_the_model_are_user_errors()
    {
        var data = Path.Combine(TestNotebooks.RepoRoot, "data", "eval");
        Assert.Contains("safety-mc", (await Assert.ThrowsAsync<UserError>(() => EvalCommand.RunAsync("nope", Checkpoint, null, "/tmp/x.jsonl", data, TextWriter.Null, CancellationToken.None))).Message);
        Assert.Contains("neither a checkpoint", (await Assert.ThrowsAsync<UserError>(() => EvalCommand.RunAsync("safety-gen", "/no/such/dir", null, "/tmp/x.jsonl", data, TextWriter.Null, CancellationToken.None))).Message);
        var outPath = Path.Combine(Path.GetTempPath(), "eval-long-" + Guid.NewGuid().ToString("N") + ".jsonl");
        try
        {
            var e = await Assert.ThrowsAsync<UserError>(() => EvalCommand.RunAsync("safety-mc", Checkpoint, null, outPath, data, TextWriter.Null, CancellationToken.None));
            Assert.Contains("model's context is 64", e.Message);
        }
        finally { File.Delete(outPath); }
    }
}
