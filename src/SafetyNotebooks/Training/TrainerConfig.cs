namespace SafetyNotebooks.Training;

/// <summary>
/// Hyper-parameters of <see cref="Trainer"/>. Names follow Hugging Face's <c>TrainingArguments</c> where one exists
/// (<c>learning_rate</c>, <c>weight_decay</c>, <c>adam_beta1/2</c>, <c>adam_epsilon</c>, <c>warmup_steps</c>,
/// <c>max_steps</c>, <c>max_grad_norm</c>, <c>seed</c>, <c>lr_scheduler_type</c>).
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
    /// <summary>Sequences per update. Default 32.</summary>
    public int BatchSize { get; init; } = 32;
    /// <summary>Clip gradients to this global L2 norm; ≤ 0 or infinity disables clipping (the norm is still logged). Default 1.0 (HF).</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>Learning-rate curve after warmup. Default cosine.</summary>
    public LrSchedulerType LrSchedulerType { get; init; } = LrSchedulerType.Cosine;
    /// <summary>Final learning rate as a fraction of <see cref="LearningRate"/>. Default 0 (HF); nanoGPT uses 0.1.</summary>
    public double MinLearningRateRatio { get; init; }
    /// <summary>Run the evaluator every this many updates (and after the last); 0 = only after the last. Default 100.</summary>
    public int EvalEvery { get; init; } = 100;
    /// <summary>Seeds torch (<c>manual_seed</c>, at the start of <see cref="Trainer.Train(Func{int, Random, TrainingBatch})"/>) and the data-order <see cref="Random"/>. Default 42 (HF).</summary>
    public int Seed { get; init; } = 42;
    /// <summary>Save a checkpoint every this many updates (and after the last) when &gt; 0 and <see cref="CheckpointDir"/> is set. Default 0 (off).</summary>
    public int CheckpointEvery { get; init; }
    /// <summary>Folder for <c>step-{n}.safetensors</c> checkpoints; created if missing. Default null (off).</summary>
    public string? CheckpointDir { get; init; }
    /// <summary>Show live progress: one updating output in a notebook, a line on the console (in place on a terminal, every ~10% otherwise). Default true.</summary>
    public bool ConsoleProgress { get; init; } = true;
}
