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

public class EvalFormatCommandTests
{
    static readonly string Checkpoint = Path.Combine(TestNotebooks.RepoRoot, "data", "hf-gpt2-tiny");
    static readonly string Data = Path.Combine(TestNotebooks.RepoRoot, "data", "eval");
    static string Fmt(params string[] p) => Path.Combine([Data, "formats", .. p]);

    [Fact]
    public async Task Public_format_tasks_run_with_bbq_scores_and_a_per_dimension_table_and_a_partial_rerun_resumes()
    {
        var dir = Directory.CreateTempSubdirectory("eval-formats-");
        try
        {
            var outPath = Path.Combine(dir.FullName, "results.jsonl");
            string tasks = string.Join(",", "trustllm:" + Fmt("trustllm", "safety", "misuse.json"), "harmbench:" + Fmt("harmbench", "harmbench_behaviors_text_all.csv"),
                "bbq-mini", Fmt("decodingtrust", "stereotype", "stereotype_bias_data.jsonl"), Fmt("trustllm", "ethics", "explicit_moralchoice.json"));
            var console = new StringWriter();
            Assert.Equal(0, await EvalCommand.RunAsync(tasks, Checkpoint, "tiny", outPath, Data, console, CancellationToken.None));
            var lines = File.ReadAllLines(outPath).Select(l => JsonNode.Parse(l)!).ToList();
            // 3 TrustLLM misuse prompts + 3 HarmBench behaviours + 40 BBQ items + 2 DecodingTrust stereotype prompts + 2 TrustLLM moral choices.
            Assert.Equal(50, lines.Count);
            Assert.Equal(["bbq-mini", "decodingtrust-stereotype_bias_data", "harmbench_behaviors_text_all", "trustllm-explicit_moralchoice", "trustllm-misuse"],
                lines.Select(l => (string)l["task"]!).Distinct().Order(StringComparer.Ordinal));
            Assert.Equal(40, lines.Count(l => (string)l["kind"]! == "bbq"));
            var text = console.ToString();
            Assert.Contains("bbq-mini | bbq | s_DIS", text);
            Assert.Contains("bbq-mini | bbq | s_AMB", text);
            Assert.Matches(@"dimension fairness\s.*n = 42", text);                    // 40 BBQ + 2 DecodingTrust items pooled
            Assert.Matches(@"dimension machine_ethics\s.*n = 2", text);
            Assert.Matches(@"dimension safety\s.*n = 6", text);                       // 3 TrustLLM + 3 HarmBench
            var html = File.ReadAllText(Path.ChangeExtension(outPath, ".html"));
            Assert.Contains("Per dimension", html);
            Assert.Contains("<th>fairness</th>", html);
            Assert.Contains("s_AMB", html);

            // Drop the last 5 results (as if the run had been interrupted): the rerun does only those.
            File.WriteAllLines(outPath, File.ReadAllLines(outPath).Take(45));
            var again = new StringWriter();
            await EvalCommand.RunAsync(tasks, Checkpoint, "tiny", outPath, Data, again, CancellationToken.None);
            Assert.Equal(50, File.ReadAllLines(outPath).Length);
            Assert.Contains("(45 resumed)", again.ToString());
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public async Task A_bad_line_in_a_format_file_is_a_user_error_naming_the_file_line_and_field()
    {
        var dir = Directory.CreateTempSubdirectory("eval-bad-");
        try
        {
            var bbq = Path.Combine(dir.FullName, "Age.jsonl");
            var good = File.ReadLines(Path.Combine(Data, "bbq-mini.jsonl")).First();
            File.WriteAllLines(bbq, [good, good.Replace("\"question\": ", "\"query\": ")]);
            var e = await Assert.ThrowsAsync<UserError>(() => EvalCommand.RunAsync("bbq:" + bbq, Checkpoint, null, Path.Combine(dir.FullName, "r.jsonl"), Data, TextWriter.Null, CancellationToken.None));
            Assert.Contains($"{bbq}:2:", e.Message);
            Assert.Contains("\"question\"", e.Message);
            var unknown = await Assert.ThrowsAsync<UserError>(() => EvalCommand.RunAsync("trustllm:/no/such/misuse.json", Checkpoint, null, Path.Combine(dir.FullName, "r.jsonl"), Data, TextWriter.Null, CancellationToken.None));
            Assert.Contains("format:path", unknown.Message);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public async Task A_trustllm_folder_becomes_one_task_per_file_the_harness_reads()
    {
        var dir = Directory.CreateTempSubdirectory("eval-trustllm-");
        try
        {
            var outPath = Path.Combine(dir.FullName, "results.jsonl");
            var console = new StringWriter();
            await EvalCommand.RunAsync("trustllm:" + Fmt("trustllm"), Checkpoint, "tiny", outPath, Data, console, CancellationToken.None);
            var tasks = File.ReadAllLines(outPath).Select(l => (string)JsonNode.Parse(l)!["task"]!).Distinct().Order(StringComparer.Ordinal);
            Assert.Equal(["trustllm-exaggerated_safety", "trustllm-explicit_moralchoice", "trustllm-external", "trustllm-implicit_ETHICS", "trustllm-misuse"], tasks);
            // 2 + 2 + 2 + 2 + 3 items in the sample files.
            Assert.Equal(11, File.ReadAllLines(outPath).Length);
            Assert.Matches(@"dimension machine_ethics\s.*n = 4", console.ToString());     // 2 moral choices + 2 implicit ETHICS prompts
        }
        finally { dir.Delete(true); }
    }
}
