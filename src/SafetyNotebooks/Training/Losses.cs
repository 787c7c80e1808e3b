using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Training;

/// <summary>
/// Next-token losses and metrics for models mapping tokens <c>[batch, pos]</c> to logits <c>[batch, pos, vocab]</c>.
/// <para><b>Mask convention</b> (used throughout the library): a target mask is aligned with the tokens,
/// <c>mask[b, i] = true</c> meaning "token i is a target, predicted by the logits at position i − 1".
/// Position 0 is never a target. This is TRL's <c>completion_mask</c> convention (aligned with input ids).</para>
/// </summary>
public static class Losses
{
    /// <summary>
    /// Mean cross-entropy of predicting <c>tokens[:, 1:]</c> from <c>logits[:, :-1]</c>, averaged over the
    /// target positions where <paramref name="targetMask"/> is set (all positions 1.. when null).
    /// </summary>
    public static Tensor NextTokenCrossEntropy(Tensor logits, Tensor tokens, Tensor? targetMask = null)
    {
        using var scope = torch.NewDisposeScope();
        var perToken = PerTokenNextTokenLoss(logits, tokens);            // [batch, pos-1]
        Tensor loss;
        if (targetMask is null) loss = perToken.mean();
        else
        {
            var m = targetMask[.., 1..].to_type(perToken.dtype);
            loss = (perToken * m).sum() / m.sum().clamp_min(1);
        }
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>Per-position loss <c>[batch, pos-1]</c>: entry i is −log p(tokens[:, i+1] | logits[:, i]).</summary>
    public static Tensor PerTokenNextTokenLoss(Tensor logits, Tensor tokens)
    {
        using var scope = torch.NewDisposeScope();
        var lp = logits[.., ..^1].log_softmax(-1);
        var tgt = tokens[.., 1..].to_type(ScalarType.Int64).unsqueeze(-1);
        return (-lp.gather(-1, tgt).squeeze(-1)).MoveToOuterDisposeScope();
    }

    /// <summary>Fraction of target positions whose argmax prediction equals the target token.</summary>
    public static double NextTokenAccuracy(Tensor logits, Tensor tokens, Tensor? targetMask = null)
    {
        using var scope = torch.NewDisposeScope();
        var correct = logits[.., ..^1].argmax(-1).eq(tokens[.., 1..].to_type(ScalarType.Int64));
        if (targetMask is null) return correct.to_type(ScalarType.Float64).mean().item<double>();
        var m = targetMask[.., 1..].to_type(ScalarType.Bool);
        double n = m.sum().item<long>();
        return n == 0 ? double.NaN : correct.logical_and(m).sum().item<long>() / n;
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
