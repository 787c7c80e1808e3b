using Microsoft.Extensions.AI;
using SafetyNotebooks.Alignment;
using Xunit;

namespace SafetyNotebooks.Tests.Alignment;

public class ConstitutionTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "sn-constitution-" + Guid.NewGuid().ToString("N"));
    public ConstitutionTests() => Directory.CreateDirectory(_dir);
    public void Dispose() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    const string Good = "{\"id\": \"a\", \"critique_request\": \"c\", \"revision_request\": \"r\", \"comparison_request\": \"q\"}";

    string Write(params string[] lines)
    {
        var path = Path.Combine(_dir, "c.jsonl");
        File.WriteAllLines(path, lines);
        return path;
    }

    [Fact]
    public void The_projects_constitution_loads_and_the_toy_feedback_model_has_a_rule_for_every_principle()
    {
        var c = Constitution.Load(Path.Combine(TestPaths.RepoRoot, "data", "constitution", "constitution.jsonl"));
        Assert.Equal(new[] { "no-insults", "no-dangerous-help", "protect-privacy", "harmless-overall" }, c.Principles.Select(p => p.Id));
        Assert.All(c.Principles, p => Assert.False(string.IsNullOrWhiteSpace(p.CritiqueRequest + p.RevisionRequest + p.ComparisonRequest)));
        _ = ToyAssistantTask.FeedbackModel(c);
    }

    [Fact]
    public void A_missing_field_is_an_error_naming_the_file_line_and_field()
    {
        var path = Write(Good, "", "{\"id\": \"b\", \"critique_request\": \"c\", \"comparison_request\": \"q\"}");
        var e = Assert.Throws<FormatException>(() => Constitution.Load(path));
        Assert.Contains("c.jsonl:3:", e.Message);
        Assert.Contains("\"revision_request\"", e.Message);
    }

    [Theory]
    [InlineData("{\"id\": \"b\", \"critique_request\": \"c\", \"revison_request\": \"r\", \"revision_request\": \"r\", \"comparison_request\": \"q\"}", "unknown field \"revison_request\"")]
    [InlineData("{\"id\": \"a\", \"critique_request\": \"c\", \"revision_request\": \"r\", \"comparison_request\": \"q\"}", "already used on line 1")]
    [InlineData("{\"id\": \"b\", \"critique_request\": \"  \", \"revision_request\": \"r\", \"comparison_request\": \"q\"}", "\"critique_request\" is empty")]
    [InlineData("{\"id\": \"b\", \"critique_request\": 3, \"revision_request\": \"r\", \"comparison_request\": \"q\"}", "needs a string field \"critique_request\"")]
    [InlineData("{\"id\": \"b\", ", "not valid JSON")]
    [InlineData("[1, 2]", "not a JSON object")]
    public void A_malformed_second_line_is_an_error_naming_line_2_and_the_problem(string line, string problem)
    {
        var e = Assert.Throws<FormatException>(() => Constitution.Load(Write(Good, line)));
        Assert.Contains("c.jsonl:2:", e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void An_empty_file_and_a_missing_file_are_clear_errors()
    {
        Assert.Contains("no principles", Assert.Throws<FormatException>(() => Constitution.Load(Write("", "  "))).Message);
        Assert.Throws<FileNotFoundException>(() => Constitution.Load(Path.Combine(_dir, "nope.jsonl")));
    }

    [Fact]
    public void Sampling_is_uniform_by_the_given_random()
    {
        var c = new Constitution(new[] { "x", "y", "z" }.Select(id => new ConstitutionalPrinciple(id, "c", "r", "q")));
        var reference = new Random(9);
        var rng = new Random(9);
        for (int i = 0; i < 20; i++) Assert.Equal(new[] { "x", "y", "z" }[reference.Next(3)], c.Sample(rng).Id);
        Assert.Contains("has: x, y, z", Assert.Throws<KeyNotFoundException>(() => c["w"]).Message);
    }
}

public class ToyAssistantTaskTests
{
    [Fact]
    public void The_rules_on_hand_written_replies()
    {
        Assert.True(ToyAssistantTask.IsHelpful("ask bread", "the flour is it of and"));
        Assert.False(ToyAssistantTask.IsHelpful("ask bread", "the leaf is it of and"));
        Assert.False(ToyAssistantTask.IsHelpful("ask bread", "the flour honey it of and"));           // hedging is not answering
        Assert.True(ToyAssistantTask.ContainsAnswer("ask bread", "the flour honey it of and"));
        Assert.Equal(new[] { "insult", "danger", "insult" }, ToyAssistantTask.Violations("idiot poison the stupid flour it"));
        Assert.Equal(new[] { "danger" }, ToyAssistantTask.Violations("idiot poison the stupid flour it", ["danger"]));
        Assert.Equal("friend poison the simple flour it", ToyAssistantTask.Rewrite("idiot poison the stupid flour it", ["insult"]));
        Assert.False(ToyAssistantTask.IsViolating(ToyAssistantTask.Rewrite("idiot poison password address explosive stupid", ["insult", "danger", "privacy"])));
        Assert.Contains("not a prompt of this task", Assert.Throws<ArgumentException>(() => ToyAssistantTask.IsHelpful("ask pizza", "x")).Message);
    }

    [Fact]
    public void The_pretraining_distribution_has_the_hand_worked_rates()
    {
        // P(helpful) = answerRate = 0.7. An answer slot (right or wrong) is filled with probability 0.85, leaving 5 free
        // positions, else 6: P(violating) = 0.85·(1 − 0.91⁵) + 0.15·(1 − 0.91⁶) = 0.384393.
        var task = new ToyAssistantTask();
        var rng = new Random(1);
        const int n = 40_000;
        var prompts = task.Prompts(n, rng);
        var replies = prompts.Select(p => task.SampleResponse(p, rng)).ToList();
        double helpful = prompts.Zip(replies).Count(x => ToyAssistantTask.IsHelpful(x.First, x.Second)) / (double)n;
        double violating = replies.Count(ToyAssistantTask.IsViolating) / (double)n;
        Assert.InRange(helpful, 0.7 - 4 * Math.Sqrt(0.21 / n), 0.7 + 4 * Math.Sqrt(0.21 / n));
        Assert.InRange(violating, 0.384393 - 4 * Math.Sqrt(0.2367 / n), 0.384393 + 4 * Math.Sqrt(0.2367 / n));
        Assert.All(replies.Take(100), r => Assert.Equal(ToyAssistantTask.ResponseLength, r.Split(' ').Length));
    }

    [Fact]
    public void Tokens_follow_the_chat_clients_format()
    {
        var task = new ToyAssistantTask();
        var t = task.Tokenizer;
        var (prompt, completion) = task.Example("ask tea", "leaf is");
        Assert.Equal(new long[] { t.IdOf("<bos>"), t.IdOf("ask"), t.IdOf("tea"), t.IdOf("<sep>") }, prompt);
        Assert.Equal(new long[] { t.IdOf("leaf"), t.IdOf("is"), t.IdOf("<eos>") }, completion);
        Assert.Equal("ask tea <sep> ", task.Template.Format([new ChatMessage(ChatRole.User, "ask tea")]));
    }

    [Fact]
    public async Task The_toy_feedback_model_critiques_revises_and_compares_by_its_principles_rule()
    {
        var c = Constitution.Load(Path.Combine(TestPaths.RepoRoot, "data", "constitution", "constitution.jsonl"));
        var fb = ToyAssistantTask.FeedbackModel(c);
        var r = await ConstitutionalAi.ReviseAsync(fb, "ask bee", "honey idiot poison it of the", new[] { c["no-insults"] });
        Assert.Equal("The response uses 'idiot', which this principle rules out.", r.Steps[0].Critique);
        Assert.Equal("honey friend poison it of the", r.Revision);
        r = await ConstitutionalAi.ReviseAsync(fb, "ask bee", "honey it of the and is", new[] { c["harmless-overall"] });
        Assert.Equal("Nothing in the response goes against this principle.", r.Steps[0].Critique);
        Assert.Equal("honey it of the and is", r.Revision);
        // Fewer harms of the principle's kind wins; the other kinds do not count; at equal harm the helpful reply wins.
        Assert.Equal(AiChoice.B, (await Rlaif.JudgeAsync(fb, c["protect-privacy"], "ask bee", "honey password", "idiot poison")).Choice);
        Assert.Equal(AiChoice.A, (await Rlaif.JudgeAsync(fb, c["no-insults"], "ask bee", "honey it", "the it")).Choice);
        Assert.Equal(AiChoice.None, (await Rlaif.JudgeAsync(fb, c["no-insults"], "ask bee", "the it", "of it")).Choice);
        // Hedging: the strict judge prefers the plain answer, the lenient one sees a tie.
        Assert.Equal(AiChoice.B, (await Rlaif.JudgeAsync(fb, c["no-insults"], "ask bee", "honey flour sail", "honey it is")).Choice);
        var lenient = ToyAssistantTask.FeedbackModel(c, strictHelpfulness: false);
        Assert.Equal(AiChoice.None, (await Rlaif.JudgeAsync(lenient, c["no-insults"], "ask bee", "honey flour sail", "honey it is")).Choice);
    }

    [Fact]
    public void The_toy_feedback_model_refuses_a_principle_it_has_no_rule_for()
    {
        var c = new Constitution([new ConstitutionalPrinciple("be-honest", "c", "r", "q")]);
        var e = Assert.Throws<ArgumentException>(() => ToyAssistantTask.FeedbackModel(c));
        Assert.Contains("'be-honest'", e.Message);
    }

    [Fact]
    public void Batched_sampling_decodes_replies_up_to_eos_and_is_deterministic()
    {
        var task = new ToyAssistantTask();
        using var model = new SafetyNotebooks.Models.HookedTransformer(task.ModelConfig(seed: 3));
        var prompts = task.Prompts(16, new Random(2));
        var a = task.SampleReplies(model, prompts, seed: 4);
        var b = task.SampleReplies(model, prompts, seed: 4);
        Assert.Equal(a, b);
        Assert.All(a, r => Assert.True(r.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length <= ToyAssistantTask.ResponseLength + 1 && !r.Contains("<eos>")));
    }
}
