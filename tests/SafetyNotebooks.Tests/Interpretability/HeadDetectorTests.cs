using SafetyNotebooks.Interpretability;
using SafetyNotebooks.Runtime;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Interpretability;

/// <summary>Head detectors on hand-built attention patterns, with scores worked out by hand.</summary>
public class HeadDetectorTests
{
    static HeadDetectorTests() => TorchRuntime.EnsureLoaded();

    /// <summary>Query 0 attends to itself, every later query q to q − 1.</summary>
    static Tensor PreviousTokenPattern(int n)
    {
        var p = zeros(n, n);
        p[0, 0] = 1;
        for (int q = 1; q < n; q++) p[q, q - 1] = 1;
        return p;
    }

    /// <summary>Query q attends uniformly to keys 0..q.</summary>
    static Tensor UniformCausal(int n) => ones(n, n).tril() / arange(1, n + 1, dtype: ScalarType.Float32).unsqueeze(1);

    [Fact]
    public void A_pure_previous_token_pattern_scores_1_and_uniform_attention_scores_the_mean_of_1_over_q_plus_1()
    {
        var batch = stack(new[] { PreviousTokenPattern(6), UniformCausal(6) }).unsqueeze(0);   // [batch 1, head 2, 6, 6]
        var s = HeadDetectors.PreviousTokenScore(batch);
        Assert.Equal(1.0, s[0].item<float>(), 6);
        // (1/2 + 1/3 + 1/4 + 1/5 + 1/6) / 5 = (87/60) / 5 = 0.29
        Assert.Equal(0.29, s[1].item<float>(), 6);
    }

    [Fact]
    public void Transformer_lens_mul_score_counts_query_0_so_a_perfect_previous_token_head_scores_n_minus_1_over_n()
    {
        var d = HeadDetectors.PreviousTokenDetectionPattern(6);
        var expectedD = zeros(6, 6);
        for (int q = 1; q < 6; q++) expectedD[q, q - 1] = 1;
        AnalysisTestModels.Close(expectedD, d, 0, "detection pattern = sub-diagonal");
        Assert.Equal(5.0 / 6, HeadDetectors.SimilarityScore(PreviousTokenPattern(6), d), 6);
        // Excluding BOS zeroes column 0 of the pattern: rows 0 and 1 lose their weight, the rest is all on the sub-diagonal.
        Assert.Equal(1.0, HeadDetectors.SimilarityScore(PreviousTokenPattern(6), d, excludeBos: true), 6);
        Assert.Equal(1.45 / 6, HeadDetectors.SimilarityScore(UniformCausal(6), d), 6);
        // Abs: the only mismatch is [0, 0] (|1 − 0| = 1), so 1 − round(1/6, 3) = 0.833.
        Assert.Equal(0.833, HeadDetectors.SimilarityScore(PreviousTokenPattern(6), d, errorMeasure: HeadErrorMeasure.Abs), 9);
    }

    [Fact]
    public void Induction_and_duplicate_scores_read_the_right_diagonals_of_a_repeated_sequence()
    {
        // seqLen 3: positions 0 = bos, 1..3, 4..6 repeat 1..3. Head 0: perfect induction (q → q − 2) in the second half,
        // bos elsewhere; head 1: perfect duplicate-token (q → q − 3) in the second half.
        int n = 7, s = 3;
        var ind = zeros(n, n); var dup = zeros(n, n);
        for (int q = 0; q < n; q++)
        {
            if (q > s) { ind[q, q - s + 1] = 1; dup[q, q - s] = 1; }
            else { ind[q, 0] = 1; dup[q, 0] = 1; }
        }
        var p = stack(new[] { ind, dup });
        var i = HeadDetectors.InductionScore(p, s);
        var d = HeadDetectors.DuplicateTokenScore(p, s);
        Assert.Equal(new[] { 1f, 0f }, i.data<float>().ToArray());
        Assert.Equal(new[] { 0f, 1f }, d.data<float>().ToArray());
        // ARENA's whole diagonal adds queries 2 and 3: query 2's key is 0 (bos), where head 0 parks its attention, query 3's is 1
        // (weight 0): 4 of the 5 entries are 1.
        Assert.Equal(0.8f, HeadDetectors.InductionScore(p, s, secondHalfOnly: false)[0].item<float>(), 6);

        // TransformerLens' token-based patterns on [bos a b c a b c]: duplicates at (4,1), (5,2), (6,3); induction one key to the right.
        var tokens = tensor(new long[] { 9, 1, 2, 3, 1, 2, 3 });
        var dupD = HeadDetectors.DuplicateTokenDetectionPattern(tokens);
        var indD = HeadDetectors.InductionDetectionPattern(tokens);
        Assert.Equal(3, dupD.sum().item<float>());
        Assert.Equal(1, dupD[4, 1].item<float>()); Assert.Equal(1, dupD[6, 3].item<float>());
        Assert.Equal(3, indD.sum().item<float>());
        Assert.Equal(1, indD[4, 2].item<float>()); Assert.Equal(1, indD[6, 4].item<float>());
        // mul: 3 of the 7 rows' weight is on the 1s.
        Assert.Equal(3.0 / 7, HeadDetectors.SimilarityScore(ind, indD), 6);
    }

    [Fact]
    public void Detect_head_with_custom_patterns_on_a_model_cache_matches_closed_forms_and_marks_unselected_heads()
    {
        using var _ = no_grad();
        var model = AnalysisTestModels.Tiny();
        var tokens = AnalysisTestModels.Tokens[0];
        var (_, cache) = model.RunWithCache(tokens.unsqueeze(0));
        using (cache)
        {
            // An all-ones causal detection pattern catches all attention: every head scores exactly 1.
            var all = HeadDetectors.DetectHead(cache, tokens, ones(8, 8).tril());
            AnalysisTestModels.Close(ones(2, 2), all, 1e-6, "all-ones pattern");
            // The identity (current-token) pattern scores the mean attention of each query to itself.
            var current = HeadDetectors.DetectHead(cache, tokens, eye(8), heads: new[] { (1, 0) });
            var selfAttn = diagonal(cache["pattern", 1][0, 0], 0, -2, -1).mean().item<float>();
            Assert.Equal(selfAttn, current[1, 0].item<float>(), 5);
            Assert.Equal(-1f, current[0, 0].item<float>());
            Assert.Equal(-1f, current[1, 1].item<float>());

            var upper = Assert.Throws<ArgumentException>(() => HeadDetectors.DetectHead(cache, tokens, ones(8, 8)));
            Assert.Contains("lower-triangular", upper.Message);
            var size = Assert.Throws<ArgumentException>(() => HeadDetectors.DetectHead(cache, tokens, eye(7)));
            Assert.Contains("[8, 8]", size.Message);
            var name = Assert.Throws<ArgumentException>(() => HeadDetectors.DetectHead(cache, tokens, "prev_head"));
            Assert.Contains("previous_token_head", name.Message);
            var warn = new StringWriter();
            HeadDetectors.DetectHead(cache, tokens, eye(8) * 0.5, warnings: warn);
            Assert.Contains("other than 0 and 1", warn.ToString());
        }
    }

    [Fact]
    public void Scores_stack_one_row_per_layer_from_the_cache()
    {
        using var _ = no_grad();
        var model = AnalysisTestModels.Tiny();
        var (_, cache) = model.RunWithCache(AnalysisTestModels.Tokens);
        using (cache)
        {
            var s = HeadDetectors.Scores(cache, HeadDetectors.PreviousTokenScore);
            Assert.Equal(new long[] { 2, 2 }, s.shape);
            // Layer 1, head 1 by an explicit loop over batch and queries.
            var p = cache["pattern", 1];
            double sum = 0; int count = 0;
            for (int b = 0; b < 2; b++) for (int q = 1; q < 8; q++) { sum += p[b, 1, q, q - 1].item<float>(); count++; }
            Assert.Equal(sum / count, s[1, 1].item<float>(), 5);
        }
        var bad = Assert.Throws<ArgumentException>(() => HeadDetectors.InductionScore(zeros(1, 2, 6, 6), 3));
        Assert.Contains("2·seqLen + 1 = 7", bad.Message);
    }
}
