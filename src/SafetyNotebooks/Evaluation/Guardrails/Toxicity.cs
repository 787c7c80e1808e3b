using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.Data.Analysis;
using SafetyNotebooks.IO;
using SafetyNotebooks.Statistics;

namespace SafetyNotebooks.Evaluation.Guardrails;

/// <summary>A text with a human label: <c>toxic</c> (an insult or hostility towards the reader) or not, and its split.</summary>
public sealed record ToxicityExample(string Id, string Text, bool Toxic, string Split);

/// <summary>
/// A small toxicity classifier: a lexicon of mild insults plus logistic regression on hashed word unigrams and bigrams (FNV-1a
/// hashes, so features are the same in every process), fitted by seeded stochastic gradient descent with L2. Small enough to read,
/// trained in milliseconds; a stand-in for the transformer classifiers (Detoxify, Perspective) deployments use, which this
/// project cannot download. It knows only the hostility its training set shows: measure it on held-out text before trusting it.
/// </summary>
public sealed class ToxicityClassifier
{
    /// <summary>Mild insults (the lexicon feature counts them). No slurs: the project's data stays safe to ship.</summary>
    public static readonly string[] Lexicon =
    [
        "idiot", "idiots", "moron", "morons", "stupid", "dumb", "fool", "fools", "foolish", "loser", "losers", "clown", "clueless",
        "pathetic", "useless", "worthless", "incompetent", "imbecile", "dimwit", "halfwit", "nitwit", "buffoon", "lame", "shut", "hate",
        "ignorant", "trash", "garbage", "ridiculous", "disgrace", "embarrassment", "annoying", "jerk",
    ];
    /// <summary>Number of hashed features.</summary>
    public const int Dim = 1 << 12;
    static readonly HashSet<string> LexiconSet = new(Lexicon, StringComparer.Ordinal);
    readonly double[] _w;
    readonly double _b;

    ToxicityClassifier(double[] w, double b) => (_w, _b) = (w, b);

    /// <summary>Lower-cased words (letters, digits and apostrophes).</summary>
    public static IReadOnlyList<string> Words(string text)
    {
        var words = new List<string>();
        var cur = new System.Text.StringBuilder();
        foreach (var c in text)
        {
            if (char.IsLetterOrDigit(c) || c == '\'') cur.Append(char.ToLowerInvariant(c));
            else if (cur.Length > 0) { words.Add(cur.ToString()); cur.Clear(); }
        }
        if (cur.Length > 0) words.Add(cur.ToString());
        return words;
    }

    /// <summary>Sparse features: hashed unigrams and bigrams (count 1 each), the last slot the lexicon count.</summary>
    public static Dictionary<int, double> Features(string text)
    {
        var words = Words(text);
        var f = new Dictionary<int, double>();
        void Add(string key) { int h = (int)(Fnv1a(key) % (Dim - 1)); f[h] = f.GetValueOrDefault(h) + 1; }
        for (int i = 0; i < words.Count; i++)
        {
            Add(words[i]);
            if (i > 0) Add(words[i - 1] + " " + words[i]);
        }
        int hits = words.Count(LexiconSet.Contains);
        if (hits > 0) f[Dim - 1] = hits;
        return f;
    }

    /// <summary>32-bit FNV-1a hash of the UTF-16 code units (stable across processes, unlike string.GetHashCode).</summary>
    public static uint Fnv1a(string s)
    {
        uint h = 2166136261;
        foreach (var c in s) { h ^= c; h *= 16777619; }
        return h;
    }

    /// <summary>Fits the classifier on <paramref name="examples"/> (seeded shuffling; same data and seed, same weights).</summary>
    public static ToxicityClassifier Train(IReadOnlyList<ToxicityExample> examples, int epochs = 40, double learningRate = 0.3, double l2 = 1e-4, int seed = 0)
    {
        if (examples.Count == 0 || examples.All(e => e.Toxic) || examples.All(e => !e.Toxic))
            throw new ArgumentException("Training needs both toxic and non-toxic examples.", nameof(examples));
        var data = examples.Select(e => (X: Features(e.Text), Y: e.Toxic ? 1.0 : 0.0)).ToList();
        var w = new double[Dim];
        double b = 0;
        var rng = new Random(seed);
        var order = Enumerable.Range(0, data.Count).ToArray();
        for (int epoch = 0; epoch < epochs; epoch++)
        {
            rng.Shuffle(order);
            foreach (int i in order)
            {
                var (x, y) = data[i];
                double g = Sigmoid(Dot(w, b, x)) - y;
                foreach (var (j, v) in x) w[j] -= learningRate * (g * v + l2 * w[j]);
                b -= learningRate * g;
            }
        }
        return new ToxicityClassifier(w, b);
    }

    static double Dot(double[] w, double b, Dictionary<int, double> x)
    {
        double z = b;
        foreach (var (j, v) in x) z += w[j] * v;
        return z;
    }

    static double Sigmoid(double z) => 1 / (1 + Math.Exp(-z));

    /// <summary>Probability that <paramref name="text"/> is toxic.</summary>
    public double Probability(string text) => Sigmoid(Dot(_w, _b, Features(text)));

    /// <summary>Reads <c>{"id", "text", "label": "toxic"|"neutral", "split": "train"|"test"}</c> lines; errors name the file and line.</summary>
    public static IReadOnlyList<ToxicityExample> LoadJsonl(string path)
    {
        var list = new List<ToxicityExample>();
        foreach (var (n, node) in Jsonl.Read(path, "{\"id\", \"text\", \"label\": \"toxic\"|\"neutral\", \"split\": \"train\"|\"test\"}"))
        {
            string label = node.RequireString("label", path, n), split = node.RequireString("split", path, n);
            if (label is not ("toxic" or "neutral")) throw new FormatException($"{path}:{n}: label '{label}' must be toxic or neutral.");
            if (split is not ("train" or "test")) throw new FormatException($"{path}:{n}: split '{split}' must be train or test.");
            list.Add(new ToxicityExample(node.RequireString("id", path, n), node.RequireString("text", path, n), label == "toxic", split));
        }
        return list;
    }

    /// <summary>Recall on toxic texts and over-blocking (false-positive rate) on neutral ones at <paramref name="threshold"/>, with Wilson intervals.</summary>
    public DataFrame Measure(IReadOnlyList<ToxicityExample> heldOut, double threshold = 0.5)
    {
        int tp = heldOut.Count(e => e.Toxic && Probability(e.Text) >= threshold), pos = heldOut.Count(e => e.Toxic);
        int fp = heldOut.Count(e => !e.Toxic && Probability(e.Text) >= threshold), neg = heldOut.Count(e => !e.Toxic);
        return Rates.Table([("recall (toxic flagged)", tp, pos), ("over-blocking (neutral flagged)", fp, neg)]);
    }
}

/// <summary>Output (or input) rail: flags text a <see cref="ToxicityClassifier"/> scores at or above the threshold.</summary>
public sealed class ToxicityRail(ToxicityClassifier classifier, double threshold = 0.5) : IRail
{
    /// <summary>The classifier.</summary>
    public ToxicityClassifier Classifier { get; } = classifier;
    /// <inheritdoc/>
    public string Name => "toxicity";
    /// <inheritdoc/>
    public RailCheck Check(string text)
    {
        double p = Classifier.Probability(text);
        return p >= threshold
            ? new RailCheck(true, $"toxicity p = {p.ToString("0.000", CultureInfo.InvariantCulture)} ≥ {threshold.ToString(CultureInfo.InvariantCulture)}")
            : RailCheck.Pass;
    }
}
