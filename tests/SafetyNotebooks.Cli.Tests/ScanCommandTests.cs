using SafetyNotebooks.Cli.Commands;
using SafetyNotebooks.Cli.Notebooks;
using Xunit;

namespace SafetyNotebooks.Cli.Tests;

public class ScanCommandTests
{
    static string WriteConfig(string dir, string body)
    {
        var prompts = Path.Combine(TestNotebooks.RepoRoot, "data", "redteam", "secret-keeper-attacks.jsonl");
        var path = Path.Combine(dir, "scan.yaml");
        File.WriteAllText(path, body.Replace("PROMPTS", prompts));
        return path;
    }

    [Fact]
    public async Task The_offline_scan_writes_every_attempt_and_a_report_and_resumes()
    {
        var dir = Directory.CreateTempSubdirectory("scan-cli-");
        try
        {
            var config = WriteConfig(dir.FullName, """
                targets:
                  - name: bot
                    kind: secret-keeper-bot
                prompts: PROMPTS
                converters: [none, base64]
                judges: [secret-leak, refusal]
                output: out/results.jsonl
                """);
            var prompts = File.ReadAllLines(Path.Combine(TestNotebooks.RepoRoot, "data", "redteam", "secret-keeper-attacks.jsonl")).Count(l => l.Trim().Length > 0);
            var output = new StringWriter();
            Assert.Equal(0, await ScanCommand.RunAsync(config, null, output, CancellationToken.None));
            var results = Path.Combine(dir.FullName, "out", "results.jsonl");
            Assert.Equal(2 * prompts, File.ReadAllLines(results).Length);
            Assert.Contains("base64", output.ToString());
            var html = File.ReadAllText(Path.Combine(dir.FullName, "out", "results.html"));
            Assert.Contains("<h2>By converter</h2>", html);
            Assert.True(File.Exists(Path.Combine(dir.FullName, "out", "results.md")));

            var again = new StringWriter();
            Assert.Equal(0, await ScanCommand.RunAsync(config, null, again, CancellationToken.None));
            Assert.Contains($"({2 * prompts} resumed from the results file)", again.ToString());
            Assert.Equal(2 * prompts, File.ReadAllLines(results).Length);
        }
        finally { dir.Delete(true); }
    }

    [Theory]
    [InlineData("targets: []\nprompts: PROMPTS\n", "'targets' is empty")]
    [InlineData("targets:\n  - name: x\n    kind: openai\nprompts: PROMPTS\n", "needs 'url'")]
    [InlineData("targets:\n  - name: x\nprompts: PROMPTS\nconverters: [base65]\n", "unknown converter 'base65'")]
    [InlineData("targets:\n  - name: x\nprompts: PROMPTS\nbogus_field: 1\n", "line 4")]
    [InlineData("targets: [\n", "line")]
    public async Task Bad_configs_are_one_line_errors_naming_the_problem(string yaml, string expected)
    {
        var dir = Directory.CreateTempSubdirectory("scan-bad-");
        try
        {
            var config = WriteConfig(dir.FullName, yaml);
            var e = await Assert.ThrowsAsync<UserError>(() => ScanCommand.RunAsync(config, null, TextWriter.Null, CancellationToken.None));
            Assert.Contains(expected, e.Message);
        }
        finally { dir.Delete(true); }
    }
}
