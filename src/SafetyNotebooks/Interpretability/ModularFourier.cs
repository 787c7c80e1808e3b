using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Interpretability;

/// <summary>
/// The Fourier tools of Nanda et al. (2023), <i>Progress measures for grokking via mechanistic interpretability</i>, for
/// models of arithmetic mod an odd prime p: the orthonormal Fourier basis over ℤ_p, frequency norms of embeddings, the 2-D
/// transform of anything indexed by the two inputs (a, b), neuron frequency clusters, and the restricted and excluded
/// logits behind their progress measures. Frequency k means ω_k = 2πk/p, k = 1 … (p − 1)/2.
/// </summary>
public static class ModularFourier
{
    /// <summary>
    /// The orthonormal Fourier basis of functions on ℤ_p, rows <c>[p, p]</c> (row i evaluated at x = 0 … p − 1): row 0 is the
    /// constant 1/√p, row 2k − 1 is √(2/p)·cos(ω_k x) and row 2k is √(2/p)·sin(ω_k x). Names: "const", "cos 1", "sin 1", ….
    /// Multiply a <c>[p, …]</c> tensor indexed by x on the left by it to get its Fourier coefficients.
    /// </summary>
    public static (Tensor Basis, string[] Names) Basis(int p)
    {
        CheckP(p);
        var b = new float[p * p];
        var names = new string[p];
        names[0] = "const";
        for (int x = 0; x < p; x++) b[x] = (float)(1 / Math.Sqrt(p));
        for (int k = 1; k <= (p - 1) / 2; k++)
        {
            names[2 * k - 1] = $"cos {k}";
            names[2 * k] = $"sin {k}";
            for (int x = 0; x < p; x++)
            {
                double w = 2 * Math.PI * k * x / p;
                b[(2 * k - 1) * p + x] = (float)(Math.Sqrt(2.0 / p) * Math.Cos(w));
                b[2 * k * p + x] = (float)(Math.Sqrt(2.0 / p) * Math.Sin(w));
            }
        }
        return (torch.tensor(b, new long[] { p, p }), names);
    }

    /// <summary>
    /// How much of a matrix indexed by the input x (rows 0 … p − 1, e.g. the number rows of W_E, <c>[p, d]</c>) lies in each
    /// frequency: entry k − 1 is the L2 norm of its cos-k and sin-k coefficients over all columns. <c>[(p − 1)/2]</c>.
    /// A model that computes with waves concentrates this on a few "key frequencies".
    /// </summary>
    public static Tensor FrequencyNorms(Tensor byInput)
    {
        ArgumentNullException.ThrowIfNull(byInput);
        int p = (int)byInput.shape[0];
        CheckP(p);
        using var scope = torch.NewDisposeScope();
        var x = byInput.dim() == 1 ? byInput.unsqueeze(1) : byInput.reshape(p, -1);
        var (basis, _) = Basis(p);
        var coefficients = basis.to_type(x.dtype).to(x.device).matmul(x);                    // [p, d]
        var perRow = coefficients.pow(2).sum(1);                                       // [p]
        var pairs = perRow[1..].reshape(-1, 2).sum(1).sqrt();                           // [(p-1)/2]
        return pairs.MoveToOuterDisposeScope();
    }

    /// <summary>The <paramref name="count"/> frequencies (1-based k) with the largest <see cref="FrequencyNorms"/>, largest first.</summary>
    public static int[] KeyFrequencies(Tensor byInput, int count)
    {
        using var norms = FrequencyNorms(byInput);
        var values = norms.to_type(ScalarType.Float64).data<double>().ToArray();
        if (count < 1 || count > values.Length)
            throw new ArgumentOutOfRangeException(nameof(count), $"count must be between 1 and (p − 1)/2 = {values.Length}, got {count}.");
        return values.Select((v, i) => (v, k: i + 1)).OrderByDescending(t => t.v).Take(count).Select(t => t.k).ToArray();
    }

    /// <summary>
    /// The 2-D Fourier transform over the two inputs of a tensor <c>[p, p, …]</c> indexed by (a, b): <c>B·X·Bᵀ</c> on the first
    /// two dimensions (entry [i, j] is the coefficient of basis function i in a times basis function j in b). Same shape.
    /// </summary>
    public static Tensor Transform2D(Tensor grid)
    {
        ArgumentNullException.ThrowIfNull(grid);
        int p = (int)grid.shape[0];
        if (grid.dim() < 2 || grid.shape[1] != p)
            throw new ArgumentException($"Transform2D needs a tensor indexed by (a, b) first, [p, p, …], got [{string.Join(", ", grid.shape)}]; reshape the model's outputs over all p² input pairs to [p, p, …].", nameof(grid));
        CheckP(p);
        using var scope = torch.NewDisposeScope();
        var (basis, _) = Basis(p);
        var b = basis.to_type(grid.dtype).to(grid.device);
        var rest = grid.shape[2..];
        var flat = grid.reshape(p, p, -1);                                              // [a, b, n]
        var result = torch.einsum("ia,abn,jb->ijn", b, flat, b);
        return result.reshape(grid.shape).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// For each column of a grid <c>[p, p, n]</c> (e.g. the MLP neurons at the "=" position over all inputs), the fraction of its
    /// variance (everything but the constant term) that lies in terms of frequency <paramref name="k"/> — products of {1, cos ω_k, sin ω_k}
    /// in a and b. Nanda et al. find almost every neuron of a grokked model above 0.85 for one key frequency. <c>[n]</c>.
    /// </summary>
    public static Tensor FractionExplainedByFrequency(Tensor grid, int k)
    {
        int p = (int)grid.shape[0];
        CheckFrequency(p, k);
        using var scope = torch.NewDisposeScope();
        var f = Transform2D(grid.reshape(p, p, -1)).pow(2);                            // [p, p, n]
        var total = f.sum(new long[] { 0, 1 }) - f[0, 0];
        var idx = torch.tensor(new long[] { 0, 2 * k - 1, 2 * k });
        var inK = f.index_select(0, idx).index_select(1, idx).sum(new long[] { 0, 1 }) - f[0, 0];
        return (inK / total.clamp_min(1e-30)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The two unit directions over the input grid <c>[2, p, p]</c> that depend only on a + b at frequency k:
    /// cos(ω_k(a + b)) and sin(ω_k(a + b)), each divided by its norm (p/√2). They are orthogonal to each other and to every
    /// other frequency's pair.
    /// </summary>
    public static Tensor SumDirections(int p, int k)
    {
        CheckFrequency(p, k);
        var d = new float[2 * p * p];
        double norm = p / Math.Sqrt(2);
        for (int a = 0; a < p; a++)
            for (int b = 0; b < p; b++)
            {
                double w = 2 * Math.PI * k * ((a + b) % p) / p;
                d[a * p + b] = (float)(Math.Cos(w) / norm);
                d[p * p + a * p + b] = (float)(Math.Sin(w) / norm);
            }
        return torch.tensor(d, new long[] { 2, p, p });
    }

    /// <summary>
    /// The part of logits <c>[p, p, c]</c> (over all inputs (a, b), for every output c) that lies along the a + b directions of
    /// <paramref name="frequencies"/> (<see cref="SumDirections"/>), for every output separately. This is the part of the
    /// logits the "clock" algorithm (cos ω_k(a + b − c)) produces.
    /// </summary>
    public static Tensor ProjectOntoSumFrequencies(Tensor logits, IEnumerable<int> frequencies)
    {
        ArgumentNullException.ThrowIfNull(logits);
        int p = (int)logits.shape[0];
        if (logits.dim() != 3 || logits.shape[1] != p)
            throw new ArgumentException($"Logits over all input pairs must be [p, p, outputs], got [{string.Join(", ", logits.shape)}]; run the model on all p² pairs and take the logits at the '=' position.", nameof(logits));
        using var scope = torch.NewDisposeScope();
        var projection = torch.zeros_like(logits);
        foreach (int k in frequencies.Distinct())
        {
            var dirs = SumDirections(p, k).to_type(logits.dtype).to(logits.device);            // [2, p, p]
            var coefficients = torch.einsum("dab,abc->dc", dirs, logits);               // [2, c]
            projection += torch.einsum("dab,dc->abc", dirs, coefficients);
        }
        return projection.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Nanda et al.'s restricted logits: only the key frequencies' a + b components plus each output's mean over the inputs.
    /// Low loss from these alone means the model's answer is carried by the key frequencies.
    /// </summary>
    public static Tensor RestrictedLogits(Tensor logits, IEnumerable<int> keyFrequencies)
    {
        using var scope = torch.NewDisposeScope();
        var mean = logits.mean(new long[] { 0, 1 }, keepdim: true);
        return (ProjectOntoSumFrequencies(logits, keyFrequencies) + mean).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Nanda et al.'s excluded logits: the logits with the key frequencies' a + b components removed. Evaluated on the
    /// training pairs, their loss rises while the generalizing circuit forms — before the test loss falls.
    /// </summary>
    public static Tensor ExcludedLogits(Tensor logits, IEnumerable<int> keyFrequencies)
    {
        using var scope = torch.NewDisposeScope();
        return (logits - ProjectOntoSumFrequencies(logits, keyFrequencies)).MoveToOuterDisposeScope();
    }

    static void CheckP(int p)
    {
        if (p < 3 || p % 2 == 0)
            throw new ArgumentException($"The Fourier tools need an odd modulus p ≥ 3 (the first dimension), got {p}; index the tensor by the p number tokens only (e.g. W_E[..p], not the '=' row).");
    }

    static void CheckFrequency(int p, int k)
    {
        CheckP(p);
        if (k < 1 || k > (p - 1) / 2)
            throw new ArgumentOutOfRangeException(nameof(k), $"Frequency k must be between 1 and (p − 1)/2 = {(p - 1) / 2}, got {k}.");
    }
}
