using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Sae;

/// <summary>Result of <see cref="Matching.HungarianMatch"/>.</summary>
/// <param name="Score">Mean over the true features of the cosine similarity with their matched learned direction (0 for a
/// true feature left unmatched because there are fewer learned directions than true features).</param>
/// <param name="Assignment">For each true feature, the index of its learned direction, or −1 if unmatched.</param>
/// <param name="Cosines">For each true feature, the cosine similarity with its match (0 if unmatched).</param>
public sealed record FeatureMatch(double Score, int[] Assignment, double[] Cosines);

/// <summary>
/// How well learned directions (e.g. an SAE's decoder rows <c>W_dec [d_sae, d_in]</c>) recover known true features
/// (<see cref="GroundTruthFeatures.Features"/> <c>[n_features, d_in]</c>). Directions are rows; cosine similarity is signed
/// (an SAE's decoder direction has a sign, and a feature read with the opposite sign is not recovered).
/// </summary>
public static class Matching
{
    /// <summary>Cosine similarities, float64 <c>[n_true, n_learned]</c>: entry (i, j) = cos(truth_i, learned_j). Zero rows give 0.</summary>
    public static Tensor CosineSimilarities(Tensor learned, Tensor truth)
    {
        CheckRows(learned, truth);
        using var scope = torch.NewDisposeScope();
        var l = learned.detach().to_type(ScalarType.Float64).cpu();
        var t = truth.detach().to_type(ScalarType.Float64).cpu();
        l = l / l.norm(1, keepdim: true).clamp_min(1e-12);
        t = t / t.norm(1, keepdim: true).clamp_min(1e-12);
        return t.matmul(l.T).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Mean max cosine similarity (MMCS, Sharkey et al. 2022): for each true feature the best cosine similarity with any
    /// learned direction, averaged over the true features. 1 when every true feature has an exact learned copy; it does not
    /// require the matches to be distinct (see <see cref="HungarianMatch"/> for a one-to-one score).
    /// </summary>
    public static double MeanMaxCosineSimilarity(Tensor learned, Tensor truth)
    {
        using var cos = CosineSimilarities(learned, truth);
        using var best = cos.max(1).values;
        using var mean = best.mean();
        return mean.item<double>();
    }

    /// <summary>
    /// One-to-one matching of true features to learned directions maximising the total cosine similarity (the Hungarian
    /// algorithm, <see cref="LinearSumAssignment"/>); <see cref="FeatureMatch.Score"/> is the mean matched cosine over the
    /// true features. Unlike <see cref="MeanMaxCosineSimilarity"/>, one learned direction cannot count for two true features.
    /// </summary>
    public static FeatureMatch HungarianMatch(Tensor learned, Tensor truth)
    {
        using var cos = CosineSimilarities(learned, truth);
        int n = (int)cos.shape[0], k = (int)cos.shape[1];
        var c = cos.contiguous().data<double>().ToArray();
        var cost = new double[n, k];
        for (int i = 0; i < n; i++) for (int j = 0; j < k; j++) cost[i, j] = -c[i * k + j];
        var assignment = LinearSumAssignment(cost);
        var cosines = assignment.Select((j, i) => j < 0 ? 0.0 : c[i * k + j]).ToArray();
        return new FeatureMatch(cosines.Sum() / n, assignment, cosines);
    }

    /// <summary>
    /// Minimum-cost assignment (scipy's <c>linear_sum_assignment</c>): for a cost matrix <c>[rows, cols]</c>, picks
    /// min(rows, cols) cells, at most one per row and per column, with the smallest total. Returns for each row its column,
    /// or −1 when there are more rows than columns and the row is left out. The Hungarian algorithm with potentials
    /// (Kuhn–Munkres, O(rows² · cols)).
    /// </summary>
    /// <remarks>Written here rather than taken from a package: the one NuGet package served here that has it
    /// (Google.OrTools' LinearSumAssignment) brings a large native library and Google.Protobuf for a 40-line algorithm,
    /// and MathNet.Numerics has none.</remarks>
    public static int[] LinearSumAssignment(double[,] cost)
    {
        ArgumentNullException.ThrowIfNull(cost);
        int rows = cost.GetLength(0), cols = cost.GetLength(1);
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                if (!double.IsFinite(cost[i, j]))
                    throw new ArgumentException($"LinearSumAssignment: cost[{i}, {j}] is {cost[i, j]}; every cost must be finite (use a large finite number to forbid a pair).", nameof(cost));
        if (rows == 0 || cols == 0) return Enumerable.Repeat(-1, rows).ToArray();
        if (rows <= cols) return Solve(cost, rows, cols, transposed: false);
        // More rows than columns: solve the transpose (each column gets a row), then invert.
        var colToRow = Solve(cost, cols, rows, transposed: true);
        var result = Enumerable.Repeat(-1, rows).ToArray();
        for (int j = 0; j < cols; j++) result[colToRow[j]] = j;
        return result;
    }

    // Shortest augmenting paths with row/column potentials u, v (the classic O(n²m) formulation); needs n ≤ m.
    // a(i, j) reads the cost of (row i, column j) of the n × m problem, both 1-based.
    static int[] Solve(double[,] cost, int n, int m, bool transposed)
    {
        double A(int i, int j) => transposed ? cost[j - 1, i - 1] : cost[i - 1, j - 1];
        var u = new double[n + 1];
        var v = new double[m + 1];
        var p = new int[m + 1];      // p[j] = row matched to column j (0 = none)
        var way = new int[m + 1];
        var minv = new double[m + 1];
        var used = new bool[m + 1];
        for (int i = 1; i <= n; i++)
        {
            p[0] = i;
            int j0 = 0;
            Array.Fill(minv, double.PositiveInfinity);
            Array.Fill(used, false);
            do
            {
                used[j0] = true;
                int i0 = p[j0], j1 = 0;
                double delta = double.PositiveInfinity;
                for (int j = 1; j <= m; j++)
                {
                    if (used[j]) continue;
                    double cur = A(i0, j) - u[i0] - v[j];
                    if (cur < minv[j]) { minv[j] = cur; way[j] = j0; }
                    if (minv[j] < delta) { delta = minv[j]; j1 = j; }
                }
                for (int j = 0; j <= m; j++)
                {
                    if (used[j]) { u[p[j]] += delta; v[j] -= delta; }
                    else minv[j] -= delta;
                }
                j0 = j1;
            } while (p[j0] != 0);
            do
            {
                int j1 = way[j0];
                p[j0] = p[j1];
                j0 = j1;
            } while (j0 != 0);
        }
        var rowToCol = new int[n];
        for (int j = 1; j <= m; j++) if (p[j] != 0) rowToCol[p[j] - 1] = j - 1;
        return rowToCol;
    }

    static void CheckRows(Tensor learned, Tensor truth)
    {
        ArgumentNullException.ThrowIfNull(learned);
        ArgumentNullException.ThrowIfNull(truth);
        if (learned.dim() != 2 || truth.dim() != 2)
            throw new ArgumentException($"Matching needs directions as rows: learned [n_learned, d] and truth [n_true, d]; got [{string.Join(", ", learned.shape)}] and [{string.Join(", ", truth.shape)}] (an SAE's W_dec is [d_sae, d_in]; transpose a [d_in, d_sae] matrix).");
        if (learned.shape[1] != truth.shape[1])
            throw new ArgumentException($"Matching: learned directions have d = {learned.shape[1]} but true features have d = {truth.shape[1]}; pass both as rows in the same space (transpose W_dec if it is [d_in, d_sae]).");
    }
}
