using SafetyNotebooks.Models.Components;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models;

public sealed partial class HookedTransformer
{
    /// <summary>
    /// Whether <see cref="EnableCompatibilityMode"/> has processed the weights. False for a freshly loaded checkpoint, whose
    /// weights are Hugging Face's as-is (logits match HF), as with TransformerLens 3's <c>TransformerBridge</c>.
    /// </summary>
    public bool CompatibilityMode { get; private set; }

    /// <summary>
    /// Switches to the legacy TransformerLens <c>HookedTransformer</c> coordinates, as TransformerLens 3's
    /// <c>TransformerBridge.enable_compatibility_mode()</c> does: folds each LayerNorm's weight and bias into the next weights,
    /// centers the weights that write to the residual stream, centers the unembedding and folds the value biases
    /// (see <see cref="ProcessWeights"/>). Log-probabilities are unchanged; logits change by a per-position constant; the
    /// residual stream becomes centered and the norms lose their weights (<see cref="NormalizationType.LNPre"/>). On RMSNorm
    /// models (Llama-style) the norm weights are folded (<see cref="NormalizationType.RMSPre"/>) and, as in TransformerLens,
    /// writing weights are not centered (RMSNorm does not remove the mean); the unembedding is centered and value biases folded.
    /// Models load raw by default; call this once for analyses written against TransformerLens' processed weights.
    /// Direct logit attribution (<see cref="ActivationCache.LogitAttrs"/>, <see cref="ActivationCache.ApplyLnToStack"/>) is
    /// correct in both modes. Returns this model.
    /// </summary>
    /// <exception cref="InvalidOperationException">When called twice (the weights are already processed).</exception>
    public HookedTransformer EnableCompatibilityMode(bool foldLn = true, bool centerWritingWeights = true, bool centerUnembed = true, bool foldValueBiases = true)
    {
        if (CompatibilityMode)
            throw new InvalidOperationException("EnableCompatibilityMode was already called on this model: its weights are already processed. Load the checkpoint again for raw weights.");
        ProcessWeights(foldLn, centerWritingWeights, centerUnembed, foldValueBiases);
        CompatibilityMode = true;
        return this;
    }

    /// <summary>
    /// TransformerLens' standard weight processing, in its order: <see cref="FoldLayerNorm"/>,
    /// <see cref="CenterWritingWeights"/>, <see cref="CenterUnembed"/>, <see cref="FoldValueBiases"/>.
    /// Log-probabilities are unchanged (up to float error); logits change by a per-position constant, and
    /// activations such as the residual stream change (they become centered). Returns this model.
    /// <see cref="EnableCompatibilityMode"/> is the one documented call for this (it also records <see cref="CompatibilityMode"/>).
    /// </summary>
    public HookedTransformer ProcessWeights(bool foldLn = true, bool centerWritingWeights = true, bool centerUnembed = true, bool foldValueBiases = true)
    {
        // As TransformerLens' process_weights: LayerNorm and RMSNorm are folded (RMSNorm: weight only); writing weights are
        // centered only for LayerNorm models (TL skips it with a warning otherwise: a non-centering norm sees the mean).
        if (foldLn && Cfg.Normalization is NormalizationType.LN or NormalizationType.RMS) FoldLayerNorm();
        if (centerWritingWeights && Cfg.Normalization is NormalizationType.LN or NormalizationType.LNPre) CenterWritingWeights();
        if (centerUnembed) CenterUnembed();
        if (foldValueBiases) FoldValueBiases();
        return this;
    }

    /// <summary>
    /// Folds each norm's weight (and, for LayerNorm, bias) into the weights that read its output (W_Q/W_K/W_V and their biases,
    /// grouped-query W_K/W_V included; W_in/b_in and the gated MLP's W_gate; W_U/b_U), as TransformerLens' <c>fold_layer_norm</c>.
    /// For LayerNorm, then (if <paramref name="centerWeights"/>) centers those reading weights over d_model, which is exact because
    /// LayerNorm's output has zero mean; the norms become <see cref="LayerNormPre"/> (<see cref="NormalizationType.LNPre"/>).
    /// For RMSNorm (Llama-style) only the weight is folded and nothing is centered (RMSNorm does not center its output; TL
    /// folds with <c>fold_biases=False, center_weights=False</c>); the norms become <see cref="RMSNormPre"/> (<see cref="NormalizationType.RMSPre"/>).
    /// Hooks attached to the norm hook points (<c>hook_scale</c>, <c>hook_normalized</c>; temporary and permanent) move to the
    /// new layers: both activations are the same before and after folding, since <c>hook_normalized</c> fires before the affine map.
    /// </summary>
    public void FoldLayerNorm(bool centerWeights = true)
    {
        bool rms = Cfg.Normalization == NormalizationType.RMS;
        if (Cfg.Normalization != NormalizationType.LN && !rms)
            throw new InvalidOperationException($"FoldLayerNorm needs Normalization = LN or RMS but the model has {Cfg.Normalization} " +
                "(already folded, or no normalization to fold).");
        if (!rms && Cfg.GatedMlp)
            throw new InvalidOperationException("FoldLayerNorm cannot fold a LayerNorm bias into a gated MLP: W_gate has no bias to receive it " +
                "(TransformerLens drops that term). Use ProcessWeights(foldLn: false) for LayerNorm models with GatedMlp.");
        _unembed.Untie();
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            foreach (var block in _blockArray)
            {
                var a = block.attn;
                var ln1 = block.ln1!;
                // For W in (W_Q, W_K, W_V) [heads, d_model, d_head] (views of W_QKV when fused):
                // b[h, e] += Σ_d ln.b[d] W[h, d, e]; W[h, d, e] *= ln.w[d]; then (LN) center over d_model.
                foreach (var (w, b) in new[] { (a.W_Q, a.b_Q), (a.W_K, a.b_K), (a.W_V, a.b_V) })
                {
                    if (!rms) b.add_(einsum("d,hde->he", ln1.b!, w));
                    w.mul_(ln1.w!.view(1, -1, 1));
                    if (!rms && centerWeights) w.sub_(w.mean(new long[] { 1 }, keepdim: true));
                }
                if (block.mlp is { } mlp && block.ln2 is { } ln2)
                {
                    var readers = mlp is GatedMlp gated ? new Tensor[] { mlp.W_in, gated.W_gate } : new Tensor[] { mlp.W_in };
                    if (!rms) mlp.b_in.add_(matmul(ln2.b!, mlp.W_in));                // [d_mlp]
                    foreach (var w in readers)
                    {
                        w.mul_(ln2.w!.view(-1, 1));
                        if (!rms && centerWeights) w.sub_(w.mean(new long[] { 0 }, keepdim: true));
                    }
                }
            }
            var lnf = _lnFinal!;
            var wu = (Tensor)_unembed.W_U;                                       // [d_model, d_vocab]
            if (!rms) _unembed.b_U.add_(matmul(lnf.b!, wu));
            wu.mul_(lnf.w!.view(-1, 1));
            if (!rms && centerWeights) wu.sub_(wu.mean(new long[] { 0 }, keepdim: true));
        }
        NormLayer Pre(string name) => rms ? new RMSNormPre(name, Cfg.LayerNormEps) : new LayerNormPre(name, Cfg.LayerNormEps);
        foreach (var block in _blockArray)
        {
            var ln1 = Pre("ln1");
            var ln2 = block.ln2 is null ? null : Pre("ln2");
            block.ln1?.MoveHooksTo(ln1);
            if (ln2 is not null) block.ln2!.MoveHooksTo(ln2);
            block.ReplaceNorms(ln1, ln2);
        }
        var newFinal = Pre("ln_final");
        _lnFinal!.MoveHooksTo(newFinal);
        _internal_submodules["ln_final"] = newFinal;
        _lnFinal = newFinal;
        Cfg = Cfg with { Normalization = rms ? NormalizationType.RMSPre : NormalizationType.LNPre };
        IndexHookPoints();
    }

    /// <summary>
    /// Centers every weight that writes to the residual stream (W_E, W_pos, W_O, b_O, W_out, b_out) over d_model.
    /// Exact for LayerNorm models, since every reader of the residual stream centers it first.
    /// </summary>
    public void CenterWritingWeights()
    {
        if (Cfg.Normalization is not (NormalizationType.LN or NormalizationType.LNPre))
            throw new InvalidOperationException($"CenterWritingWeights only preserves outputs with LayerNorm (LN or LNPre); this model has {Cfg.Normalization}.");
        _unembed.Untie();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        void Center(Tensor t) => t.sub_(t.mean(new long[] { -1 }, keepdim: true));
        Center(_embed.W_E);
        if (_posEmbed is not null) Center(_posEmbed.W_pos);
        foreach (var block in _blockArray)
        {
            Center(block.attn.W_O);
            Center(block.attn.b_O);
            if (block.mlp is { } mlp) { Center(mlp.W_out); Center(mlp.b_out); }
        }
    }

    /// <summary>
    /// Subtracts the mean over the vocabulary from W_U and b_U. Softmax is invariant to adding a constant to all logits,
    /// so probabilities are unchanged.
    /// </summary>
    public void CenterUnembed()
    {
        _unembed.Untie();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var wu = (Tensor)_unembed.W_U;
        wu.sub_(wu.mean(new long[] { -1 }, keepdim: true));
        _unembed.b_U.sub_(_unembed.b_U.mean());
    }

    /// <summary>
    /// Moves the value biases into the output bias: <c>b_O += Σ_h b_V[h] @ W_O[h]</c>, <c>b_V = 0</c> (grouped-query: each
    /// key/value head's bias counted for every query head that reads it). Exact because each attention pattern row sums to one.
    /// </summary>
    public void FoldValueBiases()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var block in _blockArray)
        {
            var a = block.attn;
            // Grouped-query: key/value head j serves query heads g·j … g·j+g−1, so its bias is counted once per query head (as TL).
            var bV = a.IsGroupedQuery ? a.b_V.repeat_interleave(a.W_O.shape[0] / a.b_V.shape[0], 0) : a.b_V; // [n_heads, d_head]
            a.b_O.add_(einsum("he,hem->m", bV, a.W_O));
            a.b_V.zero_();
        }
    }
}
