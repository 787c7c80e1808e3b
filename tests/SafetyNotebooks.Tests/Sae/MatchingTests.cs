using SafetyNotebooks.Runtime;
using SafetyNotebooks.Sae;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Sae;

public class MatchingTests
{
    public MatchingTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void MMCS_and_the_Hungarian_score_are_one_for_a_permuted_rescaled_copy_of_the_true_features()
    {
        using var truth = new GroundTruthFeatures(new GroundTruthConfig { DModel = 16, NFeatures = 24, MeanActiveFeatures = 3, Seed = 5 });
        var perm = new[] { 3, 0, 7, 1, 2, 5, 4, 6, 8, 9, 10, 11, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12 };
        using var learned = truth.Features.index_select(0, torch.tensor(perm.Select(i => (long)i).ToArray())) * 2.5;
        Assert.Equal(1.0, Matching.MeanMaxCosineSimilarity(learned, truth.Features), 5);
        var match = Matching.HungarianMatch(learned, truth.Features);
        Assert.Equal(1.0, match.Score, 5);
        for (int j = 0; j < perm.Length; j++) Assert.Equal(j, match.Assignment[perm[j]]);   // true feature perm[j] is learned row j
    }

    [Fact]
    public void MMCS_and_the_Hungarian_score_match_a_hand_worked_two_by_two_case()
    {
        // truth t₀ = (1, 0), t₁ = (0, 1); learned l₀ = (0.8, 0.6), l₁ = (−1, 0).
        // cos: t₀ → [0.8, −1], t₁ → [0.6, 0]. MMCS = (0.8 + 0.6) / 2 = 0.7 (both true features pick l₀).
        // One-to-one: t₀→l₀, t₁→l₁ gives 0.8 + 0 = 0.8; the other pairing −1 + 0.6 = −0.4; so 0.8 / 2 = 0.4.
        using var truth = torch.tensor(new double[] { 1, 0, 0, 1 }).reshape(2, 2);
        using var learned = torch.tensor(new double[] { 0.8, 0.6, -1, 0 }).reshape(2, 2);
        Assert.Equal(0.7, Matching.MeanMaxCosineSimilarity(learned, truth), 12);
        var match = Matching.HungarianMatch(learned, truth);
        Assert.Equal(0.4, match.Score, 12);
        Assert.Equal(new[] { 0, 1 }, match.Assignment);
        Assert.Equal(new[] { 0.8, 0.0 }, match.Cosines.Select(c => Math.Round(c, 12)));
    }

    [Fact]
    public void Fewer_learned_directions_than_true_features_leave_the_rest_unmatched_at_zero()
    {
        // truth (1,0), (0,1), (0.6,0.8); one learned direction (0,1): it goes to t₁ (cos 1) rather than t₂ (0.8). Score = 1 / 3.
        using var truth = torch.tensor(new double[] { 1, 0, 0, 1, 0.6, 0.8 }).reshape(3, 2);
        using var learned = torch.tensor(new double[] { 0, 1 }).reshape(1, 2);
        var match = Matching.HungarianMatch(learned, truth);
        Assert.Equal(new[] { -1, 0, -1 }, match.Assignment);
        Assert.Equal(1.0 / 3, match.Score, 12);
    }

    [Fact]
    public void Linear_sum_assignment_solves_a_known_cost_matrix()
    {
        // scipy.optimize.linear_sum_assignment's documented example: columns [1, 0, 2], total 1 + 2 + 2 = 5.
        var cost = new double[,] { { 4, 1, 3 }, { 2, 0, 5 }, { 3, 2, 2 } };
        Assert.Equal(new[] { 1, 0, 2 }, Matching.LinearSumAssignment(cost));
    }

    [Fact]
    public void Linear_sum_assignment_equals_brute_force_on_small_random_matrices()
    {
        var rng = new Random(11);
        for (int trial = 0; trial < 60; trial++)
        {
            int rows = rng.Next(1, 7), cols = rng.Next(1, 7);
            var cost = new double[rows, cols];
            for (int i = 0; i < rows; i++) for (int j = 0; j < cols; j++) cost[i, j] = Math.Round(rng.NextDouble() * 20 - 5, 2);
            var a = Matching.LinearSumAssignment(cost);
            // Valid: min(rows, cols) rows assigned, distinct columns.
            Assert.Equal(Math.Min(rows, cols), a.Count(j => j >= 0));
            Assert.Equal(a.Count(j => j >= 0), a.Where(j => j >= 0).Distinct().Count());
            double got = a.Select((j, i) => j < 0 ? 0 : cost[i, j]).Sum();
            Assert.Equal(BruteForce(cost), got, 9);
        }
    }

    // Every injective map from the smaller side to the larger one.
    static double BruteForce(double[,] cost)
    {
        int rows = cost.GetLength(0), cols = cost.GetLength(1);
        bool t = rows > cols;
        int n = t ? cols : rows, m = t ? rows : cols;
        double best = double.PositiveInfinity;
        var used = new bool[m];
        void Go(int i, double acc)
        {
            if (i == n) { best = Math.Min(best, acc); return; }
            for (int j = 0; j < m; j++)
            {
                if (used[j]) continue;
                used[j] = true;
                Go(i + 1, acc + (t ? cost[j, i] : cost[i, j]));
                used[j] = false;
            }
        }
        Go(0, 0);
        return best;
    }

    [Fact]
    public void Bad_inputs_give_one_line_errors_naming_the_fix()
    {
        var e = Assert.Throws<ArgumentException>(() => Matching.LinearSumAssignment(new double[,] { { 1, double.NaN } }));
        Assert.Contains("cost[0, 1]", e.Message);
        var e2 = Assert.Throws<ArgumentException>(() => Matching.MeanMaxCosineSimilarity(torch.zeros(4, 3), torch.zeros(5, 8)));
        Assert.Contains("d = 3", e2.Message);
        Assert.Contains("transpose", e2.Message);
    }
}
