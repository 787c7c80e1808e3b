using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Models;

public class LanguageModelLossTests
{
    public LanguageModelLossTests() => TorchRuntime.EnsureLoaded();

    // tokens [0, 2, 1]; position 0 (logits 1, 2, 3) predicts token 2, position 1 (logits 0, 0, ln 2) predicts token 1.
    //   −log softmax([1, 2, 3])[2]    = log(1 + e⁻¹ + e⁻²) = log 1.50321472 = 0.40760596
    //   −log softmax([0, 0, ln 2])[1] = −log(1 / (1 + 1 + 2)) = ln 4       = 1.38629436
    static readonly double Ce0 = Math.Log(1 + Math.Exp(-1) + Math.Exp(-2)), Ce1 = Math.Log(4);

    static (TorchSharp.torch.Tensor Logits, TorchSharp.torch.Tensor Tokens) Example() =>
        (tensor(new[] { 1f, 2f, 3f, 0f, 0f, (float)Math.Log(2), 9f, 9f, 9f }).reshape(1, 3, 3), tensor(new long[] { 0, 2, 1 }).reshape(1, 3));

    [Fact]
    public void Per_token_and_mean_match_hand_computed_cross_entropy()
    {
        var (logits, tokens) = Example();
        var per = LanguageModelLoss.PerToken(logits, tokens).data<float>().ToArray();
        Assert.Equal(0.40760596, Ce0, 7);
        Assert.Equal(Ce0, per[0], 5);
        Assert.Equal(Ce1, per[1], 5);
        Assert.Equal((Ce0 + Ce1) / 2, LanguageModelLoss.Mean(logits, tokens).item<float>(), 5);
        // HookedTransformer's static is the same loss.
        Assert.Equal((Ce0 + Ce1) / 2, HookedTransformer.LossFromLogits(logits, tokens).item<float>(), 5);
        Assert.Equal(new[] { (float)Ce0, (float)Ce1 }, HookedTransformer.LossFromLogits(logits, tokens, perToken: true).data<float>().ToArray(), (a, b) => Math.Abs(a - b) < 1e-5);
    }

    [Fact]
    public void Token_and_sequence_log_probs_are_the_hand_computed_values_at_the_token_positions()
    {
        var (logits, tokens) = Example();
        var lp = LanguageModelLoss.TokenLogProbs(logits, tokens).data<float>().ToArray();
        Assert.Equal(new[] { 0f, (float)-Ce0, (float)-Ce1 }, lp, (a, b) => Math.Abs(a - b) < 1e-5);
        // Completion = token 2 only (the prompt is tokens 0..1): the sum is log(1/4) and the mean is the same single value.
        using var completion = tensor(new[] { false, false, true }).reshape(1, 3);
        Assert.Equal(-Ce1, LanguageModelLoss.SequenceLogProbs(logits, tokens, completion).item<float>(), 5);
        using var both = tensor(new[] { false, true, true }).reshape(1, 3);
        Assert.Equal(-(Ce0 + Ce1), LanguageModelLoss.SequenceLogProbs(logits, tokens, both).item<float>(), 5);
        Assert.Equal(-(Ce0 + Ce1) / 2, LanguageModelLoss.SequenceLogProbs(logits, tokens, both, average: true).item<float>(), 5);
        using var wrong = tensor(new[] { true, true }).reshape(1, 2);
        var e = Assert.Throws<ArgumentException>(() => LanguageModelLoss.SequenceLogProbs(logits, tokens, wrong));
        Assert.Contains("[1, 3]", e.Message);
    }

    [Fact]
    public void Mean_with_target_mask_averages_only_targets_and_counts_them()
    {
        var (logits, tokens) = Example();
        using var mask = tensor(new[] { false, false, true }).reshape(1, 3);   // only token 2 (predicted by position 1)
        Assert.Equal(Ce1, LanguageModelLoss.Mean(logits, tokens, mask).item<float>(), 5);
        Assert.Equal(1f, LanguageModelLoss.TargetCount(tokens, mask).item<float>());
        Assert.Equal(2f, LanguageModelLoss.TargetCount(tokens).item<float>());
        // argmax of position 0 is token 2 (right), of position 1 is token 2 (wrong: target 1)
        Assert.Equal(0.5, LanguageModelLoss.Accuracy(logits, tokens), 6);
        Assert.Equal(0.0, LanguageModelLoss.Accuracy(logits, tokens, mask), 6);
    }

    [Fact]
    public void Mismatched_shapes_give_a_clear_error()
    {
        var (logits, _) = Example();
        var e = Assert.Throws<ArgumentException>(() => LanguageModelLoss.PerToken(logits, tensor(new long[] { 0, 1 }).reshape(1, 2)));
        Assert.Contains("matching the logits", e.Message);
    }
}
