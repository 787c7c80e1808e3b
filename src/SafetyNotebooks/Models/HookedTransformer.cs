using SafetyNotebooks.Models.Components;
using SafetyNotebooks.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models;

/// <summary>
/// A GPT-style decoder-only transformer with a <see cref="HookPoint"/> at every interesting activation, in the
/// spirit of TransformerLens' <c>HookedTransformer</c>: tokens int64 [batch, pos] → logits [batch, pos, d_vocab].
/// </summary>
/// <remarks>
/// <para>Hook names follow TransformerLens (<c>hook_embed</c>, <c>blocks.0.attn.hook_pattern</c>, <c>ln_final.hook_scale</c>, ...);
/// see <see cref="HookNames"/> and <see cref="Utils.GetActName"/>. Weights have TransformerLens' names and shapes
/// (<c>W_E</c> [d_vocab, d_model], per-layer <c>W_Q</c> [n_heads, d_model, d_head], ...).</para>
/// <para>Every forward pass runs inside its own dispose scope: intermediate tensors are freed when it returns,
/// and only the logits survive. Hooks that want to keep an activation use <see cref="HookPoint.Keep"/> or
/// <see cref="RunWithCache"/>.</para>
/// </remarks>
public sealed partial class HookedTransformer : nn.Module<Tensor, Tensor>
{
    static HookedTransformer() => TorchRuntime.EnsureLoaded();

    readonly Embed _embed;
    readonly PosEmbed? _posEmbed;
    readonly BlockList _blocks;
    readonly TransformerBlock[] _blockArray;
    NormLayer? _lnFinal;
    readonly Unembed _unembed;
    readonly Dictionary<string, HookPoint> _hookPoints = new(StringComparer.Ordinal);

    /// <summary>Token embeddings, [batch, pos, d_model].</summary>
    public readonly HookPoint hook_embed = new("hook_embed");
    /// <summary>Positional embeddings, [batch, pos, d_model] (absent when the config has no positional embedding).</summary>
    public readonly HookPoint? hook_pos_embed;

    /// <summary>All submodules and parameters are registered explicitly under TransformerLens names; no reflection-based registration.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Builds a model with freshly initialised weights (normal(0, InitRange) matrices, zero biases, unit norms).</summary>
    public HookedTransformer(HookedTransformerConfig cfg) : base("HookedTransformer")
    {
        Cfg = (cfg ?? throw new ArgumentNullException(nameof(cfg))).Validate();
        // [n_ctx, n_ctx], true above the diagonal: key positions a query may not see.
        Tensor mask;
        try { mask = ones(cfg.NCtx, cfg.NCtx, ScalarType.Bool).triu(1); }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InsufficientMemoryException(
                $"HookedTransformerConfig.NCtx = {cfg.NCtx} needs a {cfg.NCtx} × {cfg.NCtx} causal mask ({(double)cfg.NCtx * cfg.NCtx / (1 << 30):G3} GiB), " +
                $"which could not be allocated ({e.Message.Split('\n')[0]}). Use a smaller NCtx (the longest sequence you will run).", e);
        }

        _embed = new Embed(cfg);
        register_module("embed", _embed);
        register_module("hook_embed", hook_embed);
        if (cfg.PositionalEmbedding == PositionalEmbeddingType.Standard)
        {
            _posEmbed = new PosEmbed(cfg);
            hook_pos_embed = new HookPoint("hook_pos_embed");
            register_module("pos_embed", _posEmbed);
            register_module("hook_pos_embed", hook_pos_embed);
        }
        _blockArray = Enumerable.Range(0, cfg.NLayers).Select(l => new TransformerBlock(cfg, l, mask)).ToArray();
        _blocks = new BlockList(_blockArray);
        register_module("blocks", _blocks);
        _lnFinal = NormLayer.Create(cfg, "ln_final");
        if (_lnFinal is not null) register_module("ln_final", _lnFinal);
        _unembed = new Unembed(cfg, cfg.TiedEmbeddings ? _embed : null);
        register_module("unembed", _unembed);

        InitWeights();
        IndexHookPoints();
    }

    /// <summary>The architecture.</summary>
    public HookedTransformerConfig Cfg { get; private set; }

    /// <summary>Token embedding module.</summary>
    public Embed embed => _embed;
    /// <summary>Positional embedding module (null when the config has none).</summary>
    public PosEmbed? pos_embed => _posEmbed;
    /// <summary>The transformer blocks.</summary>
    public IReadOnlyList<TransformerBlock> blocks => _blockArray;
    /// <summary>Final normalization (null when the config has none).</summary>
    public NormLayer? ln_final => _lnFinal;
    /// <summary>Unembedding module.</summary>
    public Unembed unembed => _unembed;

    /// <summary>Re-initialises every weight: matrices (names with <c>W_</c>) ~ normal(0, InitRange), biases 0, norm weights 1. Uses <see cref="HookedTransformerConfig.Seed"/> if set.</summary>
    public void InitWeights()
    {
        if (Cfg.Seed is { } seed) random.manual_seed(seed);
        double std = Cfg.EffectiveInitRange;
        using var _ = no_grad();
        foreach (var (name, p) in named_parameters())
        {
            var local = name[(name.LastIndexOf('.') + 1)..];
            if (local.StartsWith("W_")) nn.init.normal_(p, 0, std);
            else if (local == "w") p.fill_(1.0);
            else p.zero_();
        }
    }

    void IndexHookPoints()
    {
        _hookPoints.Clear();
        // Depth-first in registration order (= forward order), unlike named_modules().
        void Walk(nn.Module module, string prefix)
        {
            foreach (var (name, child) in module.named_children())
            {
                var full = prefix.Length == 0 ? name : prefix + "." + name;
                if (child is HookPoint hp) { hp.Name = full; _hookPoints[full] = hp; }
                else Walk(child, full);
            }
        }
        Walk(this, "");
    }

    /// <summary>Every hook point name, in forward order.</summary>
    public IReadOnlyList<string> HookNames => _hookPoints.Keys.ToList();

    /// <summary>All hook points by full name.</summary>
    public IReadOnlyDictionary<string, HookPoint> HookPoints => _hookPoints;

    /// <summary>
    /// The hook point with this full name or TransformerLens shorthand (e.g. <c>"pattern0"</c>); an unknown name throws
    /// <see cref="ArgumentException"/> listing the closest valid names.
    /// </summary>
    public HookPoint GetHookPoint(string name)
    {
        if (_hookPoints.TryGetValue(name, out var hp)) return hp;
        string? expanded = null;
        try { expanded = Utils.GetActName(name); } catch (Exception) { }
        if (expanded is not null && _hookPoints.TryGetValue(expanded, out hp)) return hp;
        var close = NameSuggestions.Closest(name, _hookPoints.Keys, 5);
        var leaf = (expanded ?? name).Split('.')[^1];
        string? flag = leaf switch
        {
            "hook_q_input" or "hook_k_input" or "hook_v_input" => "SetUseSplitQkvInput(true) (HookedTransformerConfig.UseSplitQkvInput)",
            "hook_attn_in" => "SetUseAttnIn(true) (HookedTransformerConfig.UseAttnIn)",
            "hook_mlp_in" => "SetUseHookMlpIn(true) (HookedTransformerConfig.UseHookMlpIn)",
            _ => null,
        };
        if (flag is not null && !_hookPoints.Keys.Any(k => k.EndsWith("." + leaf)))
            throw new ArgumentException($"Hook point '{name}' exists only when it is switched on, as in TransformerLens: call model.{flag} first.", nameof(name));
        throw new ArgumentException(
            $"Unknown hook point '{name}'. Closest valid names: {string.Join(", ", close)}. " +
            "See HookedTransformer.HookNames for the full list, or Utils.GetActName(\"pattern\", 0) to build a name.", nameof(name));
    }

    /// <summary>tokens int64 [batch, pos] (or [pos]) → logits [batch, pos, d_vocab].</summary>
    public override Tensor forward(Tensor tokens) => forward(tokens, attentionMask: null);

    /// <summary>
    /// tokens int64 [batch, pos] (or [pos]) → logits [batch, pos, d_vocab], as TransformerLens' <c>forward</c> with
    /// <c>attention_mask</c> and <c>past_kv_cache</c>.
    /// </summary>
    /// <param name="tokens">int64 [batch, pos]: with a cache, only the tokens not yet cached.</param>
    /// <param name="attentionMask">[batch, pos] (int or bool), 1 = real token, 0 = padding (left or right; with a cache,
    /// for the new tokens only). Padded keys are never attended to, position ids count real tokens only
    /// (<c>cumsum(mask) - 1</c>, as Hugging Face), and logits at padded positions are meaningless. Null: all real.</param>
    /// <param name="pastKvCache">Keys and values of earlier tokens; the new ones are appended (see <see cref="HookedTransformerKeyValueCache"/>).</param>
    /// <param name="startAtLayer">TransformerLens' <c>start_at_layer</c>: <paramref name="tokens"/> is then a residual stream
    /// float [batch, pos, d_model] (e.g. <c>resid_pre</c> of that layer) and the model runs blocks from this one on
    /// (negative counts from the end). Positions still come from <paramref name="attentionMask"/>.</param>
    /// <param name="stopAtLayer">TransformerLens' <c>stop_at_layer</c>: return the residual stream [batch, pos, d_model]
    /// before block k (its <c>resid_pre</c>; negative counts from the end) instead of the logits.</param>
    public Tensor forward(Tensor tokens, Tensor? attentionMask = null, HookedTransformerKeyValueCache? pastKvCache = null,
        int? startAtLayer = null, int? stopAtLayer = null)
    {
        using var scope = NewDisposeScope();
        int start = LayerIndex(startAtLayer, 0, nameof(startAtLayer), allowEnd: false);
        int stop = LayerIndex(stopAtLayer, Cfg.NLayers, nameof(stopAtLayer), allowEnd: true);
        if (stop < start)
            throw new ArgumentException($"stopAtLayer ({stopAtLayer}) comes before startAtLayer ({startAtLayer}); pass a stop layer ≥ the start layer.", nameof(stopAtLayer));
        var residual = Residual(tokens, attentionMask, pastKvCache, start, stop, fromResidual: startAtLayer is not null);
        return (stop < Cfg.NLayers ? residual : _unembed.forward(residual)).MoveToOuterDisposeScope(); // [batch, pos, d_vocab or d_model]
    }

    /// <summary>
    /// Logits at the last position only, [batch, d_vocab] (what generation needs): the same pass as
    /// <see cref="forward(Tensor, Tensor?, HookedTransformerKeyValueCache?, int?, int?)"/>, but the unembedding runs on one position.
    /// </summary>
    internal Tensor ForwardLastLogits(Tensor tokens, Tensor? attentionMask, HookedTransformerKeyValueCache? pastKvCache)
    {
        using var scope = NewDisposeScope();
        var residual = Residual(tokens, attentionMask, pastKvCache);
        return _unembed.forward(residual.narrow(1, residual.shape[1] - 1, 1)).select(1, 0).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The residual stream after the final normalization, [batch, pos, d_model] (Hugging Face's <c>last_hidden_state</c>):
    /// the same pass as <see cref="forward(Tensor, Tensor?, HookedTransformerKeyValueCache?, int?, int?)"/> without the
    /// unembedding, for scalar heads (reward models, value heads) that read it.
    /// </summary>
    public Tensor FinalResidual(Tensor tokens, Tensor? attentionMask = null)
    {
        using var scope = NewDisposeScope();
        return Residual(tokens, attentionMask).MoveToOuterDisposeScope();
    }

    int LayerIndex(int? layer, int fallback, string name, bool allowEnd)
    {
        if (layer is not int l) return fallback;
        int n = Cfg.NLayers, i = l < 0 ? l + n : l;
        if (i < 0 || i > n || (!allowEnd && i == n))
            throw new ArgumentOutOfRangeException(name, l, $"{name} = {l} is outside the model's {n} layers; use 0…{(allowEnd ? n : n - 1)} or a negative index from the end (−{n}…−1).");
        return i;
    }

    /// <summary>
    /// Runs blocks <paramref name="start"/>…<paramref name="stop"/> − 1 and, when running to the end, the final normalization:
    /// [batch, pos] tokens (or, when <paramref name="fromResidual"/>, a residual stream [batch, pos, d_model]) → [batch, pos, d_model].
    /// </summary>
    Tensor Residual(Tensor tokens, Tensor? attentionMask = null, HookedTransformerKeyValueCache? cache = null, int start = 0, int stop = -1, bool fromResidual = false)
    {
        if (stop < 0) stop = Cfg.NLayers;
        if (fromResidual)
        {
            if (tokens.dim() == 2) tokens = tokens.unsqueeze(0);
            if (tokens.dim() != 3 || tokens.shape[2] != Cfg.DModel || !tokens.is_floating_point())
                throw new ArgumentException(
                    $"With startAtLayer the input is a residual stream float [batch, pos, d_model = {Cfg.DModel}], got {tokens.dtype} [{string.Join(", ", tokens.shape)}]; " +
                    "pass e.g. cache[\"resid_pre\", layer], or drop startAtLayer to run from tokens.", nameof(tokens));
            if (tokens.shape[1] > Cfg.NCtx)
                throw new ArgumentException($"Sequence length {tokens.shape[1]} exceeds the model's context NCtx = {Cfg.NCtx}; truncate to at most {Cfg.NCtx} positions.", nameof(tokens));
            if (cache is not null)
                throw new ArgumentException("startAtLayer cannot be combined with a key/value cache (the cache needs every layer); run from tokens to use one.", nameof(cache));
            var ctx = BuildAttentionContext(tokens, attentionMask, null, out _, out _);
            var r = tokens;
            for (int l = start; l < stop; l++) r = _blockArray[l].forward(r, ctx);
            return stop < Cfg.NLayers || _lnFinal is null ? r : _lnFinal.forward(r);
        }
        if (tokens.dim() == 1) tokens = tokens.unsqueeze(0);
        if (tokens.dim() != 2)
            throw new ArgumentException($"Tokens must have shape [batch, pos] (or [pos]) but have shape [{string.Join(", ", tokens.shape)}].", nameof(tokens));
        if (tokens.dtype is not (ScalarType.Int64 or ScalarType.Int32 or ScalarType.Int16 or ScalarType.Int8 or ScalarType.Byte))
            throw new ArgumentException(
                $"Tokens must be integer ids (int64) but are {tokens.dtype}; converting would silently truncate values such as 2.7 to 2. " +
                "Pass the tokenizer's output, or build the tensor from long[] (e.g. torch.tensor(new long[] { ... })).", nameof(tokens));
        if (tokens.shape[0] == 0)
            throw new ArgumentException($"Tokens have shape [0, {tokens.shape[1]}]: the batch is empty. Pass at least one sequence.", nameof(tokens));
        if (tokens.shape[1] == 0)
            throw new ArgumentException($"Tokens have shape [{tokens.shape[0]}, 0]: the sequences are empty. Pass at least one token per sequence (e.g. a BOS token).", nameof(tokens));
        if (tokens.dtype != ScalarType.Int64) tokens = tokens.to_type(ScalarType.Int64);
        if (tokens.numel() > 0)
        {
            long min = tokens.min().item<long>(), max = tokens.max().item<long>();
            if (min < 0 || max >= Cfg.DVocab)
                throw new ArgumentException($"Token ids must be in [0, {Cfg.DVocab}) (DVocab) but range over [{min}, {max}]. Check that the tokenizer matches the model.", nameof(tokens));
        }
        long past = cache?.Length ?? 0;
        if (past + tokens.shape[1] > Cfg.NCtx)
            throw new ArgumentException(past == 0
                ? $"Sequence length {tokens.shape[1]} exceeds the model's context NCtx = {Cfg.NCtx}; truncate the tokens to at most {Cfg.NCtx} positions."
                : $"The key/value cache holds {past} positions and {tokens.shape[1]} more exceed the model's context NCtx = {Cfg.NCtx}; generate fewer tokens or start a new cache on the last {Cfg.NCtx} tokens.", nameof(tokens));
        var context = BuildAttentionContext(tokens, attentionMask, cache, out var fullMask, out bool newHasPadding);

        var residual = hook_embed.forward(_embed.forward(tokens));                 // [batch, pos, d_model]
        if (_posEmbed is not null)
        {
            Tensor posEmbed;
            if (fullMask is null && past == 0)
            {
                posEmbed = _posEmbed.forward(tokens);                              // a view of W_pos
                // Hooks get a copy (as in TransformerLens): an in-place edit of a view would change W_pos for good.
                if (hook_pos_embed!.HasHooks) posEmbed = posEmbed.is_contiguous() ? posEmbed.clone() : posEmbed.contiguous();
            }
            else                                                                   // rows of W_pos at each token's position id (a copy)
                posEmbed = _posEmbed.W_pos.index_select(0, context.Positions.reshape(-1)).view(tokens.shape[0], tokens.shape[1], Cfg.DModel);
            residual = residual + hook_pos_embed!.forward(posEmbed);
        }
        if (cache is not null && stop < Cfg.NLayers)
            throw new ArgumentException("stopAtLayer cannot be combined with a key/value cache (the later layers would miss the new positions); run the whole model to use one.", nameof(cache));
        for (int l = 0; l < stop; l++)
            residual = _blockArray[l].forward(residual, context);                  // [batch, pos, d_model]
        if (cache is not null)
            cache.Commit(fullMask ?? ones(tokens.shape[0], past + tokens.shape[1], dtype: ScalarType.Bool, device: tokens.device), newHasPadding);
        return stop < Cfg.NLayers || _lnFinal is null ? residual : _lnFinal.forward(residual);
    }

    /// <summary>
    /// Positions and masks for one pass. <paramref name="fullMask"/> is the bool key mask [batch, past + pos] (cached prefix
    /// and new tokens), or null when no position is padding.
    /// </summary>
    AttentionContext BuildAttentionContext(Tensor tokens, Tensor? attentionMask, HookedTransformerKeyValueCache? cache,
        out Tensor? fullMask, out bool newHasPadding)
    {
        long batch = tokens.shape[0], pos = tokens.shape[1];
        long past = cache?.Length ?? 0;
        var device = tokens.device;
        fullMask = null;
        newHasPadding = false;
        if (cache is not null)
        {
            cache.CheckConsistent();
            if (past > 0 && cache.AttentionMask!.shape[0] != batch)
                throw new ArgumentException($"The key/value cache holds {cache.AttentionMask.shape[0]} sequences but the tokens have {batch} rows. Use one cache per batch (a new HookedTransformerKeyValueCache).", nameof(tokens));
        }
        Tensor? newMask = null;
        if (attentionMask is not null)
        {
            if (attentionMask.dim() == 1 && tokens.shape[0] == 1) attentionMask = attentionMask.unsqueeze(0);
            if (attentionMask.dim() != 2 || attentionMask.shape[0] != batch || attentionMask.shape[1] != pos)
                throw new ArgumentException(
                    $"attentionMask has shape [{string.Join(", ", attentionMask.shape)}] but the tokens are [{batch}, {pos}]; pass the mask of these tokens " +
                    "(the AttentionMask of the tokenizer's TokenBatch; with a cache, the mask of the new tokens only).", nameof(attentionMask));
            if (attentionMask.dtype == ScalarType.Bool) newMask = attentionMask;
            else
            {
                if (attentionMask.is_floating_point())
                    throw new ArgumentException($"attentionMask must hold 1 (real token) and 0 (padding) as int64 or bool, not {attentionMask.dtype}.", nameof(attentionMask));
                using var bad = attentionMask.ne(0).logical_and(attentionMask.ne(1)).any();
                if (bad.item<bool>())
                    throw new ArgumentException("attentionMask must hold only 1 (real token) and 0 (padding); pass the tokenizer's TokenBatch.AttentionMask.", nameof(attentionMask));
                newMask = attentionMask.ne(0);
            }
            newMask = newMask.to(device);
            using var allReal = newMask.all();
            newHasPadding = !allReal.item<bool>();
        }
        bool padded = newHasPadding || (cache?.HasPadding ?? false);
        bool windowed = Cfg.SlidingWindow is int sw && past + pos > sw;  // some query would see more than the window: mask explicitly
        if (!padded && !windowed && attentionMask is null && past == 0)
            return AttentionContext.Causal(batch, pos, device) with { CacheEntries = cache?.Entries };
        if (attentionMask is not null || past > 0)
        {
            var newPart = newMask ?? ones(batch, pos, dtype: ScalarType.Bool, device: device);
            fullMask = past > 0 ? cat(new[] { cache!.AttentionMask!.to(device), newPart }, 1) : newPart; // [batch, past + pos]
        }
        // Position ids over real tokens only (Hugging Face: cumsum(mask) - 1; padding before the first real token gets 0).
        var positions = fullMask is null
            ? arange(past, past + pos, dtype: ScalarType.Int64, device: device).unsqueeze(0).expand(batch, pos)
            : (fullMask.to_type(ScalarType.Int64).cumsum(1) - 1).clamp_min(0).narrow(1, past, pos);
        if (!padded && !windowed)                                          // no padding anywhere: causal, or one new query seeing everything
            return pos == 1 && past > 0
                ? new AttentionContext { Positions = positions, PastLength = past, IsCausal = false, CacheEntries = cache?.Entries }
                : past == 0
                    ? new AttentionContext { Positions = positions, CacheEntries = cache?.Entries }
                    : CausalWithPast(positions, CausalAllowed(pos, past).unsqueeze(0).unsqueeze(0).expand(batch, 1, pos, past + pos));
        // [batch, 1, pos, past + pos]: causal (query i sits at past + i) and the key is a real token.
        // Sliding window (Mistral): query i (cache index past + i) also needs key j > past + i − window, i.e. j − i ≥ past − window + 1.
        var band = windowed ? CausalAllowed(pos, past).logical_and(ones(pos, past + pos, dtype: ScalarType.Bool, device: device).triu(past - Cfg.SlidingWindow!.Value + 1))
                            : CausalAllowed(pos, past);
        var allowed = (fullMask is null ? band.unsqueeze(0).expand(batch, pos, past + pos) : band.unsqueeze(0).logical_and(fullMask.unsqueeze(1))).unsqueeze(1);
        var none = allowed.any(-1).logical_not();                          // [batch, 1, pos]
        var diagonal = eye(pos, past + pos, dtype: ScalarType.Bool, device: device);
        if (past > 0) diagonal = diagonal.roll(past, 1);
        var kernel = allowed.logical_or(none.unsqueeze(-1).logical_and(diagonal));
        return new AttentionContext
        {
            Positions = positions, PastLength = past, CacheEntries = cache?.Entries,
            AllowedMask = allowed, KernelMask = kernel, FullyMaskedQueries = none.view(batch, pos, 1, 1),
        };

        AttentionContext CausalWithPast(Tensor positions, Tensor allowed) =>
            new() { Positions = positions, PastLength = past, CacheEntries = cache?.Entries, AllowedMask = allowed, KernelMask = allowed };

        Tensor CausalAllowed(long q, long p) =>                           // [q, p + q], true where key j ≤ p + i
            ones(q, p + q, dtype: ScalarType.Bool, device: device).tril(p);
    }

    /// <summary>
    /// Next-token cross-entropy of the model on <paramref name="tokens"/> [batch, pos] (predicting token t+1 from
    /// positions ≤ t): the mean (a scalar), or per token [batch, pos - 1] if <paramref name="perToken"/>.
    /// </summary>
    /// <param name="tokens">int64 [batch, pos].</param>
    /// <param name="perToken">Per-token losses instead of the mean.</param>
    /// <param name="attentionMask">[batch, pos], 1 = real token, 0 = padding. A prediction counts only when both the
    /// position predicting and the token predicted are real (TransformerLens' rule); the mean is over those, and the
    /// per-token losses are 0 elsewhere.</param>
    public Tensor Loss(Tensor tokens, bool perToken = false, Tensor? attentionMask = null)
    {
        using var scope = NewDisposeScope();
        if (tokens.dim() == 1) tokens = tokens.unsqueeze(0);
        if (attentionMask is not null && attentionMask.dim() == 1) attentionMask = attentionMask.unsqueeze(0);
        var logits = forward(tokens, attentionMask);
        if (attentionMask is null) return LossFromLogits(logits, tokens, perToken).MoveToOuterDisposeScope();
        var targets = LanguageModelLoss.TargetMaskFromAttentionMask(attentionMask);
        return (perToken
            ? LanguageModelLoss.PerToken(logits, tokens) * targets[.., 1..].to_type(logits.dtype)
            : LanguageModelLoss.Mean(logits, tokens, targets)).MoveToOuterDisposeScope();
    }

    /// <summary>Next-token cross-entropy given logits [batch, pos, d_vocab] and tokens [batch, pos]: mean, or [batch, pos - 1] if <paramref name="perToken"/>.</summary>
    public static Tensor LossFromLogits(Tensor logits, Tensor tokens, bool perToken = false) =>
        perToken ? LanguageModelLoss.PerToken(logits, tokens) : LanguageModelLoss.Mean(logits, tokens);

    // ---- Stacked weight accessors (new tensors, [n_layers, ...]) --------------------------------------------

    /// <summary>[d_vocab, d_model]</summary>
    public Tensor W_E => _embed.W_E;
    /// <summary>[n_ctx, d_model] (throws if the model has no positional embedding)</summary>
    public Tensor W_pos => _posEmbed?.W_pos ?? throw new InvalidOperationException("This model has no positional embedding (Cfg.PositionalEmbedding = None).");
    /// <summary>[d_model, d_vocab]</summary>
    public Tensor W_U => _unembed.W_U;
    /// <summary>[d_vocab]</summary>
    public Tensor b_U => _unembed.b_U;
    /// <summary>Stacked query weights, [n_layers, n_heads, d_model, d_head] (a copy).</summary>
    public Tensor W_Q => Stack(b => b.attn.W_Q);
    /// <summary>Stacked key weights, [n_layers, n_heads, d_model, d_head] (a copy); n_key_value_heads instead of n_heads with grouped-query attention.</summary>
    public Tensor W_K => Stack(b => b.attn.W_K);
    /// <summary>Stacked value weights, [n_layers, n_heads, d_model, d_head] (a copy); n_key_value_heads instead of n_heads with grouped-query attention.</summary>
    public Tensor W_V => Stack(b => b.attn.W_V);
    /// <summary>Stacked output weights, [n_layers, n_heads, d_head, d_model] (a copy).</summary>
    public Tensor W_O => Stack(b => b.attn.W_O);
    /// <summary>[n_layers, n_heads, d_head] (a copy)</summary>
    public Tensor b_Q => Stack(b => b.attn.b_Q);
    /// <summary>[n_layers, n_heads, d_head] (a copy; n_key_value_heads with grouped-query attention)</summary>
    public Tensor b_K => Stack(b => b.attn.b_K);
    /// <summary>[n_layers, n_heads, d_head] (a copy; n_key_value_heads with grouped-query attention)</summary>
    public Tensor b_V => Stack(b => b.attn.b_V);
    /// <summary>[n_layers, d_model] (a copy)</summary>
    public Tensor b_O => Stack(b => b.attn.b_O);
    /// <summary>[n_layers, d_model, d_mlp] (a copy)</summary>
    public Tensor W_in => Stack(b => MlpOf(b).W_in);
    /// <summary>[n_layers, d_mlp] (a copy)</summary>
    public Tensor b_in => Stack(b => MlpOf(b).b_in);
    /// <summary>[n_layers, d_mlp, d_model] (a copy)</summary>
    public Tensor W_out => Stack(b => MlpOf(b).W_out);
    /// <summary>[n_layers, d_model] (a copy)</summary>
    public Tensor b_out => Stack(b => MlpOf(b).b_out);

    static Mlp MlpOf(TransformerBlock b) => b.mlp ?? throw new InvalidOperationException("This model is attention-only: it has no MLP weights.");

    Tensor Stack(Func<TransformerBlock, Tensor> f)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        return stack(_blockArray.Select(f).ToArray()).MoveToOuterDisposeScope();
    }

    /// <summary>Total number of parameters.</summary>
    public long ParameterCount => parameters().Sum(p => p.numel());
}

/// <summary>Holds the blocks under the names "0", "1", ... (so hook names read <c>blocks.{l}.…</c>).</summary>
internal sealed class BlockList : nn.Module
{
    public BlockList(IEnumerable<TransformerBlock> blocks) : base("blocks")
    {
        int i = 0;
        foreach (var b in blocks) register_module((i++).ToString(), b);
    }

    protected override void RegisterComponents() { }
}
