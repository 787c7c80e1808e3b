using System.Reflection;
using SafetyNotebooks.Evaluation.Oversight;
using Xunit;

namespace SafetyNotebooks.Tests.Evaluation;

/// <summary>A debater that plays a fixed list of indices and records who called it.</summary>
sealed class ScriptedDebater(List<string> log, string name, params int[] moves) : IDebater<string>
{
    int _next;
    public Task<DebateMove> ChooseAsync(DebateCase<string> hidden, DebateTranscript<string> transcript, DebateSide side, CancellationToken cancellationToken = default)
    {
        log.Add($"{name}:{side}:{transcript.Revealed.Count}");
        return Task.FromResult(new DebateMove(moves[_next++], $"{name} says so"));
    }
}

/// <summary>A judge that records the transcript it was given and sides with a fixed answer when it is claimed.</summary>
sealed class RecordingJudge(int believed) : IDebateJudge<string>
{
    public List<DebateTranscript<string>> Seen { get; } = [];
    public Task<DebateVerdict> JudgeAsync(DebateTranscript<string> transcript, CancellationToken cancellationToken = default)
    {
        Seen.Add(transcript);
        return Task.FromResult(new DebateVerdict(transcript.AnswerB == believed ? DebateSide.B : DebateSide.A));
    }
}

public class DebateProtocolTests
{
    static DebateCase<string> Case(params string[] evidence) =>
        new("c1", "Is the box red?", ["yes", "no", "maybe"], evidence, trueAnswer: 0);

    [Fact]
    public void The_transcript_type_holds_no_reference_to_the_hidden_case()
    {
        // Every field of the judge's input, public or private, and of the revealed items: none can reach the hidden pool or the truth.
        foreach (var type in new[] { typeof(DebateTranscript<string>), typeof(RevealedEvidence<string>) })
            foreach (var f in type.GetFields(BindingFlags.Instance | BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic))
            {
                Assert.False(f.FieldType.IsGenericType && f.FieldType.GetGenericTypeDefinition() == typeof(DebateCase<>), $"{type.Name}.{f.Name} holds a DebateCase");
                Assert.DoesNotContain("TrueAnswer", f.Name, StringComparison.OrdinalIgnoreCase);
            }
        Assert.Null(typeof(DebateTranscript<string>).GetProperty("TrueAnswer"));
        Assert.Null(typeof(DebateTranscript<string>).GetProperty("Evidence"));
        Assert.Empty(typeof(DebateTranscript<string>).GetConstructors());                  // only Open and Reveal make one
    }

    [Fact]
    public async Task The_judge_sees_the_same_transcript_when_only_unrevealed_evidence_differs()
    {
        var first = Case("e0", "e1", "SECRET-ONE", "e3", "e4");
        var second = Case("e0", "e1", "SECRET-TWO", "e3", "e4");
        var prompts = new List<string>();
        foreach (var c in new[] { first, second })
        {
            var judge = new RecordingJudge(believed: 0);
            await Debate.RunAsync(c, new ScriptedDebater([], "x", 0, 4), 0, new ScriptedDebater([], "y", 3), 1, judge, turns: 3);
            prompts.Add(new ChatJudge<string>(new ScriptedClient(_ => "WINNER: A")).Prompt(judge.Seen.Single()));
            Assert.Equal(["e0", "e3", "e4"], judge.Seen.Single().Revealed.Select(r => r.Evidence));
        }
        Assert.Equal(prompts[0], prompts[1]);
        Assert.DoesNotContain("SECRET", prompts[0]);
    }

    [Fact]
    public void The_pixel_judge_input_depends_only_on_revealed_pixels()
    {
        var a = new float[SegmentDigits.PixelCount]; var b = new float[SegmentDigits.PixelCount];
        a[5] = 0.9f; b[5] = 0.9f; a[20] = 1; b[20] = 0;                                   // pixel 20 differs but is never revealed
        var ca = SegmentDigits.Case("a", a, 8); var cb = SegmentDigits.Case("b", b, 8);
        var ta = DebateTranscript<Pixel>.Open(ca, 8, 0, 2).Reveal(ca, DebateSide.A, 5);
        var tb = DebateTranscript<Pixel>.Open(cb, 8, 0, 2).Reveal(cb, DebateSide.A, 5);
        Assert.Equal(SparsePixelJudge.Encode(ta.Revealed.Select(r => r.Evidence)), SparsePixelJudge.Encode(tb.Revealed.Select(r => r.Evidence)));
        var x = SparsePixelJudge.Encode(ta.Revealed.Select(r => r.Evidence));
        Assert.Equal(2, x.Count(v => v != 0));                                            // mask bit and value of pixel 5 only
        Assert.Equal(1f, x[10]); Assert.Equal(0.9f, x[11]);
    }

    [Fact]
    public async Task Turns_alternate_starting_with_A_and_stop_at_the_turn_limit()
    {
        var log = new List<string>();
        var result = await Debate.RunAsync(Case("e0", "e1", "e2", "e3", "e4", "e5"), new ScriptedDebater(log, "honest", 1, 2, 3), 0,
            new ScriptedDebater(log, "liar", 4, 5), 1, new RecordingJudge(0), turns: 5);
        Assert.Equal(["honest:A:0", "liar:B:1", "honest:A:2", "liar:B:3", "honest:A:4"], log);
        Assert.Equal([DebateSide.A, DebateSide.B, DebateSide.A, DebateSide.B, DebateSide.A], result.Transcript.Revealed.Select(r => r.By));
        Assert.Equal([1, 2, 3, 4, 5], result.Transcript.Revealed.Select(r => r.Turn));
        Assert.True(result.Transcript.IsComplete);
        Assert.Null(result.Transcript.NextSide);
    }

    [Fact]
    public void Reveal_enforces_the_protocol_with_errors_that_say_what_is_wrong()
    {
        var c = Case("e0", "e1", "e2");
        var t = DebateTranscript<string>.Open(c, 0, 1, turns: 2);
        Assert.Contains("belongs to A", Assert.Throws<InvalidOperationException>(() => t.Reveal(c, DebateSide.B, 0)).Message);
        var t1 = t.Reveal(c, DebateSide.A, 0);
        Assert.Contains("already revealed", Assert.Throws<InvalidOperationException>(() => t1.Reveal(c, DebateSide.B, 0)).Message);
        Assert.Contains("0…2", Assert.Throws<ArgumentOutOfRangeException>(() => t1.Reveal(c, DebateSide.B, 3)).Message);
        var other = new DebateCase<string>("c2", "Is the box blue?", ["yes", "no", "maybe"], ["e0", "e1", "e2"], 1);
        Assert.Contains("not the case", Assert.Throws<ArgumentException>(() => t1.Reveal(other, DebateSide.B, 1)).Message);
        var done = t1.Reveal(c, DebateSide.B, 2);
        Assert.Contains("debate is over", Assert.Throws<InvalidOperationException>(() => done.Reveal(c, DebateSide.A, 1)).Message);
        Assert.Single(t1.Revealed);                                                        // transcripts are immutable
        Assert.Empty(t.Revealed);
        Assert.Contains("two different answers", Assert.Throws<ArgumentException>(() => DebateTranscript<string>.Open(c, 1, 1, 2)).Message);
    }

    [Fact]
    public async Task Answers_are_committed_before_the_debate_and_moves_cannot_change_them()
    {
        Assert.Equal(["EvidenceIndex", "Argument"], typeof(DebateMove).GetProperties().Select(p => p.Name));
        Assert.All(typeof(DebateTranscript<string>).GetProperties(), p => Assert.False(p.SetMethod?.IsPublic ?? false, $"{p.Name} has a public setter"));
        var judge = new RecordingJudge(believed: 2);
        var r = await Debate.RunAsync(Case("e0", "e1", "e2", "e3"), new ScriptedDebater([], "x", 0, 2), 2, new ScriptedDebater([], "y", 1, 3), 1, judge, turns: 4);
        Assert.All(judge.Seen, t => { Assert.Equal(2, t.AnswerA); Assert.Equal(1, t.AnswerB); });
        Assert.Equal(DebateSide.A, r.Verdict.Winner);
        Assert.Equal(2, r.ChosenAnswer);
        Assert.False(r.JudgeCorrect);                                                      // the truth is 0, which nobody argued
    }

    [Fact]
    public void Revealed_evidence_is_copied_from_the_case_so_debaters_cannot_invent_it()
    {
        var c = Case("red paint", "a red label", "a receipt");
        var t = DebateTranscript<string>.Open(c, 0, 1, 3).Reveal(c, DebateSide.A, 2, "trust me");
        Assert.Equal("a receipt", t.Revealed[0].Evidence);
        Assert.Equal("trust me", t.Revealed[0].Argument);
        Assert.Equal(2, t.Revealed[0].Index);
    }

    [Fact]
    public async Task The_judge_is_correct_against_a_liar_only_if_it_sides_with_the_truth_against_every_lie()
    {
        var c = new DebateCase<string>("c", "Which?", ["0", "1", "2", "3"], ["e0", "e1"], trueAnswer: 1);
        // A judge that believes the honest side unless the lie is 3: it picks B when B claims 3, and B is the liar when honest moves first.
        var (ok, debates) = await Debate.HonestVersusLiarAsync(c, new ScriptedDebater([], "h", 0, 0, 0), new ScriptedDebater([], "l", 0, 0, 0),
            new RecordingJudge(believed: 3), turns: 1, honestFirst: true);
        Assert.Equal(3, debates.Count);
        Assert.Equal([0, 2, 3], debates.Select(x => x.Transcript.AnswerB));
        Assert.False(ok);
        var (ok2, _) = await Debate.HonestVersusLiarAsync(c, new ScriptedDebater([], "h", 0, 0), new ScriptedDebater([], "l", 0, 0),
            new RecordingJudge(believed: 3), turns: 1, honestFirst: true, lies: [0, 2]);
        Assert.True(ok2);
    }
}

/// <summary>A scorer whose score for the committed answers is a fixed value per revealed item (for testing debaters).</summary>
sealed class TableScorer(double[] valueOfItem) : ITranscriptScorer<string>
{
    public double[][] Score(IReadOnlyList<DebateTranscript<string>> transcripts) =>
        transcripts.Select(t => { var s = new double[t.Answers.Count]; s[t.AnswerA] = t.Revealed.Sum(r => valueOfItem[r.Index]); return s; }).ToArray();
}

public class DebaterTests
{
    [Fact]
    public void Best_unrevealed_takes_the_largest_margin_skipping_revealed_items_and_the_lowest_index_on_ties()
    {
        Assert.Equal(2, GreedyDebater<string>.BestUnrevealed([0.5, 9, 3, 3], [false, true, false, false]));
        Assert.Equal(1, GreedyDebater<string>.BestUnrevealed([-1, -0.5, -0.5], [false, false, false]));
        Assert.Equal(-1, GreedyDebater<string>.BestUnrevealed([1, 2], [true, true]));
    }

    [Fact]
    public async Task The_greedy_debater_reveals_what_helps_its_answer_and_its_opponent_what_hurts_it()
    {
        var c = new DebateCase<string>("c", "q", ["x", "y"], ["e0", "e1", "e2", "e3"], 0);
        var greedy = new GreedyDebater<string>(new TableScorer([0.1, -2, 5, 1]));
        var r = await Debate.RunAsync(c, greedy, 0, greedy, 1, new RecordingJudge(0), turns: 4);
        // A (score for its answer rises with the item's value) takes 2, then B takes the most negative item 1, A takes 3, B takes 0.
        Assert.Equal([2, 1, 3, 0], r.Transcript.Revealed.Select(x => x.Index));
    }
}
