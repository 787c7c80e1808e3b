using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.Extensions.AI;

namespace SafetyNotebooks.Evaluation.Guardrails;

/// <summary>Sentence-level self-check scores of one answer against its samples (higher = less supported by the samples).</summary>
/// <param name="Sentences">The answer's sentences.</param>
/// <param name="AvgNegLogprob">SelfCheckGPT's unigram score per sentence: −mean log p(token) under a unigram model of answer + samples.</param>
/// <param name="MaxNegLogprob">SelfCheckGPT's unigram score per sentence: −min log p(token) (its rarest token).</param>
/// <param name="Inconsistency">Overlap score per sentence: 1 − the mean over samples of the fraction of the sentence's distinct words the sample contains.</param>
/// <param name="DocAvgNegLogprob">Passage level: −mean log p over all tokens of the answer.</param>
/// <param name="DocAvgMaxNegLogprob">Passage level: the mean of <paramref name="MaxNegLogprob"/>.</param>
public sealed record SelfCheckScores(IReadOnlyList<string> Sentences, IReadOnlyList<double> AvgNegLogprob, IReadOnlyList<double> MaxNegLogprob,
    IReadOnlyList<double> Inconsistency, double DocAvgNegLogprob, double DocAvgMaxNegLogprob);

/// <summary>
/// SelfCheckGPT (Manakul, Liusie and Gales 2023), its n-gram variant with n = 1: if a model knows a fact, answers sampled again at a
/// temperature above zero repeat it; a hallucinated detail varies from sample to sample. SelfCheckGPT fits a unigram model on the
/// answer and its samples, p(w) = (count(w) + k) / (N + k·|V|) with <c>&lt;unk&gt;</c> in the vocabulary and no smoothing by default
/// (k = 0), and scores each sentence by −mean and −min log p of its tokens (<c>avg_neg_logprob</c>, <c>max_neg_logprob</c>). Those
/// scores are unbounded and grow with the length of the texts, so this class also gives a bounded overlap score, 1 − (mean over
/// samples of the share of the sentence's distinct words found in the sample), which a rail can threshold the same way for any length.
/// Tokens: lower-cased runs of letters and digits, and single punctuation marks (SelfCheckGPT uses spaCy's tokenizer; ours differs
/// on contractions and hyphens). The overlap score ignores punctuation.
/// </summary>
public static class SelfCheck
{
    static readonly Regex SentenceEnd = new(@"(?<=[.!?])\s+", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
    static readonly Regex Token = new(@"[\p{L}\p{N}]+|[^\s\p{L}\p{N}]", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));

    /// <summary>Splits at whitespace after <c>.</c>, <c>!</c> or <c>?</c>; empty pieces are dropped.</summary>
    public static IReadOnlyList<string> Sentences(string text) =>
        SentenceEnd.Split(text.Trim()).Select(s => s.Trim()).Where(s => s.Length > 0).ToList();

    /// <summary>Lower-cased tokens: runs of letters and digits, and single punctuation marks.</summary>
    public static IReadOnlyList<string> Tokens(string text) =>
        Token.Matches(text).Select(m => m.Value.ToLowerInvariant()).ToList();

    /// <summary>Scores each sentence of <paramref name="answer"/> against <paramref name="samples"/>; <paramref name="k"/> is the smoothing pseudo-count.</summary>
    public static SelfCheckScores Score(string answer, IReadOnlyList<string> samples, double k = 0)
    {
        if (samples.Count == 0) throw new ArgumentException("A self-check needs at least one sampled answer.", nameof(samples));
        if (k < 0 || double.IsNaN(k)) throw new ArgumentOutOfRangeException(nameof(k), "The smoothing pseudo-count must be ≥ 0.");
        var sentences = Sentences(answer);
        // The unigram model of answer + samples, with <unk> in the vocabulary (count 0).
        var counts = new Dictionary<string, int>(StringComparer.Ordinal) { ["<unk>"] = 0 };
        long total = 0;
        foreach (var text in samples.Prepend(answer))
            foreach (var t in Tokens(text)) { counts[t] = counts.GetValueOrDefault(t) + 1; total++; }
        double denominator = total + k * counts.Count;
        double LogP(string t) => Math.Log(((counts.TryGetValue(t, out var c) ? c : counts["<unk>"]) + k) / denominator);

        var sampleWords = samples.Select(s => Tokens(s).Where(IsWord).ToHashSet(StringComparer.Ordinal)).ToList();
        var avg = new List<double>();
        var max = new List<double>();
        var inconsistency = new List<double>();
        var all = new List<double>();
        foreach (var s in sentences)
        {
            var tokens = Tokens(s);
            var lp = tokens.Select(LogP).ToList();
            if (lp.Count == 0) { avg.Add(0); max.Add(0); inconsistency.Add(0); continue; }
            all.AddRange(lp);
            avg.Add(-lp.Average());
            max.Add(-lp.Min());
            var words = tokens.Where(IsWord).Distinct(StringComparer.Ordinal).ToList();
            inconsistency.Add(words.Count == 0 ? 0 : 1 - sampleWords.Average(sw => words.Count(sw.Contains) / (double)words.Count));
        }
        return new SelfCheckScores(sentences, avg, max, inconsistency, all.Count == 0 ? 0 : -all.Average(), max.Count == 0 ? 0 : max.Average());
    }

    static bool IsWord(string token) => token.Length > 0 && char.IsLetterOrDigit(token[0]);
}

/// <summary>Which self-check score a <see cref="SelfCheckRail"/> thresholds.</summary>
public enum SelfCheckScore
{
    /// <summary><see cref="SelfCheckScores.Inconsistency"/> (bounded in [0, 1]; default threshold 0.5).</summary>
    Overlap,
    /// <summary>SelfCheckGPT's unigram <see cref="SelfCheckScores.AvgNegLogprob"/> (unbounded; calibrate the threshold on your texts).</summary>
    AvgNegLogprob,
    /// <summary>SelfCheckGPT's unigram <see cref="SelfCheckScores.MaxNegLogprob"/> (unbounded).</summary>
    MaxNegLogprob,
}

/// <summary>
/// Output rail: a hallucination self-check. It asks the same model the same conversation <see cref="Samples"/> more times at
/// <see cref="Temperature"/> (> 0), scores every sentence of the reply against those samples (<see cref="SelfCheck"/>) and triggers
/// when a sentence's score exceeds <see cref="Threshold"/>, naming the sentence. It costs <see cref="Samples"/> extra model calls per
/// reply. Without a model (<c>safety-notebooks guard</c>, which screens texts with no model behind them) it cannot run and throws,
/// which the rails turn into a refusal.
/// </summary>
public sealed class SelfCheckRail : IContextRail
{
    /// <summary>Extra answers sampled per reply.</summary>
    public int Samples { get; }
    /// <summary>Sampling temperature of the extra answers.</summary>
    public float Temperature { get; }
    /// <summary>Score above which a sentence is flagged.</summary>
    public double Threshold { get; }
    /// <summary>Which score is thresholded.</summary>
    public SelfCheckScore ScoreKind { get; }
    /// <summary>Seed of the first sample (sample i uses seed + i) where the model honours <see cref="ChatOptions.Seed"/>.</summary>
    public long Seed { get; }

    /// <summary>A self-check rail.</summary>
    public SelfCheckRail(int samples = 4, float temperature = 1.0f, double threshold = 0.5, SelfCheckScore score = SelfCheckScore.Overlap, long seed = 0)
    {
        if (samples < 1) throw new ArgumentOutOfRangeException(nameof(samples), "A self-check needs at least 1 sample (SelfCheckGPT uses up to 20).");
        if (!(temperature > 0)) throw new ArgumentOutOfRangeException(nameof(temperature), "Samples must be drawn at a temperature above 0, or they repeat the answer.");
        if (double.IsNaN(threshold)) throw new ArgumentOutOfRangeException(nameof(threshold));
        (Samples, Temperature, Threshold, ScoreKind, Seed) = (samples, temperature, threshold, score, seed);
    }

    /// <inheritdoc/>
    public string Name => "selfcheck";

    /// <inheritdoc/>
    public RailCheck Check(string text) =>
        throw new InvalidOperationException("The self-check rail samples the model again, so it runs only inside GuardedChatClient or serve, not on texts alone.");

    /// <summary>Samples <see cref="Samples"/> answers to <paramref name="conversation"/> from <paramref name="model"/>.</summary>
    public async Task<IReadOnlyList<string>> SampleAsync(IChatClient model, IReadOnlyList<ChatMessage> conversation, ChatOptions? options, CancellationToken cancellationToken = default)
    {
        var samples = new List<string>(Samples);
        for (int i = 0; i < Samples; i++)
        {
            var o = options?.Clone() ?? new ChatOptions();
            o.Temperature = Temperature;
            o.Seed = Seed + i;
            var r = await model.GetResponseAsync(conversation, o, cancellationToken).ConfigureAwait(false);
            samples.Add(r.Text ?? "");
        }
        return samples;
    }

    /// <summary>The flag for <paramref name="reply"/> given <paramref name="samples"/>: the worst sentence and its score.</summary>
    public RailCheck Judge(string reply, IReadOnlyList<string> samples)
    {
        var s = SelfCheck.Score(reply, samples);
        if (s.Sentences.Count == 0) return RailCheck.Pass;
        var scores = ScoreKind switch { SelfCheckScore.Overlap => s.Inconsistency, SelfCheckScore.AvgNegLogprob => s.AvgNegLogprob, _ => s.MaxNegLogprob };
        int worst = 0;
        for (int i = 1; i < scores.Count; i++) if (scores[i] > scores[worst]) worst = i;
        if (scores[worst] <= Threshold) return RailCheck.Pass;
        string sentence = s.Sentences[worst].Length > 80 ? s.Sentences[worst][..80] + "…" : s.Sentences[worst];
        string kind = ScoreKind switch { SelfCheckScore.Overlap => "inconsistency", SelfCheckScore.AvgNegLogprob => "avg_neg_logprob", _ => "max_neg_logprob" };
        return new RailCheck(true, $"sentence {worst + 1} \"{sentence}\" disagrees with {samples.Count} samples ({kind} {scores[worst].ToString("0.000", CultureInfo.InvariantCulture)} > {Threshold.ToString(CultureInfo.InvariantCulture)})");
    }

    /// <inheritdoc/>
    public async Task<RailCheck> CheckAsync(RailContext context, string text, CancellationToken cancellationToken = default)
    {
        if (context.Model is null) return Check(text);
        var samples = await SampleAsync(context.Model, context.Messages, context.Options, cancellationToken).ConfigureAwait(false);
        return Judge(text, samples);
    }
}
