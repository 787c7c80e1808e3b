using SafetyNotebooks.Runtime;
using SafetyNotebooks.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Data;

/// <summary>
/// One batch of <see cref="IndirectObjectTask"/> prompts: three versions of each prompt with the same length and padding
/// (so one attention mask serves all three), the two names, and the training sequence (the clean prompt + its answer).
/// </summary>
/// <param name="Clean">int64 [batch, width]: <c>&lt;bos&gt;</c> … A … B … S … <c>to</c>, left-padded; S (the subject) is the
/// repeated name, the answer is the other one (the indirect object, IO).</param>
/// <param name="Corrupted">The same prompts with the second S replaced by IO: now IO repeats and the answer is S
/// (Wang et al.'s "swap which name repeats" corruption; the logit difference IO − S flips sign).</param>
/// <param name="Abc">The same prompts with the second S replaced by a third name C, so no name repeats (the IOI paper's "ABC"
/// distribution, the reference for mean ablation).</param>
/// <param name="AttentionMask">int64 [batch, width], 1 = real token, 0 = left padding.</param>
/// <param name="IndirectObject">int64 [batch]: the answer of the clean prompt (the name that appears once).</param>
/// <param name="Subject">int64 [batch]: the repeated name of the clean prompt.</param>
/// <param name="Lengths">Real (unpadded) length of each prompt.</param>
/// <param name="SecondSubjectPositions">Position (in the padded width) of the second S token in each row.</param>
public sealed record IoiBatch(Tensor Clean, Tensor Corrupted, Tensor Abc, Tensor AttentionMask, Tensor IndirectObject, Tensor Subject,
    int[] Lengths, int[] SecondSubjectPositions) : IDisposable
{
    /// <summary>Number of prompts.</summary>
    public int BatchSize => Lengths.Length;

    /// <summary>
    /// The clean prompts with their answer appended, int64 [batch, width + 1] (left-padded), with the attention mask and the
    /// target mask (true only at the answer), ready for <c>Training.TrainingBatch(tokens, targetMask, attentionMask)</c>.
    /// </summary>
    public (Tensor Tokens, Tensor TargetMask, Tensor AttentionMask) TrainingSequences()
    {
        long b = Clean.shape[0];
        var tokens = cat(new[] { Clean, IndirectObject.reshape(b, 1) }, 1);
        var mask = cat(new[] { AttentionMask, ones(b, 1, dtype: AttentionMask.dtype, device: AttentionMask.device) }, 1);
        var target = zeros(b, Clean.shape[1] + 1, dtype: ScalarType.Bool, device: Clean.device);
        target.select(1, Clean.shape[1]).fill_(true);
        return (tokens, target, mask);
    }

    /// <summary>Disposes the tensors.</summary>
    public void Dispose()
    {
        Clean.Dispose(); Corrupted.Dispose(); Abc.Dispose(); AttentionMask.Dispose(); IndirectObject.Dispose(); Subject.Dispose();
    }
}

/// <summary>
/// A toy indirect-object-identification task (after Wang et al. 2022, "Interpretability in the Wild"): "which name was not
/// repeated". A prompt is <c>&lt;bos&gt;</c>, then two different names A and B in random order, then the first-clause name S
/// again (S is A or B), with random filler words in the four gaps, and the end token <c>to</c>; the answer is the other name
/// (IO). Gaps are 0…<see cref="MaxGap"/> fillers each, so prompts have varying lengths (5 … 5 + 4·MaxGap tokens); a batch is
/// left-padded with <c>&lt;pad&gt;</c> to its longest prompt, so the end token is always the last position.
/// </summary>
/// <remarks>
/// Vocabulary: the names (ids 0 … NumNames − 1), the fillers, then <c>to</c>, <c>&lt;bos&gt;</c>, <c>&lt;pad&gt;</c>.
/// Generation draws only from the given <see cref="Random"/>, so a seed gives identical batches.
/// </remarks>
public sealed class IndirectObjectTask
{
    /// <summary>The name tokens (at most this many are used).</summary>
    public static readonly string[] AllNames =
    [
        "Mary", "John", "Anna", "Paul", "Lisa", "Mark", "Emma", "Tom", "Kate", "Sam", "Rose", "Dan", "Ella", "Ben", "Ivy", "Max",
        "Nora", "Leo", "Ruth", "Ian", "Zoe", "Ray", "Amy", "Joe",
    ];

    /// <summary>The filler words (at most this many are used).</summary>
    public static readonly string[] AllFillers =
    [
        "when", "and", "went", "the", "store", "then", "gave", "a", "drink", "had", "fun", "at", "school", "later", "bag", "ring",
    ];

    /// <summary>Creates the task.</summary>
    /// <param name="numNames">Names to draw from (3 … 24).</param>
    /// <param name="numFillers">Filler words to draw from (1 … 16).</param>
    /// <param name="maxGap">Most fillers in each of the four gaps (0 … 16).</param>
    public IndirectObjectTask(int numNames = 16, int numFillers = 12, int maxGap = 3)
    {
        if (numNames < 3 || numNames > AllNames.Length)
            throw new ArgumentOutOfRangeException(nameof(numNames), numNames, $"numNames must be 3 … {AllNames.Length} (the ABC prompts need three different names).");
        if (numFillers < 1 || numFillers > AllFillers.Length)
            throw new ArgumentOutOfRangeException(nameof(numFillers), numFillers, $"numFillers must be 1 … {AllFillers.Length}.");
        if (maxGap < 0 || maxGap > 16)
            throw new ArgumentOutOfRangeException(nameof(maxGap), maxGap, "maxGap (fillers per gap) must be 0 … 16.");
        NumNames = numNames; NumFillers = numFillers; MaxGap = maxGap;
        var names = AllNames.Take(numNames).Concat(AllFillers.Take(numFillers)).Concat(new[] { "to", "<bos>", "<pad>" });
        Tokenizer = new SyntheticTokenizer(names, bosToken: "<bos>", padToken: "<pad>");
    }

    /// <summary>Number of name tokens (ids 0 … NumNames − 1).</summary>
    public int NumNames { get; }
    /// <summary>Number of filler tokens (ids NumNames …).</summary>
    public int NumFillers { get; }
    /// <summary>Most fillers per gap.</summary>
    public int MaxGap { get; }
    /// <summary>The vocabulary; its <see cref="SyntheticTokenizer.VocabSize"/> is the model's d_vocab.</summary>
    public SyntheticTokenizer Tokenizer { get; }
    /// <summary>Id of the end token <c>to</c> (the last real token of every prompt).</summary>
    public int EndId => NumNames + NumFillers;
    /// <summary>Id of <c>&lt;bos&gt;</c>.</summary>
    public int BosId => NumNames + NumFillers + 1;
    /// <summary>Id of <c>&lt;pad&gt;</c>.</summary>
    public int PadId => NumNames + NumFillers + 2;
    /// <summary>Longest prompt: <c>&lt;bos&gt;</c>, three names, four gaps of <see cref="MaxGap"/>, <c>to</c>; the answer adds one (the model's n_ctx).</summary>
    public int MaxPromptLength => 5 + 4 * MaxGap;

    /// <summary>Draws a batch with a fresh <c>new Random(seed)</c>: same seed → identical batch.</summary>
    public IoiBatch Generate(int batchSize, int seed, Device? device = null) => Generate(batchSize, new Random(seed), device);

    /// <summary>Draws <paramref name="batchSize"/> prompts using only <paramref name="rng"/>, padded on the left to the longest.</summary>
    public IoiBatch Generate(int batchSize, Random rng, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(rng);
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "batchSize must be at least 1.");
        var rows = new List<(List<int> Clean, int S2, int Io, int S, int C)>(batchSize);
        for (int b = 0; b < batchSize; b++)
        {
            int a = rng.Next(NumNames), bb = rng.Next(NumNames - 1);
            if (bb >= a) bb++;                                           // two different names, in random order
            bool firstRepeats = rng.Next(2) == 0;
            int s = firstRepeats ? a : bb, io = firstRepeats ? bb : a;
            int c;
            do c = rng.Next(NumNames); while (c == a || c == bb);
            var seq = new List<int> { BosId };
            void Gap() { int n = rng.Next(MaxGap + 1); for (int i = 0; i < n; i++) seq.Add(NumNames + rng.Next(NumFillers)); }
            Gap(); seq.Add(a); Gap(); seq.Add(bb); Gap();
            int s2 = seq.Count; seq.Add(s); Gap();
            seq.Add(EndId);
            rows.Add((seq, s2, io, s, c));
        }
        int width = rows.Max(r => r.Clean.Count);
        var clean = new long[batchSize * width];
        var corrupted = new long[batchSize * width];
        var abc = new long[batchSize * width];
        var mask = new long[batchSize * width];
        var lengths = new int[batchSize];
        var s2Pos = new int[batchSize];
        for (int b = 0; b < batchSize; b++)
        {
            var (seq, s2, io, s, c) = rows[b];
            int pad = width - seq.Count, o = b * width;
            lengths[b] = seq.Count;
            s2Pos[b] = pad + s2;
            for (int p = 0; p < width; p++)
            {
                bool real = p >= pad;
                long t = real ? seq[p - pad] : PadId;
                clean[o + p] = corrupted[o + p] = abc[o + p] = t;
                mask[o + p] = real ? 1 : 0;
            }
            corrupted[o + pad + s2] = io;
            abc[o + pad + s2] = c;
        }
        TorchRuntime.EnsureLoaded();
        long[] shape = [batchSize, width];
        return new IoiBatch(
            torch.tensor(clean, shape, dtype: ScalarType.Int64, device: device),
            torch.tensor(corrupted, shape, dtype: ScalarType.Int64, device: device),
            torch.tensor(abc, shape, dtype: ScalarType.Int64, device: device),
            torch.tensor(mask, shape, dtype: ScalarType.Int64, device: device),
            torch.tensor(rows.Select(r => (long)r.Io).ToArray(), dtype: ScalarType.Int64, device: device),
            torch.tensor(rows.Select(r => (long)r.S).ToArray(), dtype: ScalarType.Int64, device: device),
            lengths, s2Pos);
    }

    /// <summary>The real tokens of row <paramref name="row"/> of <paramref name="tokens"/> as words (padding dropped).</summary>
    public string Decode(Tensor tokens, int row)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        var ids = tokens[row].data<long>().Where(t => t != PadId).Select(t => (int)t).ToArray();
        return Tokenizer.Decode(ids);
    }
}
