using System.Globalization;
using System.Text;
using Microsoft.Data.Analysis;
using SafetyNotebooks.Models;
using SafetyNotebooks.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Interpretability;

/// <summary>One token of the vocabulary as predicted at an answer position.</summary>
/// <param name="Id">Token id.</param>
/// <param name="Text">Decoded token.</param>
/// <param name="Rank">Rank among the vocabulary, 0 = the top token (tokens with a strictly larger logit).</param>
/// <param name="Logit">Its logit.</param>
/// <param name="Prob">Its softmax probability.</param>
public sealed record TokenPrediction(int Id, string Text, long Rank, double Logit, double Prob);

/// <summary>What <see cref="TestPrompt"/> found at one answer position.</summary>
/// <param name="Answer">The answer token at this position, with its rank, logit and probability.</param>
/// <param name="Top">The top-k tokens predicted there, best first.</param>
public sealed record AnswerPosition(TokenPrediction Answer, TokenPrediction[] Top);

/// <summary>
/// The result of <see cref="TestPrompt.Run"/>: the tokenized prompt and answer, and for every answer token its rank, logit and
/// probability plus the top-k tokens. <see cref="ToString"/> prints it as TransformerLens' <c>test_prompt</c> does;
/// <see cref="ToDataFrame"/> gives one row per answer token and top token.
/// </summary>
public sealed class TestPromptResult
{
    /// <summary>Creates a result.</summary>
    public TestPromptResult(string[] promptTokens, string[] answerTokens, AnswerPosition[] positions)
    {
        PromptTokens = promptTokens;
        AnswerTokens = answerTokens;
        Positions = positions;
    }

    /// <summary>The prompt's tokens as strings (with BOS if prepended).</summary>
    public string[] PromptTokens { get; }
    /// <summary>The answer's tokens as strings.</summary>
    public string[] AnswerTokens { get; }
    /// <summary>One entry per answer token.</summary>
    public AnswerPosition[] Positions { get; }
    /// <summary>Rank of each answer token (0 = top), as TransformerLens' "Ranks of the answer tokens".</summary>
    public long[] AnswerRanks => Positions.Select(p => p.Answer.Rank).ToArray();

    /// <summary>
    /// Rows: for every answer position, the answer token (<c>kind</c> = "answer") then the top-k tokens (<c>kind</c> = "top").
    /// Columns: <c>answer_pos</c>, <c>kind</c>, <c>rank</c>, <c>token</c>, <c>id</c>, <c>logit</c>, <c>prob</c>.
    /// </summary>
    public DataFrame ToDataFrame()
    {
        var rows = Positions.SelectMany((p, i) => new[] { (i, "answer", p.Answer) }.Concat(p.Top.Select(t => (i, "top", t)))).ToArray();
        return new DataFrame(
            new Int32DataFrameColumn("answer_pos", rows.Select(r => r.i)),
            new StringDataFrameColumn("kind", rows.Select(r => r.Item2)),
            new Int64DataFrameColumn("rank", rows.Select(r => r.Item3.Rank)),
            new StringDataFrameColumn("token", rows.Select(r => r.Item3.Text)),
            new Int32DataFrameColumn("id", rows.Select(r => r.Item3.Id)),
            new DoubleDataFrameColumn("logit", rows.Select(r => r.Item3.Logit)),
            new DoubleDataFrameColumn("prob", rows.Select(r => r.Item3.Prob)));
    }

    /// <summary>The report in TransformerLens' <c>test_prompt</c> layout.</summary>
    public override string ToString()
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append("Tokenized prompt: [").Append(string.Join(", ", PromptTokens.Select(t => $"'{t}'"))).Append("]\n");
        sb.Append("Tokenized answer: [").Append(string.Join(", ", AnswerTokens.Select(t => $"'{t}'"))).Append("]\n");
        foreach (var p in Positions)
        {
            sb.Append("Performance on answer token:\n");
            sb.Append(string.Format(ci, "Rank: {0,-8} Logit: {1,5:0.00} Prob: {2,6:0.00%} Token: |{3}|\n", p.Answer.Rank, p.Answer.Logit, p.Answer.Prob, p.Answer.Text));
            for (int i = 0; i < p.Top.Length; i++)
                sb.Append(string.Format(ci, "Top {0}th token. Logit: {1,5:0.00} Prob: {2,6:0.00%} Token: |{3}|\n", i, p.Top[i].Logit, p.Top[i].Prob, p.Top[i].Text));
        }
        sb.Append("Ranks of the answer tokens: [").Append(string.Join(", ", Positions.Select(p => $"('{p.Answer.Text}', {p.Answer.Rank})"))).Append(']');
        return sb.ToString();
    }
}

/// <summary>
/// TransformerLens' <c>utils.test_prompt</c>: does the model give the answer to a prompt? Runs prompt + answer once and, at
/// every answer token, reports its rank (0 = top), logit and probability and the top-k tokens. Works for multi-token answers
/// (each answer token is predicted from the prompt and the answer tokens before it).
/// </summary>
public static class TestPrompt
{
    /// <summary>
    /// Runs the model on <paramref name="prompt"/> followed by <paramref name="answer"/> and reports every answer token.
    /// Prints the report to <paramref name="output"/> (default: the console) when <paramref name="printDetails"/>.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="tokenizer">Its tokenizer.</param>
    /// <param name="prompt">The prompt, e.g. "The Eiffel Tower is in the city of".</param>
    /// <param name="answer">The answer, e.g. "Paris"; a space is prepended if <paramref name="prependSpaceToAnswer"/> and it has none.</param>
    /// <param name="prependSpaceToAnswer">Prepend a space to the answer (as TransformerLens).</param>
    /// <param name="prependBos">Prepend the tokenizer's BOS token to the prompt.</param>
    /// <param name="topK">How many top tokens to list per answer token.</param>
    /// <param name="printDetails">Print the report.</param>
    /// <param name="output">Where to print; null means <see cref="Console.Out"/>.</param>
    public static TestPromptResult Run(HookedTransformer model, ITokenizer tokenizer, string prompt, string answer, bool prependSpaceToAnswer = true,
        bool prependBos = true, int topK = 10, bool printDetails = true, TextWriter? output = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (string.IsNullOrEmpty(answer)) throw new ArgumentException("TestPrompt: the answer is empty; pass the expected completion, e.g. \"Paris\".", nameof(answer));
        if (prependSpaceToAnswer && !answer.StartsWith(' ')) answer = " " + answer;
        var promptIds = tokenizer.Encode(prompt).ToList();
        if (prependBos && tokenizer.BosTokenId is { } bos) promptIds.Insert(0, bos);
        var answerIds = tokenizer.Encode(answer);
        if (promptIds.Count == 0) throw new ArgumentException("TestPrompt: the prompt has no tokens; pass a non-empty prompt or prependBos: true.", nameof(prompt));
        var all = promptIds.Concat(answerIds).ToArray();
        if (all.Length > model.Cfg.NCtx)
            throw new ArgumentException($"TestPrompt: prompt + answer are {all.Length} tokens but the model's context is {model.Cfg.NCtx}; shorten the prompt.", nameof(prompt));
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var tokens = tensor(all.Select(i => (long)i).ToArray(), new long[] { 1, all.Length }, device: model.W_E.device);
        var logits = model.call(tokens)[0];                                          // [pos, vocab]
        // Answer token j is predicted at position promptLength + j - 1.
        var predicting = logits.narrow(0, promptIds.Count - 1, answerIds.Length);
        var result = FromLogits(predicting, answerIds, id => tokenizer.Decode(new[] { id }), topK,
            tokenizer.ToStrTokens(promptIds), tokenizer.ToStrTokens(answerIds));
        if (printDetails) (output ?? Console.Out).WriteLine(result.ToString());
        return result;
    }

    /// <summary>
    /// The report from logits alone: <paramref name="logits"/> [answer tokens, d_vocab] (row j predicts answer token j) or
    /// [d_vocab] for a single answer token.
    /// </summary>
    /// <param name="logits">Next-token logits at the positions predicting each answer token.</param>
    /// <param name="answerIds">The answer's token ids, one per row.</param>
    /// <param name="decode">Decodes one id (null: the id as text).</param>
    /// <param name="topK">How many top tokens to list.</param>
    /// <param name="promptTokens">The prompt's tokens as strings, for the report.</param>
    /// <param name="answerTokens">The answer's tokens as strings (null: decoded ids).</param>
    public static TestPromptResult FromLogits(Tensor logits, IReadOnlyList<int> answerIds, Func<int, string>? decode = null, int topK = 10,
        string[]? promptTokens = null, string[]? answerTokens = null)
    {
        decode ??= id => id.ToString(CultureInfo.InvariantCulture);
        if (logits.dim() == 1) logits = logits.unsqueeze(0);
        if (logits.dim() != 2 || logits.shape[0] != answerIds.Count)
            throw new ArgumentException($"TestPrompt.FromLogits: logits must be [answer tokens = {answerIds.Count}, d_vocab]; got [{string.Join(", ", logits.shape)}].", nameof(logits));
        long vocab = logits.shape[1];
        if (topK < 0) throw new ArgumentOutOfRangeException(nameof(topK), "topK must be ≥ 0.");
        var bad = answerIds.FirstOrDefault(i => i < 0 || i >= vocab, -1);
        if (answerIds.Any(i => i < 0 || i >= vocab))
            throw new ArgumentOutOfRangeException(nameof(answerIds), $"TestPrompt: answer token {bad} is outside the vocabulary [0, {vocab}).");
        using var scope = NewDisposeScope();
        var l = logits.detach().cpu().to_type(ScalarType.Float64);
        var probs = l.softmax(-1);
        var ids = tensor(answerIds.Select(i => (long)i).ToArray());
        var ranks = LogitLens.Ranks(l, ids).data<long>().ToArray();
        int k = (int)Math.Min(topK, vocab);
        var (topVals, topIdx) = l.topk(k, dim: -1);
        var positions = new AnswerPosition[answerIds.Count];
        for (int j = 0; j < answerIds.Count; j++)
        {
            int a = answerIds[j];
            var ans = new TokenPrediction(a, decode(a), ranks[j], l[j, a].item<double>(), probs[j, a].item<double>());
            var top = new TokenPrediction[k];
            for (int r = 0; r < k; r++)
            {
                int id = (int)topIdx[j, r].item<long>();
                // Rank by strict count so tied tokens share a rank (as the answer's rank does).
                top[r] = new TokenPrediction(id, decode(id), (l[j] > topVals[j, r]).sum().item<long>(), topVals[j, r].item<double>(), probs[j, id].item<double>());
            }
            positions[j] = new AnswerPosition(ans, top);
        }
        return new TestPromptResult(promptTokens ?? Array.Empty<string>(), answerTokens ?? answerIds.Select(decode).ToArray(), positions);
    }
}
