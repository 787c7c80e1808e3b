using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models;

/// <summary>
/// A matrix kept as the product of two factors, <c>M = A · B</c> with A [..., ldim, mdim] and B [..., mdim, rdim], as
/// TransformerLens' <c>FactoredMatrix</c>: per-head circuits such as <see cref="HookedTransformer.OV"/> (d_model × d_model,
/// rank ≤ d_head) are analysed (SVD, eigenvalues, norm) through small matrices without forming the product.
/// Leading dimensions (e.g. [n_layers, n_heads]) broadcast between A and B.
/// </summary>
/// <remarks>Results are new tensors owned by the caller. The factors are views of the tensors passed in (no copy).</remarks>
public sealed class FactoredMatrix
{
    (Tensor U, Tensor S, Tensor V)? _svd;

    /// <summary>Wraps <paramref name="a"/> [..., ldim, mdim] and <paramref name="b"/> [..., mdim, rdim].</summary>
    /// <exception cref="ArgumentException">When the inner dimensions differ or the leading dimensions do not broadcast.</exception>
    public FactoredMatrix(Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.dim() < 2 || b.dim() < 2)
            throw new ArgumentException($"FactoredMatrix needs A [..., ldim, mdim] and B [..., mdim, rdim] with at least two dimensions each; got A [{string.Join(", ", a.shape)}] and B [{string.Join(", ", b.shape)}].");
        if (a.shape[^1] != b.shape[^2])
            throw new ArgumentException($"FactoredMatrix: A's last dimension ({a.shape[^1]}) must equal B's second-to-last ({b.shape[^2]}); got A [{string.Join(", ", a.shape)}], B [{string.Join(", ", b.shape)}].");
        long[] lead;
        try { lead = broadcast_shapes(a.shape[..^2], b.shape[..^2]).ToArray(); }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new ArgumentException($"FactoredMatrix: the leading dimensions of A [{string.Join(", ", a.shape)}] and B [{string.Join(", ", b.shape)}] do not broadcast.", e);
        }
        A = a.broadcast_to(lead.Append(a.shape[^2]).Append(a.shape[^1]).ToArray());
        B = b.broadcast_to(lead.Append(b.shape[^2]).Append(b.shape[^1]).ToArray());
        LeadingShape = lead;
    }

    /// <summary>Left factor, [..., ldim, mdim].</summary>
    public Tensor A { get; }
    /// <summary>Right factor, [..., mdim, rdim].</summary>
    public Tensor B { get; }
    /// <summary>The broadcast leading dimensions.</summary>
    public long[] LeadingShape { get; }
    /// <summary>Rows of the product.</summary>
    public long LDim => A.shape[^2];
    /// <summary>The inner (factored) dimension.</summary>
    public long MDim => A.shape[^1];
    /// <summary>Columns of the product.</summary>
    public long RDim => B.shape[^1];
    /// <summary>Shape of the product, [..., ldim, rdim].</summary>
    public long[] Shape => LeadingShape.Append(LDim).Append(RDim).ToArray();
    /// <summary>Number of dimensions of the product.</summary>
    public int NDim => LeadingShape.Length + 2;

    /// <summary>The product <c>A · B</c>, [..., ldim, rdim] (formed).</summary>
    public Tensor AB => matmul(A, B);

    /// <summary>The reversed product <c>B · A</c>, [..., mdim, mdim]; needs ldim = rdim (a square matrix).</summary>
    public Tensor BA => LDim == RDim ? matmul(B, A)
        : throw new InvalidOperationException($"BA needs a square factored matrix (ldim = rdim), but this one is {LDim} × {RDim}.");

    /// <summary>The transpose <c>Bᵀ · Aᵀ</c>, still factored.</summary>
    public FactoredMatrix T => new(B.transpose(-2, -1), A.transpose(-2, -1));

    /// <summary>
    /// The thin SVD of the product, <c>M = U · diag(S) · Vᵀ</c>: U [..., ldim, mdim], S [..., mdim] (descending),
    /// V [..., rdim, mdim]. Computed from SVDs of the factors (never of the ldim × rdim product) and cached.
    /// </summary>
    public (Tensor U, Tensor S, Tensor V) Svd()
    {
        if (_svd is { } cached) return cached;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var (ua, sa, vha) = linalg.svd(A, fullMatrices: false);                // A = Ua diag(Sa) Vha
        var (ub, sb, vhb) = linalg.svd(B, fullMatrices: false);                // B = Ub diag(Sb) Vhb
        var middle = sa.unsqueeze(-1) * matmul(vha, ub) * sb.unsqueeze(-2);     // diag(Sa) Vha Ub diag(Sb)
        var (um, sm, vhm) = linalg.svd(middle, fullMatrices: false);
        var u = matmul(ua, um);
        var v = matmul(vhb.transpose(-2, -1), vhm.transpose(-2, -1));
        _svd = (u.MoveToOuterDisposeScope(), sm.MoveToOuterDisposeScope(), v.MoveToOuterDisposeScope());
        return _svd.Value;
    }

    /// <summary>Left singular vectors, [..., ldim, mdim] (see <see cref="Svd"/>).</summary>
    public Tensor U => Svd().U;
    /// <summary>Singular values, [..., mdim], descending.</summary>
    public Tensor S => Svd().S;
    /// <summary>Right singular vectors, [..., rdim, mdim]: <c>M = U · diag(S) · Vᵀ</c>.</summary>
    public Tensor V => Svd().V;
    /// <summary>TransformerLens' deprecated alias of <see cref="V"/> (it returns V, not Vᵀ, as in TransformerLens 3.5).</summary>
    [Obsolete("FactoredMatrix.Vh returns V (the right singular vectors), as TransformerLens' deprecated alias does; use V, or V.transpose(-2, -1) for Vᵀ.")]
    public Tensor Vh => V;

    /// <summary>
    /// Eigenvalues of the (square) product, [..., mdim], complex: those of <c>B · A</c>, which are the nonzero eigenvalues
    /// of <c>A · B</c> (the rest are zero).
    /// </summary>
    public Tensor Eigenvalues
    {
        get
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            return linalg.eigvals(BA).MoveToOuterDisposeScope();
        }
    }

    /// <summary>Frobenius norm of the product, [...]: sqrt(Σ S²).</summary>
    public Tensor Norm()
    {
        using var scope = NewDisposeScope();
        return S.pow(2).sum(-1).sqrt().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Selects along the leading dimensions only: <c>model.OV[1, 3]</c> is layer 1, head 3 (negative indices count from the end).
    /// </summary>
    /// <exception cref="ArgumentException">When given more indices than leading dimensions.</exception>
    public FactoredMatrix this[params long[] leading]
    {
        get
        {
            if (leading.Length > LeadingShape.Length)
                throw new ArgumentException($"FactoredMatrix has {LeadingShape.Length} leading dimension(s) [{string.Join(", ", LeadingShape)}] but got {leading.Length} indices; " +
                    "index rows/columns of the formed product (AB) instead.", nameof(leading));
            var ix = leading.Select(i => TensorIndex.Single(i)).ToArray();
            return new FactoredMatrix(A.index(ix), B.index(ix));
        }
    }

    /// <summary>The product applied to a matrix on the right: <c>A · (B · m)</c>, m [..., rdim, k].</summary>
    public Tensor MatMul(Tensor m) => matmul(A, matmul(B, m));

    /// <summary>A matrix applied on the left: <c>(m · A) · B</c>, m [..., k, ldim].</summary>
    public Tensor RMatMul(Tensor m) => matmul(matmul(m, A), B);

    /// <summary>The product of two factored matrices, still factored through this one's inner dimension.</summary>
    public FactoredMatrix MatMul(FactoredMatrix other) => new(A, matmul(matmul(B, other.A), other.B));

    /// <inheritdoc/>
    public override string ToString() => $"FactoredMatrix: Shape([{string.Join(", ", Shape)}]), Hidden Dim({MDim})";
}
