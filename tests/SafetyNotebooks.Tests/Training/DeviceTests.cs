using SafetyNotebooks.Data;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Training;

/// <summary>
/// The trainer, its objectives and its data sources honour <see cref="TrainerConfig.Device"/>. Training runs on the meta
/// device (shapes only, no data): any tensor made on the CPU by a hard-coded path meets a meta tensor and torch throws
/// "Expected all tensors to be on the same device". Metrics read as NaN there.
/// </summary>
public class DeviceTests
{
    public DeviceTests() => TorchRuntime.EnsureLoaded();

    static readonly Device Meta = new("meta");
    static TrainerConfig OnMeta(int steps) => new() { MaxSteps = steps, BatchSize = 4, ConsoleProgress = false, EvalEvery = 1, Device = Meta };

    [Fact]
    public void Language_model_trainer_runs_every_source_and_evaluator_on_the_configured_device()
    {
        var task = new SequenceTransformTask(SequenceTransform.Copy, 5, 3);
        var model = new TokenValueLm(task.Tokenizer.VocabSize);
        var trainer = new Trainer(model, OnMeta(2) with { GradientAccumulationSteps = 2 });
        Assert.All(model.parameters(), p => Assert.Equal(DeviceType.META, p.device_type));
        using var heldOut = task.Generate(6, seed: 3);                 // CPU data: the evaluator moves it
        trainer.Evaluator = trainer.HeldOutEvaluator(heldOut.Tokens, heldOut.TargetMask);
        trainer.Train(task);
        Assert.Equal(2, trainer.Step);
        Assert.True(double.IsNaN(trainer.Records[^1].Loss));
        Assert.True(double.IsNaN(trainer.Records[^1].Eval!["eval/loss"]));

        var stream = Enumerable.Range(0, 100).Select(i => i % 5).ToArray();
        var t2 = new Trainer(new TokenValueLm(5), OnMeta(2));
        t2.Train(stream, length: 6);
        using var rows = task.Generate(10, seed: 4);                   // a CPU dataset, moved batch by batch
        var t3 = new Trainer(new TokenValueLm(task.Tokenizer.VocabSize), OnMeta(3));
        t3.Train(rows.Tokens, rows.TargetMask);
        Assert.Equal(3, t3.Step);
        Assert.All(t3.Model.parameters(), p => Assert.Equal(DeviceType.META, p.device_type));
    }

    [Fact]
    public void Custom_objective_trains_on_the_configured_device()
    {
        var probe = nn.Linear(3, 1);
        var batch = new ProbeBatch(randn(8, 3).to(Meta), ones(8).to(Meta));
        var trainer = new Trainer<ProbeBatch>(new LinearProbeObjective(probe), OnMeta(2) with { GradientAccumulationSteps = 2 });
        trainer.Evaluator = trainer.EvaluateOn(new[] { batch });
        trainer.Train(new[] { batch });
        Assert.Equal(2, trainer.Step);
        Assert.Equal(DeviceType.META, probe.weight!.device_type);
        Assert.True(double.IsNaN(trainer.Records[^1].Metrics!["accuracy"]));
    }

    [Fact]
    public void Default_device_is_the_models_device_the_cpu()
    {
        var trainer = new Trainer(TinyModels.Bigram(4, 2, seed: 0), new TrainerConfig { ConsoleProgress = false });
        Assert.Equal(DeviceType.CPU, trainer.Device.type);
    }
}
