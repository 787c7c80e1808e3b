using Microsoft.Data.Analysis;
using SafetyNotebooks.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Interpretability;

/// <summary>
/// Direct logit attribution (DLA, ARENA 1.2 / Elhage et al. 2021) of a <b>logit difference</b>
/// <c>logit[correct] − logit[incorrect]</c> at one position: each residual-stream component c (a layer's attention or MLP output,
/// a head, a neuron, the embeddings) contributes <c>LN(c) · (W_U[:, correct] − W_U[:, incorrect])</c>, where LN is the
/// final norm applied linearly with the <b>cached</b> scale (<see cref="ActivationCache.ApplyLnToStack"/>). On top of
/// <see cref="ActivationCache.LogitAttrs"/>. Summed over a complete decomposition (<see cref="PerLayer"/>, or
/// <see cref="PerHead"/>/<see cref="PerNeuron"/> with their remainder) plus <see cref="ConstantTerm"/> the attributions equal
/// the model's logit difference exactly.
/// </summary>
/// <remarks>
/// Results are [components, batch] (or [components] after <see cref="ActivationCache.RemoveBatchDim"/>) with one label per
/// component. Tokens are per batch entry: a tensor [batch] of ids, or one id for every entry.
/// </remarks>
public static class DirectLogitAttribution
{
    static Tensor Ids(ActivationCache cache, Tensor ids, string name)
    {
        var t = ids.to_type(ScalarType.Int64);
        if (!cache.HasBatchDim)
        {
            if (t.dim() == 1 && t.shape[0] == 1) t = t.squeeze(0);
            if (t.dim() != 0) throw new ArgumentException($"DirectLogitAttribution: the cache has no batch dimension, so {name} must be one token id (a scalar tensor); got shape [{string.Join(", ", t.shape)}].", name);
            return t;
        }
        long batch = cache["embed"].shape[0];
        if (t.dim() == 0) t = t.expand(batch).contiguous();
        if (t.dim() != 1 || t.shape[0] != batch)
            throw new ArgumentException($"DirectLogitAttribution: {name} must hold one token id per batch entry ([{batch}]); got shape [{string.Join(", ", t.shape)}].", name);
        return t;
    }

    static (Tensor, string[]) Attribute(ActivationCache cache, (Tensor Stack, string[] Labels) stack, Tensor correct, Tensor incorrect, int position)
    {
        var c = Ids(cache, correct, nameof(correct));
        var i = Ids(cache, incorrect, nameof(incorrect));
        return cache.LogitAttrs(stack, c, i, posSlice: TensorIndex.Single(position));
    }

    /// <summary>
    /// DLA per layer component: <c>"embed"</c>, <c>"pos_embed"</c>, <c>"{l}_attn_out"</c>, <c>"{l}_mlp_out"</c> (from
    /// <see cref="ActivationCache.DecomposeResid"/>; biases stay inside attn_out/mlp_out). The components sum to the final residual.
    /// </summary>
    /// <param name="cache">The run's cache (needs embed, pos_embed, attn_out, mlp_out and ln_final.hook_scale).</param>
    /// <param name="correct">Correct token per batch entry, [batch] (or a scalar for all).</param>
    /// <param name="incorrect">Incorrect token per batch entry.</param>
    /// <param name="position">Position whose next-token logits are attributed (negative counts from the end).</param>
    public static (Tensor Attrs, string[] Labels) PerLayer(ActivationCache cache, Tensor correct, Tensor incorrect, int position = -1)
    {
        using var scope = NewDisposeScope();
        var (attrs, labels) = Attribute(cache, cache.DecomposeResid(posSlice: TensorIndex.Single(position)), correct, incorrect, position);
        return (attrs.MoveToOuterDisposeScope(), labels);
    }

    /// <summary>
    /// DLA per attention head (<c>"L{l}H{h}"</c>, from <see cref="ActivationCache.StackHeadResults"/>) plus, if
    /// <paramref name="inclRemainder"/>, a <c>"remainder"</c> (embeddings, MLPs and attention biases) so that the components sum
    /// to the final residual.
    /// </summary>
    /// <param name="cache">The run's cache (needs hook_result or hook_z of every layer, and ln_final.hook_scale).</param>
    /// <param name="correct">Correct token per batch entry.</param>
    /// <param name="incorrect">Incorrect token per batch entry.</param>
    /// <param name="position">Position whose next-token logits are attributed.</param>
    /// <param name="inclRemainder">Append the remainder component.</param>
    public static (Tensor Attrs, string[] Labels) PerHead(ActivationCache cache, Tensor correct, Tensor incorrect, int position = -1, bool inclRemainder = false)
    {
        using var scope = NewDisposeScope();
        var (attrs, labels) = Attribute(cache, cache.StackHeadResults(posSlice: TensorIndex.Single(position), inclRemainder: inclRemainder), correct, incorrect, position);
        return (attrs.MoveToOuterDisposeScope(), labels);
    }

    /// <summary>
    /// DLA per head as a [n_layers, n_heads] grid (batch-averaged) for a heatmap; entry [l, h] is head L{l}H{h}'s mean attribution.
    /// </summary>
    public static double[,] PerHeadGrid(ActivationCache cache, Tensor correct, Tensor incorrect, int position = -1)
    {
        using var scope = NewDisposeScope();
        var (attrs, _) = PerHead(cache, correct, incorrect, position);
        var mean = (attrs.dim() == 2 ? attrs.mean(new long[] { 1 }) : attrs).to_type(ScalarType.Float64).data<double>().ToArray();
        int nl = cache.Model.Cfg.NLayers, nh = cache.Model.Cfg.NHeads;
        var grid = new double[nl, nh];
        for (int l = 0; l < nl; l++) for (int h = 0; h < nh; h++) grid[l, h] = mean[l * nh + h];
        return grid;
    }

    /// <summary>
    /// DLA per MLP neuron (<c>"L{l}N{n}"</c>, from <see cref="ActivationCache.StackNeuronResults"/>) plus, if
    /// <paramref name="inclRemainder"/>, a <c>"remainder"</c> (embeddings, attention and MLP biases).
    /// </summary>
    /// <param name="cache">The run's cache (needs hook_post of every layer, and ln_final.hook_scale).</param>
    /// <param name="correct">Correct token per batch entry.</param>
    /// <param name="incorrect">Incorrect token per batch entry.</param>
    /// <param name="position">Position whose next-token logits are attributed.</param>
    /// <param name="inclRemainder">Append the remainder component.</param>
    public static (Tensor Attrs, string[] Labels) PerNeuron(ActivationCache cache, Tensor correct, Tensor incorrect, int position = -1, bool inclRemainder = false)
    {
        using var scope = NewDisposeScope();
        var (attrs, labels) = Attribute(cache, cache.StackNeuronResults(posSlice: TensorIndex.Single(position), inclRemainder: inclRemainder), correct, incorrect, position);
        return (attrs.MoveToOuterDisposeScope(), labels);
    }

    /// <summary>
    /// The part of the logit difference no component writes: <c>(b_U + ln_final.b · W_U)[correct] − (...)[incorrect]</c>,
    /// [batch] (the norm's bias term vanishes after <see cref="HookedTransformer.EnableCompatibilityMode"/>, which folds it into b_U).
    /// Σ attributions + this = <see cref="LogitDiff"/>.
    /// </summary>
    public static Tensor ConstantTerm(HookedTransformer model, Tensor correct, Tensor incorrect)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var bias = model.b_U.clone();
        if (model.ln_final?.b is { } b) bias = bias + matmul(b, model.W_U);
        var c = correct.to_type(ScalarType.Int64);
        var i = incorrect.to_type(ScalarType.Int64);
        return (bias[c] - bias[i]).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The model's logit difference at <paramref name="position"/>: <c>logits[b, position, correct[b]] − logits[b, position, incorrect[b]]</c>,
    /// [batch]. <paramref name="logits"/> is [batch, pos, d_vocab].
    /// </summary>
    public static Tensor LogitDiff(Tensor logits, Tensor correct, Tensor incorrect, int position = -1)
    {
        if (logits.dim() != 3) throw new ArgumentException($"LogitDiff needs logits [batch, pos, d_vocab]; got [{string.Join(", ", logits.shape)}].", nameof(logits));
        using var scope = NewDisposeScope();
        long batch = logits.shape[0];
        var at = logits.select(1, position);                                        // [batch, vocab]
        var c = correct.to_type(ScalarType.Int64).expand(batch).unsqueeze(1);
        var i = incorrect.to_type(ScalarType.Int64).expand(batch).unsqueeze(1);
        return (at.gather(1, c) - at.gather(1, i)).squeeze(1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// A table of the attributions, largest magnitude first: columns <c>component</c>, <c>attribution</c> (batch mean) and,
    /// for a batch, <c>std</c>. <paramref name="top"/> limits the rows (0 = all).
    /// </summary>
    public static DataFrame Table(Tensor attrs, string[] labels, int top = 0)
    {
        if (attrs.shape[0] != labels.Length)
            throw new ArgumentException($"DirectLogitAttribution.Table: {attrs.shape[0]} components but {labels.Length} labels; pass the labels returned with the attributions.", nameof(labels));
        using var scope = NewDisposeScope();
        var a = attrs.to_type(ScalarType.Float64).reshape(attrs.shape[0], -1);
        var mean = a.mean(new long[] { 1 }).data<double>().ToArray();
        var std = a.shape[1] > 1 ? a.std(1).data<double>().ToArray() : null;
        var order = Enumerable.Range(0, labels.Length).OrderByDescending(i => Math.Abs(mean[i])).ToArray();
        if (top > 0) order = order.Take(top).ToArray();
        var cols = new List<DataFrameColumn>
        {
            new StringDataFrameColumn("component", order.Select(i => labels[i])),
            new DoubleDataFrameColumn("attribution", order.Select(i => mean[i])),
        };
        if (std is not null) cols.Add(new DoubleDataFrameColumn("std", order.Select(i => std[i])));
        return new DataFrame(cols);
    }
}
