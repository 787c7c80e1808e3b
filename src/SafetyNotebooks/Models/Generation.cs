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
    /// <summary>Model context window: only the last this-many tokens are fed to the model. Null: feed everything.
    /// When the prompt plus <see cref="MaxNewTokens"/> exceeds it, every step recomputes the window (no KV cache).</summary>
    public int? ContextWindow { get; init; }
    /// <summary>
    /// Reuse keys and values of earlier tokens (a <see cref="HookedTransformerKeyValueCache"/>) so that each new token costs
    /// one position, not the whole prefix. Default true; applies to <see cref="HookedTransformer"/> (other modules always recompute).
    /// Hooks still fire, on the new position only (<c>hook_resid_post</c> is [batch, 1, d_model] in cached steps).
    /// </summary>
    public bool UseCache { get; init; } = true;
    /// <summary>
    /// Hugging Face's repetition penalty (CTRL): the logit of every token already present in the row (prompt or generated,
    /// padding excluded) is divided by this when positive and multiplied by it when negative. 1 (default): off.
    /// </summary>
    public double RepetitionPenalty { get; init; } = 1.0;
    /// <summary>OpenAI's frequency penalty: subtracts <c>count × this</c> from the logit of each token generated <c>count</c> times so far in the row (prompt not counted). 0: off.</summary>
    public double FrequencyPenalty { get; init; }
    /// <summary>OpenAI's presence penalty: subtracts this from the logit of each token generated at least once so far in the row (prompt not counted). 0: off.</summary>
    public double PresencePenalty { get; init; }
    /// <summary>Beam search width (Hugging Face's <c>num_beams</c>); 1 (default) is greedy or sampling. Beam search is deterministic (no sampling).</summary>
    public int NumBeams { get; init; } = 1;
    /// <summary>Beam search: a finished hypothesis scores <c>sum of log-probs / (generated length ^ LengthPenalty)</c> (Hugging Face); &gt; 0 favours longer ones. Default 1.</summary>
    public double LengthPenalty { get; init; } = 1.0;
    /// <summary>
    /// Sequences returned per prompt (Hugging Face's <c>num_return_sequences</c>); default 1. Beam search returns each prompt's
    /// <c>NumReturnSequences</c> best hypotheses (at most <see cref="NumBeams"/>), best first; sampling draws that many
    /// independent samples per prompt. Rows of the result are grouped by prompt: row <c>b * n + i</c> is prompt b's i-th
    /// sequence. Greedy decoding without beams is refused for n &gt; 1 (it would return n copies), as in Hugging Face.
    /// </summary>
    public int NumReturnSequences { get; init; } = 1;

    /// <summary>Greedy decoding options.</summary>
    public static GenerationOptions Greedy(int maxNewTokens = 20, long? eosTokenId = null) =>
        new() { MaxNewTokens = maxNewTokens, DoSample = false, EosTokenId = eosTokenId };
}

/// <summary>Output of <see cref="Generation.Generate"/>.</summary>
/// <param name="Tokens">int64 <c>[batch, promptLen + newTokens]</c>: prompt then generated tokens (finished rows padded).
/// <c>newTokens</c> ≤ MaxNewTokens: generation stops early once every row has emitted EOS.</param>
/// <param name="LogProbs">float32 <c>[batch, newTokens]</c>: log-probability of each chosen token under the model's
/// <b>raw</b> distribution (temperature 1, no penalties, no top-k/top-p), i.e. <c>log_softmax(logits)[token]</c>, what TRL
/// uses as the policy's log-probs in RLHF; 0 at padded positions.</param>
/// <param name="GeneratedMask">bool <c>[batch, newTokens]</c>: true where a token was generated (including the EOS), false where padded.</param>
public sealed record GenerationResult(Tensor Tokens, Tensor LogProbs, Tensor GeneratedMask) : IDisposable
{
    /// <summary>Number of generated columns.</summary>
    public long NewTokens => LogProbs.shape[1];
    /// <summary>Disposes the tensors.</summary>
    public void Dispose() { Tokens.Dispose(); LogProbs.Dispose(); GeneratedMask.Dispose(); }
}

/// <summary>
/// Autoregressive generation from any <c>Module&lt;Tensor, Tensor&gt;</c> mapping tokens <c>[batch, pos]</c> to logits
/// <c>[batch, pos, vocab]</c>; a <see cref="HookedTransformer"/> also gets padded prompts and a key/value cache.
/// </summary>
public static class Generation
{
    /// <summary>
    /// Extends every row of <paramref name="promptTokens"/> (int64 <c>[batch, pos]</c>) by up to
    /// <see cref="GenerationOptions.MaxNewTokens"/> tokens. Prompts of different lengths are passed left-padded with their
    /// <paramref name="attentionMask"/> (1 = real, 0 = padding; the tokenizer's batch helper with <c>PaddingSide.Left</c>);
    /// each row then generates exactly what it would alone. A <see cref="HookedTransformer"/> uses a key/value cache
    /// (<see cref="GenerationOptions.UseCache"/>); other modules recompute the whole prefix each step and take no padding.
    /// Logits are processed in Hugging Face's order: repetition penalty, frequency/presence penalties, temperature, top-k, top-p.
    /// Runs under <c>no_grad</c> in eval mode; the model's training mode is restored afterwards.
    /// </summary>
    public static GenerationResult Generate(nn.Module<Tensor, Tensor> model, Tensor promptTokens, GenerationOptions? options = null, Tensor? attentionMask = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(promptTokens);
        TorchRuntime.EnsureLoaded();
        var o = options ?? new GenerationOptions();
        if (promptTokens.dim() == 1) promptTokens = promptTokens.unsqueeze(0);
        if (promptTokens.dim() != 2) throw new ArgumentException("Prompt must be [batch, pos].", nameof(promptTokens));
        if (o.MaxNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(options), "MaxNewTokens must be ≥ 0.");
        if (o.NumBeams < 1) throw new ArgumentOutOfRangeException(nameof(options), $"NumBeams is {o.NumBeams}; use 1 (no beam search) or more.");
        if (o.NumReturnSequences < 1) throw new ArgumentOutOfRangeException(nameof(options), $"NumReturnSequences is {o.NumReturnSequences}; use 1 or more.");
        if (o.NumReturnSequences > 1 && o.NumBeams > 1 && o.NumReturnSequences > o.NumBeams)
            throw new ArgumentOutOfRangeException(nameof(options), $"NumReturnSequences is {o.NumReturnSequences} but beam search keeps only NumBeams = {o.NumBeams} hypotheses per prompt: set NumBeams ≥ {o.NumReturnSequences} or lower NumReturnSequences.");
        if (o.NumReturnSequences > 1 && o.NumBeams == 1 && (!o.DoSample || o.Temperature <= 0))
            throw new ArgumentOutOfRangeException(nameof(options), $"NumReturnSequences is {o.NumReturnSequences} but decoding is greedy, which would return {o.NumReturnSequences} identical sequences: set DoSample = true (with Temperature > 0) or NumBeams ≥ {o.NumReturnSequences}.");
        if (o.RepetitionPenalty <= 0) throw new ArgumentOutOfRangeException(nameof(options), $"RepetitionPenalty is {o.RepetitionPenalty}; it must be > 0 (1 = off).");
        if (attentionMask is not null)
        {
            if (attentionMask.dim() == 1) attentionMask = attentionMask.unsqueeze(0);
            if (!attentionMask.shape.SequenceEqual(promptTokens.shape))
                throw new ArgumentException($"attentionMask is [{string.Join(", ", attentionMask.shape)}] but the prompt is [{string.Join(", ", promptTokens.shape)}]; pass the TokenBatch's AttentionMask with its Tokens.", nameof(attentionMask));
        }
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = torch.no_grad();
            using var outer = torch.NewDisposeScope();
            var mask = attentionMask?.ne(0) ?? torch.ones(promptTokens.shape, dtype: ScalarType.Bool, device: promptTokens.device);
            bool padded = attentionMask is not null && !mask.all().item<bool>();
            if (padded && !mask[.., -1].all().item<bool>())
                throw new ArgumentException("Generation continues every row from its last column, but some rows end in padding: pad prompts on the left (tokenizer.ToTokens(texts, paddingSide: PaddingSide.Left)).", nameof(attentionMask));
            var ht = model as HookedTransformer;
            if (padded && ht is null)
                throw new ArgumentException($"A padded prompt needs a HookedTransformer (a {model.GetType().Name} cannot take an attention mask); generate row by row, or pass prompts of equal length without a mask.", nameof(attentionMask));
            int n = o.NumReturnSequences;
            var result = o.NumBeams > 1 ? BeamSearch(model, ht, promptTokens.to_type(ScalarType.Int64), mask, padded, o)
                       : n > 1 ? Sample(model, ht, promptTokens.to_type(ScalarType.Int64).repeat_interleave(n, 0), mask.repeat_interleave(n, 0), padded, o) // HF: expand each prompt n times
                       : Sample(model, ht, promptTokens.to_type(ScalarType.Int64), mask, padded, o);
            return new GenerationResult(result.Tokens.MoveToOuterDisposeScope(), result.LogProbs.MoveToOuterDisposeScope(), result.GeneratedMask.MoveToOuterDisposeScope());
        }
        finally
        {
            model.train(wasTraining);
        }
    }

    /// <summary>Feeds tokens to the model step by step and returns the last position's logits; keeps the KV cache (or the whole prefix).</summary>
    sealed class Stepper : IDisposable
    {
        readonly nn.Module<Tensor, Tensor> _model;
        readonly HookedTransformer? _ht;
        readonly HookedTransformerKeyValueCache? _cache;
        readonly bool _padded;
        readonly int? _window;
        Tensor _tokens, _mask;                                   // everything so far (kept for recomputation), [rows, len]
        bool _started;

        public Stepper(nn.Module<Tensor, Tensor> model, HookedTransformer? ht, Tensor prompt, Tensor mask, bool padded, GenerationOptions o)
        {
            _model = model; _ht = ht; _padded = padded; _window = o.ContextWindow;
            _tokens = prompt.alias().DetachFromDisposeScope(); _mask = mask.alias().DetachFromDisposeScope();
            bool fits = o.ContextWindow is not int n || prompt.shape[1] + o.MaxNewTokens <= n;
            if (ht is not null && o.UseCache && fits) _cache = new HookedTransformerKeyValueCache(ht, prompt.shape[1] + o.MaxNewTokens);
        }

        /// <summary>Logits [rows, vocab] (float32) at the last position after appending <paramref name="next"/> [rows] (null on the first call).</summary>
        public Tensor Next(Tensor? next)
        {
            if (next is not null)
            {
                Replace(ref _tokens, torch.cat(new[] { _tokens, next.unsqueeze(1) }, 1));
                Replace(ref _mask, torch.cat(new[] { _mask, torch.ones(_mask.shape[0], 1, dtype: ScalarType.Bool, device: _mask.device) }, 1));
            }
            Tensor logits;                                       // [rows, vocab]: a HookedTransformer unembeds the last position only
            if (_cache is not null)
                logits = _started ? _ht!.ForwardLastLogits(next!.unsqueeze(1), null, _cache) : _ht!.ForwardLastLogits(_tokens, _padded ? _mask : null, _cache);
            else
            {
                var input = _window is int n && _tokens.shape[1] > n ? _tokens[.., ^n..] : _tokens;
                var m = _window is int w && _mask.shape[1] > w ? _mask[.., ^w..] : _mask;
                logits = _ht is not null ? _ht.ForwardLastLogits(input, _padded ? m : null, null) : _model.call(input)[.., -1, ..];
            }
            _started = true;
            return logits.to_type(ScalarType.Float32);
        }

        /// <summary>Keeps rows <paramref name="idx"/> in that order (beam search).</summary>
        public void Reorder(Tensor idx)
        {
            Replace(ref _tokens, _tokens.index_select(0, idx));
            Replace(ref _mask, _mask.index_select(0, idx));
            _cache?.Reorder(idx);
        }

        public Tensor Tokens => _tokens;

        static void Replace(ref Tensor field, Tensor value)
        {
            var v = value.DetachFromDisposeScope();
            field.Dispose();
            field = v;
        }

        public void Dispose() { _cache?.Dispose(); _tokens.Dispose(); _mask.Dispose(); }
    }

    /// <summary>Logit processors in Hugging Face's order (before temperature): repetition penalty, then frequency/presence penalties.</summary>
    sealed class Penalties : IDisposable
    {
        readonly GenerationOptions _o;
        readonly Tensor? _present;                               // [rows, vocab] bool: token in the prompt or generated
        readonly Tensor? _counts;                                // [rows, vocab] float: times generated

        public Penalties(GenerationOptions o, Tensor prompt, Tensor mask, long vocab)
        {
            _o = o;
            if (o.RepetitionPenalty != 1.0)
            {
                // Padding is not "already present" (Hugging Face counts pad ids too; here only real tokens count).
                _present = torch.zeros(prompt.shape[0], vocab, dtype: ScalarType.Float32, device: prompt.device)
                    .scatter_add(1, prompt, mask.to_type(ScalarType.Float32)).gt(0).DetachFromDisposeScope();
            }
            if (o.FrequencyPenalty != 0 || o.PresencePenalty != 0)
                _counts = torch.zeros(prompt.shape[0], vocab, dtype: ScalarType.Float32, device: prompt.device).DetachFromDisposeScope();
        }

        public Tensor Apply(Tensor logits)
        {
            if (_present is not null) logits = ApplyRepetitionPenalty(logits, _present, _o.RepetitionPenalty);
            if (_counts is not null) logits = ApplyFrequencyPresencePenalty(logits, _counts, _o.FrequencyPenalty, _o.PresencePenalty);
            return logits;
        }

        /// <summary>Records the tokens just chosen (<paramref name="next"/> [rows]) for rows where <paramref name="active"/>.</summary>
        public void Update(Tensor next, Tensor active)
        {
            var idx = next.unsqueeze(1);
            _present?.scatter_(1, idx, active.unsqueeze(1).logical_or(_present.gather(1, idx)));
            _counts?.scatter_add_(1, idx, active.unsqueeze(1).to_type(ScalarType.Float32));
        }

        public void Reorder(Tensor idx)
        {
            if (_present is not null) { var n = _present.index_select(0, idx); _present.copy_(n); }
            if (_counts is not null) { var n = _counts.index_select(0, idx); _counts.copy_(n); }
        }

        public void Dispose() { _present?.Dispose(); _counts?.Dispose(); }
    }

    static (Tensor Tokens, Tensor LogProbs, Tensor GeneratedMask) Sample(nn.Module<Tensor, Tensor> model, HookedTransformer? ht, Tensor prompt, Tensor mask, bool padded, GenerationOptions o)
    {
        bool greedy = !o.DoSample || o.Temperature <= 0;
        long pad = o.PadTokenId ?? o.EosTokenId ?? 0;
        using var gen = o.Seed is long s && !greedy ? new torch.Generator((ulong)s) : null;
        long batch = prompt.shape[0];
        using var stepper = new Stepper(model, ht, prompt, mask, padded, o);
        Penalties? penalties = null;
        var finished = torch.zeros(batch, dtype: ScalarType.Bool, device: prompt.device);
        var logps = new List<Tensor>();
        var masks = new List<Tensor>();
        var generated = new List<Tensor>();
        Tensor? next = null;
        try
        {
            for (int step = 0; step < o.MaxNewTokens; step++)
            {
                using var inner = torch.NewDisposeScope();
                var logits = stepper.Next(next);                                           // [batch, vocab]
                penalties ??= new Penalties(o, prompt, mask, logits.shape[1]);
                var logProbs = logits.log_softmax(-1);                                      // raw: what the policy assigns
                var l = penalties.Apply(logits);
                Tensor chosen;
                if (greedy) chosen = l.argmax(-1, keepdim: true);
                else
                {
                    l = l / o.Temperature;
                    if (o.TopK is int k) l = ApplyTopK(l, k);
                    if (o.TopP is double p) l = ApplyTopP(l, p);
                    chosen = torch.multinomial(l.softmax(-1), 1, false, gen);
                }
                var chosenLogp = logProbs.gather(-1, chosen).squeeze(-1);
                chosen = chosen.squeeze(-1);
                var active = finished.logical_not();
                chosen = torch.where(active, chosen, torch.full_like(chosen, pad));
                chosenLogp = torch.where(active, chosenLogp, torch.zeros_like(chosenLogp));
                penalties.Update(chosen, active);
                next = chosen.MoveToOuterDisposeScope();
                generated.Add(next);
                logps.Add(chosenLogp.MoveToOuterDisposeScope());
                masks.Add(active.MoveToOuterDisposeScope());
                if (o.EosTokenId is long eos)
                {
                    finished = finished.logical_or(chosen.eq(eos)).MoveToOuterDisposeScope();
                    if (finished.all().item<bool>()) break;
                }
            }
        }
        finally { penalties?.Dispose(); }
        var tokens = generated.Count > 0 ? torch.cat(new[] { prompt, torch.stack(generated, 1) }, 1) : prompt.clone();
        var lp = logps.Count > 0 ? torch.stack(logps, 1) : torch.zeros(new[] { batch, 0L }, device: prompt.device);
        var gm = masks.Count > 0 ? torch.stack(masks, 1) : torch.zeros(batch, 0, dtype: ScalarType.Bool, device: prompt.device);
        return (tokens, lp, gm);
    }

    /// <summary>
    /// Hugging Face's beam search (<c>num_beams</c> &gt; 1, no sampling, <c>early_stopping=False</c>): each step keeps the
    /// <c>NumBeams</c> best continuations of every row by summed log-probability (of the processed logits); a beam that emits
    /// EOS becomes a finished hypothesis scored <c>sum / generated_length ^ LengthPenalty</c>; a row is done when it has
    /// <c>NumBeams</c> hypotheses and no running beam can beat the worst. Returns each row's <c>NumReturnSequences</c> best hypotheses, best first.
    /// </summary>
    static (Tensor Tokens, Tensor LogProbs, Tensor GeneratedMask) BeamSearch(nn.Module<Tensor, Tensor> model, HookedTransformer? ht, Tensor prompt, Tensor mask, bool padded, GenerationOptions o)
    {
        int K = o.NumBeams;
        long batch = prompt.shape[0], promptLen = prompt.shape[1];
        long pad = o.PadTokenId ?? o.EosTokenId ?? 0;
        var device = prompt.device;
        var rowsPrompt = prompt.repeat_interleave(K, 0);                                   // [batch*K, pos]
        var rowsMask = mask.repeat_interleave(K, 0);
        using var stepper = new Stepper(model, ht, rowsPrompt, rowsMask, padded, o);
        var penalties = (Penalties?)null;
        var beamScores = new double[batch * K];                                            // running sum of log-probs
        for (long b = 0; b < batch; b++) for (int j = 1; j < K; j++) beamScores[b * K + j] = -1e9; // first step: expand beam 0 only
        var beamTokens = Enumerable.Range(0, (int)(batch * K)).Select(_ => new List<long>()).ToArray();
        var beamRaw = Enumerable.Range(0, (int)(batch * K)).Select(_ => new List<float>()).ToArray();
        var hyps = Enumerable.Range(0, (int)batch).Select(_ => new List<(double Score, long[] Tokens, float[] Raw)>()).ToArray();
        var done = new bool[batch];
        double Score(double sum, int len) => sum / Math.Pow(len, o.LengthPenalty);
        Tensor? next = null;
        try
        {
            for (int step = 0; step < o.MaxNewTokens && !done.All(d => d); step++)
            {
                using var inner = torch.NewDisposeScope();
                var logits = stepper.Next(next);                                           // [batch*K, vocab]
                long V = logits.shape[1];
                penalties ??= new Penalties(o, rowsPrompt, rowsMask, V);
                var raw = logits.log_softmax(-1);
                var processed = penalties.Apply(logits);
                if (o.Temperature > 0 && o.Temperature != 1) processed = processed / o.Temperature;
                var logp = processed.log_softmax(-1);
                var cand = logp + torch.tensor(beamScores, device: device).to_type(ScalarType.Float32).unsqueeze(1); // [batch*K, V]
                var (topScores, topIdx) = cand.view(batch, K * V).topk(2 * K, -1);
                var scores = topScores.to_type(ScalarType.Float64).cpu().data<double>().ToArray();
                var idx = topIdx.cpu().data<long>().ToArray();
                var rawAll = raw.view(batch, K * V).gather(1, topIdx).cpu().data<float>().ToArray();
                var newSource = new long[batch * K];
                var newToken = new long[batch * K];
                var newScores = new double[batch * K];
                var newRaw = new float[batch * K];
                for (long b = 0; b < batch; b++)
                {
                    if (done[b])
                    {
                        for (int j = 0; j < K; j++) { newSource[b * K + j] = b * K; newToken[b * K + j] = pad; newScores[b * K + j] = 0; }
                        continue;
                    }
                    int filled = 0;
                    for (int r = 0; r < 2 * K && filled < K; r++)
                    {
                        long flat = idx[b * 2 * K + r];
                        long src = b * K + flat / V, tok = flat % V;
                        double sc = scores[b * 2 * K + r];
                        float rl = rawAll[b * 2 * K + r];
                        if (o.EosTokenId is long eos && tok == eos)
                        {
                            if (r >= K) continue;                                          // not among the top NumBeams: dropped (HF)
                            var seq = beamTokens[src].Append(tok).ToArray();
                            AddHypothesis(hyps[b], K, Score(sc, seq.Length), seq, beamRaw[src].Append(rl).ToArray());
                            continue;
                        }
                        newSource[b * K + filled] = src; newToken[b * K + filled] = tok; newScores[b * K + filled] = sc; newRaw[b * K + filled] = rl;
                        filled++;
                    }
                    // Done (HF, early_stopping=False): enough hypotheses and the best running beam cannot beat the worst.
                    if (hyps[b].Count >= K && hyps[b].Min(h => h.Score) >= Score(newScores[b * K], step + 1)) done[b] = true;
                }
                var oldTokens = beamTokens; var oldRaw = beamRaw;
                beamTokens = new List<long>[batch * K]; beamRaw = new List<float>[batch * K];
                for (long i = 0; i < batch * K; i++)
                {
                    beamTokens[i] = new List<long>(oldTokens[newSource[i]]) { newToken[i] };
                    beamRaw[i] = new List<float>(oldRaw[newSource[i]]) { newRaw[i] };
                }
                beamScores = newScores;
                using var src2 = torch.tensor(newSource, device: device);
                stepper.Reorder(src2);
                penalties.Reorder(src2);
                next = torch.tensor(newToken, device: device).MoveToOuterDisposeScope();
                using var ones = torch.ones(batch * K, dtype: ScalarType.Bool, device: device);
                penalties.Update(next, ones);
            }
        }
        finally { penalties?.Dispose(); }
        // Rows still running: their beams become hypotheses (HF's finalize).
        for (long b = 0; b < batch; b++)
        {
            if (done[b]) continue;
            for (int j = 0; j < K; j++)
            {
                long i = b * K + j;
                if (beamTokens[i].Count == 0) continue;
                AddHypothesis(hyps[b], K, Score(beamScores[i], beamTokens[i].Count), beamTokens[i].ToArray(), beamRaw[i].ToArray());
            }
        }
        // Each row's NumReturnSequences best hypotheses, best first (HF); a row with fewer (MaxNewTokens = 0) gets empty ones.
        int n = o.NumReturnSequences;
        var empty = (Score: 0.0, Tokens: Array.Empty<long>(), Raw: Array.Empty<float>());
        var best = hyps.SelectMany(h => h.OrderByDescending(x => x.Score).Concat(Enumerable.Repeat(empty, n)).Take(n)).ToArray(); // [batch * n]
        long rows = batch * n;
        int width = best.Max(h => h.Tokens.Length);
        var outTok = new long[rows * width]; var lp = new float[rows * width]; var gm = new bool[rows * width];
        Array.Fill(outTok, pad);
        for (long b = 0; b < rows; b++)
            for (int t = 0; t < best[b].Tokens.Length; t++) { outTok[b * width + t] = best[b].Tokens[t]; lp[b * width + t] = best[b].Raw[t]; gm[b * width + t] = true; }
        var generatedTokens = torch.tensor(outTok, new[] { rows, (long)width }, device: device);
        return (torch.cat(new[] { prompt.repeat_interleave(n, 0), generatedTokens }, 1), torch.tensor(lp, new[] { rows, (long)width }, device: device),
            torch.tensor(gm, new[] { rows, (long)width }, device: device));
    }

    static void AddHypothesis(List<(double Score, long[] Tokens, float[] Raw)> hyps, int k, double score, long[] tokens, float[] raw)
    {
        if (hyps.Count < k) { hyps.Add((score, tokens, raw)); return; }
        int worst = 0;
        for (int i = 1; i < hyps.Count; i++) if (hyps[i].Score < hyps[worst].Score) worst = i;
        if (score > hyps[worst].Score) hyps[worst] = (score, tokens, raw);
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

    /// <summary>
    /// Hugging Face's repetition penalty: where <paramref name="present"/> (bool, same shape as the logits) is true, a
    /// positive logit is divided by <paramref name="penalty"/> and a negative one multiplied by it; others are unchanged.
    /// </summary>
    public static Tensor ApplyRepetitionPenalty(Tensor logits, Tensor present, double penalty)
    {
        using var scope = torch.NewDisposeScope();
        var penalized = torch.where(logits.lt(0), logits * penalty, logits / penalty);
        return torch.where(present, penalized, logits).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// OpenAI's frequency and presence penalties: <c>logits − counts × frequency − (counts &gt; 0) × presence</c>, where
    /// <paramref name="counts"/> (same shape as the logits) says how often each token has been generated so far.
    /// </summary>
    public static Tensor ApplyFrequencyPresencePenalty(Tensor logits, Tensor counts, double frequency, double presence)
    {
        using var scope = torch.NewDisposeScope();
        return (logits - counts.to_type(logits.dtype) * frequency - counts.gt(0).to_type(logits.dtype) * presence).MoveToOuterDisposeScope();
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
