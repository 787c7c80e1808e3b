using SafetyNotebooks.Data;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Training;

/// <summary>A Runtime.Progress sink that records every update with the live-tensor count at that moment.</summary>
sealed class Recorder : IProgressSink
{
    public readonly List<(ProgressUpdate P, long Live)> Items = new();
    public void Report(ProgressUpdate value) { if (!value.Done) Items.Add((value, DisposeScopeManager.Statistics.ThreadTotalLiveCount)); }
}

public class TrainerTests
{
    public TrainerTests() => TorchRuntime.EnsureLoaded();

    const int V = 8;

    // Each row counts up mod V from a different start: the next token is always (t + 1) mod V, which a bigram model can learn.
    static Tensor CountingData(int rows, int len)
    {
        var d = new long[rows * len];
        for (int r = 0; r < rows; r++) for (int i = 0; i < len; i++) d[r * len + i] = (r + i) % V;
        return tensor(d, new long[] { rows, len });
    }

    static TrainerConfig Quiet(int steps) => new() { MaxSteps = steps, BatchSize = 8, LearningRate = 1e-2, ConsoleProgress = false, EvalEvery = 0 };

    [Fact]
    public void Learns_deterministic_bigram()
    {
        using var data = CountingData(16, 12);
        var model = TinyModels.Bigram(V, 16, seed: 1);
        var trainer = new Trainer(model, Quiet(150) with { WarmupSteps = 10 });
        trainer.Train(data);
        Assert.Equal(150, trainer.Step);
        Assert.True(trainer.LossHistory[0] > 1.5, $"initial loss {trainer.LossHistory[0]} should be near ln 8 = 2.08");
        Assert.True(trainer.LossHistory[^1] < 0.1, $"final loss {trainer.LossHistory[^1]}");
    }

    [Fact]
    public void Token_stream_and_held_out_evaluator()
    {
        // stream 0,1,…,7,0,1,… : next token is (t+1) mod 8.
        var stream = Enumerable.Range(0, 400).Select(i => i % V).ToArray();
        using var heldOut = CountingData(4, 10);
        var model = TinyModels.Bigram(V, 16, seed: 7);
        var trainer = new Trainer(model, Quiet(120) with { EvalEvery = 60 });
        trainer.Evaluator = trainer.HeldOutEvaluator(heldOut);
        trainer.Train(stream, length: 9);
        var last = trainer.Records[^1].Eval!;
        Assert.Equal(1.0, last["eval/accuracy"]);
        Assert.True(last["eval/loss"] < 0.2, $"eval/loss {last["eval/loss"]}");
        Assert.NotNull(trainer.Records[59].Eval);
    }

    [Fact]
    public void Same_seed_identical_loss_history()
    {
        double[] Run()
        {
            var task = new InductionTask(vocabSize: 6, seqLen: 4);
            var model = TinyModels.Bigram(task.Tokenizer.VocabSize, 8, seed: 5);
            var t = new Trainer(model, Quiet(25) with { Seed = 11 });
            t.Train(task);
            return t.LossHistory.ToArray();
        }
        var a = Run();
        Assert.Equal(a, Run());
        Assert.Equal(25, a.Length);
    }

    [Fact]
    public void History_data_frame_has_hf_named_columns_and_eval_every()
    {
        var task = new ModularAdditionTask(5);
        using var evalBatch = task.Generate(16, seed: 99);
        var model = TinyModels.Bigram(task.Tokenizer.VocabSize, 8, seed: 2);
        var trainer = new Trainer(model, Quiet(10) with { EvalEvery = 4, WarmupSteps = 2 });
        trainer.Evaluator = trainer.TaskEvaluator(task, evalBatch);
        trainer.Train(task);
        var df = trainer.History;
        Assert.Equal(new[] { "step", "loss", "learning_rate", "grad_norm", "eval/loss", "eval/accuracy" },
            df.Columns.Select(c => c.Name).ToArray());
        Assert.Equal(10, df.Rows.Count);
        Assert.Equal(1, df["step"][0]);
        // eval after updates 4, 8 and the last (10); null elsewhere
        var evalSteps = Enumerable.Range(0, 10).Where(i => df["eval/loss"][i] != null).Select(i => (int)df["step"][i]!).ToArray();
        Assert.Equal(new[] { 4, 8, 10 }, evalSteps);
        // learning_rate column follows the schedule: warmup 1e-2·1/2 then cosine over 8 steps
        Assert.Equal(5e-3, (double)df["learning_rate"][0]!, 12);
        Assert.Equal(1e-2 * 0.5 * (1 + Math.Cos(Math.PI * 3 / 8)), (double)df["learning_rate"][5]!, 12);
    }

    [Fact]
    public void Grad_norm_logged_before_clipping_and_gradients_clipped_to_max_norm_and_lr_applied()
    {
        // loss = 3·w0 + 4·w1 → gradient (3, 4), norm 5. MaxGradNorm 1 → stored gradient (0.6, 0.8).
        var model = new VectorParam(1f, 2f);
        var cfg = new TrainerConfig { MaxSteps = 1, LearningRate = 0.1, WarmupSteps = 4, MaxGradNorm = 1.0, ConsoleProgress = false, WeightDecay = 0.5 };
        var trainer = new Trainer(model, cfg).WithLoss((logits, _) => logits[0, 0, 0] * 3 + logits[0, 0, 1] * 4);
        using var tokens = zeros(new long[] { 1, 2 }, dtype: ScalarType.Int64);
        trainer.Train((_, _) => new TrainingBatch(tokens.alias()));
        Assert.Equal(5.0, trainer.Records[0].GradNorm, 5);
        var g = model.W.grad!.data<float>().ToArray();
        Assert.Equal(0.6, g[0], 5);
        Assert.Equal(0.8, g[1], 5);
        // Adam's first update moves each weight by lr·g/(|g|+eps) ≈ lr = 0.1·1/4 (warmup) = 0.025; 1-D weights get no decay.
        var w = model.W.data<float>().ToArray();
        Assert.Equal(1 - 0.025, w[0], 5);
        Assert.Equal(2 - 0.025, w[1], 5);
    }

    [Fact]
    public void Weight_decay_applies_to_matrices_decoupled()
    {
        // Zero gradient → Adam's step is 0, so the only change is AdamW's decoupled decay: w ← w·(1 − lr·wd).
        var model = new MatrixParam(2f, -4f);
        var cfg = new TrainerConfig { MaxSteps = 1, LearningRate = 0.1, WeightDecay = 0.5, ConsoleProgress = false };
        var trainer = new Trainer(model, cfg).WithLoss((logits, _) => logits.sum() * 0);
        using var tokens = zeros(new long[] { 1, 1 }, dtype: ScalarType.Int64);
        trainer.Train((_, _) => new TrainingBatch(tokens.alias()));
        var w = model.W.data<float>().ToArray();
        Assert.Equal(2 * 0.95, w[0], 5);
        Assert.Equal(-4 * 0.95, w[1], 5);
    }

    [Fact]
    public void Trained_bigram_greedy_generation_counts_up()
    {
        using var data = CountingData(16, 12);
        var model = TinyModels.Bigram(V, 16, seed: 1);
        new Trainer(model, Quiet(150) with { WarmupSteps = 10 }).Train(data);
        using var prompt = tensor(new long[] { 3, 6 }).reshape(2, 1);
        using var r = Generation.Generate(model, prompt, GenerationOptions.Greedy(5));
        Assert.Equal(new long[] { 3, 4, 5, 6, 7, 0,   6, 7, 0, 1, 2, 3 }, r.Tokens.data<long>().ToArray());
    }

    [Fact]
    public void Three_hundred_steps_no_live_tensor_growth()
    {
        var task = new SequenceTransformTask(SequenceTransform.Copy, 5, 4);
        var model = TinyModels.Bigram(task.Tokenizer.VocabSize, 8, seed: 3);
        var rec = new Recorder();
        var trainer = new Trainer(model, Quiet(300)) { ProgressSink = rec };
        trainer.Train(task);
        Assert.Equal(300, rec.Items.Count);
        Assert.Equal(Enumerable.Range(1, 300).Select(i => (long)i), rec.Items.Select(x => x.P.Step));
        Assert.True(rec.Items[^1].P.Metrics.ContainsKey("loss") && rec.Items[^1].P.Metrics.ContainsKey("learning_rate"));
        long at50 = rec.Items[49].Live, at300 = rec.Items[299].Live;
        Assert.True(at50 > 0, "statistics should count live tensors");
        Assert.Equal(at50, at300);
    }

    [Fact]
    public void Checkpoints_written_every_n_and_load_restores_parameters()
    {
        var dir = Path.Combine(Path.GetTempPath(), "sn-ckpt-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var data = CountingData(8, 6);
            var model = TinyModels.Bigram(V, 4, seed: 4);
            var trainer = new Trainer(model, Quiet(10) with { CheckpointEvery = 4, CheckpointDir = dir });
            trainer.Train(data);
            Assert.Equal(new[] { "step-10.safetensors", "step-4.safetensors", "step-8.safetensors" },
                Directory.GetFiles(dir, "*.safetensors").Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray());
            var fresh = TinyModels.Bigram(V, 4, seed: 123);
            new Trainer(fresh, Quiet(1)).LoadCheckpoint(Path.Combine(dir, "step-10.safetensors"));
            var a = model.state_dict(); var b = fresh.state_dict();
            foreach (var k in a.Keys) Assert.Equal(a[k].data<float>().ToArray(), b[k].data<float>().ToArray());
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Fact]
    public void Checkpoint_restores_step_and_optimizer_state_so_resuming_matches_an_uninterrupted_run()
    {
        var dir = Path.Combine(Path.GetTempPath(), "sn-resume-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var data = CountingData(8, 6);   // BatchSize 8 = the whole dataset: every update sees the same rows
            var straight = TinyModels.Bigram(V, 4, seed: 4);
            new Trainer(straight, Quiet(6) with { WarmupSteps = 2 }).Train(data);

            var t1Half = new Trainer(TinyModels.Bigram(V, 4, seed: 4), Quiet(3) with { WarmupSteps = 2, CheckpointDir = dir, CheckpointEvery = 3 });
            t1Half.Train(data);
            var path = Path.Combine(dir, "step-3.safetensors");
            Assert.True(File.Exists(Trainer.OptimizerStatePath(path)));
            Assert.Empty(Directory.GetFiles(dir, "*.tmp"));   // the optimizer state is written to a temp file, then renamed

            var resumedModel = TinyModels.Bigram(V, 4, seed: 77);
            var resumed = new Trainer(resumedModel, Quiet(6) with { WarmupSteps = 2 });
            resumed.LoadCheckpoint(path);
            Assert.Equal(3, resumed.Step);
            resumed.Train(data);
            Assert.Equal(3, resumed.Records.Count);
            foreach (var (a, b) in straight.parameters().Zip(resumedModel.parameters()))
                Assert.Equal(a.data<float>().ToArray(), b.data<float>().ToArray(), (x, y) => Math.Abs(x - y) < 1e-5);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }
}
