using Microsoft.Extensions.AI;
using SafetyNotebooks.Evaluation.Guardrails;
using Xunit;

namespace SafetyNotebooks.Tests.Evaluation;

public class SelfCheckTests
{
    [Fact]
    public void Unigram_and_overlap_scores_match_the_hand_worked_values()
    {
        // Answer + 2 samples: tokens paris, is, big, ., rome, is, old, . and twice paris, is, big, . → N = 16;
        // counts paris 3, is 4, big 3, "." 4, rome 1, old 1 (and <unk> 0).
        var s = SelfCheck.Score("Paris is big. Rome is old.", ["Paris is big.", "Paris is big."]);
        Assert.Equal(["Paris is big.", "Rome is old."], s.Sentences);
        double L(double c) => Math.Log(c / 16);
        Assert.Equal(-(2 * L(3) + 2 * L(4)) / 4, s.AvgNegLogprob[0], 12);
        Assert.Equal(-(2 * L(1) + 2 * L(4)) / 4, s.AvgNegLogprob[1], 12);
        Assert.Equal(-L(3), s.MaxNegLogprob[0], 12);
        Assert.Equal(-L(1), s.MaxNegLogprob[1], 12);            // "rome" (or "old"): seen once, in the answer only
        Assert.Equal(-(2 * L(3) + 4 * L(4) + 2 * L(1)) / 8, s.DocAvgNegLogprob, 12);
        Assert.Equal((-L(3) - L(1)) / 2, s.DocAvgMaxNegLogprob, 12);
        Assert.Equal(0, s.Inconsistency[0], 12);                 // both samples contain paris, is, big
        Assert.Equal(2.0 / 3, s.Inconsistency[1], 12);           // they contain only "is" of rome, is, old
        // With pseudo-count k = 1: |V| = 7 (six words and <unk>), p(rome) = (1 + 1) / (16 + 7).
        Assert.Equal(-Math.Log(2.0 / 23), SelfCheck.Score("Paris is big. Rome is old.", ["Paris is big.", "Paris is big."], k: 1).MaxNegLogprob[1], 12);
    }

    /// <summary>Answers the first call (no temperature) with the main answer and sampled calls with the next sample.</summary>
    sealed class SamplingClient(string answer, string[] samples) : IChatClient
    {
        public int Calls;
        public List<float?> Temperatures = new();
        public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            Temperatures.Add(options?.Temperature);
            string text = options?.Temperature is > 0 ? samples[(int)(options.Seed ?? 0) % samples.Length] : answer;
            Calls++;
            return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, text)));
        }
        public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
            throw new NotSupportedException();
        public object? GetService(Type serviceType, object? serviceKey = null) => null;
        public void Dispose() { }
    }

    [Fact]
    public async Task Consistent_samples_pass_and_inconsistent_samples_are_flagged()
    {
        const string answer = "Marie Curie was born in Warsaw. She won two Nobel prizes.";
        var consistent = new SamplingClient(answer, ["Marie Curie was born in Warsaw and won two Nobel prizes.", "Born in Warsaw, Marie Curie won two Nobel prizes."]);
        var rail = new RailRule(new SelfCheckRail(samples: 3, temperature: 1.0f, threshold: 0.5), OnFail.Refuse);
        var ok = new GuardedChatClient(consistent, [], [rail]);
        Assert.Equal(answer, (await ok.GetResponseAsync([new(ChatRole.User, "Who was Marie Curie?")])).Text);
        Assert.Equal(4, consistent.Calls);                                        // the answer and 3 samples
        Assert.Equal([null, 1.0f, 1.0f, 1.0f], consistent.Temperatures);

        var inconsistent = new SamplingClient(answer, ["Marie Curie was born in Paris. She won one prize.", "She was born in Lyon in 1901.", "Curie grew up in Vienna."]);
        var flagged = new GuardedChatClient(inconsistent, [], [rail]);
        var r = await flagged.GetResponseAsync([new(ChatRole.User, "Who was Marie Curie?")]);
        Assert.Equal(GuardedChatClient.DefaultRefusal, r.Text);
        var d = Assert.Single(flagged.Decisions);
        Assert.Equal(("output", "selfcheck", "refuse"), (d.Stage, d.Rail, d.Action));
        Assert.Contains("disagrees with 3 samples", d.Reason);
    }

    [Fact]
    public void The_rail_flags_exactly_above_its_threshold_and_refuses_bad_settings()
    {
        // Inconsistency of "Rome is old." against the two samples is 2/3 (worked above).
        Assert.True(new SelfCheckRail(threshold: 0.66).Judge("Paris is big. Rome is old.", ["Paris is big.", "Paris is big."]).Triggered);
        Assert.False(new SelfCheckRail(threshold: 0.67).Judge("Paris is big. Rome is old.", ["Paris is big.", "Paris is big."]).Triggered);
        Assert.Throws<ArgumentOutOfRangeException>(() => new SelfCheckRail(temperature: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SelfCheckRail(samples: 0));
        Assert.Throws<InvalidOperationException>(() => new SelfCheckRail().Check("text alone"));
    }
}
