using SafetyNotebooks.Models;
using SafetyNotebooks.Tokenization;
using SafetyNotebooks.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Alignment;

/// <summary>A batch of prompts for a rollout.</summary>
/// <param name="Tokens">int64 <c>[batch, pos]</c>, left-padded when the prompts differ in length.</param>
/// <param name="AttentionMask">1 = real, 0 = padding, <c>[batch, pos]</c> (the tokenizer's batch with <c>PaddingSide.Left</c>); null: all real.</param>
public sealed record PromptBatch(Tensor Tokens, Tensor? AttentionMask = null);

/// <summary>What a score function sees: the prompts and the generated completions (each ends at its EOS; later tokens are padding).</summary>
/// <param name="Prompts">int64 <c>[batch, P]</c>.</param>
/// <param name="PromptMask">1/0 <c>[batch, P]</c>, or null when every prompt token is real.</param>
/// <param name="Responses">int64 <c>[batch, T]</c>: the completions, padded after their EOS.</param>
/// <param name="ResponseMask">bool <c>[batch, T]</c>: true for the real completion tokens (the EOS included).</param>
public sealed record Completions(Tensor Prompts, Tensor? PromptMask, Tensor Responses, Tensor ResponseMask)
{
    /// <summary>The real tokens of prompt <paramref name="row"/>.</summary>
    public long[] PromptTokens(int row)
    {
        var ids = Prompts[row].cpu().data<long>().ToArray();
        if (PromptMask is null) return ids;
        var m = PromptMask[row].ne(0).cpu().data<bool>().ToArray();
        return ids.Where((_, i) => m[i]).ToArray();
    }

    /// <summary>The real tokens of completion <paramref name="row"/> (up to and including its EOS).</summary>
    public long[] ResponseTokens(int row)
    {
        var ids = Responses[row].cpu().data<long>().ToArray();
        var m = ResponseMask[row].cpu().data<bool>().ToArray();
        return ids.Where((_, i) => m[i]).ToArray();
    }
}

/// <summary>Scores completed sequences: returns float <c>[batch]</c>, one score per completion (a reward model, a rule, a verifier).</summary>
public delegate Tensor ScoreFunction(Completions completions);

/// <summary>Builders of <see cref="ScoreFunction"/>s from per-sequence rules.</summary>
public static class ScoreFunctions
{
    /// <summary>Scores each row with <paramref name="score"/>(prompt tokens, completion tokens incl. EOS).</summary>
    public static ScoreFunction FromTokens(Func<long[], long[], double> score)
    {
        ArgumentNullException.ThrowIfNull(score);
        return c =>
        {
            int batch = (int)c.Responses.shape[0];
            var s = new float[batch];
            for (int i = 0; i < batch; i++) s[i] = (float)score(c.PromptTokens(i), c.ResponseTokens(i));
            return torch.tensor(s, device: c.Responses.device);
        };
    }

    /// <summary>
    /// Scores each row with <paramref name="score"/>(prompt text, completion text): both decoded with
    /// <paramref name="tokenizer"/>, the BOS and the completion's final EOS left out (TRL decodes with <c>skip_special_tokens</c>).
    /// </summary>
    public static ScoreFunction FromText(ITokenizer tokenizer, Func<string, string, double> score)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(score);
        return FromTokens((p, r) =>
        {
            IEnumerable<long> prompt = p, response = r;
            if (tokenizer.BosTokenId is int bos && p.Length > 0 && p[0] == bos) prompt = p.Skip(1);
            if (tokenizer.EosTokenId is int eos && r.Length > 0 && r[^1] == eos) response = r.Take(r.Length - 1);
            return score(tokenizer.Decode(prompt.Select(x => (int)x)), tokenizer.Decode(response.Select(x => (int)x)));
        });
    }
}

/// <summary>
/// One rollout: prompts, sampled completions and what the RL objectives need about them. Every per-token tensor is
/// <c>[batch, T]</c> over the completion tokens and 0 after each completion's end (its EOS). Owns its tensors.
/// </summary>
public sealed class Rollout : IDisposable
{
    /// <summary>int64 <c>[batch, P + T]</c>: prompt then completion (finished rows padded).</summary>
    public required Tensor QueryResponses { get; init; }
    /// <summary>1/0 <c>[batch, P + T]</c> for the forward passes (prompt mask, then ones), or null when nothing is padded.</summary>
    public Tensor? AttentionMask { get; init; }
    /// <summary>The prompt length P (TRL's <c>context_length</c>).</summary>
    public required int ContextLength { get; init; }
    /// <summary>int64 <c>[batch, T]</c>: the completions.</summary>
    public required Tensor Responses { get; init; }
    /// <summary>bool <c>[batch, T]</c>: true for real completion tokens, up to and including the EOS.</summary>
    public required Tensor ResponseMask { get; init; }
    /// <summary>float <c>[batch, T]</c>: log π(token) under the sampling policy (at the sampling temperature).</summary>
    public required Tensor LogProbs { get; init; }
    /// <summary>float <c>[batch, T]</c>: log π_ref(token), or null when no reference model was given.</summary>
    public Tensor? RefLogProbs { get; init; }
    /// <summary>float <c>[batch, T]</c>: the value head's estimate before each completion token, or null without a value head.</summary>
    public Tensor? Values { get; init; }
    /// <summary>float <c>[batch]</c>: the score function's scores, minus the missing-EOS penalty where it applies.</summary>
    public required Tensor Scores { get; init; }
    /// <summary>bool <c>[batch]</c>: whether the completion ended with an EOS (false: cut at the length limit).</summary>
    public required Tensor ContainsEos { get; init; }

    /// <summary>Number of completions.</summary>
    public long BatchSize => Responses.shape[0];
    /// <summary>Completion columns T.</summary>
    public long ResponseLength => Responses.shape[1];

    Tensor?[] All => new[] { QueryResponses, AttentionMask, Responses, ResponseMask, LogProbs, RefLogProbs, Values, Scores, ContainsEos };

    /// <summary>Takes the tensors out of every dispose scope: the caller then owns them (dispose the rollout).</summary>
    public void DetachFromDisposeScopes()
    {
        foreach (var t in All) t?.DetachFromDisposeScope();
    }

    /// <summary>Disposes the tensors.</summary>
    public void Dispose()
    {
        foreach (var t in new[] { QueryResponses, AttentionMask, Responses, ResponseMask, LogProbs, RefLogProbs, Values, Scores, ContainsEos })
            t?.Dispose();
    }
}

/// <summary>
/// Rollout collection shared by PPO-RLHF, GRPO and RLOO: sample completions with the KV cache
/// (<see cref="Generation.Generate"/>), then score them with the reference model (one pass) and the value head (one pass),
/// and call the score function on the finished sequences.
/// </summary>
public static class Rollouts
{
    /// <summary>
    /// Collects one rollout. <paramref name="policy"/> is a <see cref="HookedTransformer"/> or a
    /// <see cref="HookedTransformerWithValueHead"/> (then <see cref="Rollout.Values"/> is filled from one extra pass).
    /// Log-probs of the policy are the ones <see cref="Generation.Generate"/> returns when the temperature is 1 (they are of
    /// the raw distribution), else they are recomputed from the tempered logits of a full pass (as TRL divides the logits by
    /// the temperature). A completion ends at its first EOS (<see cref="GenerationOptions.EosTokenId"/>); tokens after it
    /// are masked. <paramref name="missingEosPenalty"/> (TRL's <c>missing_eos_penalty</c>, &gt; 0) is subtracted from the
    /// score of every completion that has no EOS.
    /// </summary>
    public static Rollout Collect(nn.Module<Tensor, Tensor> policy, HookedTransformer? reference, PromptBatch prompts, ScoreFunction score,
        GenerationOptions options, double? missingEosPenalty = null)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(score);
        ArgumentNullException.ThrowIfNull(options);
        var withValue = policy as HookedTransformerWithValueHead;
        var lm = withValue?.Policy ?? policy as HookedTransformer
            ?? throw new ArgumentException($"A rollout needs a HookedTransformer or a HookedTransformerWithValueHead as the policy, got a {policy.GetType().Name}.", nameof(policy));
        if (options.MaxNewTokens < 1) throw new ArgumentException($"GenerationOptions.MaxNewTokens is {options.MaxNewTokens}; a rollout needs at least 1 new token.", nameof(options));
        if (!options.DoSample || options.Temperature <= 0) throw new ArgumentException("A rollout samples from the policy: set GenerationOptions.DoSample = true and Temperature > 0 (greedy completions have no policy gradient).", nameof(options));
        if (options.NumBeams != 1) throw new ArgumentException($"GenerationOptions.NumBeams is {options.NumBeams}; rollouts sample (NumBeams = 1).", nameof(options));
        if (missingEosPenalty is double pen)
        {
            if (!(pen > 0)) throw new ArgumentOutOfRangeException(nameof(missingEosPenalty), pen, "missing_eos_penalty must be > 0 (it is subtracted from the score), or null for none.");
            if (options.EosTokenId is null) throw new ArgumentException("missing_eos_penalty needs GenerationOptions.EosTokenId: without an EOS id no completion can end.", nameof(missingEosPenalty));
        }
        var tokens = prompts.Tokens.dim() == 1 ? prompts.Tokens.unsqueeze(0) : prompts.Tokens;
        if (tokens.dim() != 2) throw new ArgumentException($"PromptBatch.Tokens must be [batch, pos], got [{string.Join(", ", tokens.shape)}].", nameof(prompts));
        int P = (int)tokens.shape[1];
        if (P < 1) throw new ArgumentException("PromptBatch.Tokens has no columns; every prompt needs at least one token (e.g. a BOS).", nameof(prompts));

        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var promptMask = prompts.AttentionMask is { } pm && !pm.ne(0).all().item<bool>() ? pm.ne(0) : null;
        var gen = Generation.Generate(lm, tokens, options, promptMask);       // its tensors live in this scope
        var queryResponses = gen.Tokens;
        int T = (int)gen.NewTokens;
        var responses = queryResponses.narrow(1, P, T);
        var responseMask = gen.GeneratedMask;
        var attention = promptMask is null ? null : torch.cat(new[] { promptMask, torch.ones(promptMask.shape[0], T, dtype: ScalarType.Bool, device: promptMask.device) }, 1);
        double temperature = options.Temperature;

        Tensor logProbs = gen.LogProbs;
        Tensor? values = null;
        if (withValue is not null && temperature != 1.0)
        {
            var (logits, v) = withValue.Forward(queryResponses, attention);
            values = v.narrow(1, P - 1, T);
            logProbs = CompletionLogProbs(logits, queryResponses, P, temperature);
        }
        else if (withValue is not null)
            values = withValue.Values(queryResponses, attention).narrow(1, P - 1, T);   // value pass: no unembedding
        else if (temperature != 1.0)
            logProbs = CompletionLogProbs(lm, queryResponses, attention, P, temperature);
        Tensor? refLogProbs = null;
        if (reference is not null)
            refLogProbs = CompletionLogProbs(reference, queryResponses, attention, P, temperature);

        var maskF = responseMask.to_type(ScalarType.Float32);
        logProbs = logProbs.to_type(ScalarType.Float32) * maskF;
        refLogProbs = refLogProbs is null ? null : refLogProbs.to_type(ScalarType.Float32) * maskF;
        values = values is null ? null : values.to_type(ScalarType.Float32) * maskF;
        var completions = new Completions(tokens, promptMask, responses, responseMask);
        var scores = score(completions);
        if (scores is null || scores.dim() != 1 || scores.shape[0] != responses.shape[0])
            throw new InvalidOperationException($"The score function must return one score per completion, float [{responses.shape[0]}], got {(scores is null ? "null" : "[" + string.Join(", ", scores.shape) + "]")}.");
        Tensor containsEos;
        (scores, containsEos) = PenalizeMissingEos(scores.to_type(ScalarType.Float32).to(responses.device), responses, responseMask, options.EosTokenId, missingEosPenalty);

        return new Rollout
        {
            QueryResponses = queryResponses.clone().MoveToOuterDisposeScope(),
            AttentionMask = attention?.MoveToOuterDisposeScope(),
            ContextLength = P,
            Responses = responses.clone().MoveToOuterDisposeScope(),
            ResponseMask = responseMask.clone().MoveToOuterDisposeScope(),
            LogProbs = logProbs.MoveToOuterDisposeScope(),
            RefLogProbs = refLogProbs?.MoveToOuterDisposeScope(),
            Values = values?.MoveToOuterDisposeScope(),
            Scores = scores.MoveToOuterDisposeScope(),
            ContainsEos = containsEos.MoveToOuterDisposeScope(),
        };
    }

    /// <summary>
    /// TRL's <c>missing_eos_penalty</c>: a completion "contains EOS" when one of its real tokens is
    /// <paramref name="eosTokenId"/>; <paramref name="penalty"/> (null: none) is subtracted from the score of every other
    /// completion. Returns the new scores <c>[batch]</c> and whether each completion contains its EOS (all false without an EOS id).
    /// </summary>
    public static (Tensor Scores, Tensor ContainsEos) PenalizeMissingEos(Tensor scores, Tensor responses, Tensor responseMask, long? eosTokenId, double? penalty)
    {
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(responses);
        ArgumentNullException.ThrowIfNull(responseMask);
        if (penalty is not null && eosTokenId is null)
            throw new ArgumentException("missing_eos_penalty needs the EOS token id: without one no completion can end; set EosTokenId or drop the penalty.", nameof(penalty));
        using var scope = torch.NewDisposeScope();
        var containsEos = eosTokenId is long eos
            ? responses.eq(eos).logical_and(responseMask.ne(0)).any(1)
            : torch.zeros(responses.shape[0], dtype: ScalarType.Bool, device: responses.device);
        var penalized = penalty is double p ? scores - p * containsEos.logical_not().to_type(scores.dtype) : scores.alias();
        return (penalized.MoveToOuterDisposeScope(), containsEos.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// log π(completion token t) <c>[batch, T]</c> from a model's logits over the whole <c>[batch, P + T]</c> sequence:
    /// the logits at positions P − 1 … P + T − 2, divided by <paramref name="temperature"/>, read at the completion tokens
    /// (through <see cref="LanguageModelLoss.TokenLogProbs"/>, on the completion's slice only).
    /// </summary>
    public static Tensor CompletionLogProbs(Tensor logits, Tensor queryResponses, int contextLength, double temperature = 1.0)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(queryResponses);
        long total = queryResponses.shape[1];
        if (contextLength < 1 || contextLength >= total)
            throw new ArgumentException($"contextLength {contextLength} must lie in [1, {total - 1}] for sequences of {total} tokens (prompt then at least one completion token).", nameof(contextLength));
        if (!(temperature > 0)) throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "The temperature must be > 0.");
        using var scope = torch.NewDisposeScope();
        long span = total - contextLength + 1;                              // position P − 1 and the T completion positions
        var l = logits.narrow(1, contextLength - 1, span);
        if (temperature != 1.0) l = l / temperature;
        var lp = LanguageModelLoss.TokenLogProbs(l, queryResponses.narrow(1, contextLength - 1, span));
        return lp.narrow(1, 1, span - 1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <see cref="CompletionLogProbs(Tensor, Tensor, int, double)"/> from one pass of <paramref name="model"/> over
    /// <paramref name="queryResponses"/>; when nothing is padded only positions P − 1 … are unembedded (the prompt's logits
    /// are never needed).
    /// </summary>
    public static Tensor CompletionLogProbs(HookedTransformer model, Tensor queryResponses, Tensor? attentionMask, int contextLength, double temperature = 1.0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(queryResponses);
        using var scope = torch.NewDisposeScope();
        if (attentionMask is not null)
            return CompletionLogProbs(model.forward(queryResponses, attentionMask), queryResponses, contextLength, temperature).MoveToOuterDisposeScope();
        long span = queryResponses.shape[1] - contextLength + 1;
        var hidden = HookedTransformerWithValueHead.FinalResidual(model, queryResponses).narrow(1, contextLength - 1, span);
        var logits = model.unembed.forward(hidden);                              // [batch, T + 1, vocab]
        return CompletionLogProbs(logits, queryResponses.narrow(1, contextLength - 1, span), 1, temperature).MoveToOuterDisposeScope();
    }

    /// <summary>Entropy of each completion position's distribution <c>[batch, T]</c>: logsumexp(l) − Σ softmax(l)·l over the tempered logits at positions P − 1 … P + T − 2 (TRL's entropy).</summary>
    public static Tensor CompletionEntropy(Tensor logits, int contextLength, long responseLength, double temperature = 1.0)
    {
        using var scope = torch.NewDisposeScope();
        var l = logits.narrow(1, contextLength - 1, responseLength);
        if (temperature != 1.0) l = l / temperature;
        var p = l.softmax(-1);
        return (l.logsumexp(-1) - (p * l).sum(-1)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// A frozen copy of <paramref name="policy"/> to serve as the reference model π_ref: same configuration, weights
    /// copied, <c>requires_grad</c> off, eval mode, on the policy's device.
    /// </summary>
    public static HookedTransformer FrozenReference(HookedTransformer policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        var copy = new HookedTransformer(policy.Cfg with { Seed = null });
        var device = policy.parameters().FirstOrDefault()?.device;
        if (device is not null) copy.to(device);
        var source = policy.state_dict();
        var target = copy.state_dict();
        var missing = source.Keys.Except(target.Keys).Concat(target.Keys.Except(source.Keys)).ToList();
        if (missing.Count > 0)
            throw new InvalidOperationException($"Cannot copy the policy into a reference model: their state dicts differ at {string.Join(", ", missing.Take(3))} (e.g. the policy's embeddings were untied); build the reference with the same steps as the policy, or load it from the same checkpoint.");
        using (torch.no_grad())
            foreach (var (name, t) in target) t.copy_(source[name]);
        foreach (var p in copy.parameters()) p.requires_grad = false;
        copy.eval();
        return copy;
    }

    /// <summary>A random permutation of 0…n−1 from <paramref name="rng"/> (the trainer's seeded data generator).</summary>
    internal static long[] Permutation(int n, Random rng)
    {
        var idx = Enumerable.Range(0, n).Select(i => (long)i).ToArray();
        rng.Shuffle(idx);
        return idx;
    }
}

/// <summary>
/// Serves an on-policy schedule to <see cref="Trainer{TBatch}"/>: every <c>epochs × miniBatches × accumulation</c>
/// micro-batches it collects a new rollout, then for each epoch shuffles the rollout's rows (the trainer's seeded
/// generator) and cuts them into contiguous micro-batches, as TRL's PPO loop does.
/// </summary>
internal sealed class OnPolicySchedule<TRollout, TBatch> : IDisposable where TRollout : class, IDisposable
{
    readonly Func<int, Random, TRollout> _collect;
    readonly Action<TRollout> _keep;
    readonly Func<TRollout, long[], TBatch> _slice;
    readonly Func<TRollout, int> _rows;
    readonly int _epochs, _chunks;
    int _calls, _rolloutIndex;
    long[] _perm = Array.Empty<long>();

    /// <param name="collect">Collects rollout i (the trainer's generator is passed for the prompts).</param>
    /// <param name="keep">Detaches the rollout's tensors from every dispose scope (the schedule owns them until the next rollout).</param>
    /// <param name="rows">Rows of a rollout.</param>
    /// <param name="slice">A micro-batch of the given rows.</param>
    /// <param name="epochs">Passes over each rollout.</param>
    /// <param name="miniBatches">Optimizer steps per pass.</param>
    /// <param name="accumulation">Micro-batches per optimizer step (the trainer's gradient accumulation).</param>
    public OnPolicySchedule(Func<int, Random, TRollout> collect, Action<TRollout> keep, Func<TRollout, int> rows, Func<TRollout, long[], TBatch> slice,
        int epochs, int miniBatches, int accumulation)
    {
        _collect = collect; _keep = keep; _rows = rows; _slice = slice; _epochs = epochs; _chunks = miniBatches * accumulation;
    }

    /// <summary>The rollout being trained on.</summary>
    public TRollout? Current { get; private set; }
    /// <summary>Called after each new rollout with its index.</summary>
    public Action<int, TRollout>? OnRollout { get; init; }
    /// <summary>Micro-batch calls per rollout.</summary>
    public int CallsPerRollout => _epochs * _chunks;

    public TBatch Next(int step, Random rng)
    {
        int k = _calls % CallsPerRollout;
        if (k == 0)
        {
            Current?.Dispose();
            Current = null;
            var r = _collect(_rolloutIndex, rng);
            _keep(r);
            Current = r;
            OnRollout?.Invoke(_rolloutIndex, r);
            _rolloutIndex++;
        }
        int rows = _rows(Current!);
        if (rows % _chunks != 0)
            throw new InvalidOperationException($"A rollout of {rows} sequences cannot be split into {_chunks} equal micro-batches (mini-batches × gradient accumulation); make the number of prompts (× generations) a multiple of it.");
        int chunk = k % _chunks;
        if (chunk == 0) _perm = Rollouts.Permutation(rows, rng);
        int size = rows / _chunks;
        _calls++;
        return _slice(Current!, _perm.Skip(chunk * size).Take(size).ToArray());
    }

    public void Dispose() { Current?.Dispose(); Current = null; }
}
