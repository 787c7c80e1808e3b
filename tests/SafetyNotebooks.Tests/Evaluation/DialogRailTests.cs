using Microsoft.Extensions.AI;
using SafetyNotebooks.Evaluation.Guardrails;
using Xunit;

namespace SafetyNotebooks.Tests.Evaluation;

public class DialogRailTests
{
    static readonly string FlowFile = Path.Combine(TestPaths.RepoRoot, "data", "guardrails", "flows.co");
    static DialogRail Rail(bool strict = false) => new(DialogFlows.Load(FlowFile), 0.5, strict);

    [Fact]
    public void Trigram_cosine_matches_the_hand_worked_values()
    {
        // " abc " → { " ab", "abc", "bc " }, " abd " → { " ab", "abd", "bd " }: one shared trigram, cos = 1 / (√3·√3).
        Assert.Equal(1.0 / 3, IntentMatcher.Similarity("abc", "abd"), 12);
        // " hi there " has 8 distinct trigrams, " hi " has 2, both shared: cos = 2 / (√8·√2) = ½. Case and punctuation are ignored.
        Assert.Equal(0.5, IntentMatcher.Similarity("Hi, THERE!", "hi"), 12);
        Assert.Equal(0, IntentMatcher.Similarity("", "hi"));
    }

    [Fact]
    public void Sensitive_subjects_get_the_canned_bot_message()
    {
        var rail = Rail();
        var politics = rail.Check("Who do you think I should vote for?");
        Assert.True(politics.Triggered);
        Assert.Equal("I'm a shop assistant, so I stay out of politics. Is there anything about your order I can help with?", politics.Reply);
        Assert.Contains("user ask about politics", politics.Reason);
        Assert.Equal("I can't give medical advice. Please ask a doctor or a pharmacist.", rail.Check("What medicine should I take for a headache?").Reply);
        Assert.False(rail.Check("Tell me a joke about penguins.").Triggered);       // no form matches: the model answers
        Assert.False(rail.Check("Do you have running shoes in size 42?").Triggered); // a flow whose bot message is undefined: the model answers
    }

    [Fact]
    public void A_multi_turn_flow_continues_only_from_its_own_history()
    {
        var rail = Rail(strict: true);
        var first = rail.Decide([new(ChatRole.User, "I want a refund for my shoes")]);
        Assert.Equal(("ask for a refund", "refund", "I can help with that. What is your order number?"), (first.Intent, first.Flow, first.Reply));
        var second = rail.Decide([
            new(ChatRole.System, "You are a shop assistant."),
            new(ChatRole.User, "I want a refund for my shoes"), new(ChatRole.Assistant, first.Reply!),
            new(ChatRole.User, "my order number is 4242")]);
        Assert.Equal("give order number", second.Intent);
        Assert.Equal("Thank you. I've opened a refund request for that order; you'll get an e-mail within two days.", second.Reply);
        // The same message without the bot having asked for it: no flow allows it, and the strict rail refuses.
        var out_of_turn = rail.Check([new(ChatRole.User, "my order number is 4242")]);
        Assert.True(out_of_turn.Triggered);
        Assert.Null(out_of_turn.Reply);
        Assert.Contains("no flow allows this turn", out_of_turn.Reason);
        Assert.False(Rail(strict: false).Check([new(ChatRole.User, "my order number is 4242")]).Triggered);
    }

    [Theory]
    [InlineData("define user greet\n  \"hi\"\ndefine flow f\n  user greet\n  user grete\n", 5, "user form 'grete' is not defined")]
    [InlineData("define user greet\n  \"hi\n", 2, "expected a quoted example utterance")]
    [InlineData("define user greet\n  \"hi\"\nuser greet\n", 3, "expected 'define user|bot|flow ...'")]
    [InlineData("  \"hi\"\n", 1, "outside any 'define' block")]
    [InlineData("define user greet\n  \"hi\"\ndefine flow f\n  bot greet\n  user greet\n", 4, "must start with a user step")]
    [InlineData("define user greet\n  \"hi\"\ndefine user greet\n  \"hello\"\n", 3, "already defined on line 1")]
    [InlineData("define user greet\ndefine flow f\n  user greet\n", 1, "has no example utterances")]
    [InlineData("define user greet\n  \"hi\"\ndefine flow f\n  when user greet\n", 4, "not supported by this Colang subset")]
    [InlineData("define robot x\n", 1, "must be followed by user, bot or flow")]
    public void Malformed_flow_files_are_errors_naming_the_line(string text, int line, string problem)
    {
        var e = Assert.Throws<InvalidDataException>(() => DialogFlows.Parse(text, "bad.co"));
        Assert.StartsWith($"bad.co:{line}: ", e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public async Task The_yaml_configured_dialog_rail_answers_in_front_of_the_model_and_logs_it()
    {
        var dir = Directory.CreateTempSubdirectory("dialog-");
        try
        {
            File.Copy(FlowFile, Path.Combine(dir.FullName, "flows.co"));
            var yaml = Path.Combine(dir.FullName, "rails.yaml");
            File.WriteAllText(yaml, "input:\n  - rail: dialog\n    flows: flows.co\n    threshold: 0.5\n    unmatched: allow\n    on_fail: refuse\n");
            int calls = 0;
            var guarded = GuardrailsConfig.Load(yaml).Wrap(new ScriptedClient(q => { calls++; return "model: " + q; }));
            var r = await guarded.GetResponseAsync([new(ChatRole.User, "What is your opinion on the election?")]);
            Assert.StartsWith("I'm a shop assistant", r.Text);
            Assert.Equal(0, calls);
            var d = Assert.Single(guarded.Decisions);
            Assert.Equal(("input", "dialog", "respond"), (d.Stage, d.Rail, d.Action));
            Assert.Equal(r.Text, d.Reply);
            Assert.Equal("model: Tell me a joke.", (await guarded.GetResponseAsync([new(ChatRole.User, "Tell me a joke.")])).Text);
            Assert.Equal(1, calls);

            File.WriteAllText(yaml, "input:\n  - rail: dialog\n    flows: missing.co\n");
            Assert.Contains("does not exist", Assert.Throws<InvalidDataException>(() => GuardrailsConfig.Load(yaml)).Message);
            File.WriteAllText(Path.Combine(dir.FullName, "broken.co"), "define flow f\n  user nothing\n");
            File.WriteAllText(yaml, "input:\n  - rail: dialog\n    flows: broken.co\n");
            Assert.Contains("broken.co:2: user form 'nothing' is not defined", Assert.Throws<InvalidDataException>(() => GuardrailsConfig.Load(yaml)).Message);
            File.WriteAllText(yaml, "output:\n  - rail: dialog\n    flows: flows.co\n");
            Assert.Contains("put them under 'input'", Assert.Throws<InvalidDataException>(() => GuardrailsConfig.Load(yaml)).Message);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public async Task The_full_example_config_builds_every_rail_kind_and_answers_through_them()
    {
        var cfg = GuardrailsConfig.Load(Path.Combine(TestPaths.RepoRoot, "data", "guardrails", "rails-full.yaml"));
        Assert.Equal(["dialog", "injection", "pii"], cfg.InputRules().Select(r => r.Rail.Name));
        Assert.Equal(["secret", "pii", "toxicity", "selfcheck"], cfg.OutputRules().Select(r => r.Rail.Name));
        // A deterministic model repeats itself when sampled, so the self-check passes it; a hostile one is refused by the toxicity rail.
        var polite = cfg.Wrap(new ScriptedClient(q => "We sell shoes and jackets."));
        Assert.Equal("We sell shoes and jackets.", (await polite.GetResponseAsync([new(ChatRole.User, "What do you sell?")])).Text);
        var rude = cfg.Wrap(new ScriptedClient(q => "Shut up, you idiot."));
        Assert.Equal(GuardedChatClient.DefaultRefusal, (await rude.GetResponseAsync([new(ChatRole.User, "What do you sell?")])).Text);
        Assert.Equal("toxicity", rude.Decisions.Single().Rail);
    }

    [Fact]
    public void Fuzzed_flow_files_and_messages_never_crash_the_parser_or_the_rail()
    {
        string[] pieces = ["define", " user", " bot", " flow", " greet", "  ", "\t", "\"", "hi", "\n", "\r\n", "#", "when", "$x", "\ud800", "\u0000", "…", "\"\"", " subflow"];
        var rng = new Random(5);
        int parsed = 0;
        for (int trial = 0; trial < 2000; trial++)
        {
            var text = string.Concat(Enumerable.Range(0, rng.Next(1, 40)).Select(_ => pieces[rng.Next(pieces.Length)]));
            try { DialogFlows.Parse(text, "fuzz.co"); parsed++; }
            catch (InvalidDataException e) { Assert.StartsWith("fuzz.co", e.Message); }
        }
        var rail = Rail(strict: true);
        for (int trial = 0; trial < 300; trial++)
        {
            var message = new string(Enumerable.Range(0, rng.Next(0, 200)).Select(_ => (char)rng.Next(0, 0xFFFF)).ToArray());
            var check = rail.Check([new(ChatRole.User, message), new(ChatRole.Assistant, message), new(ChatRole.User, message)]);
            Assert.NotNull(check.Reason);
            var scores = SelfCheck.Score(message, [message[..(message.Length / 2)], ""]);
            Assert.All(scores.Inconsistency, x => Assert.InRange(x, 0, 1));
        }
    }
}
