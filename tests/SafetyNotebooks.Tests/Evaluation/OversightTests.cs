using SafetyNotebooks.Evaluation.Oversight;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Statistics;
using Xunit;

namespace SafetyNotebooks.Tests.Evaluation;

public class AccuracyComparisonTests
{
    [Fact]
    public void Comparison_matches_hand_worked_wilson_bounds_and_the_exact_mcnemar_p_value()
    {
        // 10 items: baseline right on 6, treatment right on 9; the treatment fixes 3 items and breaks none (b = 3, c = 0).
        bool[] baseline = [true, true, true, true, true, true, false, false, false, false];
        bool[] treatment = [true, true, true, true, true, true, true, true, true, false];
        var c = AccuracyComparison.Of("alone", baseline, "debate", treatment);
        Assert.Equal(0.6, c.BaselineAccuracy.Estimate, 12);
        // Wilson 9/10 by hand: centre (0.9 + z²/20)/(1 + z²/10) = 0.78899, half-width 0.19314 with z = 1.959964.
        Assert.Equal(0.5959, c.TreatmentAccuracy.Lower, 5e-4);
        Assert.Equal(0.9821, c.TreatmentAccuracy.Upper, 5e-4);
        Assert.Equal(0.25, c.McNemar.PValue, 12);                                        // 2 · 0.5³
        Assert.Equal(0.3, c.Difference.Estimate, 12);
        // Newcombe by hand from the Wilson intervals [0.3127, 0.8318] (6/10) and [0.5958, 0.9821] (9/10).
        Assert.Equal(-0.0824, c.Difference.Lower, 5e-4);
        Assert.Equal(0.5988, c.Difference.Upper, 5e-4);
        Assert.False(c.TreatmentHelps);
        Assert.Equal(4, c.ToDataFrame().Rows.Count);
        Assert.Equal(0.3, c.PairedDifference.Estimate, 12);
        Assert.True(c.PairedDifference.Lower >= 0);                                       // no item got worse: no resample can go below 0
    }

    [Fact]
    public void The_paired_interval_is_narrower_than_newcombe_when_outcomes_agree_and_wider_when_they_disagree()
    {
        // Agreeing: the treatment fixes 20 of 200 items and keeps the rest. Disagreeing: the two conditions are right on disjoint items.
        var baseA = Enumerable.Range(0, 200).Select(i => i < 100).ToArray();
        var treatA = Enumerable.Range(0, 200).Select(i => i < 120).ToArray();
        var agree = AccuracyComparison.Of("b", baseA, "t", treatA);
        Assert.True(agree.PairedDifference.Width < agree.Difference.Width, agree.ToString());
        Assert.Equal(0.1, agree.PairedDifference.Estimate, 12);
        var baseD = Enumerable.Range(0, 200).Select(i => i < 80).ToArray();
        var treatD = Enumerable.Range(0, 200).Select(i => i >= 100).ToArray();
        var disagree = AccuracyComparison.Of("b", baseD, "t", treatD);
        Assert.True(disagree.PairedDifference.Width > disagree.Difference.Width, disagree.ToString());
    }

    [Fact]
    public void Comparison_rejects_unpaired_outcomes()
    {
        Assert.Contains("same items", Assert.Throws<ArgumentException>(() => AccuracyComparison.Of("a", [true], "b", [true, false])).Message);
    }
}

public class DecompositionTests
{
    [Fact]
    public void Generated_solutions_have_exactly_one_invalid_step_where_the_flaw_is_and_are_deterministic()
    {
        var sols = ArithmeticChains.Generate(200, 8, 0.5, seed: 4);
        Assert.Equal(100, sols.Count(s => !s.IsCorrect));
        foreach (var s in sols)
        {
            var invalid = Enumerable.Range(0, 8).Where(i => !s.StepIsValid(i)).ToArray();
            Assert.Equal(s.IsCorrect ? [] : [s.FlawedStep!.Value], invalid);
        }
        Assert.Contains(sols, s => s.Flaw == FlawKind.Copy);
        Assert.Contains(sols, s => s.Flaw == FlawKind.Arithmetic);
        Assert.Equal(sols.Select(s => s.ToString()), ArithmeticChains.Generate(200, 8, 0.5, seed: 4).Select(s => s.ToString()));
        Assert.NotEqual(sols.Select(s => s.ToString()), ArithmeticChains.Generate(200, 8, 0.5, seed: 5).Select(s => s.ToString()));
    }

    [Fact]
    public void A_slice_starts_from_the_previous_claimed_result_and_keeps_the_flaw()
    {
        var s = new ArithmeticSolution("s", 5, [new(5, '+', 3, 8), new(8, '*', 2, 16), new(17, '-', 4, 13)], 2, FlawKind.Copy);
        var tail = s.Slice(2, 3);
        Assert.Equal(16, tail.Start);
        Assert.Equal(0, tail.FlawedStep);
        Assert.False(tail.StepIsValid(0));                                                // starts from 17, not 16
        Assert.True(s.Slice(0, 2).IsCorrect);
    }

    [Fact]
    public void Decomposition_makes_one_call_per_budget_sized_piece_and_catches_every_flaw_without_slips()
    {
        foreach (var s in ArithmeticChains.Generate(60, 8, 0.5, seed: 1))
        {
            var v1 = Decomposition.Judge(s, new WeakEvaluator(budget: 1, slipRate: 0));
            Assert.Equal(s.IsCorrect, v1.Accepted);
            Assert.Equal((8, 3), (v1.Calls, v1.Depth));                                  // 8 → 4+4 → 2+2+2+2 → 8 single steps
            var v3 = Decomposition.Judge(s, new WeakEvaluator(budget: 3, slipRate: 0));
            Assert.Equal((4, 2), (v3.Calls, v3.Depth));                                  // 8 → 4+4 → four pieces of 2
        }
    }

    [Fact]
    public void The_evaluator_alone_catches_a_flaw_only_on_the_steps_it_checks()
    {
        var s = new ArithmeticSolution("s", 5, [new(5, '+', 3, 8), new(8, '*', 2, 17), new(17, '-', 4, 13)], 1, FlawKind.Arithmetic);
        var e = new WeakEvaluator(budget: 1, slipRate: 0, seed: 0);
        Assert.False(e.Judge(s, mustCheck: [1]));
        Assert.True(e.Judge(s, mustCheck: [0]));
        Assert.False(new WeakEvaluator(budget: 3, slipRate: 0).Judge(s));                // a budget covering the solution checks all of it
        Assert.Equal(2, e.Calls);
        Assert.Equal(2, e.StepChecks);
    }

    [Fact]
    public void Expected_accuracy_matches_the_hand_worked_values()
    {
        // L = 8, b = 1, ε = 0.02: alone ½(0.98 + 1 − (0.125·0.02 + 0.875·0.98)) = 0.56; decomposed ½(0.98⁸ + 1 − 0.02·0.98⁷) = 0.916700.
        var (alone, dec) = Decomposition.ExpectedAccuracy(8, 1, 0.02);
        Assert.Equal(0.56, alone, 10);
        Assert.Equal(0.5 * (0.8507630225817856 + 1 - 0.02 * 0.8681255332467201), dec, 10);
        Assert.Equal(0.9167, dec, 4);
    }

    [Fact]
    public void Simulated_accuracy_agrees_with_the_formula_within_its_interval()
    {
        var sols = ArithmeticChains.Generate(2000, 8, 0.5, seed: 9);
        var alone = new WeakEvaluator(1, 0.02, seed: 1);
        var dec = new WeakEvaluator(1, 0.02, seed: 2);
        int a = sols.Count(s => alone.Judge(s) == s.IsCorrect), d = sols.Count(s => Decomposition.Judge(s, dec).Accepted == s.IsCorrect);
        var (ea, ed) = Decomposition.ExpectedAccuracy(8, 1, 0.02);
        Assert.True(Rates.Wilson(a, 2000).Contains(ea), $"alone {a}/2000 vs expected {ea}");
        Assert.True(Rates.Wilson(d, 2000).Contains(ed), $"decomposed {d}/2000 vs expected {ed}");
    }
}

public class CritiqueTests
{
    static readonly IReadOnlyList<ArithmeticSolution> Sols = ArithmeticChains.Generate(100, 6, 0.5, seed: 2);

    [Fact]
    public async Task A_critic_without_slips_points_at_the_flaw_and_finds_nothing_in_correct_solutions()
    {
        var critic = new CheckingCritic(slipRate: 0);
        foreach (var s in Sols) Assert.Equal(s.FlawedStep, (await critic.CritiqueAsync(s)).PointsTo);
        var right = await AssistedEvaluation.JudgeCorrectAsync(Sols, new WeakEvaluator(1, 0), critic, CritiqueUse.Verify);
        Assert.All(right, Assert.True);
    }

    [Fact]
    public async Task A_verifying_judge_cannot_be_talked_into_rejecting_a_correct_solution_but_a_trusting_one_can()
    {
        var correct = Sols.Where(s => s.IsCorrect).ToList();
        var verify = await AssistedEvaluation.JudgeCorrectAsync(correct, new WeakEvaluator(1, 0), new MisleadingCritic(1), CritiqueUse.Verify);
        var trust = await AssistedEvaluation.JudgeCorrectAsync(correct, new WeakEvaluator(1, 0), new MisleadingCritic(1), CritiqueUse.Trust);
        Assert.All(verify, Assert.True);
        Assert.All(trust, Assert.False);
    }

    [Fact]
    public async Task Chat_critic_parses_the_flaw_line_and_rejects_replies_without_one()
    {
        var s = Sols.First(x => !x.IsCorrect);
        string? seen = null;
        var critic = new ChatCritic(new ScriptedClient(p => { seen = p; return $"Let me look.\nFLAW: {s.FlawedStep + 1}"; }));
        Assert.Equal(s.FlawedStep, (await critic.CritiqueAsync(s)).PointsTo);
        Assert.Contains($"Step 1: {s.Steps[0]}", seen);
        Assert.Null((await new ChatCritic(new ScriptedClient(_ => "flaw: None")).CritiqueAsync(s)).PointsTo);
        Assert.Contains("FLAW: n", (await Assert.ThrowsAsync<FormatException>(() => new ChatCritic(new ScriptedClient(_ => "looks fine")).CritiqueAsync(s))).Message);
        Assert.Contains("steps 1…6", (await Assert.ThrowsAsync<FormatException>(() => new ChatCritic(new ScriptedClient(_ => "FLAW: 9")).CritiqueAsync(s))).Message);
    }
}

public class ChatDebateTests
{
    static DebateCase<string> Passage() => new("p1", "Where did the letter come from?", ["Paris", "Rome"],
        ["The stamp is French.", "The paper is Italian.", "It was posted on a Monday.", "The postmark reads PARIS."], trueAnswer: 0);

    [Fact]
    public async Task A_text_debate_runs_with_chat_debaters_and_a_chat_judge_that_sees_only_revealed_sentences()
    {
        var judgePrompts = new List<string>();
        var honest = new ChatDebater<string>(new ScriptedClient(p => p.Contains("[3] The postmark") && !p.Contains("[3] (revealed)") ? "REVEAL: 3\nARGUMENT: The postmark settles it." : "REVEAL: 0\nARGUMENT: French stamp."));
        var liar = new ChatDebater<string>(new ScriptedClient(_ => "I choose REVEAL: [1]\nARGUMENT: Italian paper."));
        var judge = new ChatJudge<string>(new ScriptedClient(p => { judgePrompts.Add(p); return "The postmark is decisive.\nWINNER: a"; }));
        var r = await Debate.RunAsync(Passage(), honest, 0, liar, 1, judge, turns: 2);
        Assert.Equal([3, 1], r.Transcript.Revealed.Select(x => x.Index));
        Assert.Equal("The postmark settles it.", r.Transcript.Revealed[0].Argument);
        Assert.True(r.JudgeCorrect);
        var prompt = judgePrompts.Single();
        Assert.Contains("The postmark reads PARIS.", prompt);
        Assert.Contains("The paper is Italian.", prompt);
        Assert.DoesNotContain("The stamp is French.", prompt);                          // never revealed
        Assert.DoesNotContain("Monday", prompt);
        Assert.Contains("argument (unverified): Italian paper.", prompt);
    }

    [Fact]
    public async Task The_debater_prompt_shows_the_pool_and_its_committed_answer()
    {
        string? seen = null;
        var d = new ChatDebater<string>(new ScriptedClient(p => { seen = p; return "REVEAL: 2"; }));
        var c = Passage();
        var t = DebateTranscript<string>.Open(c, 1, 0, 2).Reveal(c, DebateSide.A, 0);
        var move = await d.ChooseAsync(c, t, DebateSide.B);
        Assert.Equal(2, move.EvidenceIndex);
        Assert.Null(move.Argument);
        Assert.Contains("You argue that the answer is: Paris", seen);
        Assert.Contains("[0] (revealed) The stamp is French.", seen);
        Assert.Contains("[2] It was posted on a Monday.", seen);
    }

    [Fact]
    public async Task Malformed_or_illegal_model_replies_fail_with_a_message_naming_the_format()
    {
        var c = Passage();
        var t = DebateTranscript<string>.Open(c, 0, 1, 2).Reveal(c, DebateSide.A, 3);
        var already = new ChatDebater<string>(new ScriptedClient(_ => "REVEAL: 3"));
        Assert.Contains("REVEAL: n", (await Assert.ThrowsAsync<FormatException>(() => already.ChooseAsync(c, t, DebateSide.B))).Message);
        var judge = new ChatJudge<string>(new ScriptedClient(_ => "Both are convincing."));
        Assert.Contains("WINNER: A", (await Assert.ThrowsAsync<FormatException>(() => judge.JudgeAsync(t))).Message);
    }
}

public class SparsePixelDebateTests
{
    public SparsePixelDebateTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void Seven_segment_prototypes_light_the_hand_listed_pixels()
    {
        Assert.Equal([16, 17, 18], SegmentDigits.PixelsOf('g'));                       // row 3, columns 1–3 of a 5-wide grid
        Assert.Equal(17, SegmentDigits.Prototype(8).Count(v => v == 1));
        Assert.Equal(4, SegmentDigits.Prototype(1).Count(v => v == 1));
        Assert.Equal([9, 14, 24, 29], Enumerable.Range(0, 35).Where(i => SegmentDigits.Prototype(1)[i] == 1));
        Assert.Equal(" ### \n#   #\n#   #\n ### \n#   #\n#   #\n ### \n",
            SegmentDigits.Render(SegmentDigits.Prototype(8)).Replace('·', ' '));
    }

    [Fact]
    public void Cases_and_the_trained_judge_are_deterministic_for_a_seed()
    {
        var task = new SegmentDigits();
        var a = task.Cases(20, seed: 3); var b = task.Cases(20, seed: 3);
        Assert.Equal(a.Select(c => c.TrueAnswer), b.Select(c => c.TrueAnswer));
        Assert.Equal(a[7].Evidence, b[7].Evidence);
        var j1 = SparsePixelJudge.Train(task, 6, steps: 30, batchSize: 64, seed: 5);
        var j2 = SparsePixelJudge.Train(task, 6, steps: 30, batchSize: 64, seed: 5);
        var x = SparsePixelJudge.Encode(a[0].Evidence.Take(6));
        Assert.Equal(j1.Logits([x])[0], j2.Logits([x])[0]);
        Assert.Equal(j1.RandomRevealCorrect(a, 6, 1), j2.RandomRevealCorrect(a, 6, 1));
    }

    [Fact]
    public async Task Debate_between_greedy_debaters_raises_the_judge_accuracy_on_seven_segment_digits()
    {
        var task = new SegmentDigits();
        var judge = SparsePixelJudge.Train(task, 6, steps: 600, seed: 1);
        var cases = task.Cases(120, seed: 2);
        var greedy = new GreedyDebater<Pixel>(judge);
        var (cmp, _, debates) = await DebateExperiment.RunAsync(cases, judge.RandomRevealCorrect(cases, 6, 3), greedy, greedy, judge, turns: 6);
        Assert.Equal(120 * 9, debates.Count);
        Assert.All(debates, d => Assert.Equal(6, d.Transcript.Revealed.Count));
        Assert.True(cmp.TreatmentHelps, cmp.ToString());
        Assert.True(cmp.BaselineAccuracy.Estimate < 0.6, cmp.ToString());                 // the judge alone is weak
    }
}
