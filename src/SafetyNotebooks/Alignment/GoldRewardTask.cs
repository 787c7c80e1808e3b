using SafetyNotebooks.Models;
using SafetyNotebooks.Tokenization;
using SafetyNotebooks.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment;

/// <summary>
/// A synthetic RLHF setting with a <b>known true ("gold") reward</b>, as in the DPO paper's controlled-sentiment task and
/// Gao et al. 2022's overoptimization study: a toy language of a few words, a seeded bigram process that generates it (the
/// "pretraining distribution" a small policy learns in seconds), and a hidden gold reward computable from any completion:
/// <code>gold(y) = (1/n)·Σₜ w[yₜ] − RepeatPenalty·(1/n)·#{t ≥ 1 : yₜ = yₜ₋₁}</code>
/// over the n completion tokens (a linear "sentiment" of the token counts, minus a penalty for immediate repeats; a
/// <c>&lt;bos&gt;</c> that a policy samples inside a completion counts as a neutral token, weight 0).
/// Preferences are sampled from it by <see cref="GoldPreferenceOracle"/> (Bradley–Terry with a temperature, optional label
/// flips, a label budget). Every prompt is the single <c>&lt;bos&gt;</c> token; completions have
/// <see cref="CompletionLength"/> tokens and no EOS.
/// </summary>
public sealed class GoldRewardTask
{
    /// <summary>The default words: fillers and nouns (weight 0) and six sentiment words.</summary>
    public static readonly IReadOnlyList<string> DefaultWords =
        new[] { "the", "a", "and", "it", "was", "food", "movie", "awful", "bad", "dull", "okay", "good", "great" };

    /// <summary>The default hidden weights of <see cref="DefaultWords"/>: awful −2, bad −1, dull −0.5, okay 0.5, good 1, great 2, the rest 0.</summary>
    public static readonly IReadOnlyList<double> DefaultWeights =
        new[] { 0.0, 0, 0, 0, 0, 0, 0, -2, -1, -0.5, 0.5, 1, 2 };

    readonly double[][] _transitions;   // [W + 1][W]: row w = next-word distribution after word w; row W = after <bos>

    /// <summary>
    /// A task with the given words, hidden weights and bigram transition probabilities.
    /// <paramref name="transitions"/> has one row per word and a last row for the start (after <c>&lt;bos&gt;</c>); each row
    /// holds the next-word probabilities (non-negative, summing to 1).
    /// </summary>
    public GoldRewardTask(IReadOnlyList<string> words, IReadOnlyList<double> weights, double[][] transitions, int completionLength = 8, double repeatPenalty = 0.0)
    {
        ArgumentNullException.ThrowIfNull(words);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(transitions);
        int w = words.Count;
        if (w < 2) throw new ArgumentException($"GoldRewardTask needs at least 2 words, got {w}; pass a longer word list.", nameof(words));
        if (weights.Count != w) throw new ArgumentException($"GoldRewardTask has {w} words but {weights.Count} weights; give one gold weight per word.", nameof(weights));
        if (transitions.Length != w + 1)
            throw new ArgumentException($"transitions has {transitions.Length} rows; give {w + 1}: one per word, then one for the start (after <bos>).", nameof(transitions));
        for (int i = 0; i <= w; i++)
        {
            var row = transitions[i];
            if (row is null || row.Length != w) throw new ArgumentException($"transitions row {i} has {row?.Length ?? 0} entries; give {w} (one per next word).", nameof(transitions));
            if (row.Any(p => !(p >= 0)) || Math.Abs(row.Sum() - 1) > 1e-6)
                throw new ArgumentException($"transitions row {i} is not a probability distribution (entries ≥ 0 summing to 1, sum is {row.Sum()}); normalise it.", nameof(transitions));
        }
        if (completionLength < 2) throw new ArgumentOutOfRangeException(nameof(completionLength), completionLength, "completionLength must be at least 2.");
        if (!(repeatPenalty >= 0)) throw new ArgumentOutOfRangeException(nameof(repeatPenalty), repeatPenalty, "repeatPenalty must be ≥ 0 (it is subtracted).");
        Words = words.ToArray();
        Weights = weights.ToArray();
        _transitions = transitions.Select(r => r.ToArray()).ToArray();
        CompletionLength = completionLength;
        RepeatPenalty = repeatPenalty;
        Tokenizer = new SyntheticTokenizer(Words.Append("<bos>"), bosToken: "<bos>", padToken: "<bos>");
    }

    /// <summary>
    /// The default task: <see cref="DefaultWords"/> with <see cref="DefaultWeights"/>, and a bigram process drawn from
    /// <paramref name="seed"/>: each row is a softmax of normal(0, <paramref name="sharpness"/>) logits, with the
    /// sentiment words (non-zero weight) made <paramref name="sentimentRarity"/> nats less likely, so the pretrained policy
    /// writes mostly neutral text and has room to improve.
    /// </summary>
    public static GoldRewardTask Create(int seed = 0, int completionLength = 8, double repeatPenalty = 0.5, double sharpness = 1.5, double sentimentRarity = 1.0)
    {
        var rng = new Random(seed);
        int w = DefaultWords.Count;
        var rows = new double[w + 1][];
        for (int i = 0; i <= w; i++)
        {
            var logits = Enumerable.Range(0, w).Select(j => sharpness * Normal(rng) - (DefaultWeights[j] != 0 ? sentimentRarity : 0)).ToArray();
            double max = logits.Max();
            var e = logits.Select(l => Math.Exp(l - max)).ToArray();
            double s = e.Sum();
            rows[i] = e.Select(x => x / s).ToArray();
        }
        return new GoldRewardTask(DefaultWords, DefaultWeights, rows, completionLength, repeatPenalty);
    }

    /// <summary>The words, in id order (word i has token id i).</summary>
    public IReadOnlyList<string> Words { get; }
    /// <summary>The hidden gold weights w (one per word).</summary>
    public IReadOnlyList<double> Weights { get; }
    /// <summary>Tokens per completion n.</summary>
    public int CompletionLength { get; }
    /// <summary>The penalty per immediate repeat (averaged over the completion's length).</summary>
    public double RepeatPenalty { get; }
    /// <summary>The words followed by <c>&lt;bos&gt;</c> (also the padding token).</summary>
    public SyntheticTokenizer Tokenizer { get; }
    /// <summary>Id of <c>&lt;bos&gt;</c> (= the number of words).</summary>
    public long BosTokenId => Words.Count;
    /// <summary>Vocabulary size (words + <c>&lt;bos&gt;</c>).</summary>
    public int VocabSize => Words.Count + 1;
    /// <summary>The prompt every completion continues: <c>[&lt;bos&gt;]</c>.</summary>
    public IReadOnlyList<long> Prompt => new[] { BosTokenId };
    /// <summary>Next-word probabilities after <paramref name="previous"/> (a word id, or <see cref="BosTokenId"/> for the start).</summary>
    public IReadOnlyList<double> NextWordProbabilities(long previous) => _transitions[CheckToken(previous, allowBos: true)];

    /// <summary>The gold reward of a completion (token ids after the prompt): mean weight minus the repeat penalty (see the class summary).</summary>
    public double Gold(IReadOnlyList<long> completion)
    {
        ArgumentNullException.ThrowIfNull(completion);
        if (completion.Count == 0) throw new ArgumentException("A completion needs at least one token to have a gold reward.", nameof(completion));
        double sum = 0;
        int repeats = 0;
        for (int t = 0; t < completion.Count; t++)
        {
            int id = CheckToken(completion[t], allowBos: true);
            if (id < Words.Count) sum += Weights[id];                  // a stray <bos> (a policy may sample it) is neutral
            if (t > 0 && completion[t] == completion[t - 1]) repeats++;
        }
        return (sum - RepeatPenalty * repeats) / completion.Count;
    }

    /// <summary>The gold reward of a completion written as text (space-separated words).</summary>
    public double Gold(string completion) => Gold(Tokenizer.Encode(completion).Select(i => (long)i).ToArray());

    /// <summary>The gold rewards <c>[batch]</c> of completions <c>[batch, n]</c> (int64 word ids).</summary>
    public Tensor GoldBatch(Tensor completions)
    {
        ArgumentNullException.ThrowIfNull(completions);
        if (completions.dim() != 2) throw new ArgumentException($"completions must be [batch, n], got [{string.Join(", ", completions.shape)}].", nameof(completions));
        int b = (int)completions.shape[0], n = (int)completions.shape[1];
        var ids = completions.cpu().to_type(ScalarType.Int64).contiguous().data<long>().ToArray();
        var g = new float[b];
        for (int i = 0; i < b; i++) g[i] = (float)Gold(new ArraySegment<long>(ids, i * n, n));
        return torch.tensor(g, device: completions.device);
    }

    /// <summary>The gold reward as a PPO/GRPO/RLOO <see cref="ScoreFunction"/> (reads the completion tokens).</summary>
    public ScoreFunction GoldScore => ScoreFunctions.FromTokens((_, r) => Gold(r));

    /// <summary>A completion sampled from the bigram process (word ids, no <c>&lt;bos&gt;</c>).</summary>
    public long[] SampleCompletion(Random rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        var y = new long[CompletionLength];
        long prev = BosTokenId;
        for (int t = 0; t < y.Length; t++) prev = y[t] = Draw(_transitions[prev], rng);
        return y;
    }

    /// <summary>Pairs of distinct completions from the bigram process, for labelling.</summary>
    public IReadOnlyList<(long[] A, long[] B)> SamplePairs(int count, Random rng)
    {
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), count, "count must be ≥ 0.");
        var pairs = new List<(long[], long[])>(count);
        while (pairs.Count < count)
        {
            var a = SampleCompletion(rng);
            var b = SampleCompletion(rng);
            if (!a.SequenceEqual(b)) pairs.Add((a, b));
        }
        return pairs;
    }

    /// <summary>A pretraining batch <c>[batch, 1 + n]</c>: <c>&lt;bos&gt;</c> then a completion from the bigram process.</summary>
    public Tensor PretrainingBatch(int batch, Random rng)
    {
        var data = new long[batch * (1 + CompletionLength)];
        for (int i = 0; i < batch; i++)
        {
            int o = i * (1 + CompletionLength);
            data[o] = BosTokenId;
            SampleCompletion(rng).CopyTo(data, o + 1);
        }
        return torch.tensor(data, new long[] { batch, 1 + CompletionLength });
    }

    /// <summary>Prompts <c>[batch, 1]</c> (all <c>&lt;bos&gt;</c>) for rollouts.</summary>
    public PromptBatch Prompts(int batch) => new(torch.full(batch, 1, BosTokenId, dtype: ScalarType.Int64));

    /// <summary>The log-probability (nats) of a completion (word ids) under the bigram process.</summary>
    public double LogProbability(IReadOnlyList<long> completion)
    {
        ArgumentNullException.ThrowIfNull(completion);
        double lp = 0;
        long prev = BosTokenId;
        foreach (var t in completion) { lp += Math.Log(_transitions[prev][CheckToken(t, allowBos: false)]); prev = t; }
        return lp;
    }

    /// <summary>A small transformer for this task (2 layers, d_model 32, 4 heads, context 1 + n), seeded.</summary>
    public HookedTransformerConfig ModelConfig(int seed = 0) => new()
    {
        NLayers = 2, DModel = 32, NHeads = 4, DHead = 8, DMlp = 64, NCtx = 1 + CompletionLength, DVocab = VocabSize, Seed = seed,
    };

    /// <summary>
    /// The "pretrained" policy: a <see cref="ModelConfig"/> transformer trained by the library's <see cref="Trainer"/> on
    /// <see cref="PretrainingBatch"/>es (next-token loss on the completion tokens), seeded. 300 steps of 64 rows take a few
    /// seconds and bring the loss close to the bigram process's entropy rate.
    /// </summary>
    public HookedTransformer PretrainPolicy(int steps = 300, int batchSize = 64, int seed = 0, double learningRate = 3e-3)
    {
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "steps must be ≥ 1.");
        var model = new HookedTransformer(ModelConfig(seed));
        var trainer = new Trainer(model, new TrainerConfig
        {
            LearningRate = learningRate, MaxSteps = steps, BatchSize = batchSize, WarmupSteps = Math.Min(20, steps / 10), Seed = seed,
            ConsoleProgress = false, WeightDecay = 0.0,
        });
        trainer.Train((i, rng) => new TrainingBatch(PretrainingBatch(batchSize, rng)));
        model.eval();
        return model;
    }

    /// <summary>The entropy rate of the bigram process per completion (nats): the loss floor of pretraining, summed over n tokens.</summary>
    public double CompletionEntropy()
    {
        // Distribution of the previous token at each step, propagated exactly.
        int w = Words.Count;
        var state = new double[w + 1];
        state[w] = 1;
        double h = 0;
        for (int t = 0; t < CompletionLength; t++)
        {
            var next = new double[w + 1];
            for (int s = 0; s <= w; s++)
            {
                if (state[s] == 0) continue;
                foreach (var (p, j) in _transitions[s].Select((p, j) => (p, j)))
                {
                    if (p > 0) h -= state[s] * p * Math.Log(p);
                    next[j] += state[s] * p;
                }
            }
            state = next;
        }
        return h;
    }

    /// <summary>Decodes word ids to space-separated text.</summary>
    public string Decode(IEnumerable<long> ids) => Tokenizer.Decode(ids.Select(i => (int)i));

    int CheckToken(long id, bool allowBos)
    {
        if (id >= 0 && id < Words.Count) return (int)id;
        if (allowBos && id == BosTokenId) return (int)id;
        throw new ArgumentException($"Token id {id} is not a word of this task (ids 0..{Words.Count - 1}{(allowBos ? $", or <bos> = {BosTokenId}" : "")}); pass completion tokens only, without <bos> or padding.");
    }

    static long Draw(double[] p, Random rng)
    {
        double u = rng.NextDouble(), c = 0;
        for (int i = 0; i < p.Length; i++) { c += p[i]; if (u < c) return i; }
        return p.Length - 1;
    }

    internal static double Normal(Random rng)
    {
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}

/// <summary>One preference label drawn by <see cref="GoldPreferenceOracle"/> for completions A and B.</summary>
/// <param name="A">Completion A (word ids).</param>
/// <param name="B">Completion B (word ids).</param>
/// <param name="GoldA">gold(A).</param>
/// <param name="GoldB">gold(B).</param>
/// <param name="ProbabilityA">The Bradley–Terry probability that A is preferred, σ((gold(A) − gold(B))/T), before any flip.</param>
/// <param name="APreferred">The recorded label: true when A was chosen.</param>
/// <param name="Flipped">Whether the label was flipped after the Bradley–Terry draw (label noise).</param>
public sealed record GoldLabel(long[] A, long[] B, double GoldA, double GoldB, double ProbabilityA, bool APreferred, bool Flipped)
{
    /// <summary>The chosen completion.</summary>
    public long[] Chosen => APreferred ? A : B;
    /// <summary>The rejected completion.</summary>
    public long[] Rejected => APreferred ? B : A;
    /// <summary>Whether the label agrees with the gold ranking (ties count as agreeing).</summary>
    public bool AgreesWithGold => GoldA == GoldB || APreferred == (GoldA > GoldB);
    /// <summary>As a <see cref="PreferencePair"/> after <paramref name="prompt"/> (e.g. <see cref="GoldRewardTask.Prompt"/>).</summary>
    public PreferencePair ToPreferencePair(IReadOnlyList<long> prompt, double? margin = null) => new(prompt, Chosen, Rejected, margin);
}

/// <summary>
/// A simulated labeller with a budget: for completions A and B it prefers A with the Bradley–Terry probability
/// <c>P(A ≻ B) = σ((gold(A) − gold(B))/T)</c> (<see cref="Temperature"/> T; T = 0 always picks the higher gold reward,
/// a coin flip on ties), then flips the label with probability <see cref="FlipRate"/>. Each label costs one unit of
/// <see cref="Budget"/>; asking beyond it is an error. Seeded: the same seed gives the same labels.
/// </summary>
public sealed class GoldPreferenceOracle
{
    readonly Random _rng;

    /// <summary>Creates the oracle.</summary>
    public GoldPreferenceOracle(GoldRewardTask task, double temperature, double flipRate = 0.0, int budget = int.MaxValue, int seed = 0)
    {
        Task = task ?? throw new ArgumentNullException(nameof(task));
        if (!(temperature >= 0)) throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "The Bradley–Terry temperature must be ≥ 0 (0 = noiseless).");
        if (!(flipRate >= 0 && flipRate <= 1)) throw new ArgumentOutOfRangeException(nameof(flipRate), flipRate, "flipRate is a probability; pass a value in [0, 1] (0.5 = labels carry no information).");
        if (budget < 0) throw new ArgumentOutOfRangeException(nameof(budget), budget, "budget must be ≥ 0.");
        Temperature = temperature;
        FlipRate = flipRate;
        Budget = budget;
        _rng = new Random(seed);
    }

    /// <summary>The task whose gold reward decides.</summary>
    public GoldRewardTask Task { get; }
    /// <summary>Bradley–Terry temperature T.</summary>
    public double Temperature { get; }
    /// <summary>Probability of flipping each label after the draw.</summary>
    public double FlipRate { get; }
    /// <summary>How many labels may be asked for in total.</summary>
    public int Budget { get; }
    /// <summary>Labels given so far.</summary>
    public int Used { get; private set; }
    /// <summary>Labels left.</summary>
    public int Remaining => Budget - Used;

    /// <summary>σ((r_a − r_b)/T): the Bradley–Terry probability that a completion with reward <paramref name="rewardA"/> is
    /// preferred to one with <paramref name="rewardB"/>. T = 0 gives 1, 0 or ½ (tie).</summary>
    public static double PreferenceProbability(double rewardA, double rewardB, double temperature)
    {
        if (!(temperature >= 0)) throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "The Bradley–Terry temperature must be ≥ 0.");
        double d = rewardA - rewardB;
        if (temperature == 0) return d > 0 ? 1.0 : d < 0 ? 0.0 : 0.5;
        double z = d / temperature;
        return z >= 0 ? 1.0 / (1.0 + Math.Exp(-z)) : Math.Exp(z) / (1.0 + Math.Exp(z));
    }

    /// <summary>Labels one pair (costs one label).</summary>
    public GoldLabel Label(long[] a, long[] b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (Used >= Budget)
            throw new InvalidOperationException($"The label budget of {Budget} is used up; create the oracle with a larger budget, or label fewer pairs.");
        double ga = Task.Gold(a), gb = Task.Gold(b);
        double p = PreferenceProbability(ga, gb, Temperature);
        bool aPreferred = _rng.NextDouble() < p;
        bool flipped = _rng.NextDouble() < FlipRate;
        Used++;
        return new GoldLabel(a, b, ga, gb, p, flipped ? !aPreferred : aPreferred, flipped);
    }

    /// <summary>Labels every pair (costs one label each; checks the budget first, so nothing is labelled when it does not suffice).</summary>
    public IReadOnlyList<GoldLabel> Label(IReadOnlyList<(long[] A, long[] B)> pairs)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        if (pairs.Count > Remaining)
            throw new InvalidOperationException($"Asked for {pairs.Count} labels but only {Remaining} of the budget of {Budget} remain; label fewer pairs or raise the budget.");
        return pairs.Select(p => Label(p.A, p.B)).ToList();
    }
}
