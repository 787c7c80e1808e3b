using SafetyNotebooks.Runtime;
using SafetyNotebooks.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Training;

public class GradientAccumulationTests
{
    public GradientAccumulationTests() => TorchRuntime.EnsureLoaded();

    const int V = 7, Len = 6, Steps = 3, K = 4, B = 2;

    // Steps·K·B rows of random tokens; row r has (r % 4) + 1 target tokens, so micro-batches hold different numbers of
    // targets and only a token-weighted combination equals the big batch's mean over its tokens.
    static (Tensor Tokens, Tensor Mask) Data()
    {
        var rng = new Random(5);
        int rows = Steps * K * B;
        var t = new long[rows * Len];
        var m = new bool[rows * Len];
        for (int r = 0; r < rows; r++)
        {
            for (int p = 0; p < Len; p++) t[r * Len + p] = rng.Next(V);
            for (int p = Len - 1 - r % 4; p < Len; p++) m[r * Len + p] = true;
        }
        return (tensor(t, new long[] { rows, Len }), tensor(m, new long[] { rows, Len }));
    }

    static (float[][] Grads, float[][] Params) Run(int accumulation, int batch, Tensor tokens, Tensor mask)
    {
        var model = TinyModels.Bigram(V, 5, seed: 9);
        var trainer = new Trainer(model, new TrainerConfig
        {
            MaxSteps = Steps, BatchSize = batch, GradientAccumulationSteps = accumulation, LearningRate = 1e-2, WarmupSteps = 1,
            MaxGradNorm = 0.5, ConsoleProgress = false, EvalEvery = 0,
        });
        int next = 0;
        trainer.Train((step, _) =>
        {
            var b = new TrainingBatch(tokens.narrow(0, next, batch), mask.narrow(0, next, batch));
            next += batch;
            return b;
        });
        // Gradients of the last update (after accumulation and clipping) and the parameters after all updates.
        var grads = model.parameters().Select(p => p.grad!.data<float>().ToArray()).ToArray();
        return (grads, model.parameters().Select(p => p.data<float>().ToArray()).ToArray());
    }

    [Fact]
    public void K_micro_batches_give_the_same_updates_as_one_big_batch()
    {
        var (tokens, mask) = Data();
        var (gBig, pBig) = Run(accumulation: 1, batch: K * B, tokens, mask);
        var (gAcc, pAcc) = Run(accumulation: K, batch: B, tokens, mask);
        for (int i = 0; i < pBig.Length; i++)
        {
            for (int j = 0; j < pBig[i].Length; j++)
            {
                Assert.Equal(gBig[i][j], gAcc[i][j], 1e-6);
                Assert.Equal(pBig[i][j], pAcc[i][j], 1e-6);
            }
        }
        // The check is sensitive: an unweighted mean of the micro-batch losses gives a different update.
        var model = TinyModels.Bigram(V, 5, seed: 9);
        var naive = new Trainer(model, new TrainerConfig { MaxSteps = 1, BatchSize = K * B, LearningRate = 1e-2, WarmupSteps = 1, MaxGradNorm = 0.5, ConsoleProgress = false })
        {
            Loss = (logits, t, m) =>
            {
                var parts = Enumerable.Range(0, K).Select(k => SafetyNotebooks.Models.LanguageModelLoss.Mean(logits.narrow(0, k * B, B), t.narrow(0, k * B, B), m!.narrow(0, k * B, B)));
                return torch.stack(parts).mean();
            },
        };
        naive.Train((_, _) => new TrainingBatch(tokens.narrow(0, 0, K * B), mask.narrow(0, 0, K * B)));
        var naiveGrads = model.parameters().SelectMany(p => p.grad!.data<float>().ToArray()).ToArray();
        var accumulatedGrads = RunOne(tokens, mask).SelectMany(x => x).ToArray();
        Assert.Contains(naiveGrads.Zip(accumulatedGrads), pair => Math.Abs(pair.First - pair.Second) > 1e-4);
    }

    // Gradients after one accumulated update (K micro-batches of B rows).
    static float[][] RunOne(Tensor tokens, Tensor mask)
    {
        var model = TinyModels.Bigram(V, 5, seed: 9);
        var trainer = new Trainer(model, new TrainerConfig { MaxSteps = 1, BatchSize = B, GradientAccumulationSteps = K, LearningRate = 1e-2, WarmupSteps = 1, MaxGradNorm = 0.5, ConsoleProgress = false });
        int next = 0;
        trainer.Train((_, _) => { var b = new TrainingBatch(tokens.narrow(0, next, B), mask.narrow(0, next, B)); next += B; return b; });
        return model.parameters().Select(p => p.grad!.data<float>().ToArray()).ToArray();
    }

    [Fact]
    public void Logged_loss_is_the_big_batch_token_mean()
    {
        var (tokens, mask) = Data();
        var model = TinyModels.Bigram(V, 5, seed: 9);
        double expected;
        using (no_grad())
            expected = SafetyNotebooks.Models.LanguageModelLoss.Mean(model.call(tokens.narrow(0, 0, K * B)), tokens.narrow(0, 0, K * B), mask.narrow(0, 0, K * B)).item<float>();
        var trainer = new Trainer(model, new TrainerConfig { MaxSteps = 1, BatchSize = B, GradientAccumulationSteps = K, ConsoleProgress = false });
        int next = 0;
        trainer.Train((_, _) => { var b = new TrainingBatch(tokens.narrow(0, next, B), mask.narrow(0, next, B)); next += B; return b; });
        Assert.Equal(expected, trainer.Records[0].Loss, 5);
    }
}
