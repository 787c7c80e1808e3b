using SafetyNotebooks.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment;

/// <summary>Scores complete sequences: int64 tokens <c>[rows, pos]</c> and their attention mask (1 = real) → rewards <c>[rows]</c>.
/// <see cref="RewardModel.forward(Tensor, Tensor?)"/> fits this shape.</summary>
public delegate Tensor SequenceScorer(Tensor tokens, Tensor attentionMask);

/// <summary>Output of <see cref="BestOfN.Sample"/>.</summary>
/// <param name="Tokens">int64 <c>[batch, pos]</c>: each prompt's best sample (prompt + completion, padded like the prompts, then right-padded).</param>
/// <param name="AttentionMask">int64 <c>[batch, pos]</c>, 1 = real token of <paramref name="Tokens"/>.</param>
/// <param name="Rewards">float <c>[batch]</c>: the best sample's reward.</param>
/// <param name="AllRewards">float <c>[batch, n]</c>: every sample's reward (sample j of prompt i is row i·n + j of the generation).</param>
/// <param name="BestIndex">int64 <c>[batch]</c>: which of the n samples won.</param>
public sealed record BestOfNResult(Tensor Tokens, Tensor AttentionMask, Tensor Rewards, Tensor AllRewards, Tensor BestIndex) : IDisposable
{
    /// <summary>Disposes the tensors.</summary>
    public void Dispose() { Tokens.Dispose(); AttentionMask.Dispose(); Rewards.Dispose(); AllRewards.Dispose(); BestIndex.Dispose(); }
}

/// <summary>
/// Best-of-n sampling, the inference-time alignment baseline (TRL's <c>BestOfNSampler</c>; Stiennon et al. 2020, Nakano
/// et al. 2021): draw n completions per prompt from the policy, score each, keep the highest. Its distribution
/// π_BoN moves away from π by at most <see cref="KlBound"/> = log n − (n−1)/n nats.
/// </summary>
public static class BestOfN
{
    /// <summary>
    /// The analytic KL(π_BoN ‖ π) = log n − (n − 1)/n (Stiennon et al. 2020; exact for continuous reward distributions
    /// without ties, an upper bound in general, Beirami et al. 2024).
    /// </summary>
    public static double KlBound(int n)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, $"n is {n}; best-of-n needs n ≥ 1 samples.");
        return Math.Log(n) - (n - 1.0) / n;
    }

    /// <summary>
    /// Samples <paramref name="n"/> completions for each prompt row with <see cref="Generation.Generate"/>
    /// (<paramref name="options"/> must sample; set its Seed for reproducible draws), scores the full sequences with
    /// <paramref name="scorer"/> and keeps each prompt's best (the first on ties). Prompts of different lengths are
    /// left-padded with their <paramref name="attentionMask"/>.
    /// </summary>
    public static BestOfNResult Sample(nn.Module<Tensor, Tensor> policy, Tensor promptTokens, int n, SequenceScorer scorer,
        GenerationOptions options, Tensor? attentionMask = null)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(promptTokens);
        ArgumentNullException.ThrowIfNull(scorer);
        ArgumentNullException.ThrowIfNull(options);
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, $"n is {n}; best-of-n needs n ≥ 1 samples.");
        if (!options.DoSample || options.NumBeams > 1)
            throw new ArgumentException("Best-of-n needs n independent samples, but the options are greedy or beam search; set DoSample = true and NumBeams = 1.", nameof(options));
        if (promptTokens.dim() == 1) promptTokens = promptTokens.unsqueeze(0);
        using var scope = torch.NewDisposeScope();
        long batch = promptTokens.shape[0];
        var prompts = promptTokens.repeat_interleave(n, 0);
        var promptMask = (attentionMask is null ? torch.ones(promptTokens.shape, dtype: ScalarType.Int64, device: promptTokens.device)
                                                : (attentionMask.dim() == 1 ? attentionMask.unsqueeze(0) : attentionMask).to_type(ScalarType.Int64))
                         .repeat_interleave(n, 0);
        using var generated = Generation.Generate(policy, prompts, options, attentionMask is null ? null : promptMask);
        var mask = torch.cat(new[] { promptMask, generated.GeneratedMask.to_type(ScalarType.Int64) }, 1);
        Tensor rewards;
        using (torch.no_grad()) rewards = scorer(generated.Tokens, mask).detach();
        if (rewards.dim() != 1 || rewards.shape[0] != batch * n)
            throw new ArgumentException($"The scorer returned [{string.Join(", ", rewards.shape)}] but must return one reward per sequence, [{batch * n}]; reduce per-token scores to a scalar per row.", nameof(scorer));
        var all = rewards.to_type(ScalarType.Float32).view(batch, n);
        var best = all.argmax(1);                                                  // first maximum on ties
        var rows = torch.arange(batch, dtype: ScalarType.Int64, device: best.device) * n + best;
        return new BestOfNResult(generated.Tokens.index_select(0, rows).MoveToOuterDisposeScope(),
            mask.index_select(0, rows).MoveToOuterDisposeScope(),
            all.gather(1, best.unsqueeze(1)).squeeze(1).MoveToOuterDisposeScope(),
            all.MoveToOuterDisposeScope(), best.MoveToOuterDisposeScope());
    }
}
