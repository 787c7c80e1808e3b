using SafetyNotebooks.Runtime;
using SafetyNotebooks.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Training;

/// <summary>The same Trainer loop trains a pairwise reward model and a linear probe (test objectives in TestObjectives.cs).</summary>
public class ObjectiveTests
{
    public ObjectiveTests() => TorchRuntime.EnsureLoaded();

    static TrainerConfig Quiet(int steps) => new() { MaxSteps = steps, ConsoleProgress = false, EvalEvery = 0, WeightDecay = 0 };

    // True reward r*(x) = w*·x. Pairs of random feature vectors; the chosen one is the one with the higher true reward.
    static PreferenceBatch Pairs(int n, float[] wStar, Random rng)
    {
        int d = wStar.Length;
        var a = new float[n * d]; var b = new float[n * d];
        var chosen = new float[n * d]; var rejected = new float[n * d];
        for (int i = 0; i < n * d; i++) { a[i] = (float)Gaussian(rng); b[i] = (float)Gaussian(rng); }
        for (int r = 0; r < n; r++)
        {
            double ra = 0, rb = 0;
            for (int j = 0; j < d; j++) { ra += wStar[j] * a[r * d + j]; rb += wStar[j] * b[r * d + j]; }
            var (c, x) = ra >= rb ? (a, b) : (b, a);
            Array.Copy(c, r * d, chosen, r * d, d);
            Array.Copy(x, r * d, rejected, r * d, d);
        }
        return new PreferenceBatch(tensor(chosen, new long[] { n, d }), tensor(rejected, new long[] { n, d }));
    }

    static double Gaussian(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    [Fact]
    public void Reward_model_bradley_terry_learns_the_known_reward()
    {
        var wStar = new[] { 1f, -2f, 0.5f, 0f, 1.5f, -1f };
        var model = nn.Linear(wStar.Length, 1, hasBias: false);
        using (no_grad()) model.weight!.zero_();   // r ≡ 0: every margin is 0, so loss = −log σ(0) = ln 2 and accuracy 0 (ties are not wins)
        var trainer = new Trainer<PreferenceBatch>(new RewardModelObjective(model), Quiet(150) with { LearningRate = 0.05, BatchSize = 32 });
        var heldOut = new[] { Pairs(256, wStar, new Random(7)) };
        trainer.Evaluator = trainer.EvaluateOn(heldOut);
        var initial = trainer.EvaluateOn(heldOut)();
        Assert.Equal(Math.Log(2), initial["loss"], 6);
        Assert.Equal(0.0, initial["rewards/accuracies"]);
        trainer.Train((_, rng) => Pairs(trainer.Config.BatchSize, wStar, rng));

        Assert.Equal(Math.Log(2), trainer.Records[0].Loss, 5);   // the first update's batch was scored by the zero model
        var eval = trainer.Records[^1].Eval!;
        Assert.True(eval["eval/rewards/accuracies"] > 0.9, $"held-out preference accuracy {eval["eval/rewards/accuracies"]}");
        Assert.True(eval["eval/loss"] < 0.4, $"held-out loss {eval["eval/loss"]}");
        Assert.True(eval["eval/rewards/margins"] > 0);
        // The learned reward points along the true one (Bradley–Terry identifies r up to scale and shift).
        var w = model.weight!.data<float>().ToArray();
        double dot = w.Zip(wStar, (p, q) => (double)p * q).Sum();
        double cos = dot / Math.Sqrt(w.Sum(x => (double)x * x) * wStar.Sum(x => (double)x * x));
        Assert.True(cos > 0.95, $"cosine(learned, true reward) = {cos}");
        var df = trainer.History;
        Assert.Contains("rewards/accuracies", df.Columns.Select(c => c.Name));
        Assert.Contains("eval/rewards/margins", df.Columns.Select(c => c.Name));
    }

    [Fact]
    public void Linear_probe_separable_activations_reaches_perfect_accuracy()
    {
        // Two Gaussian clusters at ±3·u (u a unit direction) with noise σ = 0.5 per coordinate, d = 8: the classes are
        // 3/0.5 = 6σ from the boundary along u, so the Bayes accuracy is 1 − Φ(−6) ≈ 1 − 1e-9.
        const int d = 8, n = 200;
        var rng = new Random(3);
        var u = Enumerable.Range(0, d).Select(_ => Gaussian(rng)).ToArray();
        double un = Math.Sqrt(u.Sum(x => x * x));
        ProbeBatch Make(Random r)
        {
            var x = new float[n * d]; var y = new float[n];
            for (int i = 0; i < n; i++)
            {
                y[i] = i % 2;
                double s = y[i] == 1 ? 3 : -3;
                for (int j = 0; j < d; j++) x[i * d + j] = (float)(s * u[j] / un + 0.5 * Gaussian(r));
            }
            return new ProbeBatch(tensor(x, new long[] { n, d }), tensor(y));
        }
        var train = Make(new Random(11));
        var test = Make(new Random(12));
        torch.random.manual_seed(0);
        var probe = nn.Linear(d, 1);
        var trainer = new Trainer<ProbeBatch>(new LinearProbeObjective(probe), Quiet(100) with { LearningRate = 0.05 });
        trainer.Evaluator = trainer.EvaluateOn(new[] { test });
        trainer.Train(new[] { train });
        Assert.Equal(1.0, trainer.Records[^1].Eval!["eval/accuracy"]);
        Assert.Equal(1.0, trainer.Records[^1].Metrics!["accuracy"]);
        Assert.Equal(100.0, trainer.Records[^1].Epoch);   // one batch per epoch
    }

    [Fact]
    public void Linear_probe_converges_to_closed_form_logistic_regression()
    {
        // 1-D activations x = +1 (4 of 5 labelled 1) and x = −1 (1 of 5 labelled 1). The maximum-likelihood logistic
        // regression solves σ(w + b) = 0.8 and σ(−w + b) = 0.2, so b = 0 and w = logit(0.8) = ln 4; the loss there is the
        // binary entropy H(0.2) = −0.8 ln 0.8 − 0.2 ln 0.2 = 0.500402 nats and the accuracy is 0.8.
        var x = new[] { 1f, 1, 1, 1, 1, -1, -1, -1, -1, -1 };
        var y = new[] { 1f, 1, 1, 1, 0, 1, 0, 0, 0, 0 };
        var batch = new ProbeBatch(tensor(x).reshape(10, 1), tensor(y));
        var probe = nn.Linear(1, 1);
        using (no_grad()) { probe.weight!.zero_(); probe.bias!.zero_(); }
        var trainer = new Trainer<ProbeBatch>(new LinearProbeObjective(probe), Quiet(600) with { LearningRate = 0.1, WarmupSteps = 10 });
        trainer.Evaluator = trainer.EvaluateOn(new[] { batch });
        trainer.Train(new[] { batch });
        Assert.Equal(Math.Log(4), probe.weight!.data<float>()[0], 3);
        Assert.Equal(0.0, probe.bias!.data<float>()[0], 3);
        Assert.Equal(0.500402, trainer.Records[^1].Eval!["eval/loss"], 5);
        Assert.Equal(0.8, trainer.Records[^1].Eval!["eval/accuracy"], 6);
        Assert.Equal(Math.Log(2), trainer.Records[0].Loss, 6);   // w = b = 0 → every prediction is σ(0) = ½
    }

    [Fact]
    public void After_optimizer_step_runs_after_every_update()
    {
        var probe = nn.Linear(3, 1);
        var objective = new NormalizingProbeObjective(probe);
        var batch = new ProbeBatch(tensor(new[] { 1f, 2, 3, -1, -2, -3 }).reshape(2, 3), tensor(new[] { 1f, 0 }));
        var trainer = new Trainer<ProbeBatch>(objective, Quiet(5) with { LearningRate = 0.5, GradientAccumulationSteps = 2 });
        trainer.Train(new[] { batch });
        Assert.Equal(5, objective.HookCalls);
        Assert.Equal(1.0, probe.weight!.norm().item<float>(), 5);
    }

    [Fact]
    public void Adam_couples_weight_decay_into_the_gradient()
    {
        // Zero loss, so the gradient is only Adam's L2 term wd·w = 0.5·(2, −4) = (1, −2); Adam's first step moves each weight
        // by lr·g/|g| = lr against the sign: (2 − 0.1, −4 + 0.1). AdamW would give w·(1 − lr·wd) = (1.9, −3.8).
        var model = new MatrixParam(2f, -4f);
        var cfg = new TrainerConfig { MaxSteps = 1, LearningRate = 0.1, WeightDecay = 0.5, ConsoleProgress = false, Optimizer = TrainerOptimizer.Adam };
        var trainer = new Trainer(model, cfg).WithLoss((logits, _) => logits.sum() * 0);
        using var tokens = zeros(new long[] { 1, 1 }, dtype: ScalarType.Int64);
        trainer.Train((_, _) => new TrainingBatch(tokens.alias()));
        var w = model.W.data<float>().ToArray();
        Assert.Equal(1.9, w[0], 5);
        Assert.Equal(-3.9, w[1], 5);
    }
}
