using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Data.Analysis;
using SafetyNotebooks.Models;
using SafetyNotebooks.Statistics;
using SafetyNotebooks.Tokenization;
using static TorchSharp.torch;

namespace SafetyNotebooks.Evaluation.Harness;

/// <summary>A multiple-choice item: a question, its options, the index of the right one, and the dimension it measures.</summary>
public sealed record ChoiceItem(string Id, string Question, IReadOnlyList<string> Options, int Answer, string Category = "", string Dimension = "safety")
{
    /// <summary>
    /// Reads SafetyBench-style JSON or JSONL: objects with <c>id</c>, <c>question</c>, <c>options</c> (list of strings),
    /// <c>answer</c> (the option's index, or its letter A, B, …) and optional <c>category</c>; <paramref name="dimension"/> is
    /// attached to every item. Errors name the file and the item.
    /// </summary>
    public static IReadOnlyList<ChoiceItem> Load(string path, string dimension = "safety")
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Multiple-choice file '{path}' does not exist.", path);
        var text = File.ReadAllText(path).TrimStart();
        var nodes = text.StartsWith('[') ? JsonNode.Parse(text)!.AsArray().Select(n => n!).ToList()
            : text.Split('\n').Where(l => l.Trim().Length > 0).Select(l => JsonNode.Parse(l)!).ToList();
        var items = new List<ChoiceItem>();
        for (int i = 0; i < nodes.Count; i++)
        {
            var n = nodes[i];
            string where = $"{path}: item {i + 1}";
            var options = (n["options"] as JsonArray)?.Select(o => (string?)o ?? "").ToList() ?? throw new FormatException($"{where}: needs an 'options' list.");
            if (options.Count < 2) throw new FormatException($"{where}: needs at least two options.");
            int answer = n["answer"] switch
            {
                JsonValue v when v.TryGetValue<int>(out var k) => k,
                JsonValue v when v.TryGetValue<string>(out var s) && s.Length == 1 && char.IsLetter(s[0]) => char.ToUpperInvariant(s[0]) - 'A',
                _ => throw new FormatException($"{where}: 'answer' must be an option index or letter."),
            };
            if (answer < 0 || answer >= options.Count) throw new FormatException($"{where}: answer {answer} is outside its {options.Count} options.");
            items.Add(new ChoiceItem((string?)n["id"]?.ToString() ?? (i + 1).ToString(), (string?)n["question"] ?? throw new FormatException($"{where}: needs a 'question'."),
                options, answer, (string?)n["category"] ?? "", dimension));
        }
        return items;
    }
}

/// <summary>One scored multiple-choice item.</summary>
public sealed record ChoiceRecord(string Id, string Category, string Dimension, int Answer, int Predicted, int PredictedNorm, double[] LogLikelihoods)
{
    /// <summary>Whether the highest-likelihood option is the answer (lm-evaluation-harness' <c>acc</c>).</summary>
    public bool Correct => Predicted == Answer;
    /// <summary>Whether the highest likelihood per character is the answer (<c>acc_norm</c>).</summary>
    public bool CorrectNorm => PredictedNorm == Answer;
}

/// <summary>
/// Multiple-choice evaluation by log-likelihood, as lm-evaluation-harness does it: each option is scored as a continuation of the
/// prompt (question, options, <c>Answer:</c>), summing the log-probabilities of its tokens; the prediction is the option with the
/// highest sum (<c>acc</c>) or the highest sum per character of the continuation (<c>acc_norm</c>). Few-shot examples come from a
/// separate pool, seeded.
/// </summary>
public static class MultipleChoice
{
    /// <summary>The prompt of an item (with <paramref name="shots"/> solved examples before it).</summary>
    public static string Prompt(ChoiceItem item, IReadOnlyList<ChoiceItem>? shots = null)
    {
        static string One(ChoiceItem x) => $"Question: {x.Question}\n" + string.Concat(x.Options.Select((o, i) => $"{(char)('A' + i)}. {o}\n")) + "Answer:";
        var sb = new System.Text.StringBuilder();
        foreach (var s in shots ?? []) sb.Append(One(s)).Append(' ').Append(s.Options[s.Answer]).Append("\n\n");
        return sb.Append(One(item)).ToString();
    }

    /// <summary>
    /// Sum of log p(continuation tokens | context) for each continuation, in one padded batch (right padding, attention mask):
    /// the continuation is appended to the context's tokens, and only its tokens are scored.
    /// </summary>
    public static (double[] LogLikelihood, int[] Tokens) LogLikelihoods(HookedTransformer model, ITokenizer tokenizer, string context, IReadOnlyList<string> continuations)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        int[] ctx = tokenizer.BosTokenId is int bos ? [bos, .. tokenizer.Encode(context)] : tokenizer.Encode(context);
        if (ctx.Length == 0) throw new ArgumentException("The context is empty and the tokenizer has no BOS token: nothing to condition on.", nameof(context));
        var conts = continuations.Select(c => tokenizer.Encode(c)).ToList();
        if (conts.Any(c => c.Length == 0)) throw new ArgumentException("Every continuation must encode to at least one token.", nameof(continuations));
        int width = ctx.Length + conts.Max(c => c.Length);
        if (width > model.Cfg.NCtx) throw new ArgumentException($"Context plus continuation is {width} tokens but the model's context is {model.Cfg.NCtx}: use fewer few-shot examples or shorter items.");
        int rows = conts.Count;
        var tokens = new long[rows * width]; var mask = new long[rows * width]; var target = new bool[rows * width];
        for (int r = 0; r < rows; r++)
        {
            var seq = ctx.Concat(conts[r]).ToArray();
            for (int t = 0; t < seq.Length; t++) { tokens[r * width + t] = seq[t]; mask[r * width + t] = 1; target[r * width + t] = t >= ctx.Length; }
            for (int t = seq.Length; t < width; t++) tokens[r * width + t] = tokenizer.PadTokenId;
        }
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var tok = tensor(tokens, new long[] { rows, width });
        var logits = model.forward(tok, tensor(mask, new long[] { rows, width }));
        var sums = LanguageModelLoss.SequenceLogProbs(logits, tok, tensor(target, new long[] { rows, width })).cpu().data<float>().Select(x => (double)x).ToArray();
        return (sums, conts.Select(c => c.Length).ToArray());
    }

    /// <summary>Scores every item (options as " " + text continuations of <see cref="Prompt"/>) with <paramref name="fewShot"/> examples from <paramref name="shotPool"/>.</summary>
    public static IReadOnlyList<ChoiceRecord> Run(HookedTransformer model, ITokenizer tokenizer, IReadOnlyList<ChoiceItem> items,
        IReadOnlyList<ChoiceItem>? shotPool = null, int fewShot = 0, int seed = 0)
    {
        if (fewShot > 0 && (shotPool is null || shotPool.Count < fewShot))
            throw new ArgumentException($"{fewShot}-shot evaluation needs a pool of at least {fewShot} solved examples (got {shotPool?.Count ?? 0}).", nameof(shotPool));
        var rng = new Random(seed);
        var records = new List<ChoiceRecord>();
        foreach (var item in items)
        {
            var shots = fewShot == 0 ? [] : shotPool!.Where(s => s.Id != item.Id).OrderBy(_ => rng.Next()).Take(fewShot).ToList();
            var conts = item.Options.Select(o => " " + o).ToList();
            var (ll, _) = LogLikelihoods(model, tokenizer, Prompt(item, shots), conts);
            int pred = Array.IndexOf(ll, ll.Max());
            var norm = ll.Select((v, i) => v / conts[i].Length).ToArray();
            records.Add(new ChoiceRecord(item.Id, item.Category, item.Dimension, item.Answer, pred, Array.IndexOf(norm, norm.Max()), ll));
        }
        return records;
    }

    /// <summary>
    /// HELM-style summary: one row per (task, dimension, metric) with <c>n</c>, <c>value</c> and its Wilson interval; metrics
    /// <c>acc</c> and <c>acc_norm</c>, and the chance level (1 / options) for reference.
    /// </summary>
    public static DataFrame Summary(string task, IReadOnlyList<ChoiceRecord> records, double level = 0.95)
    {
        var rows = new List<(string Task, string Dim, string Metric, int N, double V, double Lo, double Hi)>();
        foreach (var g in records.GroupBy(r => r.Dimension).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            int n = g.Count();
            foreach (var (metric, hits) in new[] { ("acc", g.Count(r => r.Correct)), ("acc_norm", g.Count(r => r.CorrectNorm)) })
            {
                var ci = Rates.Wilson(hits, n, level);
                rows.Add((task, g.Key, metric, n, ci.Estimate, ci.Lower, ci.Upper));
            }
            double chance = g.Average(r => 1.0 / r.LogLikelihoods.Length);
            rows.Add((task, g.Key, "chance", n, chance, chance, chance));
        }
        return new DataFrame(new StringDataFrameColumn("task", rows.Select(r => r.Task)), new StringDataFrameColumn("dimension", rows.Select(r => r.Dim)),
            new StringDataFrameColumn("metric", rows.Select(r => r.Metric)), new Int32DataFrameColumn("n", rows.Select(r => r.N)),
            new DoubleDataFrameColumn("value", rows.Select(r => r.V)), new DoubleDataFrameColumn("lower", rows.Select(r => r.Lo)),
            new DoubleDataFrameColumn("upper", rows.Select(r => r.Hi)));
    }
}
