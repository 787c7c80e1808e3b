using Microsoft.Data.Analysis;
using SafetyNotebooks.Interpretability;
using SafetyNotebooks.Models;
using SafetyNotebooks.Plotting;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Interpretability;

public class ProbingTests
{
    public ProbingTests() => TorchRuntime.EnsureLoaded();

    /// <summary>n Gaussian points in d dimensions (seeded, System.Random) and binary labels sign(x·w) for a fixed w.</summary>
    static (float[] X, long[] Y) LinearlySeparable(int n, int d, int seed)
    {
        var rng = new Random(seed);
        var w = Enumerable.Range(0, d).Select(i => i % 2 == 0 ? 1.0 : -0.5).ToArray();
        var x = new float[n * d];
        var y = new long[n];
        for (int i = 0; i < n; i++)
        {
            double dot = 0;
            for (int j = 0; j < d; j++) { x[i * d + j] = (float)Gaussian(rng); dot += x[i * d + j] * w[j]; }
            y[i] = dot > 0 ? 1 : 0;
        }
        return (x, y);
    }

    static double Gaussian(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    static ProbeBatch Batch(float[] x, long[] y, int[] rows, int d) =>
        new(tensor(rows.SelectMany(r => x.Skip(r * d).Take(d)).ToArray(), new long[] { rows.Length, d }), tensor(rows.Select(r => y[r]).ToArray()));

    [Fact]
    public void A_logistic_probe_classifies_a_separable_two_dimensional_toy_perfectly()
    {
        // Three classes in bands along x0 + x1 (cut at −1 and +1), with a margin of 0.3 around each cut; x1 − x0 is noise.
        var rng = new Random(3);
        var pts = new List<(float, float, long)>();
        while (pts.Count < 300)
        {
            double a = rng.NextDouble() * 6 - 3, b = rng.NextDouble() * 6 - 3, s = a + b;
            if (Math.Abs(s + 1) < 0.3 || Math.Abs(s - 1) < 0.3) continue;
            pts.Add(((float)a, (float)b, s < -1 ? 0 : s < 1 ? 1 : 2));
        }
        var x = pts.SelectMany(p => new[] { p.Item1, p.Item2 }).ToArray();
        var y = pts.Select(p => p.Item3).ToArray();
        var (train, test) = Probing.TrainTestSplit(pts.Count, 0.25, seed: 1);
        using var trainBatch = Batch(x, y, train, 2);
        using var testBatch = Batch(x, y, test, 2);
        var result = Probing.TrainLogistic(trainBatch, testBatch, numClasses: 3, Probing.DefaultTrainerConfig with { LearningRate = 0.1, MaxSteps = 1500 });
        Assert.Equal(1.0, result.TrainMetric);
        Assert.Equal(1.0, result.TestMetric);
        Assert.Equal("accuracy", result.MetricName);
    }

    [Fact]
    public void A_probe_on_real_labels_is_near_perfect_and_on_shuffled_labels_stays_at_chance()
    {
        const int n = 800, d = 16;
        var (x, y) = LinearlySeparable(n, d, seed: 5);
        var shuffled = y.ToArray();
        new Random(9).Shuffle(shuffled);
        var (train, test) = Probing.TrainTestSplit(n, 0.25, seed: 2);
        var cfg = Probing.DefaultTrainerConfig with { LearningRate = 0.05, MaxSteps = 400 };
        using var realTrain = Batch(x, y, train, d);
        using var realTest = Batch(x, y, test, d);
        using var fakeTrain = Batch(x, shuffled, train, d);
        using var fakeTest = Batch(x, shuffled, test, d);
        var real = Probing.TrainLogistic(realTrain, realTest, 2, cfg);
        var fake = Probing.TrainLogistic(fakeTrain, fakeTest, 2, cfg);
        Assert.True(real.TestMetric >= 0.95, $"real labels: held-out accuracy {real.TestMetric}");
        // Chance is the majority rate of the held-out shuffled labels; with 200 test points one standard error is about 0.035,
        // so a probe that learned nothing lands within ±0.1 (about 3 standard errors) of it.
        double majority = Math.Max(test.Average(i => (double)shuffled[i]), 1 - test.Average(i => (double)shuffled[i]));
        Assert.InRange(fake.TestMetric, majority - 0.1, majority + 0.1);
        Assert.True(real.TestMetric - fake.TestMetric > 0.3);
    }

    [Fact]
    public void A_linear_regression_probe_recovers_the_least_squares_solution()
    {
        const int n = 200, d = 3;
        var rng = new Random(11);
        var trueW = new[] { 1.5, -2.0, 0.5 };
        const double trueB = 0.7;
        var x = new double[n, d];
        var y = new double[n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < d; j++) x[i, j] = Gaussian(rng);
            y[i] = trueB + Enumerable.Range(0, d).Sum(j => trueW[j] * x[i, j]) + 0.1 * Gaussian(rng);
        }
        // Closed form by hand: normal equations (AᵀA) θ = Aᵀy with A = [x, 1], solved by Gaussian elimination with pivoting.
        int k = d + 1;
        var m = new double[k, k + 1];
        for (int i = 0; i < n; i++)
            for (int r = 0; r < k; r++)
            {
                double ar = r < d ? x[i, r] : 1;
                for (int c = 0; c < k; c++) m[r, c] += ar * (c < d ? x[i, c] : 1);
                m[r, k] += ar * y[i];
            }
        for (int col = 0; col < k; col++)
        {
            int piv = Enumerable.Range(col, k - col).MaxBy(r => Math.Abs(m[r, col]));
            for (int c = 0; c <= k; c++) (m[col, c], m[piv, c]) = (m[piv, c], m[col, c]);
            for (int r = 0; r < k; r++)
            {
                if (r == col) continue;
                double f = m[r, col] / m[col, col];
                for (int c = 0; c <= k; c++) m[r, c] -= f * m[col, c];
            }
        }
        var theta = Enumerable.Range(0, k).Select(r => m[r, k] / m[r, r]).ToArray();

        using var xs = tensor(Enumerable.Range(0, n * d).Select(i => (float)x[i / d, i % d]).ToArray(), new long[] { n, d });
        using var ys = tensor(y.Select(v => (float)v).ToArray());
        var result = Probing.TrainLinearRegression(new ProbeBatch(xs, ys), null,
            Probing.DefaultTrainerConfig with { LearningRate = 0.05, MaxSteps = 1500 });
        var w = result.Probe.weight!.data<float>().ToArray();
        var b = result.Probe.bias!.data<float>().ToArray();
        for (int j = 0; j < d; j++) Assert.Equal(theta[j], w[j], 2e-3);
        Assert.Equal(theta[d], b[0], 2e-3);
        // The least-squares fit's R² by hand.
        double mean = y.Average(), ssTot = y.Sum(v => (v - mean) * (v - mean));
        double ssRes = Enumerable.Range(0, n).Sum(i => Math.Pow(y[i] - theta[d] - Enumerable.Range(0, d).Sum(j => theta[j] * x[i, j]), 2));
        Assert.Equal(1 - ssRes / ssTot, result.TrainMetric, 1e-4);
    }

    [Fact]
    public void R_squared_and_cross_entropy_match_hand_computed_values()
    {
        // y = 1,2,3,4, ŷ = 1,2,3,5: SS_res = 1, SS_tot = 5 → R² = 0.8.
        using var r2 = LinearRegressionProbeObjective.RSquared(tensor(new[] { 1f, 2, 3, 5 }), tensor(new[] { 1f, 2, 3, 4 }));
        Assert.Equal(0.8, r2.item<float>(), 1e-6);
        // Logits (1, 2, 3), label 0: log(e + e² + e³) − 1 = 2.4076059644; label 2: 0.4076059644. Mean 1.4076059644.
        using var ce = LogisticProbeObjective.CrossEntropy(tensor(new[] { 1f, 2, 3, 1, 2, 3 }, new long[] { 2, 3 }), tensor(new long[] { 0, 2 }));
        Assert.Equal(1.4076059644, ce.item<float>(), 1e-5);
    }

    [Fact]
    public void The_split_is_seeded_disjoint_and_complete()
    {
        var (a, b) = Probing.TrainTestSplit(40, 0.25, seed: 7);
        var (a2, b2) = Probing.TrainTestSplit(40, 0.25, seed: 7);
        var (_, b3) = Probing.TrainTestSplit(40, 0.25, seed: 8);
        Assert.Equal(10, b.Length);
        Assert.Equal(Enumerable.Range(0, 40), a.Concat(b).Order());
        Assert.Equal(a, a2);
        Assert.Equal(b, b2);
        Assert.NotEqual(b, b3);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Probing.TrainTestSplit(40, 1.0, 0));
        Assert.Contains("testFraction", e.Message);
    }

    [Fact]
    public void Selectivity_is_task_accuracy_minus_control_accuracy()
    {
        Assert.Equal(0.3, ProbeControlTask.Selectivity(0.9, 0.6), 12);
        var task = SweepFrame(new[] { "h0", "h1" }, new[] { 0.55, 0.95 });
        var control = SweepFrame(new[] { "h1", "h0" }, new[] { 0.40, 0.50 });   // other row order: joined by (hook, position)
        var s = ProbeControlTask.Selectivity(task, control);
        Assert.Equal(new[] { 0.50, 0.40 }, s["control_accuracy"].Cast<double>().ToArray());
        Assert.Equal(0.05, (double)s["selectivity"][0]!, 12);
        Assert.Equal(0.55, (double)s["selectivity"][1]!, 12);
        var missing = SweepFrame(new[] { "h0" }, new[] { 0.5 });
        var e = Assert.Throws<ArgumentException>(() => ProbeControlTask.Selectivity(task, missing));
        Assert.Contains("h1", e.Message);
    }

    static DataFrame SweepFrame(string[] hooks, double[] test) => new(
        new StringDataFrameColumn("hook", hooks), new Int32DataFrameColumn("layer", hooks.Select(h => int.Parse(h[1..]))),
        new Int32DataFrameColumn("position", hooks.Select(_ => -1)), new DoubleDataFrameColumn("train_accuracy", test),
        new DoubleDataFrameColumn("test_accuracy", test));

    [Fact]
    public void Control_labels_are_fixed_per_type_seeded_and_follow_the_label_distribution()
    {
        // 2,000 types, each seen at 3 positions; task labels: 75 % class 0, 25 % class 3.
        const int types = 2000;
        var typeIds = Enumerable.Range(0, types * 3).Select(i => (long)(i % types)).ToArray();
        var labels = Enumerable.Range(0, types * 3).Select(i => i % 4 == 0 ? 3L : 0L).ToArray();
        using var t = tensor(typeIds, new long[] { 3, types });
        using var l = tensor(labels, new long[] { 3, types });
        using var c1 = ProbeControlTask.Labels(t, l, seed: 4);
        using var c2 = ProbeControlTask.Labels(t, l, seed: 4);
        using var c3 = ProbeControlTask.Labels(t, l, seed: 5);
        var a = c1.data<long>().ToArray();
        Assert.Equal(a, c2.data<long>().ToArray());
        Assert.NotEqual(a, c3.data<long>().ToArray());
        for (int i = 0; i < types; i++) { Assert.Equal(a[i], a[types + i]); Assert.Equal(a[i], a[2 * types + i]); }
        Assert.All(a, v => Assert.True(v == 0 || v == 3));
        // Binomial(2000, 0.75): standard deviation of the fraction about 0.01; ±0.04 is 4 of them.
        Assert.InRange(a.Take(types).Count(v => v == 0) / (double)types, 0.71, 0.79);
        // Token-position types: token + vocab · position.
        using var tp = ProbeControlTask.TokenPositionTypes(tensor(new long[] { 0, 1, 1, 2, 0, 0 }, new long[] { 2, 3 }), vocabSize: 3);
        Assert.Equal(new long[] { 0, 4, 7, 2, 3, 6 }, tp.data<long>().ToArray());
        // Two-token context, base 4 (symbol 3 = before the start), plus 16 · position: (3,0) (0,1) (1,1) / (3,2) (2,0) (0,0).
        using var tp2 = ProbeControlTask.TokenPositionTypes(tensor(new long[] { 0, 1, 1, 2, 0, 0 }, new long[] { 2, 3 }), vocabSize: 3, context: 2);
        Assert.Equal(new long[] { 12, 17, 37, 14, 24, 32 }, tp2.data<long>().ToArray());
    }

    [Fact]
    public void The_sweep_finds_the_layer_that_encodes_the_label()
    {
        // Two "layers" [batch 120, pos 4, d 8]: layer 0 is noise, layer 1 writes the label along a fixed direction (+ noise).
        const int batch = 120, pos = 4, d = 8;
        torch.random.manual_seed(1);
        var labels = torch.randint(0, 3, new long[] { batch, pos });
        var noise = torch.randn(batch, pos, d);
        var dir = torch.randn(3, d) * 2;
        var encoded = noise * 0.3 + dir.index_select(0, labels.reshape(-1)).reshape(batch, pos, d);
        var mask = torch.ones(batch, pos, dtype: ScalarType.Bool);
        mask[.., 0] = false;                                                       // position 0 is not an example
        var sweep = ProbeSweep.Run(new[] { ("noise", noise), ("encoded", encoded) }, labels,
            new ProbeSweepOptions { Trainer = Probing.DefaultTrainerConfig with { LearningRate = 0.05 } }, mask);
        Assert.Equal(new[] { "hook", "layer", "position", "train_accuracy", "test_accuracy", "n_train", "n_test" }, sweep.Columns.Select(c => c.Name));
        Assert.Equal(2 * (1 + pos - 1), (int)sweep.Rows.Count);                    // pooled + positions 1..3 per hook (position 0 has no example)
        var pooled = ProbeSweep.AtPosition(sweep, ProbeSweep.AllPositions);
        Assert.Equal(90 * 3, (long)pooled["n_train"][0]!);                         // 90 training rows × 3 labelled positions
        Assert.InRange((double)pooled["test_accuracy"][0]!, 0.2, 0.5);            // noise: chance is 1/3
        Assert.True((double)pooled["test_accuracy"][1]! >= 0.97, $"encoded layer: {pooled["test_accuracy"][1]}");
        var (z, rows, cols) = ProbePlots.Grid(sweep);
        Assert.Equal(new[] { 2, 4 }, new[] { z.GetLength(0), z.GetLength(1) });
        Assert.True(double.IsNaN(z[0, 0]));                                        // no probe at position 0
        Assert.Equal((double)ProbeSweep.AtPosition(sweep, 2)["test_accuracy"][1]!, z[1, 2]);
        Assert.Equal("1: encoded", rows[1]);
    }

    [Fact]
    public void The_model_sweep_reads_the_current_token_from_the_embedding_residual()
    {
        var cfg = new HookedTransformerConfig { NLayers = 1, DModel = 16, NHeads = 2, DHead = 8, DMlp = 32, NCtx = 6, DVocab = 4, Seed = 3 };
        using var model = new HookedTransformer(cfg);
        var rng = new Random(2);
        using var tokens = tensor(Enumerable.Range(0, 60 * 6).Select(_ => (long)rng.Next(4)).ToArray(), new long[] { 60, 6 });
        var sweep = ProbeSweep.Run(model, tokens, tokens, new ProbeSweepOptions { PerPosition = false, Trainer = Probing.DefaultTrainerConfig with { LearningRate = 0.05 } });
        Assert.Equal(new[] { "blocks.0.hook_resid_pre", "blocks.0.hook_resid_post" }, sweep["hook"].Cast<string>());
        Assert.Equal(1.0, (double)sweep["test_accuracy"][0]!);                     // token embeddings are distinct directions
        var e = Assert.Throws<ArgumentException>(() => ProbeSweep.Run(model, tokens, tokens.to_type(ScalarType.Float32)));
        Assert.Contains("int64", e.Message);
    }

    [Fact]
    public void Bad_labels_fail_with_a_message_naming_the_fix()
    {
        using var x = torch.randn(4, 3);
        using var y = tensor(new long[] { 0, 1, 5, 1 });
        var e = Assert.Throws<ArgumentException>(() => Probing.TrainLogistic(new ProbeBatch(x, y), null, numClasses: 2));
        Assert.Contains("numClasses", e.Message);
        var f = Assert.Throws<ArgumentException>(() => new LogisticProbeObjective(3, 2).Compute(new ProbeBatch(torch.randn(4, 5), tensor(new long[] { 0, 1, 0, 1 }))));
        Assert.Contains("width 3", f.Message);
    }
}
