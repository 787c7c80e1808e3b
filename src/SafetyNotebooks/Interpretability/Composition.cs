using SafetyNotebooks.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Interpretability;

/// <summary>Which input of the later head reads the earlier head's output (Elhage et al. 2021).</summary>
public enum CompositionType
{
    /// <summary>Q-composition: the earlier head's OV output feeds the later head's queries, <c>W_OV¹ · W_Q² W_K²ᵀ</c>.</summary>
    Q,
    /// <summary>K-composition: it feeds the later head's keys, <c>W_OV¹ · W_K² W_Q²ᵀ</c> (induction heads).</summary>
    K,
    /// <summary>V-composition: it feeds the later head's values, <c>W_OV¹ · W_V² W_O²</c>.</summary>
    V,
}

/// <summary>The composition score of random heads with the model's shapes, to compare real scores against.</summary>
/// <param name="Mean">Mean score over the samples.</param>
/// <param name="Std">Standard deviation over the samples.</param>
/// <param name="Samples">Every sampled score.</param>
/// <param name="ExpectedRms">
/// The analytic root-mean-square score, <c>1/√d_model</c>: for Gaussian factors the later head's matrix is rotation invariant,
/// so <c>E[score²] = 1/d_model</c> exactly (the mean is slightly below the RMS).
/// </param>
public sealed record CompositionBaseline(double Mean, double Std, double[] Samples, double ExpectedRms);

/// <summary>
/// Composition scores and circuit views (Elhage et al. 2021, <i>A Mathematical Framework for Transformer Circuits</i>; ARENA 1.2;
/// TransformerLens' <c>utils.composition_scores</c> and <c>HookedTransformer.all_composition_scores</c>).
/// <para>
/// The composition score of an earlier head's <c>W_A = W_OV</c> and a later head's <c>W_B</c> (its W_QK for Q, W_QKᵀ for K,
/// W_OV for V) is <c>‖W_A W_B‖_F / (‖W_A‖_F ‖W_B‖_F)</c>, in [0, 1]: 0 when the earlier head writes into a subspace the later
/// one ignores, 1 when both are the same rank-1 map. Matrices follow TransformerLens' row-vector convention
/// (the residual is a row, <c>x · W_OV</c>). Norms are computed exactly from the factors' d_head × d_head Gram matrices
/// (‖A B‖²_F = Σ (AᵀA) ⊙ (B Bᵀ)), without forming d_model × d_model products or SVDs.
/// </para>
/// </summary>
public static class Composition
{
    static Tensor F64(Tensor t) => t.detach().to_type(ScalarType.Float64);

    // ‖A B‖_F² from the factors: Σ_ij (AᵀA)_ij (B Bᵀ)_ij.
    static Tensor SquaredNorm(Tensor a, Tensor b) => (matmul(a.transpose(-2, -1), a) * matmul(b, b.transpose(-2, -1))).sum(new long[] { -2, -1 });

    /// <summary>
    /// The composition score of two factored matrices, elementwise over their (broadcast) leading dimensions:
    /// <c>‖L R‖_F / (‖L‖_F ‖R‖_F)</c>. L [..., d, r], R [..., r, d'].
    /// </summary>
    public static Tensor Score(FactoredMatrix left, FactoredMatrix right)
    {
        ArgumentNullException.ThrowIfNull(left);
        ArgumentNullException.ThrowIfNull(right);
        if (left.RDim != right.LDim)
            throw new ArgumentException($"Composition.Score needs left's columns ({left.RDim}) to equal right's rows ({right.LDim}); got left [{string.Join(", ", left.Shape)}], right [{string.Join(", ", right.Shape)}].");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var (a1, b1, a2, b2) = (F64(left.A), F64(left.B), F64(right.A), F64(right.B));
        // L R = A1 · M · B2 with M = B1 A2 [..., m1, m2]: ‖L R‖² = Σ (A1ᵀA1) ⊙ (M (B2 B2ᵀ) Mᵀ), all m × m.
        var middle = matmul(b1, a2);
        var gB2 = matmul(b2, b2.transpose(-2, -1));
        var num = (matmul(a1.transpose(-2, -1), a1) * matmul(matmul(middle, gB2), middle.transpose(-2, -1))).sum(new long[] { -2, -1 });
        var den = SquaredNorm(a1, b1) * SquaredNorm(a2, b2);
        return (num / den).sqrt().to_type(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>The composition score of two plain matrices, <c>‖W_A W_B‖_F / (‖W_A‖_F ‖W_B‖_F)</c> (leading dimensions broadcast).</summary>
    public static Tensor Score(Tensor wA, Tensor wB)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var a = F64(wA); var b = F64(wB);
        var n = matmul(a, b).pow(2).sum(new long[] { -2, -1 }).sqrt();
        var d = a.pow(2).sum(new long[] { -2, -1 }).sqrt() * b.pow(2).sum(new long[] { -2, -1 }).sqrt();
        return (n / d).to_type(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    static FactoredMatrix RightCircuit(HookedTransformer model, CompositionType mode) => mode switch
    {
        CompositionType.Q => model.QK,
        CompositionType.K => model.QK.T,
        CompositionType.V => model.OV,
        _ => throw new ArgumentOutOfRangeException(nameof(mode)),
    };

    /// <summary>
    /// Every pair of heads, [n_layers, n_heads, n_layers, n_heads]: entry [l1, h1, l2, h2] is the composition score of head
    /// L{l1}H{h1}'s OV circuit into head L{l2}H{h2}; zero unless l1 &lt; l2 (as TransformerLens' <c>all_composition_scores</c>).
    /// </summary>
    public static Tensor AllScores(HookedTransformer model, CompositionType mode)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var scope = NewDisposeScope();
        var left = model.OV;                                                           // [L, H, d, d]
        var right = RightCircuit(model, mode);
        var r = new FactoredMatrix(right.A.unsqueeze(0), right.B.unsqueeze(0));        // [1, L, H, ...]
        int nl = model.Cfg.NLayers;
        // One earlier layer at a time keeps memory at [H, L, H, d_head, d_head] (GPT-2 small: about 60 MB).
        var perLayer = Enumerable.Range(0, nl).Select(l1 =>
        {
            var l = new FactoredMatrix(left.A[l1].unsqueeze(1).unsqueeze(2), left.B[l1].unsqueeze(1).unsqueeze(2));   // [H, 1, 1, ...]
            return Score(l, r);                                                          // [H, L, H]
        }).ToArray();
        var scores = stack(perLayer);
        var layer = arange(nl);
        var mask = layer.reshape(nl, 1, 1, 1) < layer.reshape(1, 1, nl, 1);
        return where(mask, scores, zeros_like(scores)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Scores from every head of layer <paramref name="layer"/> into every head of layer <paramref name="layer"/> + 1, [n_heads, n_heads]
    /// (row = earlier head, column = later head).
    /// </summary>
    public static Tensor ConsecutiveLayerScores(HookedTransformer model, CompositionType mode, int layer)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (layer < 0 || layer + 1 >= model.Cfg.NLayers)
            throw new ArgumentOutOfRangeException(nameof(layer), $"ConsecutiveLayerScores: layer {layer} needs a next layer; use 0..{model.Cfg.NLayers - 2}.");
        using var scope = NewDisposeScope();
        var left = model.OV[layer];                                                    // [H, d, d]
        var right = RightCircuit(model, mode)[layer + 1];
        var l = new FactoredMatrix(left.A.unsqueeze(1), left.B.unsqueeze(1));          // [H, 1, ...]
        var r = new FactoredMatrix(right.A.unsqueeze(0), right.B.unsqueeze(0));        // [1, H, ...]
        return Score(l, r).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The baseline: composition scores of random heads with the model's shapes (every factor i.i.d. Gaussian:
    /// W_A = V₁O₁, W_B = Q₂K₂ᵀ / K₂Q₂ᵀ / V₂O₂ with V, Q, K [d_model, d_head] and O [d_head, d_model]), seeded. Real scores well
    /// above <see cref="CompositionBaseline.Mean"/> indicate composition the model learned.
    /// </summary>
    /// <param name="dModel">Residual width.</param>
    /// <param name="dHead">Head width.</param>
    /// <param name="samples">Number of random pairs.</param>
    /// <param name="seed">Seed of the generator.</param>
    public static CompositionBaseline RandomBaseline(int dModel, int dHead, int samples = 200, int seed = 0)
    {
        if (dModel < 1 || dHead < 1 || samples < 2)
            throw new ArgumentOutOfRangeException(nameof(samples), $"RandomBaseline needs dModel ≥ 1, dHead ≥ 1 and samples ≥ 2; got {dModel}, {dHead}, {samples}.");
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        var left = new FactoredMatrix(randn(new long[] { samples, dModel, dHead }, dtype: ScalarType.Float64, generator: gen),
                                      randn(new long[] { samples, dHead, dModel }, dtype: ScalarType.Float64, generator: gen));
        var right = new FactoredMatrix(randn(new long[] { samples, dModel, dHead }, dtype: ScalarType.Float64, generator: gen),
                                       randn(new long[] { samples, dHead, dModel }, dtype: ScalarType.Float64, generator: gen));
        var s = Score(left, right).to_type(ScalarType.Float64).data<double>().ToArray();
        double mean = s.Average();
        double std = Math.Sqrt(s.Sum(x => (x - mean) * (x - mean)) / (s.Length - 1));
        return new CompositionBaseline(mean, std, s, 1 / Math.Sqrt(dModel));
    }

    /// <summary>A random baseline with <paramref name="model"/>'s d_model and d_head.</summary>
    public static CompositionBaseline RandomBaseline(HookedTransformer model, int samples = 200, int seed = 0) =>
        RandomBaseline(model.Cfg.DModel, model.Cfg.DHead, samples, seed);

    // ---- circuits -----------------------------------------------------------------------------------------------

    /// <summary>
    /// The full OV circuit of one head, <c>W_E · W_V · W_O · W_U</c> [d_vocab, d_vocab], factored through d_head: entry [s, t] is
    /// how much attending to source token s raises the logit of t. Ignores the norms between (fold them first with
    /// <see cref="HookedTransformer.EnableCompatibilityMode"/> for a closer reading), as ARENA 1.2.
    /// </summary>
    public static FactoredMatrix FullOvCircuit(HookedTransformer model, int layer, int head)
    {
        CheckHead(model, layer, head);
        using var _ = no_grad();
        var attn = model.blocks[layer].attn;
        return new FactoredMatrix(matmul(model.W_E, attn.W_V[head]), matmul(attn.W_O[head], model.W_U));
    }

    /// <summary>
    /// The full QK circuit of one head on tokens, <c>W_E · W_Q · W_Kᵀ · W_Eᵀ</c> [d_vocab (query), d_vocab (key)], or with
    /// <paramref name="positional"/> on positions, <c>W_pos · W_Q · W_Kᵀ · W_posᵀ</c> [n_ctx, n_ctx] (a previous-token head shows
    /// its sub-diagonal there). Attention scores before scaling by 1/√d_head and the softmax.
    /// </summary>
    public static FactoredMatrix FullQkCircuit(HookedTransformer model, int layer, int head, bool positional = false)
    {
        CheckHead(model, layer, head);
        using var _ = no_grad();
        var attn = model.blocks[layer].attn;
        var inp = positional ? model.W_pos : model.W_E;
        var wk = attn.W_K;
        int kvHead = (int)(head / (model.Cfg.NHeads / wk.shape[0]));
        return new FactoredMatrix(matmul(inp, attn.W_Q[head]), matmul(wk[kvHead].t(), inp.t()));
    }

    static void CheckHead(HookedTransformer model, int layer, int head)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (layer < 0 || layer >= model.Cfg.NLayers || head < 0 || head >= model.Cfg.NHeads)
            throw new ArgumentOutOfRangeException(nameof(head), $"Head L{layer}H{head} does not exist: layers are 0..{model.Cfg.NLayers - 1}, heads 0..{model.Cfg.NHeads - 1}.");
    }

    /// <summary>
    /// ARENA's <c>top_1_acc</c>: the fraction of rows whose largest entry is on the diagonal (for a full OV circuit: the fraction of
    /// tokens that, attended to, raise their own logit most: copying). Computed in row chunks, never forming the whole matrix.
    /// </summary>
    public static double DiagonalAccuracy(FactoredMatrix circuit, int chunk = 1024)
    {
        ArgumentNullException.ThrowIfNull(circuit);
        if (circuit.LeadingShape.Length != 0 || circuit.LDim != circuit.RDim)
            throw new ArgumentException($"DiagonalAccuracy needs one square matrix; got [{string.Join(", ", circuit.Shape)}] (select a head first, e.g. model.OV[layer, head]).", nameof(circuit));
        using var _ = no_grad();
        long n = circuit.LDim, hits = 0;
        for (long start = 0; start < n; start += chunk)
        {
            using var scope = NewDisposeScope();
            long len = Math.Min(chunk, n - start);
            var rows = matmul(circuit.A.narrow(0, start, len), circuit.B);             // [len, n]
            var argmax = rows.argmax(1);
            hits += argmax.eq(arange(start, start + len, dtype: ScalarType.Int64, device: argmax.device)).sum().item<long>();
        }
        return (double)hits / n;
    }

    /// <summary>
    /// The top-k entries of some rows of a circuit: for each row id, the k column ids with the largest values and those values
    /// (for a full OV circuit: which tokens attending to token s promotes most). Returns ([rows, k] ids, [rows, k] values).
    /// </summary>
    public static (Tensor Indices, Tensor Values) TopKPerRow(FactoredMatrix circuit, IReadOnlyList<int> rowIds, int k = 5)
    {
        ArgumentNullException.ThrowIfNull(circuit);
        if (rowIds.Any(r => r < 0 || r >= circuit.LDim))
            throw new ArgumentOutOfRangeException(nameof(rowIds), $"TopKPerRow: row ids must be in [0, {circuit.LDim}).");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var idx = tensor(rowIds.Select(r => (long)r).ToArray(), device: circuit.A.device);
        var rows = matmul(circuit.A.index_select(0, idx), circuit.B);
        var (values, indices) = rows.topk((int)Math.Min(k, circuit.RDim), dim: 1);
        return (indices.MoveToOuterDisposeScope(), values.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The eigenvalue copying score (ARENA 1.2): the fraction of eigenvalue magnitude carried by eigenvalues with a positive real
    /// part, <c>Σ_{Re λᵢ &gt; 0} |λᵢ| / Σᵢ |λᵢ|</c>, over the nonzero eigenvalues of the (square) circuit (those of B·A). 1 for a
    /// copying circuit (identity-like), 0 for an anti-copying one. Per leading index, [...].
    /// </summary>
    public static Tensor EigenvalueCopyingScore(FactoredMatrix circuit)
    {
        ArgumentNullException.ThrowIfNull(circuit);
        using var scope = NewDisposeScope();
        var ev = F64Complex(circuit);
        var mag = ev.abs();
        var pos = where(real(ev) > 0, mag, zeros_like(mag));
        return (pos.sum(-1) / mag.sum(-1)).to_type(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Elhage et al.'s summary of the same eigenvalues, <c>Re(Σᵢ λᵢ) / Σᵢ |λᵢ|</c> in [−1, 1] (1 = copying, −1 = anti-copying). [...].
    /// </summary>
    public static Tensor EigenvalueSumRatio(FactoredMatrix circuit)
    {
        ArgumentNullException.ThrowIfNull(circuit);
        using var scope = NewDisposeScope();
        var ev = F64Complex(circuit);
        return (real(ev).sum(-1) / ev.abs().sum(-1)).to_type(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    static Tensor F64Complex(FactoredMatrix circuit)
    {
        if (circuit.LDim != circuit.RDim)
            throw new ArgumentException($"Eigenvalues need a square circuit; got {circuit.LDim} × {circuit.RDim}.", nameof(circuit));
        using var _ = no_grad();
        return linalg.eigvals(matmul(F64(circuit.B), F64(circuit.A)));
    }
}
