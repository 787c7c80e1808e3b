using Microsoft.Data.Analysis;
using SafetyNotebooks.Models;
using SafetyNotebooks.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Interpretability;

/// <summary>How the logit lens normalizes an intermediate residual stream before the unembedding.</summary>
public enum LensNorm
{
    /// <summary>
    /// Normalize every layer's residual with its own statistics through the full <c>ln_final</c> (weight and bias), as
    /// TransformerLens 3's <c>accumulated_resid(apply_ln=True)</c>: each layer is read as if it were the final residual.
    /// </summary>
    RecomputeLn,
    /// <summary>
    /// Divide every layer by the <b>cached</b> final-norm scale of the real final residual (TransformerLens'
    /// <c>apply_ln_to_stack</c>), then add the norm's bias. Linear in the residual, so it matches direct logit attribution;
    /// intermediate layers are smaller than the final one, so their logits are flatter than with <see cref="RecomputeLn"/>.
    /// </summary>
    CachedScale,
}

/// <summary>
/// The logit lens (nostalgebraist 2020; ARENA 1.2): read the accumulated residual stream before each layer through the final
/// norm and the unembedding, <c>logits_l = LN(resid_pre_l) · W_U + b_U</c>, to see when the model's prediction forms.
/// Built on <see cref="ActivationCache.AccumulatedResid"/>; the last entry (<c>"final_post"</c>) is the model's own logits.
/// </summary>
public static class LogitLens
{
    /// <summary>
    /// Per-layer logits of the accumulated residual stream, [components, batch, pos, d_vocab] (or without pos when
    /// <paramref name="posSlice"/> is a single index, without batch after <see cref="ActivationCache.RemoveBatchDim"/>),
    /// with labels <c>"0_pre"</c>, ..., <c>"final_post"</c>. A new tensor owned by the caller.
    /// </summary>
    /// <param name="cache">A cache holding <c>resid_pre</c> of every layer and the final <c>resid_post</c> (and <c>ln_final.hook_scale</c> for <see cref="LensNorm.CachedScale"/>).</param>
    /// <param name="norm">How to normalize each layer (see <see cref="LensNorm"/>).</param>
    /// <param name="posSlice">Positions to keep (e.g. <c>TensorIndex.Single(-1)</c> for the last); null keeps all.</param>
    /// <param name="inclMid">Also read <c>resid_mid</c> (between attention and MLP) of every layer.</param>
    public static (Tensor Logits, string[] Labels) Logits(ActivationCache cache, LensNorm norm = LensNorm.RecomputeLn, TensorIndex? posSlice = null, bool inclMid = false)
    {
        ArgumentNullException.ThrowIfNull(cache);
        var model = cache.Model;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        Tensor normed;
        string[] labels;
        if (norm == LensNorm.RecomputeLn)
            (normed, labels) = cache.AccumulatedResid(applyLn: true, posSlice: posSlice, inclMid: inclMid);
        else
        {
            var (raw, l) = cache.AccumulatedResid(applyLn: false, posSlice: posSlice, inclMid: inclMid);
            labels = l;
            normed = cache.ApplyLnToStack(raw, null, posSlice: posSlice);
            if (model.ln_final?.b is { } b) normed = normed + b;
        }
        var logits = matmul(normed, model.W_U) + model.b_U;
        return (logits.MoveToOuterDisposeScope(), labels);
    }

    /// <summary>
    /// The rank of each token among the vocabulary (0 = the top token, as TransformerLens' <c>test_prompt</c>): the number
    /// of tokens with a strictly larger logit. <paramref name="logits"/> [..., d_vocab], <paramref name="tokens"/> [...]; returns [...] Int64.
    /// </summary>
    public static Tensor Ranks(Tensor logits, Tensor tokens)
    {
        using var scope = NewDisposeScope();
        var target = logits.gather(-1, tokens.to_type(ScalarType.Int64).unsqueeze(-1));   // [..., 1]
        return (logits > target).sum(-1).to_type(ScalarType.Int64).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The logit lens for one token at one position: for every layer, its logit, probability and rank, and the top token.
    /// Columns: <c>layer</c>, <c>logit</c>, <c>prob</c>, <c>rank</c> (0 = top), <c>top_token</c>, <c>top_prob</c>.
    /// </summary>
    /// <param name="cache">The run's cache (see <see cref="Logits"/>).</param>
    /// <param name="target">Token id to follow.</param>
    /// <param name="position">Position whose next-token prediction is read (negative counts from the end).</param>
    /// <param name="batchIndex">Sequence of the batch (ignored after <see cref="ActivationCache.RemoveBatchDim"/>).</param>
    /// <param name="norm">How to normalize each layer.</param>
    /// <param name="tokenizer">Decodes the top tokens; null shows ids.</param>
    public static DataFrame TargetTable(ActivationCache cache, int target, int position = -1, int batchIndex = 0, LensNorm norm = LensNorm.RecomputeLn,
        ITokenizer? tokenizer = null)
    {
        ArgumentNullException.ThrowIfNull(cache);
        int vocab = cache.Model.Cfg.DVocab;
        if (target < 0 || target >= vocab)
            throw new ArgumentOutOfRangeException(nameof(target), $"LogitLens.TargetTable: target token {target} is outside the vocabulary [0, {vocab}); pass a token id of this model.");
        using var scope = NewDisposeScope();
        var (logits, labels) = Logits(cache, norm, TensorIndex.Single(position));   // [c, batch, vocab] or [c, vocab]
        if (logits.dim() == 3)
        {
            if (batchIndex < 0 || batchIndex >= logits.shape[1])
                throw new ArgumentOutOfRangeException(nameof(batchIndex), $"LogitLens.TargetTable: batchIndex {batchIndex} is outside the batch of {logits.shape[1]}.");
            logits = logits.select(1, batchIndex);
        }
        logits = logits.to_type(ScalarType.Float64);
        var probs = logits.softmax(-1);
        var tgt = full(logits.shape[0], (long)target, dtype: ScalarType.Int64);
        var ranks = Ranks(logits, tgt).data<long>().ToArray();
        var tl = logits.select(1, target).data<double>().ToArray();
        var tp = probs.select(1, target).data<double>().ToArray();
        var (topP, topI) = probs.max(1);
        var topIds = topI.data<long>().ToArray();
        return new DataFrame(
            new StringDataFrameColumn("layer", labels),
            new DoubleDataFrameColumn("logit", tl),
            new DoubleDataFrameColumn("prob", tp),
            new Int64DataFrameColumn("rank", ranks),
            new StringDataFrameColumn("top_token", topIds.Select(i => tokenizer is null ? i.ToString() : tokenizer.Decode(new[] { (int)i }))),
            new DoubleDataFrameColumn("top_prob", topP.data<double>().ToArray()));
    }

    /// <summary>
    /// Probability of each position's <b>next</b> token at every layer, [components, pos − 1] for one sequence: entry [l, p]
    /// is the lens probability, read at position p, of <c>tokens[p + 1]</c>. The grid for a logit-lens heatmap
    /// (<c>AnalysisPlots.LogitLensHeatmap</c> in SafetyNotebooks.Plotting).
    /// </summary>
    /// <param name="cache">The run's cache.</param>
    /// <param name="tokens">The sequence the cache was run on, [pos] or [1, pos] (or [batch, pos] with <paramref name="batchIndex"/>).</param>
    /// <param name="batchIndex">Sequence of the batch.</param>
    /// <param name="norm">How to normalize each layer.</param>
    public static (double[,] Probs, string[] Labels) NextTokenProbs(ActivationCache cache, Tensor tokens, int batchIndex = 0, LensNorm norm = LensNorm.RecomputeLn)
    {
        ArgumentNullException.ThrowIfNull(cache);
        using var scope = NewDisposeScope();
        var (logits, labels) = Logits(cache, norm);                                  // [c, batch, pos, vocab] or [c, pos, vocab]
        if (logits.dim() == 4) logits = logits.select(1, batchIndex);
        var row = tokens.dim() == 2 ? tokens[batchIndex] : tokens;
        if (row.shape[0] != logits.shape[1])
            throw new ArgumentException($"LogitLens.NextTokenProbs: tokens have {row.shape[0]} positions but the cache has {logits.shape[1]}; pass the tokens the cache was run on.", nameof(tokens));
        long n = row.shape[0];
        var next = row[TensorIndex.Slice(1, null)].to_type(ScalarType.Int64);        // [pos-1]
        var probs = logits[TensorIndex.Colon, TensorIndex.Slice(0, n - 1)].to_type(ScalarType.Float64).softmax(-1);   // [c, pos-1, vocab]
        var p = probs.gather(-1, next.reshape(1, n - 1, 1).expand(probs.shape[0], n - 1, 1)).squeeze(-1);
        var flat = p.contiguous().data<double>().ToArray();
        var grid = new double[p.shape[0], n - 1];
        for (int i = 0; i < p.shape[0]; i++) for (int j = 0; j < n - 1; j++) grid[i, j] = flat[i * (n - 1) + j];
        return (grid, labels);
    }
}
