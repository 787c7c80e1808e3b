using SafetyNotebooks.Runtime;
using SafetyNotebooks.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models;

/// <summary>Options for <see cref="Generation.Generate"/>. Defaults follow TransformerLens' <c>generate</c> (sampling on, temperature 1).</summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens to append per row. Default 20.</summary>
    public int MaxNewTokens { get; init; } = 20;
    /// <summary>Sample (true, default) or take the argmax (false). A <see cref="Temperature"/> of 0 also means greedy.</summary>
    public bool DoSample { get; init; } = true;
    /// <summary>Logits are divided by this before top-k/top-p and sampling. Default 1.</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>Keep only the k most likely tokens (ties with the k-th are kept), or null for no limit.</summary>
    public int? TopK { get; init; }
    /// <summary>Nucleus sampling: keep the smallest set of most likely tokens whose probability reaches p (at least one), or null.</summary>
    public double? TopP { get; init; }
    /// <summary>Stop a row once it emits this id (the EOS itself is kept and marked generated). Null: never stop early.</summary>
    public long? EosTokenId { get; init; }
    /// <summary>Filler for rows that have already finished. Default: <see cref="EosTokenId"/>, else 0.</summary>
    public long? PadTokenId { get; init; }
    /// <summary>Seed for sampling (a private <c>torch.Generator</c>): same seed, model and prompt → same output. Null: torch's global generator.</summary>
    public long? Seed { get; init; }
    /// <summary>Model context window: only the last this-many tokens are fed to the model. Null: feed everything.</summary>
    public int? ContextWindow { get; init; }

    /// <summary>Greedy decoding options.</summary>
    public static GenerationOptions Greedy(int maxNewTokens = 20, long? eosTokenId = null) =>
        new() { MaxNewTokens = maxNewTokens, DoSample = false, EosTokenId = eosTokenId };
}

/// <summary>Output of <see cref="Generation.Generate"/>.</summary>
/// <param name="Tokens">int64 <c>[batch, promptLen + newTokens]</c>: prompt then generated tokens (finished rows padded).
/// <c>newTokens</c> ≤ MaxNewTokens: generation stops early once every row has emitted EOS.</param>
/// <param name="LogProbs">float32 <c>[batch, newTokens]</c>: log-probability of each chosen token under the model's
/// <b>unmodified</b> distribution (temperature 1, no top-k/top-p), i.e. <c>log_softmax(logits)[token]</c>; 0 at padded positions.</param>
/// <param name="GeneratedMask">bool <c>[batch, newTokens]</c>: true where a token was generated (including the EOS), false where padded.</param>
public sealed record GenerationResult(Tensor Tokens, Tensor LogProbs, Tensor GeneratedMask) : IDisposable
{
    /// <summary>Number of generated columns.</summary>
    public long NewTokens => LogProbs.shape[1];
    /// <summary>Disposes the tensors.</summary>
    public void Dispose() { Tokens.Dispose(); LogProbs.Dispose(); GeneratedMask.Dispose(); }
}

/// <summary>Autoregressive sampling from any <c>Module&lt;Tensor, Tensor&gt;</c> mapping tokens <c>[batch, pos]</c> to logits <c>[batch, pos, vocab]</c>.</summary>
public static class Generation
{
    /// <summary>
    /// Extends every row of <paramref name="promptTokens"/> (int64 <c>[batch, pos]</c>, same length, no padding) by up to
    /// <see cref="GenerationOptions.MaxNewTokens"/> tokens. Recomputes the full forward pass each step (no KV cache).
    /// Runs under <c>no_grad</c> in eval mode; the model's training mode is restored afterwards.
    /// </summary>
    public static GenerationResult Generate(nn.Module<Tensor, Tensor> model, Tensor promptTokens, GenerationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(promptTokens);
        TorchRuntime.EnsureLoaded();
        var o = options ?? new GenerationOptions();
        if (promptTokens.dim() == 1) promptTokens = promptTokens.unsqueeze(0);
        if (promptTokens.dim() != 2) throw new ArgumentException("Prompt must be [batch, pos].", nameof(promptTokens));
        if (o.MaxNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(options), "MaxNewTokens must be ≥ 0.");
        bool greedy = !o.DoSample || o.Temperature <= 0;
        long pad = o.PadTokenId ?? o.EosTokenId ?? 0;
        using var gen = o.Seed is long s && !greedy ? new torch.Generator((ulong)s) : null;

        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = torch.no_grad();
            using var outer = torch.NewDisposeScope();
            long batch = promptTokens.shape[0];
            var tokens = promptTokens.to_type(ScalarType.Int64).clone();
            var finished = torch.zeros(batch, dtype: ScalarType.Bool, device: tokens.device);
            var logps = new List<Tensor>();
            var masks = new List<Tensor>();
            for (int step = 0; step < o.MaxNewTokens; step++)
            {
                using var inner = torch.NewDisposeScope();
                var input = o.ContextWindow is int n && tokens.shape[1] > n ? tokens[.., ^n..] : tokens;
                var logits = model.call(input)[.., -1, ..].to_type(ScalarType.Float32);   // [batch, vocab]
                var logProbs = logits.log_softmax(-1);
                Tensor next;
                if (greedy) next = logits.argmax(-1, keepdim: true);
                else
                {
                    var l = logits / o.Temperature;
                    if (o.TopK is int k) l = ApplyTopK(l, k);
                    if (o.TopP is double p) l = ApplyTopP(l, p);
                    next = torch.multinomial(l.softmax(-1), 1, false, gen);
                }
                var chosenLogp = logProbs.gather(-1, next).squeeze(-1);
                next = next.squeeze(-1);
                var active = finished.logical_not();
                next = torch.where(active, next, torch.full_like(next, pad));
                chosenLogp = torch.where(active, chosenLogp, torch.zeros_like(chosenLogp));
                var previous = tokens;
                tokens = torch.cat(new[] { tokens, next.unsqueeze(1) }, 1).MoveToOuterDisposeScope();
                previous.Dispose();
                logps.Add(chosenLogp.MoveToOuterDisposeScope());
                masks.Add(active.MoveToOuterDisposeScope());
                if (o.EosTokenId is long eos)
                {
                    var wasFinished = finished;
                    finished = finished.logical_or(next.eq(eos)).MoveToOuterDisposeScope();
                    wasFinished.Dispose();
                    if (finished.all().item<bool>()) break;
                }
            }
            var lp = logps.Count > 0 ? torch.stack(logps, 1) : torch.zeros(new[] { batch, 0L }, device: tokens.device);
            var gm = masks.Count > 0 ? torch.stack(masks, 1) : torch.zeros(batch, 0, dtype: ScalarType.Bool, device: tokens.device);
            return new GenerationResult(tokens.MoveToOuterDisposeScope(), lp.MoveToOuterDisposeScope(), gm.MoveToOuterDisposeScope());
        }
        finally
        {
            model.train(wasTraining);
        }
    }

    /// <summary>Tokenizes <paramref name="prompt"/> (BOS prepended when the tokenizer has one), generates, and decodes the whole row.</summary>
    public static string GenerateText(nn.Module<Tensor, Tensor> model, ITokenizer tokenizer, string prompt, GenerationOptions? options = null)
    {
        var o = options ?? new GenerationOptions();
        if (o.EosTokenId is null && tokenizer.EosTokenId is int e) o = o with { EosTokenId = e };
        using var input = tokenizer.ToTokens(prompt, prependBos: tokenizer.BosTokenId is not null);
        using var r = Generate(model, input, o);
        using var mask = torch.cat(new[] { torch.ones(1, input.shape[1], dtype: ScalarType.Bool, device: r.GeneratedMask.device), r.GeneratedMask }, 1);
        var row = r.Tokens[0].masked_select(mask[0]).cpu().data<long>().Select(x => (int)x);
        if (tokenizer.BosTokenId is int bos) row = row.Skip(1);
        return tokenizer.Decode(row);
    }

    /// <summary>Sets every logit below the k-th largest in its row to −∞ (ties with the k-th survive).</summary>
    public static Tensor ApplyTopK(Tensor logits, int k)
    {
        if (k < 1) throw new ArgumentOutOfRangeException(nameof(k));
        if (k >= logits.shape[^1]) return logits.clone();
        using var scope = torch.NewDisposeScope();
        var kth = logits.topk(k, -1).values[.., (k - 1)..k];
        return logits.masked_fill(logits.lt(kth), double.NegativeInfinity).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Nucleus filter: sorts each row by probability and keeps the smallest prefix whose total probability reaches
    /// <paramref name="p"/> — a token is dropped when the tokens more likely than it already sum to ≥ p. The most likely
    /// token is always kept. Others get −∞.
    /// </summary>
    public static Tensor ApplyTopP(Tensor logits, double p)
    {
        if (p <= 0 || p > 1) throw new ArgumentOutOfRangeException(nameof(p), "top-p must be in (0, 1].");
        using var scope = torch.NewDisposeScope();
        var (sorted, idx) = logits.sort(-1, descending: true);
        var probs = sorted.softmax(-1);
        var before = probs.cumsum(-1) - probs;              // mass of strictly more likely tokens
        var removeSorted = before.ge(p);
        var remove = torch.zeros_like(removeSorted).scatter(-1, idx, removeSorted);
        return logits.masked_fill(remove, double.NegativeInfinity).MoveToOuterDisposeScope();
    }
}
