using Microsoft.Extensions.AI;
using SafetyNotebooks.Alignment;
using Xunit;

namespace SafetyNotebooks.Tests.Alignment;

/// <summary>A scripted chat model: records every call's messages and options, answers with a function of the call.</summary>
sealed class ScriptedChatClient(Func<int, IReadOnlyList<ChatMessage>, string> answer) : IChatClient
{
    public List<(List<ChatMessage> Messages, ChatOptions? Options)> Calls { get; } = [];

    public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var list = messages.ToList();
        lock (Calls)
        {
            Calls.Add((list, options));
            return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, answer(Calls.Count - 1, list))));
        }
    }

    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException();
    public object? GetService(Type serviceType, object? serviceKey = null) => null;
    public void Dispose() { }
}

public class ConstitutionalAiTests
{
    static readonly ConstitutionalPrinciple P1 = new("p1", "CRITIQUE-1?", "REVISE-1!", "COMPARE-1?");
    static readonly ConstitutionalPrinciple P2 = new("p2", "CRITIQUE-2?", "REVISE-2!", "COMPARE-2?");

    static string Turns(IEnumerable<ChatMessage> ms) => string.Join(" | ", ms.Select(m => $"{m.Role.Value}:{m.Text}"));

    [Fact]
    public async Task Critique_and_revision_prompts_carry_each_sampled_principles_requests_in_order()
    {
        var feedback = new ScriptedChatClient((i, _) => new[] { "crit A", "rev A", "crit B", "rev B" }[i]);
        var r = await ConstitutionalAi.ReviseAsync(feedback, "hello?", "draft", new[] { P1, P2 });
        Assert.Equal(4, feedback.Calls.Count);
        Assert.Equal("user:hello? | assistant:draft | user:CRITIQUE-1?", Turns(feedback.Calls[0].Messages));
        Assert.Equal("user:hello? | assistant:draft | user:CRITIQUE-1? | assistant:crit A | user:REVISE-1!", Turns(feedback.Calls[1].Messages));
        Assert.Equal("user:hello? | assistant:rev A | user:CRITIQUE-2?", Turns(feedback.Calls[2].Messages));
        Assert.Equal("user:hello? | assistant:rev A | user:CRITIQUE-2? | assistant:crit B | user:REVISE-2!", Turns(feedback.Calls[3].Messages));
        Assert.Equal(new[] { new CritiqueRevisionStep("p1", "crit A", "rev A"), new CritiqueRevisionStep("p2", "crit B", "rev B") }, r.Steps);
        Assert.Equal("rev B", r.Revision);
        Assert.Equal("draft", r.Response);
    }

    [Fact]
    public async Task An_empty_revision_keeps_the_previous_text()
    {
        var feedback = new ScriptedChatClient((i, _) => i == 1 ? "   " : "critique");
        var r = await ConstitutionalAi.ReviseAsync(feedback, "q", "draft", new[] { P1 });
        Assert.Equal("draft", r.Revision);
    }

    [Fact]
    public async Task Collect_draws_principles_from_the_seed_and_seeds_each_response()
    {
        var constitution = new Constitution(new[] { P1, P2 });
        var policy = new ScriptedChatClient((i, m) => "reply to " + m[^1].Text);
        var feedback = new ScriptedChatClient((i, m) => m[^1].Text!.StartsWith("REVISE") ? m[1].Text + "+" + m[^1].Text : "c");
        var prompts = new[] { "a", "b", "c" };
        var result = await ConstitutionalAi.CollectAsync(policy, feedback, prompts, constitution, new SlCaiOptions { Rounds = 2, Seed = 5 });
        // Independent reference: the principles are drawn in prompt order, rounds inner, from new Random(5).
        var rng = new Random(5);
        var expected = prompts.Select(_ => new[] { rng.Next(2), rng.Next(2) }).ToArray();
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(prompts[i], result[i].Prompt);
            Assert.Equal("reply to " + prompts[i], result[i].Response);
            Assert.Equal(expected[i].Select(k => k == 0 ? "p1" : "p2"), result[i].Steps.Select(s => s.PrincipleId));
            string rev1 = $"reply to {prompts[i]}+REVISE-{expected[i][0] + 1}!";
            Assert.Equal($"{rev1}+REVISE-{expected[i][1] + 1}!", result[i].Revision);
        }
        Assert.Equal(new long?[] { 5, 6, 7 }, policy.Calls.Select(c => c.Options!.Seed));
        Assert.All(policy.Calls, c => Assert.Equal(1f, c.Options!.Temperature));
    }

    [Theory]
    [InlineData("(A)", AiChoice.A)]
    [InlineData("(B)", AiChoice.B)]
    [InlineData("The answer is (B).", AiChoice.B)]
    [InlineData("( a )", AiChoice.A)]
    [InlineData("B", AiChoice.B)]
    [InlineData("A.", AiChoice.A)]
    [InlineData("Answer: B", AiChoice.B)]
    [InlineData("Option A", AiChoice.A)]
    [InlineData("**B**", AiChoice.B)]
    [InlineData("A response that is kinder", AiChoice.None)]
    [InlineData("Neither; they are equally good.", AiChoice.None)]
    [InlineData("", AiChoice.None)]
    [InlineData(null, AiChoice.None)]
    public void Parse_choice_reads_the_usual_answer_forms_and_nothing_else(string? answer, AiChoice expected) =>
        Assert.Equal(expected, Rlaif.ParseChoice(answer));

    [Fact]
    public void The_comparison_prompt_holds_the_request_the_principles_question_and_both_options_on_one_line_each()
    {
        var q = Rlaif.ComparisonPrompt(P1, "ask\nsomething", "first\nreply", "second");
        var lines = q.Split('\n');
        Assert.Contains("User: ask something", lines);
        Assert.Contains("COMPARE-1?", lines);
        Assert.Contains("(A) first reply", lines);
        Assert.Contains("(B) second", lines);
        Assert.True(Array.IndexOf(lines, "(A) first reply") < Array.IndexOf(lines, "(B) second"));
    }

    [Theory]
    [InlineData("(A)", "first", "second")]
    [InlineData("(B)", "second", "first")]
    public async Task The_judges_choice_maps_to_chosen_and_rejected(string answer, string chosen, string rejected)
    {
        var judge = new ScriptedChatClient((_, _) => answer);
        var j = await Rlaif.JudgeAsync(judge, P1, "q", "first", "second");
        Assert.Contains("COMPARE-1?", judge.Calls[0].Messages[0].Text);
        var records = Rlaif.ToPreferenceRecords(new[] { j }, "judge-model", DateTimeOffset.UnixEpoch);
        var r = Assert.Single(records);
        Assert.Equal((chosen, rejected, "q", "judge-model", "rlaif:p1"), (r.Chosen, r.Rejected, r.Prompt, r.Labeler, r.Source));
    }

    [Fact]
    public async Task A_tie_or_an_identical_pair_gives_no_preference_and_identical_pairs_cost_no_call()
    {
        var judge = new ScriptedChatClient((_, _) => "Neither");
        var tie = await Rlaif.JudgeAsync(judge, P1, "q", "x", "y");
        var same = await Rlaif.JudgeAsync(judge, P1, "q", "x", " x ");
        Assert.Equal(AiChoice.None, tie.Choice);
        Assert.Equal(AiChoice.None, same.Choice);
        Assert.Single(judge.Calls);
        Assert.Empty(Rlaif.ToPreferenceRecords(new[] { tie, same }, "judge", DateTimeOffset.UnixEpoch));
    }

    [Fact]
    public async Task Both_orders_drop_a_position_biased_answer_and_keep_a_consistent_one()
    {
        var biased = new ScriptedChatClient((_, _) => "(A)");
        Assert.Equal(AiChoice.None, (await Rlaif.JudgeAsync(biased, P1, "q", "good reply", "bad reply", bothOrders: true)).Choice);
        // A judge that picks whichever option contains "good", wherever it is shown.
        var fair = new ScriptedChatClient((_, m) => m[0].Text!.Split('\n').Single(l => l.StartsWith("(A)")).Contains("good") ? "(A)" : "(B)");
        var j = await Rlaif.JudgeAsync(fair, P1, "q", "bad reply", "good reply", bothOrders: true);
        Assert.Equal(AiChoice.B, j.Choice);
        Assert.Equal("good reply", j.Chosen);
        Assert.Contains("(A) good reply", fair.Calls[1].Messages[0].Text);          // the second call shows the options swapped
    }

    [Fact]
    public async Task Rlaif_collect_seeds_the_two_samples_per_prompt_and_draws_one_principle_each()
    {
        var constitution = new Constitution(new[] { P1, P2 });
        var policy = new ScriptedChatClient((i, _) => $"sample {i}");
        var judge = new ScriptedChatClient((_, _) => "(B)");
        var js = await Rlaif.CollectAsync(policy, judge, new[] { "a", "b" }, constitution, new RlaifOptions { Seed = 10 });
        Assert.Equal(new long?[] { 10, 11, 12, 13 }, policy.Calls.Select(c => c.Options!.Seed));
        var rng = new Random(10);
        Assert.Equal(new[] { rng.Next(2), rng.Next(2) }.Select(k => k == 0 ? "p1" : "p2"), js.Select(j => j.PrincipleId));
        Assert.Equal(new[] { ("sample 1", "sample 0"), ("sample 3", "sample 2") }, js.Select(j => (j.Chosen!, j.Rejected!)));
    }
}
