using SafetyNotebooks.Models;
using static TorchSharp.torch;

namespace SafetyNotebooks.Interpretability;

/// <summary>
/// Ablation hooks for <see cref="HookedTransformer.RunWithHooks(Tensor, ValueTuple{string, Func{Tensor, HookPoint, Tensor}}[])"/>
/// and <see cref="HookedTransformer.Hooks(ValueTuple{string, Func{Tensor, HookPoint, Tensor}}[])"/>: knock out one attention
/// head (its <c>hook_z</c>, [batch, pos, head, d_head]) or one MLP neuron (<c>mlp.hook_post</c>, [batch, pos, d_mlp]) by
/// setting it to zero, to its mean over a reference batch, or to its value on another (resampled) prompt.
/// </summary>
/// <remarks>
/// Each method returns a <c>(Name, Hook)</c> pair with the full hook name. Mean and resample ablations read the reference
/// activations from an <see cref="ActivationCache"/> of a reference batch (same sequence length as the ablated run; mean
/// ablation can also average over positions). Resampling draws, for every row of the ablated batch, one row of the reference
/// batch with its own seeded generator, so the same seed always picks the same rows.
/// </remarks>
public static class Ablation
{
    /// <summary>How an ablated activation is replaced.</summary>
    public enum Kind
    {
        /// <summary>Set to zero.</summary>
        Zero,
        /// <summary>Set to the reference batch's mean (per position, or over positions too).</summary>
        Mean,
        /// <summary>Set to the activation of a randomly drawn (seeded) prompt of the reference batch.</summary>
        Resample,
    }

    /// <summary>Zero-ablates head <paramref name="head"/> of layer <paramref name="layer"/> (its z at every position).</summary>
    public static (string Name, Func<Tensor, HookPoint, Tensor?> Hook) ZeroHead(int layer, int head) =>
        (Utils.GetActName("z", layer), (z, hp) => Replace(z, hp, 2, [head], (_, _) => null));

    /// <summary>Zero-ablates neuron <paramref name="neuron"/> of layer <paramref name="layer"/>'s MLP (its <c>hook_post</c>).</summary>
    public static (string Name, Func<Tensor, HookPoint, Tensor?> Hook) ZeroNeuron(int layer, int neuron) =>
        (Utils.GetActName("post", layer), (x, hp) => Replace(x, hp, 2, [neuron], (_, _) => null));

    /// <summary>
    /// Mean-ablates a head: z of head <paramref name="head"/> becomes its mean over the reference batch in
    /// <paramref name="reference"/> (per position; over positions too with <paramref name="overPositions"/>).
    /// With <paramref name="referenceMask"/> ([batch, pos], 1 = real token, 0 = padding; the mask the reference batch was run
    /// with) the mean is over real tokens only, so padding never leaks into the ablation value.
    /// </summary>
    public static (string Name, Func<Tensor, HookPoint, Tensor?> Hook) MeanHead(int layer, int head, ActivationCache reference, bool overPositions = false,
        Tensor? referenceMask = null) =>
        MeanHeads(layer, [head], reference, overPositions, referenceMask);

    /// <summary>Mean-ablates several heads of one layer with one hook (see <see cref="MeanHead"/>).</summary>
    public static (string Name, Func<Tensor, HookPoint, Tensor?> Hook) MeanHeads(int layer, IReadOnlyList<int> heads, ActivationCache reference, bool overPositions = false,
        Tensor? referenceMask = null)
    {
        var name = Utils.GetActName("z", layer);
        var mean = MeanOf(reference, name, overPositions, referenceMask);                       // [1, pos or 1, head, d_head]
        return (name, (z, hp) => Replace(z, hp, 2, heads, (x, _) => mean.to(x.dtype).expand_as(x)));
    }

    /// <summary>Mean-ablates an MLP neuron: its <c>hook_post</c> becomes its mean over the reference batch (see <see cref="MeanHead"/>).</summary>
    public static (string Name, Func<Tensor, HookPoint, Tensor?> Hook) MeanNeuron(int layer, int neuron, ActivationCache reference, bool overPositions = false,
        Tensor? referenceMask = null)
    {
        var name = Utils.GetActName("post", layer);
        var mean = MeanOf(reference, name, overPositions, referenceMask);                       // [1, pos or 1, d_mlp]
        return (name, (x, hp) => Replace(x, hp, 2, [neuron], (a, _) => mean.to(a.dtype).expand_as(a)));
    }

    /// <summary>
    /// Resample-ablates a head: for each row of the ablated batch, z of head <paramref name="head"/> is taken from a row of
    /// the reference batch drawn with <paramref name="seed"/> (the draw is the same for every forward pass of this hook).
    /// </summary>
    public static (string Name, Func<Tensor, HookPoint, Tensor?> Hook) ResampleHead(int layer, int head, ActivationCache reference, int seed)
    {
        var name = Utils.GetActName("z", layer);
        var source = ReferenceOf(reference, name);
        return (name, (z, hp) => Replace(z, hp, 2, [head], (x, _) => Draw(source, x, seed)));
    }

    /// <summary>Resample-ablates an MLP neuron (see <see cref="ResampleHead"/>).</summary>
    public static (string Name, Func<Tensor, HookPoint, Tensor?> Hook) ResampleNeuron(int layer, int neuron, ActivationCache reference, int seed)
    {
        var name = Utils.GetActName("post", layer);
        var source = ReferenceOf(reference, name);
        return (name, (x, hp) => Replace(x, hp, 2, [neuron], (a, _) => Draw(source, a, seed)));
    }

    /// <summary>
    /// The reference rows resampling uses for a batch of <paramref name="batch"/> rows with <paramref name="seed"/>:
    /// row i of the ablated batch reads reference row <c>result[i]</c> (uniform with replacement, from .NET's seeded <see cref="Random"/>).
    /// </summary>
    public static int[] ResampleRows(int batch, int referenceBatch, int seed)
    {
        if (referenceBatch <= 0) throw new ArgumentException("The reference batch is empty; cache a batch of at least one prompt to resample from.", nameof(referenceBatch));
        var rng = new Random(seed);
        return Enumerable.Range(0, batch).Select(_ => rng.Next(referenceBatch)).ToArray();
    }

    /// <summary>
    /// Hooks that mean-ablate every attention head except <paramref name="keep"/> (one hook per layer on <c>hook_z</c>), for
    /// circuit faithfulness checks: run the model with them and compare the metric with the full model's.
    /// </summary>
    /// <param name="model">The model (for the number of layers and heads).</param>
    /// <param name="keep">Heads left intact, as (layer, head).</param>
    /// <param name="reference">A cache of the reference batch holding every layer's <c>hook_z</c>.</param>
    /// <param name="overPositions">Average over positions too (needed when the reference prompts have another length).</param>
    /// <param name="referenceMask">The reference batch's attention mask ([batch, pos], 1 = real); null: every position is real.</param>
    public static (string Name, Func<Tensor, HookPoint, Tensor?> Hook)[] MeanAblateAllHeadsExcept(HookedTransformer model,
        IEnumerable<(int Layer, int Head)> keep, ActivationCache reference, bool overPositions = false, Tensor? referenceMask = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var kept = keep.ToHashSet();
        foreach (var (l, h) in kept)
            if (l < 0 || l >= model.Cfg.NLayers || h < 0 || h >= model.Cfg.NHeads)
                throw new ArgumentOutOfRangeException(nameof(keep), $"Head L{l}H{h} does not exist: layers are 0…{model.Cfg.NLayers - 1}, heads 0…{model.Cfg.NHeads - 1}.");
        var hooks = new List<(string, Func<Tensor, HookPoint, Tensor?>)>();
        for (int l = 0; l < model.Cfg.NLayers; l++)
        {
            var ablated = Enumerable.Range(0, model.Cfg.NHeads).Where(h => !kept.Contains((l, h))).ToArray();
            if (ablated.Length > 0) hooks.Add(MeanHeads(l, ablated, reference, overPositions, referenceMask));
        }
        return hooks.ToArray();
    }

    /// <summary>
    /// Clones <paramref name="x"/> and overwrites entries <paramref name="indices"/> of dimension <paramref name="dim"/> with
    /// <paramref name="value"/>(x, hook) (null: zero), checking the indices against the activation.
    /// </summary>
    static Tensor Replace(Tensor x, HookPoint hp, int dim, IReadOnlyList<int> indices, Func<Tensor, HookPoint, Tensor?> value)
    {
        if (x.dim() <= dim)
            throw new InvalidOperationException($"The ablation hook on '{hp.Name}' expected an activation with at least {dim + 1} dimensions but got [{string.Join(", ", x.shape)}]; " +
                "attach head ablations to hook_z and neuron ablations to mlp.hook_post.");
        var y = x.clone();
        var v = value(x, hp);
        foreach (var i in indices)
        {
            if (i < 0 || i >= x.shape[dim])
                throw new InvalidOperationException($"The ablation hook on '{hp.Name}' got index {i}, but the activation [{string.Join(", ", x.shape)}] has {x.shape[dim]} entries on dimension {dim}; " +
                    "use a head below n_heads (hook_z) or a neuron below d_mlp (mlp.hook_post).");
            var slot = y.narrow(dim, i, 1);
            if (v is null) slot.zero_();
            else slot.copy_(v.narrow(dim, i, 1));
        }
        return y;
    }

    static Tensor ReferenceOf(ActivationCache reference, string name)
    {
        ArgumentNullException.ThrowIfNull(reference);
        if (!reference.Contains(name))
            throw new ArgumentException($"The reference cache has no '{name}'; cache the reference batch with model.RunWithCache(referenceTokens) (or a namesFilter that keeps it).", nameof(reference));
        return reference[name];
    }

    static Tensor MeanOf(ActivationCache reference, string name, bool overPositions, Tensor? mask = null)
    {
        var r = ReferenceOf(reference, name);
        using var noGrad = no_grad();
        var dims = overPositions ? new long[] { 0, 1 } : new long[] { 0 };
        if (mask is null) return r.mean(dims, keepdim: true).DetachFromDisposeScope();   // kept alive by the hook's closure
        if (mask.dim() != 2 || mask.shape[0] != r.shape[0] || mask.shape[1] != r.shape[1])
            throw new ArgumentException($"The reference mask must be [batch, pos] = [{r.shape[0]}, {r.shape[1]}] like the reference batch's '{name}' " +
                $"[{string.Join(", ", r.shape)}], but it is [{string.Join(", ", mask.shape)}]; pass the attention mask the reference prompts were run with.", nameof(mask));
        using var scope = NewDisposeScope();
        // Weights [batch, pos, 1, …]: 1 on real tokens, 0 on padding; the mean is Σ w·x / Σ w over the averaged dimensions.
        var w = mask.to(r.dtype).to(r.device).reshape(new long[] { r.shape[0], r.shape[1] }.Concat(Enumerable.Repeat(1L, (int)r.dim() - 2)).ToArray());
        var count = w.sum(dims, keepdim: true);
        if (count.min().item<float>() <= 0)
            throw new ArgumentException(overPositions
                ? "The reference mask marks no real token at all; at least one reference prompt needs a real token."
                : $"Some position holds only padding in every reference prompt (mask column sums: {string.Join(", ", mask.to_type(ScalarType.Int64).sum(new long[] { 0 }).data<long>().ToArray())}), so its " +
                  "per-position mean is undefined; pass overPositions: true, or pad the reference prompts on the other side.", nameof(mask));
        return ((r * w).sum(dims, keepdim: true) / count).MoveToOuterDisposeScope().DetachFromDisposeScope();
    }

    static Tensor Draw(Tensor source, Tensor x, int seed)
    {
        if (source.dim() != x.dim() || !source.shape.Skip(1).SequenceEqual(x.shape.Skip(1)))
            throw new InvalidOperationException($"Resampling needs reference activations shaped like the ablated ones apart from the batch: reference [{string.Join(", ", source.shape)}], " +
                $"ablated [{string.Join(", ", x.shape)}]; cache reference prompts of the same length (pad them), or use mean ablation with overPositions.");
        var rows = ResampleRows((int)x.shape[0], (int)source.shape[0], seed);
        using var idx = tensor(rows.Select(i => (long)i).ToArray(), device: source.device);
        return source.index_select(0, idx).to(x.dtype).to(x.device);
    }
}
