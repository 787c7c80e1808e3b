using SafetyNotebooks.Models;
using static TorchSharp.torch;

namespace SafetyNotebooks.Sae;

/// <summary>
/// Running a <see cref="HookedTransformer"/> with an SAE spliced in at a hook point (SAELens' <c>HookedSAETransformer</c>
/// <c>run_with_saes</c>): the activation is replaced by the SAE's reconstruction, optionally plus its error term so the model's
/// output is unchanged while hooks on the SAE's own points (<c>hook_sae_acts_post</c>, …) steer or ablate features inside the run.
/// <code>
/// sae.AddHook("hook_sae_acts_post", SaeSplicing.AblateFeatures(3, 17));       // ablate two features
/// var logits = SaeSplicing.RunWithSae(model, tokens, sae, useErrorTerm: true);  // the model, minus those features
/// sae.ResetHooks();
/// </code>
/// Activations shaped <c>[..., n_heads, d_head]</c> (e.g. <c>hook_z</c>) are flattened to <c>[..., n_heads·d_head]</c> for the SAE and
/// reshaped back; with <see cref="SaeConfig.HookHeadIndex"/> only that head is replaced.
/// </summary>
public static class SaeSplicing
{
    /// <summary>The hook to splice at: <paramref name="hookName"/>, else the SAE's <see cref="SaeConfig.HookName"/>.</summary>
    public static string ResolveHook(SparseAutoencoder sae, string? hookName) =>
        hookName ?? sae.Cfg.HookName ?? throw new ArgumentException("The SAE has no hook_name; pass hookName (e.g. \"blocks.0.hook_resid_pre\") or set SaeConfig.HookName.", nameof(hookName));

    /// <summary>
    /// The activation with the SAE's output in place of the input (<see cref="SparseAutoencoder.forward"/>, with the error term if
    /// asked), in the activation's shape and dtype. SAE hooks run.
    /// </summary>
    public static Tensor Replace(SparseAutoencoder sae, Tensor activation, bool useErrorTerm = false)
    {
        ArgumentNullException.ThrowIfNull(sae);
        ArgumentNullException.ThrowIfNull(activation);
        long dIn = sae.Cfg.DIn;
        bool was = sae.UseErrorTerm;
        sae.UseErrorTerm = useErrorTerm;
        try
        {
            if (sae.Cfg.HookHeadIndex is { } head)
            {
                if (activation.dim() < 2 || activation.shape[^1] != dIn || head >= activation.shape[^2])
                    throw new ArgumentException($"The SAE reads head {head} (d_in {dIn}) but the activation is [{string.Join(", ", activation.shape)}]; splice it at a per-head hook such as blocks.L.attn.hook_z.");
                var outHead = sae.forward(activation.select(-2, head)).to_type(activation.dtype);
                var heads = Enumerable.Range(0, (int)activation.shape[^2])
                    .Select(h => h == head ? outHead : activation.select(-2, h)).ToArray();
                return stack(heads, -2);
            }
            if (activation.shape[^1] == dIn) return sae.forward(activation).to_type(activation.dtype);
            if (activation.dim() >= 2 && activation.shape[^1] * activation.shape[^2] == dIn)
                return sae.forward(activation.flatten(-2)).to_type(activation.dtype).view(activation.shape);
            throw new ArgumentException($"The activation [{string.Join(", ", activation.shape)}] does not fit an SAE with d_in = {dIn}; splice it at the hook it was trained on ({sae.Cfg.HookName ?? "its hook_name"}).");
        }
        finally { sae.UseErrorTerm = was; }
    }

    /// <summary>A model hook that splices <paramref name="sae"/> in (for <see cref="HookedTransformer.RunWithHooks(Tensor, ValueTuple{string, Func{Tensor, HookPoint, Tensor}}[])"/> or <see cref="HookedTransformer.Hooks(ValueTuple{string, Func{Tensor, HookPoint, Tensor}}[])"/>).</summary>
    public static Func<Tensor, HookPoint, Tensor?> SpliceHook(SparseAutoencoder sae, bool useErrorTerm = false) =>
        (x, _) => Replace(sae, x, useErrorTerm);

    /// <summary>Logits <c>[batch, pos, d_vocab]</c> of the model with the SAE spliced in at <paramref name="hookName"/> (default: the SAE's hook).</summary>
    public static Tensor RunWithSae(HookedTransformer model, Tensor tokens, SparseAutoencoder sae, string? hookName = null, bool useErrorTerm = false, Tensor? attentionMask = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.RunWithHooks(tokens, attentionMask, (ResolveHook(sae, hookName), SpliceHook(sae, useErrorTerm)));
    }

    /// <summary>
    /// Runs the model with the SAE spliced in and returns the logits and the SAE's activations of this run, detached, by full name
    /// (<c>{hook}.hook_sae_input</c>, <c>.hook_sae_acts_pre</c>, <c>.hook_sae_acts_post</c>, <c>.hook_sae_recons</c>, <c>.hook_sae_output</c>,
    /// and <c>.hook_sae_error</c> with the error term), as SAELens' <c>run_with_cache_with_saes</c>. Dispose the tensors when done.
    /// </summary>
    public static (Tensor Logits, Dictionary<string, Tensor> SaeCache) RunWithSaeCache(HookedTransformer model, Tensor tokens, SparseAutoencoder sae,
        string? hookName = null, bool useErrorTerm = false, Tensor? attentionMask = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var hook = ResolveHook(sae, hookName);
        var store = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var added = new List<(HookPoint, Func<Tensor, HookPoint, Tensor?>)>();
        try
        {
            foreach (var (local, hp) in sae.HookPoints)
            {
                string full = hook + "." + local;
                Func<Tensor, HookPoint, Tensor?> fn = (x, _) =>
                {
                    if (store.Remove(full, out var old)) old.Dispose();
                    store[full] = x.detach().clone().DetachFromDisposeScope();
                    return null;
                };
                hp.AddHook(fn);
                added.Add((hp, fn));
            }
            return (RunWithSae(model, tokens, sae, hook, useErrorTerm, attentionMask), store);
        }
        catch
        {
            foreach (var t in store.Values) t.Dispose();
            throw;
        }
        finally
        {
            foreach (var (hp, fn) in added) hp.RemoveHook(fn);
        }
    }

    /// <summary>A hook for <c>hook_sae_acts_post</c> that sets the given features' activations to 0 (zero-ablation).</summary>
    public static Func<Tensor, HookPoint, Tensor?> AblateFeatures(params int[] features) => (acts, _) =>
    {
        var edited = acts.clone();
        foreach (var f in features) edited.select(-1, CheckFeature(f, acts)).zero_();
        return edited;
    };

    /// <summary>A hook for <c>hook_sae_acts_post</c> that clamps one feature's activation to <paramref name="value"/> on every token.</summary>
    public static Func<Tensor, HookPoint, Tensor?> ClampFeature(int feature, double value) => (acts, _) =>
    {
        var edited = acts.clone();
        edited.select(-1, CheckFeature(feature, acts)).fill_(value);
        return edited;
    };

    /// <summary>A hook for <c>hook_sae_acts_post</c> that adds <paramref name="delta"/> to one feature's activation on every token.</summary>
    public static Func<Tensor, HookPoint, Tensor?> AddToFeature(int feature, double delta) => (acts, _) =>
    {
        var edited = acts.clone();
        edited.select(-1, CheckFeature(feature, acts)).add_(delta);
        return edited;
    };

    /// <summary>
    /// A model hook (no splice needed) that steers along a feature: adds <paramref name="coefficient"/>·W_dec[feature] to the
    /// activation at every position (activation steering with an SAE feature direction).
    /// </summary>
    public static Func<Tensor, HookPoint, Tensor?> SteeringHook(SparseAutoencoder sae, int feature, double coefficient)
    {
        ArgumentNullException.ThrowIfNull(sae);
        var direction = sae.FeatureDirection(feature);
        return (x, _) =>
        {
            var d = direction.to(x.device).to_type(x.dtype) * coefficient;
            if (x.shape[^1] == d.shape[0]) return x + d;
            if (x.dim() >= 2 && x.shape[^1] * x.shape[^2] == d.shape[0]) return x + d.view(x.shape[^2], x.shape[^1]);
            throw new ArgumentException($"Cannot steer an activation [{string.Join(", ", x.shape)}] with a feature of width {d.shape[0]}; put the hook on the SAE's hook point ({sae.Cfg.HookName}).");
        };
    }

    static long CheckFeature(int f, Tensor acts)
    {
        if (f < 0 || f >= acts.shape[^1])
            throw new ArgumentOutOfRangeException(nameof(f), $"Feature {f} does not exist; the SAE has {acts.shape[^1]} features (0..{acts.shape[^1] - 1}).");
        return f;
    }
}
