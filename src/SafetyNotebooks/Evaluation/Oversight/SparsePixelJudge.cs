using SafetyNotebooks.Runtime;
using SafetyNotebooks.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Evaluation.Oversight;

/// <summary>Scores every answer option for many transcripts at once (higher = more believed): what a debater searching over
/// moves asks of a judge model.</summary>
public interface ITranscriptScorer<TEvidence>
{
    /// <summary>One row per transcript, one score per answer option.</summary>
    double[][] Score(IReadOnlyList<DebateTranscript<TEvidence>> transcripts);
}

/// <summary>A batch for the judge: encoded partial images <c>[n, 2·pixels]</c> (float32) and digit labels <c>[n]</c> (int64).</summary>
public sealed record PixelJudgeBatch(Tensor Inputs, Tensor Labels);

/// <summary>
/// The judge of the sparse-pixel debate game (Irving et al. 2018, section 3.1): a classifier that sees only a few revealed pixels
/// of an image, trained on images with <c>k</c> pixels revealed at random. Input: for every pixel a mask bit (revealed or not)
/// and its value (0 when hidden), so <c>[2 · 35]</c>; an MLP with two hidden ReLU layers; output: logits for the ten digits.
/// As a debate judge it believes the side whose committed answer has the higher logit.
/// </summary>
public sealed class SparsePixelJudge : IDebateJudge<Pixel>, ITranscriptScorer<Pixel>
{
    readonly Sequential _net;

    SparsePixelJudge(Sequential net, int revealedInTraining, IReadOnlyList<TrainingRecord> records)
    {
        _net = net; RevealedInTraining = revealedInTraining; TrainingRecords = records;
    }

    /// <summary>How many random pixels the judge saw per training image.</summary>
    public int RevealedInTraining { get; }
    /// <summary>The trainer's records (loss and <c>accuracy</c> per step).</summary>
    public IReadOnlyList<TrainingRecord> TrainingRecords { get; }

    /// <summary>
    /// Trains a judge on images of <paramref name="task"/> with <paramref name="revealed"/> pixels revealed uniformly at random
    /// (a fresh batch of <paramref name="batchSize"/> images per step, <paramref name="steps"/> AdamW steps through the library's
    /// <see cref="Trainer{TBatch}"/>, seeded).
    /// </summary>
    public static SparsePixelJudge Train(SegmentDigits task, int revealed, int steps = 2000, int batchSize = 256, int hidden = 128, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(task);
        if (revealed < 1 || revealed > SegmentDigits.PixelCount)
            throw new ArgumentOutOfRangeException(nameof(revealed), $"Reveal 1…{SegmentDigits.PixelCount} pixels per training image, not {revealed}.");
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), $"Train for at least one step, not {steps}.");
        TorchRuntime.EnsureLoaded();
        torch.random.manual_seed(seed);
        var net = nn.Sequential(nn.Linear(2 * SegmentDigits.PixelCount, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, SegmentDigits.Classes));
        var trainer = new Trainer<PixelJudgeBatch>(new Objective(net), new TrainerConfig
        {
            LearningRate = 3e-3, MaxSteps = steps, BatchSize = batchSize, WarmupSteps = Math.Min(50, steps / 10), Seed = seed,
            ConsoleProgress = false, EvalEvery = int.MaxValue, WeightDecay = 0,
        });
        var records = trainer.Train((_, rng) => RandomBatch(task, revealed, batchSize, rng));
        net.eval();
        return new SparsePixelJudge(net, revealed, records);
    }

    /// <summary>A batch of fresh images with <paramref name="revealed"/> random pixels each.</summary>
    public static PixelJudgeBatch RandomBatch(SegmentDigits task, int revealed, int count, Random rng)
    {
        var inputs = new float[count * 2 * SegmentDigits.PixelCount];
        var labels = new long[count];
        for (int n = 0; n < count; n++)
        {
            int digit = rng.Next(SegmentDigits.Classes);
            var image = task.Sample(digit, rng);
            labels[n] = digit;
            foreach (int i in RandomSubset(SegmentDigits.PixelCount, revealed, rng))
            {
                inputs[n * 2 * SegmentDigits.PixelCount + 2 * i] = 1;
                inputs[n * 2 * SegmentDigits.PixelCount + 2 * i + 1] = image[i];
            }
        }
        return new PixelJudgeBatch(tensor(inputs, new long[] { count, 2 * SegmentDigits.PixelCount }), tensor(labels));
    }

    /// <summary><paramref name="k"/> distinct indices out of 0…<paramref name="n"/>−1, uniformly (a partial Fisher–Yates shuffle).</summary>
    public static int[] RandomSubset(int n, int k, Random rng)
    {
        var idx = Enumerable.Range(0, n).ToArray();
        for (int i = 0; i < k; i++) { int j = i + rng.Next(n - i); (idx[i], idx[j]) = (idx[j], idx[i]); }
        return idx[..k];
    }

    /// <summary>The judge's input for a set of revealed pixels: <c>[mask₀, value₀, mask₁, value₁, …]</c>.</summary>
    public static float[] Encode(IEnumerable<Pixel> revealed)
    {
        var x = new float[2 * SegmentDigits.PixelCount];
        foreach (var p in revealed)
        {
            if (p.Index < 0 || p.Index >= SegmentDigits.PixelCount) throw new ArgumentOutOfRangeException(nameof(revealed), $"Pixel index {p.Index} is outside 0…{SegmentDigits.PixelCount - 1}.");
            x[2 * p.Index] = 1; x[2 * p.Index + 1] = p.Value;
        }
        return x;
    }

    /// <summary>Logits <c>[n][10]</c> for encoded inputs (see <see cref="Encode"/>), in one forward pass.</summary>
    public double[][] Logits(IReadOnlyList<float[]> inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        if (inputs.Count == 0) return [];
        var flat = new float[inputs.Count * 2 * SegmentDigits.PixelCount];
        for (int n = 0; n < inputs.Count; n++) inputs[n].CopyTo(flat, n * 2 * SegmentDigits.PixelCount);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var logits = _net.call(tensor(flat, new long[] { inputs.Count, 2 * SegmentDigits.PixelCount })).to_type(ScalarType.Float64).data<double>().ToArray();
        return Enumerable.Range(0, inputs.Count).Select(n => logits.AsSpan(n * SegmentDigits.Classes, SegmentDigits.Classes).ToArray()).ToArray();
    }

    /// <summary>The digit the judge believes from <paramref name="revealed"/> alone (argmax over all ten).</summary>
    public int Classify(IEnumerable<Pixel> revealed)
    {
        var l = Logits([Encode(revealed)])[0];
        return Array.IndexOf(l, l.Max());
    }

    /// <inheritdoc/>
    public double[][] Score(IReadOnlyList<DebateTranscript<Pixel>> transcripts) =>
        Logits(transcripts.Select(t => Encode(t.Revealed.Select(r => r.Evidence))).ToArray());

    /// <inheritdoc/>
    public Task<DebateVerdict> JudgeAsync(DebateTranscript<Pixel> transcript, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transcript);
        var l = Score([transcript])[0];
        double a = l[transcript.AnswerA], b = l[transcript.AnswerB];
        return Task.FromResult(new DebateVerdict(a >= b ? DebateSide.A : DebateSide.B, a, b, $"logit {a:0.00} for {transcript.AnswerA} vs {b:0.00} for {transcript.AnswerB}"));
    }

    /// <summary>
    /// The judge without debate: for each case, <paramref name="revealed"/> pixels chosen uniformly at random (seeded), then
    /// the judge's argmax. Returns whether it was right, per case.
    /// </summary>
    public bool[] RandomRevealCorrect(IReadOnlyList<DebateCase<Pixel>> cases, int revealed, int seed)
    {
        ArgumentNullException.ThrowIfNull(cases);
        var rng = new Random(seed);
        var inputs = cases.Select(c => Encode(RandomSubset(c.Evidence.Count, revealed, rng).Select(i => c.Evidence[i]))).ToArray();
        var logits = Logits(inputs);
        return cases.Select((c, n) => Array.IndexOf(logits[n], logits[n].Max()) == c.TrueAnswer).ToArray();
    }

    sealed class Objective(Sequential net) : ITrainingObjective<PixelJudgeBatch>
    {
        public nn.Module Model => net;

        public ObjectiveOutput Compute(PixelJudgeBatch batch)
        {
            var logits = net.call(batch.Inputs);
            var loss = nn.functional.cross_entropy(logits, batch.Labels);
            var accuracy = logits.argmax(-1).eq(batch.Labels).to_type(ScalarType.Float32).mean();
            return new ObjectiveOutput(loss, new Dictionary<string, Tensor> { ["accuracy"] = accuracy }, tensor((float)batch.Labels.shape[0]));
        }
    }
}
