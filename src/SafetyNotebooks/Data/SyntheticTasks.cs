using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Data;

/// <summary>
/// One batch of a synthetic task, framed as next-token prediction so any causal LM can be trained on it.
/// </summary>
/// <param name="Tokens">int64 <c>[batch, pos]</c>: the whole sequence, answers included.</param>
/// <param name="TargetMask">bool <c>[batch, pos]</c>: true where the token is an answer to predict (from the logits
/// one position earlier); see the mask convention on <see cref="LanguageModelLoss"/>.</param>
/// <param name="Labels">Per-row class labels (int64 <c>[batch]</c>) for classification tasks, else null.</param>
public sealed record TaskBatch(Tensor Tokens, Tensor TargetMask, Tensor? Labels = null) : IDisposable
{
    /// <summary>Disposes the tensors.</summary>
    public void Dispose() { Tokens.Dispose(); TargetMask.Dispose(); Labels?.Dispose(); }
}

/// <summary>A seeded generator of toy-task batches with its metrics.</summary>
public interface ISyntheticTask
{
    /// <summary>Short task name (used in metric names and plots).</summary>
    string Name { get; }
    /// <summary>Names every id the task uses; <see cref="ITokenizer.VocabSize"/> is the model's required vocab size.</summary>
    SyntheticTokenizer Tokenizer { get; }
    /// <summary>Length of every generated sequence.</summary>
    int SequenceLength { get; }
    /// <summary>
    /// Draws a batch using <paramref name="rng"/> (the only source of randomness, so a seeded rng gives identical data),
    /// with every tensor on <paramref name="device"/> (default CPU).
    /// </summary>
    TaskBatch Generate(int batchSize, Random rng, Device? device = null);
    /// <summary>
    /// The task's metrics for a model's logits <c>[batch, pos, vocab]</c> on <paramref name="batch"/>:
    /// <c>loss</c> (mean next-token CE over the answer positions), <c>accuracy</c> (argmax accuracy over the
    /// answer positions) and, for multi-token answers, <c>sequence_accuracy</c> (all answer tokens right).
    /// </summary>
    IReadOnlyDictionary<string, double> Metrics(Tensor logits, TaskBatch batch);
}

/// <summary>Shared helpers for <see cref="ISyntheticTask"/>.</summary>
public static class SyntheticTasks
{
    /// <summary>Draws a batch with a fresh <c>new Random(seed)</c> on <paramref name="device"/> (default CPU): same seed → identical batch.</summary>
    public static TaskBatch Generate(this ISyntheticTask task, int batchSize, int seed, Device? device = null) => task.Generate(batchSize, new Random(seed), device);

    /// <summary>
    /// TransformerLens-style repeated random tokens for induction-head experiments with any tokenizer:
    /// int64 <c>[batch, 1 + 2·seqLen]</c> = BOS, then <c>seqLen</c> tokens drawn uniformly from
    /// <c>[0, vocabSize)</c> except <paramref name="bosTokenId"/>, then the same tokens again.
    /// </summary>
    public static Tensor RepeatedTokens(int batch, int seqLen, int vocabSize, long bosTokenId, int seed, Device? device = null)
    {
        if (batch < 1 || seqLen < 1 || vocabSize < 2) throw new ArgumentOutOfRangeException(nameof(batch), "batch, seqLen ≥ 1 and vocabSize ≥ 2 required.");
        var rng = new Random(seed);
        int width = 1 + 2 * seqLen;
        var data = new long[batch * width];
        bool excludeBos = bosTokenId >= 0 && bosTokenId < vocabSize;
        for (int b = 0; b < batch; b++)
        {
            int o = b * width;
            data[o] = bosTokenId;
            for (int i = 0; i < seqLen; i++)
            {
                long t = rng.Next(excludeBos ? vocabSize - 1 : vocabSize);
                if (excludeBos && t >= bosTokenId) t++;
                data[o + 1 + i] = t;
                data[o + 1 + seqLen + i] = t;
            }
        }
        return ToTensor(data, batch, width, device);
    }

    /// <summary>
    /// Target mask of the induction-predictable positions of a <see cref="RepeatedTokens"/> sequence: the repeated
    /// half except its first token (which cannot be inferred from context), i.e. positions <c>seqLen+2 .. 2·seqLen</c>.
    /// </summary>
    public static Tensor RepeatedTokensTargetMask(int batch, int seqLen, Device? device = null)
    {
        var m = new bool[batch * (1 + 2 * seqLen)];
        for (int b = 0; b < batch; b++)
            for (int p = seqLen + 2; p <= 2 * seqLen; p++) m[b * (1 + 2 * seqLen) + p] = true;
        TorchRuntime.EnsureLoaded();
        return torch.tensor(m, new long[] { batch, 1 + 2 * seqLen }, device: device);
    }

    internal static Tensor ToTensor(long[] data, int batch, int width, Device? device)
    {
        TorchRuntime.EnsureLoaded();
        return torch.tensor(data, new long[] { batch, width }, dtype: ScalarType.Int64, device: device);
    }

    internal static Tensor MaskTensor(int batch, int width, Func<int, bool> isTarget, Device? device)
    {
        var m = new bool[batch * width];
        for (int b = 0; b < batch; b++)
            for (int p = 0; p < width; p++) m[b * width + p] = isTarget(p);
        TorchRuntime.EnsureLoaded();
        return torch.tensor(m, new long[] { batch, width }, device: device);
    }

    internal static Dictionary<string, double> StandardMetrics(Tensor logits, TaskBatch batch, bool sequence)
    {
        using var scope = torch.NewDisposeScope();
        var d = new Dictionary<string, double>
        {
            ["loss"] = LanguageModelLoss.Mean(logits, batch.Tokens, batch.TargetMask).item<float>(),
            ["accuracy"] = LanguageModelLoss.Accuracy(logits, batch.Tokens, batch.TargetMask),
        };
        if (sequence) d["sequence_accuracy"] = LanguageModelLoss.SequenceAccuracy(logits, batch.Tokens, batch.TargetMask);
        return d;
    }
}

/// <summary>
/// Induction task: <c>&lt;bos&gt;</c>, <c>SeqLen</c> random tokens, the same tokens again. Vocabulary <c>t0..t{V-1}</c>
/// then <c>&lt;bos&gt;</c> (id V). Targets: the repeated half except its first token.
/// </summary>
public sealed class InductionTask : ISyntheticTask
{
    /// <summary>Creates the task with <paramref name="vocabSize"/> ordinary tokens and sequences of length 1 + 2·<paramref name="seqLen"/>.</summary>
    public InductionTask(int vocabSize, int seqLen)
    {
        if (vocabSize < 2 || seqLen < 2) throw new ArgumentOutOfRangeException(nameof(vocabSize), "vocabSize ≥ 2 and seqLen ≥ 2 required.");
        VocabSize = vocabSize; SeqLen = seqLen;
        Tokenizer = new SyntheticTokenizer(vocabSize, new[] { "<bos>" }, bosToken: "<bos>");
    }
    /// <summary>Number of ordinary tokens.</summary>
    public int VocabSize { get; }
    /// <summary>Length of the random half.</summary>
    public int SeqLen { get; }
    /// <inheritdoc/>
    public string Name => "induction";
    /// <inheritdoc/>
    public SyntheticTokenizer Tokenizer { get; }
    /// <inheritdoc/>
    public int SequenceLength => 1 + 2 * SeqLen;

    /// <inheritdoc/>
    public TaskBatch Generate(int batchSize, Random rng, Device? device = null) =>
        new(SyntheticTasks.RepeatedTokens(batchSize, SeqLen, VocabSize, VocabSize, rng.Next(), device),
            SyntheticTasks.RepeatedTokensTargetMask(batchSize, SeqLen, device));

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, double> Metrics(Tensor logits, TaskBatch batch) => SyntheticTasks.StandardMetrics(logits, batch, false);
}

/// <summary>
/// Modular addition (Nanda et al.'s grokking task): sequence <c>[a, b, =, c]</c> with <c>c = (a + b) mod p</c>;
/// ids <c>0..p-1</c> are the numbers (named <c>"0".."p-1"</c>) and <c>=</c> is id p. The model reads the answer
/// from the logits at the <c>=</c> position; the only target is position 3.
/// </summary>
public sealed class ModularAdditionTask : ISyntheticTask
{
    /// <summary>Creates the task for modulus <paramref name="p"/> (≥ 2).</summary>
    public ModularAdditionTask(int p)
    {
        if (p < 2) throw new ArgumentOutOfRangeException(nameof(p));
        P = p;
        Tokenizer = new SyntheticTokenizer(Enumerable.Range(0, p).Select(i => i.ToString()).Append("="));
    }
    /// <summary>The modulus.</summary>
    public int P { get; }
    /// <summary>Id of the <c>=</c> token (= p).</summary>
    public int EqualsTokenId => P;
    /// <inheritdoc/>
    public string Name => "modular_addition";
    /// <inheritdoc/>
    public SyntheticTokenizer Tokenizer { get; }
    /// <inheritdoc/>
    public int SequenceLength => 4;

    /// <inheritdoc/>
    public TaskBatch Generate(int batchSize, Random rng, Device? device = null)
    {
        var pairs = new (int a, int b)[batchSize];
        for (int i = 0; i < batchSize; i++) pairs[i] = (rng.Next(P), rng.Next(P));
        return Build(pairs, device);
    }

    /// <summary>
    /// All p² pairs, shuffled with <paramref name="seed"/> and split: the first <paramref name="trainFraction"/>
    /// go to <c>Train</c>, the rest to <c>Test</c> (the usual grokking setup). Tensors go on <paramref name="device"/> (default CPU).
    /// </summary>
    public (TaskBatch Train, TaskBatch Test) AllPairsSplit(double trainFraction, int seed, Device? device = null)
    {
        if (trainFraction is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(trainFraction));
        var all = new (int, int)[P * P];
        for (int a = 0; a < P; a++) for (int b = 0; b < P; b++) all[a * P + b] = (a, b);
        new Random(seed).Shuffle(all);
        int nTrain = (int)Math.Round(trainFraction * all.Length);
        return (Build(all[..nTrain], device), Build(all[nTrain..], device));
    }

    TaskBatch Build((int a, int b)[] pairs, Device? device)
    {
        var d = new long[pairs.Length * 4];
        var labels = new long[pairs.Length];
        for (int i = 0; i < pairs.Length; i++)
        {
            var (a, b) = pairs[i];
            labels[i] = (a + b) % P;
            d[4 * i] = a; d[4 * i + 1] = b; d[4 * i + 2] = P; d[4 * i + 3] = labels[i];
        }
        return new TaskBatch(SyntheticTasks.ToTensor(d, pairs.Length, 4, device), SyntheticTasks.MaskTensor(pairs.Length, 4, p => p == 3, device),
            torch.tensor(labels, dtype: ScalarType.Int64, device: device));
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, double> Metrics(Tensor logits, TaskBatch batch) => SyntheticTasks.StandardMetrics(logits, batch, false);
}

/// <summary>
/// Balanced-bracket classification: <c>[&lt;bos&gt;, b1..bn, =, label]</c> where each <c>bi</c> is <c>(</c> or <c>)</c>
/// and label is <c>T</c> (balanced) or <c>F</c>. Ids: <c>( = 0, ) = 1, &lt;bos&gt; = 2, = = 3, F = 4, T = 5</c>.
/// Half of each batch (on average) is balanced; unbalanced rows are half uniformly random strings and half
/// shuffles with equal counts of each bracket (the harder case, balanced by count but not by order).
/// <c>Labels</c> holds 1 for balanced, 0 otherwise.
/// </summary>
public sealed class BalancedBracketsTask : ISyntheticTask
{
    /// <summary>Id of <c>(</c>.</summary>
    public const int Open = 0;
    /// <summary>Id of <c>)</c>.</summary>
    public const int Close = 1;
    /// <summary>Id of <c>&lt;bos&gt;</c>.</summary>
    public const int Bos = 2;
    /// <summary>Id of <c>=</c>.</summary>
    public const int EqualsId = 3;
    /// <summary>Id of <c>F</c> (unbalanced).</summary>
    public const int FalseId = 4;
    /// <summary>Id of <c>T</c> (balanced).</summary>
    public const int TrueId = 5;

    /// <summary>Creates the task for bracket strings of even length <paramref name="length"/>.</summary>
    public BalancedBracketsTask(int length)
    {
        if (length < 2 || length % 2 != 0) throw new ArgumentOutOfRangeException(nameof(length), "length must be even and ≥ 2.");
        Length = length;
        Tokenizer = new SyntheticTokenizer(new[] { "(", ")", "<bos>", "=", "F", "T" }, bosToken: "<bos>");
    }
    /// <summary>Number of brackets per sequence.</summary>
    public int Length { get; }
    /// <inheritdoc/>
    public string Name => "balanced_brackets";
    /// <inheritdoc/>
    public SyntheticTokenizer Tokenizer { get; }
    /// <inheritdoc/>
    public int SequenceLength => Length + 3;

    /// <inheritdoc/>
    public TaskBatch Generate(int batchSize, Random rng, Device? device = null)
    {
        int w = SequenceLength;
        var d = new long[batchSize * w];
        var labels = new long[batchSize];
        var s = new int[Length];
        for (int r = 0; r < batchSize; r++)
        {
            bool balanced = rng.Next(2) == 1;
            if (balanced) RandomBalanced(s, rng);
            else
            {
                bool equalCounts = rng.Next(2) == 1;
                do
                {
                    if (equalCounts) { for (int i = 0; i < Length; i++) s[i] = i < Length / 2 ? Open : Close; rng.Shuffle(s); }
                    else for (int i = 0; i < Length; i++) s[i] = rng.Next(2);
                } while (IsBalanced(s));
            }
            int o = r * w;
            d[o] = Bos;
            for (int i = 0; i < Length; i++) d[o + 1 + i] = s[i];
            d[o + Length + 1] = EqualsId;
            d[o + Length + 2] = balanced ? TrueId : FalseId;
            labels[r] = balanced ? 1 : 0;
        }
        return new TaskBatch(SyntheticTasks.ToTensor(d, batchSize, w, device), SyntheticTasks.MaskTensor(batchSize, w, p => p == w - 1, device),
            torch.tensor(labels, dtype: ScalarType.Int64, device: device));
    }

    // Random walk that never goes below zero and ends at zero: open with prob 1/2 when both moves are legal.
    void RandomBalanced(int[] s, Random rng)
    {
        int depth = 0;
        for (int i = 0; i < Length; i++)
        {
            int remaining = Length - i;
            bool mustClose = depth == remaining, mustOpen = depth == 0;
            bool open = mustOpen || (!mustClose && rng.Next(2) == 0);
            s[i] = open ? Open : Close;
            depth += open ? 1 : -1;
        }
    }

    static bool IsBalanced(int[] s)
    {
        int depth = 0;
        foreach (var c in s) { depth += c == Open ? 1 : -1; if (depth < 0) return false; }
        return depth == 0;
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, double> Metrics(Tensor logits, TaskBatch batch) => SyntheticTasks.StandardMetrics(logits, batch, false);
}

/// <summary>Which sequence-to-sequence mapping a <see cref="SequenceTransformTask"/> asks for.</summary>
public enum SequenceTransform
{
    /// <summary>Output = input.</summary>
    Copy,
    /// <summary>Output = input reversed.</summary>
    Reverse,
    /// <summary>Output = input sorted ascending.</summary>
    Sort,
}

/// <summary>
/// Copy / reverse / sort: <c>[&lt;bos&gt;, x1..xn, |, y1..yn]</c> with <c>xi</c> uniform in <c>0..V-1</c>
/// (named <c>t0..</c>), <c>&lt;bos&gt;</c> = V and separator <c>|</c> = V + 1. Targets: the n output tokens.
/// Metrics include per-token <c>accuracy</c> and <c>sequence_accuracy</c> on the output part.
/// </summary>
public sealed class SequenceTransformTask : ISyntheticTask
{
    /// <summary>Creates the task.</summary>
    public SequenceTransformTask(SequenceTransform transform, int numValues, int length)
    {
        if (numValues < 2 || length < 1) throw new ArgumentOutOfRangeException(nameof(numValues));
        Transform = transform; NumValues = numValues; Length = length;
        Tokenizer = new SyntheticTokenizer(numValues, new[] { "<bos>", "|" }, bosToken: "<bos>");
    }
    /// <summary>The mapping.</summary>
    public SequenceTransform Transform { get; }
    /// <summary>Number of value tokens.</summary>
    public int NumValues { get; }
    /// <summary>Input (and output) length.</summary>
    public int Length { get; }
    /// <summary>Id of the separator <c>|</c>.</summary>
    public int SeparatorId => NumValues + 1;
    /// <inheritdoc/>
    public string Name => Transform.ToString().ToLowerInvariant();
    /// <inheritdoc/>
    public SyntheticTokenizer Tokenizer { get; }
    /// <inheritdoc/>
    public int SequenceLength => 2 * Length + 2;

    /// <inheritdoc/>
    public TaskBatch Generate(int batchSize, Random rng, Device? device = null)
    {
        int w = SequenceLength, n = Length;
        var d = new long[batchSize * w];
        var x = new long[n];
        for (int r = 0; r < batchSize; r++)
        {
            for (int i = 0; i < n; i++) x[i] = rng.Next(NumValues);
            var y = Transform switch
            {
                SequenceTransform.Copy => x.ToArray(),
                SequenceTransform.Reverse => x.Reverse().ToArray(),
                _ => x.Order().ToArray(),
            };
            int o = r * w;
            d[o] = NumValues;
            Array.Copy(x, 0, d, o + 1, n);
            d[o + n + 1] = SeparatorId;
            Array.Copy(y, 0, d, o + n + 2, n);
        }
        return new TaskBatch(SyntheticTasks.ToTensor(d, batchSize, w, device), SyntheticTasks.MaskTensor(batchSize, w, p => p >= n + 2, device));
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, double> Metrics(Tensor logits, TaskBatch batch) => SyntheticTasks.StandardMetrics(logits, batch, true);
}
