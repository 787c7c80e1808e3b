using static TorchSharp.torch;

namespace SafetyNotebooks.Training;

/// <summary>Which optimizer <see cref="Trainer{TBatch}"/> builds (HF's <c>optim</c>).</summary>
public enum TrainerOptimizer
{
    /// <summary>AdamW: weight decay decoupled from the gradient (Loshchilov &amp; Hutter; HF <c>adamw_torch</c>).</summary>
    AdamW,
    /// <summary>Adam: weight decay, if any, added to the gradient as L2 (PyTorch <c>Adam(weight_decay=…)</c>).</summary>
    Adam,
}

/// <summary>
/// Hyper-parameters of <see cref="Trainer"/>. Names follow Hugging Face's <c>TrainingArguments</c> where one exists
/// (<c>learning_rate</c>, <c>weight_decay</c>, <c>adam_beta1/2</c>, <c>adam_epsilon</c>, <c>warmup_steps</c>,
/// <c>max_steps</c>, <c>max_grad_norm</c>, <c>seed</c>, <c>lr_scheduler_type</c>, <c>gradient_accumulation_steps</c>, <c>optim</c>).
/// </summary>
public sealed record TrainerConfig
{
    /// <summary>Peak learning rate. Default 1e-3 (suits the small models of the notebooks; HF's default 5e-5 is for fine-tuning).</summary>
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>AdamW decoupled weight decay. Default 0.01 (PyTorch's AdamW default). Applied only to parameters with ≥ 2 dimensions
    /// (weight matrices, embeddings), not to biases or LayerNorm scales, when <see cref="DecayOnlyMatrices"/> (as in nanoGPT).</summary>
    public double WeightDecay { get; init; } = 0.01;
    /// <summary>When true (default), weight decay skips 0-/1-D parameters (biases, norm weights).</summary>
    public bool DecayOnlyMatrices { get; init; } = true;
    /// <summary>AdamW β1. Default 0.9.</summary>
    public double AdamBeta1 { get; init; } = 0.9;
    /// <summary>AdamW β2. Default 0.999 (HF/PyTorch; nanoGPT uses 0.95).</summary>
    public double AdamBeta2 { get; init; } = 0.999;
    /// <summary>AdamW ε. Default 1e-8.</summary>
    public double AdamEpsilon { get; init; } = 1e-8;
    /// <summary>Linear warmup length in updates. Default 0.</summary>
    public int WarmupSteps { get; init; }
    /// <summary>Total optimizer updates. Default 1000.</summary>
    public int MaxSteps { get; init; } = 1000;
    /// <summary>Examples (sequences, pairs, activation rows) per micro-batch (HF <c>per_device_train_batch_size</c>);
    /// an update sees <c>BatchSize · GradientAccumulationSteps</c>. Default 32.</summary>
    public int BatchSize { get; init; } = 32;
    /// <summary>Micro-batches whose gradients are combined into one update (HF <c>gradient_accumulation_steps</c>). The
    /// combination is weighted by each micro-batch's item count (<see cref="ObjectiveOutput.Weight"/>), so the update
    /// equals the one of the big batch. Default 1.</summary>
    public int GradientAccumulationSteps { get; init; } = 1;
    /// <summary>AdamW (default) or Adam.</summary>
    public TrainerOptimizer Optimizer { get; init; } = TrainerOptimizer.AdamW;
    /// <summary>Where training runs: the trainer moves the model there before building the optimizer and creates every
    /// batch it draws (tasks, token windows, dataset rows) there. Null (default): the model's current device, which is
    /// the CPU for a freshly built model. Set e.g. <c>new Device("cuda")</c> with a CUDA build of TorchSharp.</summary>
    public Device? Device { get; init; }
    /// <summary>Clip gradients to this global L2 norm; ≤ 0 or infinity disables clipping (the norm is still logged). Default 1.0 (HF).</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>Learning-rate curve after warmup. Default cosine.</summary>
    public LrSchedulerType LrSchedulerType { get; init; } = LrSchedulerType.Cosine;
    /// <summary>Final learning rate as a fraction of <see cref="LearningRate"/>. Default 0 (HF); nanoGPT uses 0.1.</summary>
    public double MinLearningRateRatio { get; init; }
    /// <summary>Run the evaluator every this many updates (and after the last); 0 = only after the last. Default 100.</summary>
    public int EvalEvery { get; init; } = 100;
    /// <summary>Seeds torch (<c>manual_seed</c>, when <see cref="Trainer{TBatch}.Train(Func{int, Random, TBatch})"/> starts from step 0) and the data-order <see cref="Random"/>. Default 42 (HF).</summary>
    public int Seed { get; init; } = 42;
    /// <summary>Save a checkpoint every this many updates (and after the last) when &gt; 0 and <see cref="CheckpointDir"/> is set. Default 0 (off).</summary>
    public int CheckpointEvery { get; init; }
    /// <summary>Folder for <c>step-{n}.safetensors</c> checkpoints; created if missing. Default null (off).</summary>
    public string? CheckpointDir { get; init; }
    /// <summary>Show live progress through <see cref="SafetyNotebooks.Runtime.Progress"/>: one updating output in a notebook, a line on the
    /// console (in place on a terminal, every ~10% otherwise). Default true.</summary>
    public bool ConsoleProgress { get; init; } = true;
}
