using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment;

/// <summary>
/// The advantage estimators and masked statistics every policy-gradient method here shares (PPO on CartPole, PPO-RLHF,
/// GRPO/RLOO whitening): generalized advantage estimation (Schulman et al. 2016) and TRL's masked mean/variance/whitening.
/// Time runs along dimension 1: tensors are <c>[batch, T]</c> (environments × steps, or sequences × generated tokens).
/// </summary>
public static class Advantages
{
    /// <summary>
    /// Generalized advantage estimation, computed backwards in time:
    /// <c>δₜ = rₜ + γ·Vₜ₊₁·(1 − doneₜ) − Vₜ</c> and <c>Aₜ = δₜ + γλ·(1 − doneₜ)·Aₜ₊₁</c>, with <c>V_T</c> =
    /// <paramref name="nextValue"/> (the bootstrap value after the last step; zeros when every episode ended) and
    /// returns <c>Aₜ + Vₜ</c> (the value targets). <paramref name="dones"/>[b, t] is true when the episode ended with
    /// step t, so nothing flows back across an episode boundary (null: no boundaries inside the window).
    /// <para>For RLHF (TRL's PPO) pass the per-token rewards and values with padding positions already set to 0,
    /// <paramref name="nextValue"/> null (zeros) and no dones: that is exactly TRL's loop.</para>
    /// Returns <c>(advantages, returns)</c>, both <c>[batch, T]</c>, detached from autograd.
    /// </summary>
    public static (Tensor Advantages, Tensor Returns) Gae(Tensor rewards, Tensor values, double gamma, double lambda,
        Tensor? nextValue = null, Tensor? dones = null)
    {
        ArgumentNullException.ThrowIfNull(rewards);
        ArgumentNullException.ThrowIfNull(values);
        if (rewards.dim() != 2 || !rewards.shape.SequenceEqual(values.shape))
            throw new ArgumentException($"GAE needs rewards and values of the same shape [batch, T], got rewards [{string.Join(", ", rewards.shape)}] and values [{string.Join(", ", values.shape)}]; add a batch dimension with unsqueeze(0) for one trajectory.");
        if (dones is not null && !dones.shape.SequenceEqual(rewards.shape))
            throw new ArgumentException($"GAE: dones must be [batch, T] = [{string.Join(", ", rewards.shape)}] like the rewards, got [{string.Join(", ", dones.shape)}].", nameof(dones));
        if (nextValue is not null && (nextValue.dim() != 1 || nextValue.shape[0] != rewards.shape[0]))
            throw new ArgumentException($"GAE: nextValue must be [batch] = [{rewards.shape[0]}] (the value of the state after the last step), got [{string.Join(", ", nextValue.shape)}].", nameof(nextValue));
        if (!(gamma >= 0 && gamma <= 1) || !(lambda >= 0 && lambda <= 1))
            throw new ArgumentException($"GAE: gamma and lambda must lie in [0, 1], got gamma {gamma} and lambda {lambda}.");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        long batch = rewards.shape[0], steps = rewards.shape[1];
        var r = rewards.detach().to_type(ScalarType.Float32);
        var v = values.detach().to_type(ScalarType.Float32);
        var notDone = dones is null ? torch.ones_like(r) : dones.logical_not().to_type(ScalarType.Float32);
        var next = nextValue is null ? torch.zeros(batch, device: r.device) : nextValue.detach().to_type(ScalarType.Float32);
        var last = torch.zeros(batch, device: r.device);
        var columns = new Tensor[steps];
        for (long t = steps - 1; t >= 0; t--)
        {
            var nd = notDone[.., t];
            var delta = r[.., t] + gamma * next * nd - v[.., t];
            last = delta + gamma * lambda * nd * last;
            columns[t] = last;
            next = v[.., t];
        }
        var advantages = steps == 0 ? torch.zeros_like(r) : torch.stack(columns, 1);
        var returns = advantages + v;
        return (advantages.to_type(rewards.dtype).MoveToOuterDisposeScope(), returns.to_type(rewards.dtype).MoveToOuterDisposeScope());
    }

    /// <summary>Mean of <paramref name="values"/> over the entries where <paramref name="mask"/> is set (all when null); TRL's <c>masked_mean</c>.</summary>
    public static Tensor MaskedMean(Tensor values, Tensor? mask = null)
    {
        if (mask is null) return values.mean();
        CheckMask(values, mask);
        using var scope = torch.NewDisposeScope();
        var m = mask.to_type(values.dtype);
        return ((values * m).sum() / m.sum()).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Variance over the masked entries with Bessel's correction (n/(n−1)), as TRL's <c>masked_var(unbiased=True)</c>.
    /// Throws when fewer than two entries are selected (the unbiased variance is undefined).
    /// </summary>
    public static Tensor MaskedVariance(Tensor values, Tensor? mask = null)
    {
        using var scope = torch.NewDisposeScope();
        var m = mask is null ? torch.ones_like(values) : mask.to_type(values.dtype);
        if (mask is not null) CheckMask(values, mask);
        double n = m.sum().item<float>();
        if (n < 2) throw new ArgumentException($"The unbiased variance needs at least 2 selected entries, the mask selects {n}; use a larger batch (whitening one value is undefined).");
        var mean = (values * m).sum() / n;
        var centered = (values - mean) * m;
        return ((centered * centered).sum() / n * (n / (n - 1))).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Whitens <paramref name="values"/> over the masked entries: <c>(x − mean)/√(var + 1e−8)</c> (unbiased variance),
    /// adding the mean back when <paramref name="shiftMean"/> is false (TRL's <c>masked_whiten</c>, used for advantages
    /// with <c>shiftMean: true</c> and rewards with <c>false</c>). Entries outside the mask are returned as computed (callers
    /// mask them again); the result is detached only if the input is.
    /// </summary>
    public static Tensor MaskedWhiten(Tensor values, Tensor? mask = null, bool shiftMean = true)
    {
        using var scope = torch.NewDisposeScope();
        var mean = MaskedMean(values, mask);
        var variance = MaskedVariance(values, mask);
        var whitened = (values - mean) * torch.rsqrt(variance + 1e-8);
        if (!shiftMean) whitened = whitened + mean;
        return whitened.MoveToOuterDisposeScope();
    }

    static void CheckMask(Tensor values, Tensor mask)
    {
        if (!mask.shape.SequenceEqual(values.shape))
            throw new ArgumentException($"The mask must have the values' shape [{string.Join(", ", values.shape)}], got [{string.Join(", ", mask.shape)}]; build it from the same padded batch.", nameof(mask));
    }
}
