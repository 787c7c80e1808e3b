using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models;

/// <summary>
/// The library's one next-token loss (and its accuracy metrics) for any model mapping tokens <c>[batch, pos]</c> to
/// logits <c>[batch, pos, vocab]</c>. <see cref="HookedTransformer.LossFromLogits"/>, the trainer's language-modeling
/// objective and the synthetic tasks' metrics all call it.
/// <para><b>Mask convention</b> (used throughout the library): a target mask is aligned with the tokens,
/// <c>mask[b, i] = true</c> meaning "token i is a target, predicted by the logits at position i − 1".
/// Position 0 is never a target. This is TRL's <c>completion_mask</c> convention (aligned with input ids).</para>
/// </summary>
public static class LanguageModelLoss
{
    /// <summary>
    /// Per-position loss <c>[batch, pos-1]</c>: entry i is −log softmax(logits[:, i])[tokens[:, i+1]], i.e. the
    /// cross-entropy of predicting token i+1 from the logits at position i.
    /// </summary>
    public static Tensor PerToken(Tensor logits, Tensor tokens)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(tokens);
        if (logits.dim() != 3)
            throw new ArgumentException($"Next-token loss needs logits [batch, pos, vocab], got [{string.Join(", ", logits.shape)}]; add a batch dimension with unsqueeze(0).", nameof(logits));
        long batch = logits.shape[0], pos = logits.shape[1], vocab = logits.shape[2];
        if (tokens.dim() != 2 || tokens.shape[0] != batch || tokens.shape[1] != pos)
            throw new ArgumentException($"Next-token loss needs tokens [batch, pos] = [{batch}, {pos}] matching the logits, got [{string.Join(", ", tokens.shape)}]; pass the same tokens the model was called on.", nameof(tokens));
        if (pos < 2) throw new ArgumentException("Next-token loss needs at least 2 positions; pass sequences of length ≥ 2.", nameof(tokens));
        using var scope = torch.NewDisposeScope();
        var predictions = logits.narrow(1, 0, pos - 1).reshape(-1, vocab);               // [batch*(pos-1), vocab]
        var targets = tokens.narrow(1, 1, pos - 1).reshape(-1).to_type(ScalarType.Int64);
        return nn.functional.cross_entropy(predictions, targets, reduction: nn.Reduction.None)
            .view(batch, pos - 1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Per-token log-probabilities <c>[batch, pos]</c> aligned with the tokens (the target-mask convention above): entry i
    /// is log p(tokens[:, i] | tokens[:, &lt;i]) from the logits at position i − 1; entry 0 has no prediction and is 0.
    /// Masked-out entries (where <paramref name="targetMask"/> is false) are 0. This is what DPO, PPO, KTO and
    /// best-of-n read: the same numbers as <see cref="PerToken"/>, negated and shifted to the tokens' positions.
    /// </summary>
    public static Tensor TokenLogProbs(Tensor logits, Tensor tokens, Tensor? targetMask = null)
    {
        using var scope = torch.NewDisposeScope();
        var perToken = PerToken(logits, tokens).neg();                                   // [batch, pos-1]
        var shifted = torch.cat(new[] { torch.zeros(perToken.shape[0], 1, dtype: perToken.dtype, device: perToken.device), perToken }, 1);
        if (targetMask is not null)
        {
            CheckMask(targetMask, tokens);
            shifted = shifted * targetMask.to_type(shifted.dtype);
        }
        return shifted.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Sequence log-probability <c>[batch]</c>: the sum of <see cref="TokenLogProbs"/> over the target positions
    /// (e.g. the completion tokens of a prompt + completion batch; prompt and padding masked out), as DPO uses it.
    /// With <paramref name="average"/> the mean over target tokens instead (IPO, SimPO); a row without targets gives 0.
    /// </summary>
    public static Tensor SequenceLogProbs(Tensor logits, Tensor tokens, Tensor targetMask, bool average = false)
    {
        ArgumentNullException.ThrowIfNull(targetMask);
        using var scope = torch.NewDisposeScope();
        var sum = TokenLogProbs(logits, tokens, targetMask).sum(1);
        if (average) sum = sum / targetMask[.., 1..].to_type(sum.dtype).sum(1).clamp_min(1);
        return sum.MoveToOuterDisposeScope();
    }

    static void CheckMask(Tensor targetMask, Tensor tokens)
    {
        if (targetMask.dim() != 2 || targetMask.shape[0] != tokens.shape[0] || targetMask.shape[1] != tokens.shape[1])
            throw new ArgumentException($"targetMask must be [batch, pos] = [{tokens.shape[0]}, {tokens.shape[1]}] like the tokens (true = this token is a target), got [{string.Join(", ", targetMask.shape)}]; build it with TargetMaskFromAttentionMask or from the completion lengths.", nameof(targetMask));
    }

    /// <summary>
    /// Mean next-token cross-entropy, averaged over the target positions where <paramref name="targetMask"/> is set
    /// (all positions 1.. when null). A batch with no targets gives 0.
    /// </summary>
    public static Tensor Mean(Tensor logits, Tensor tokens, Tensor? targetMask = null)
    {
        using var scope = torch.NewDisposeScope();
        var perToken = PerToken(logits, tokens);                              // [batch, pos-1]
        Tensor loss;
        if (targetMask is null) loss = perToken.mean();
        else
        {
            var m = targetMask[.., 1..].to_type(perToken.dtype);
            loss = (perToken * m).sum() / m.sum().clamp_min(1);
        }
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The target mask of a padded batch: token i is a target when it and the token before it are real
    /// (<c>attentionMask[:, i] &amp;&amp; attentionMask[:, i - 1]</c>, TransformerLens' rule), so no prediction is made
    /// from or of padding. <paramref name="attentionMask"/>: [batch, pos], 1 = real, 0 = padding. Returns bool [batch, pos].
    /// </summary>
    public static Tensor TargetMaskFromAttentionMask(Tensor attentionMask)
    {
        ArgumentNullException.ThrowIfNull(attentionMask);
        if (attentionMask.dim() != 2)
            throw new ArgumentException($"attentionMask must be [batch, pos], got [{string.Join(", ", attentionMask.shape)}]; pass the tokenizer's TokenBatch.AttentionMask.", nameof(attentionMask));
        using var scope = torch.NewDisposeScope();
        var m = attentionMask.ne(0);
        var previous = torch.cat(new[] { torch.zeros(m.shape[0], 1, dtype: ScalarType.Bool, device: m.device), m[.., ..^1] }, 1);
        return m.logical_and(previous).MoveToOuterDisposeScope();
    }

    /// <summary>Number of target positions <see cref="Mean"/> averages over (a scalar tensor on the tokens' device).</summary>
    public static Tensor TargetCount(Tensor tokens, Tensor? targetMask = null)
    {
        if (targetMask is null)
            return torch.tensor((double)(tokens.shape[0] * Math.Max(0, tokens.shape[1] - 1)), dtype: ScalarType.Float32, device: tokens.device);
        using var scope = torch.NewDisposeScope();
        return targetMask[.., 1..].to_type(ScalarType.Float32).sum().MoveToOuterDisposeScope();
    }

    /// <summary>Fraction of target positions whose argmax prediction equals the target token (a scalar tensor; NaN with no targets).</summary>
    public static Tensor AccuracyTensor(Tensor logits, Tensor tokens, Tensor? targetMask = null)
    {
        using var scope = torch.NewDisposeScope();
        var correct = logits[.., ..^1].argmax(-1).eq(tokens[.., 1..].to_type(ScalarType.Int64));
        if (targetMask is null) return correct.to_type(ScalarType.Float64).mean().MoveToOuterDisposeScope();
        var m = targetMask[.., 1..].to_type(ScalarType.Float64);
        return ((correct.to_type(ScalarType.Float64) * m).sum() / m.sum()).MoveToOuterDisposeScope();
    }

    /// <summary>Fraction of target positions whose argmax prediction equals the target token (NaN with no targets).</summary>
    public static double Accuracy(Tensor logits, Tensor tokens, Tensor? targetMask = null)
    {
        using var a = AccuracyTensor(logits, tokens, targetMask);
        return a.item<double>();
    }

    /// <summary>Fraction of rows in which every target position is predicted correctly (argmax).</summary>
    public static double SequenceAccuracy(Tensor logits, Tensor tokens, Tensor targetMask)
    {
        using var scope = torch.NewDisposeScope();
        var correct = logits[.., ..^1].argmax(-1).eq(tokens[.., 1..].to_type(ScalarType.Int64));
        var m = targetMask[.., 1..].to_type(ScalarType.Bool);
        var rowOk = correct.logical_or(m.logical_not()).all(1);
        return rowOk.to_type(ScalarType.Float64).mean().item<double>();
    }
}
