using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Interpretability;

/// <summary>How <see cref="SteeringVector.FromMeanDifference"/> turns a prompt's activations <c>[pos, ...]</c> into one vector.</summary>
public enum SteeringReduction
{
    /// <summary>The activation at the last real token of each prompt (Rimsky et al.'s CAA reads the answer token, the last one).</summary>
    LastToken,
    /// <summary>Each prompt's mean over its real tokens, then the mean over prompts.</summary>
    MeanOverPositions,
}

/// <summary>
/// Where a steering vector is added. Positions are <b>columns</b> of the model input: prompt columns 0 … promptLength − 1
/// (padding included, for left-padded prompts), then one column per generated token. In a plain forward pass the whole
/// input is the prompt. <see cref="Steering.Generate(HookedTransformer, Tensor, SteeringVector, double, GenerationOptions?, Tensor?, SteeringPositions?)"/>
/// tracks columns across key/value-cached steps, so cached and uncached generation steer the same positions.
/// </summary>
public sealed record SteeringPositions
{
    enum Kind { All, Range, LastPromptToken, Generated }
    readonly Kind _kind;
    readonly long _start;
    readonly long? _end;
    SteeringPositions(Kind kind, long start = 0, long? end = null) { _kind = kind; _start = start; _end = end; }

    /// <summary>Every position, prompt and generated (Rimsky et al.'s CAA adds at all positions; ActAdd-style steering of a whole continuation).</summary>
    public static SteeringPositions All { get; } = new(Kind.All);
    /// <summary>Only the last prompt column (with left-padded prompts, every row's last real prompt token).</summary>
    public static SteeringPositions LastPromptToken { get; } = new(Kind.LastPromptToken);
    /// <summary>Only generated tokens (columns ≥ the prompt length); nothing in a plain forward pass.</summary>
    public static SteeringPositions Generated { get; } = new(Kind.Generated);

    /// <summary>Columns <paramref name="start"/> ≤ c &lt; <paramref name="end"/> (null: to the end, generated tokens included);
    /// Turner et al.'s ActAdd adds at the first columns of the prompt, <c>Range(0, k)</c>.</summary>
    public static SteeringPositions Range(long start, long? end = null)
    {
        if (start < 0) throw new ArgumentOutOfRangeException(nameof(start), $"start is {start}; columns count from 0.");
        if (end is long e && e <= start) throw new ArgumentOutOfRangeException(nameof(end), $"end ({e}) must be greater than start ({start}); the range is start ≤ column < end.");
        return new(Kind.Range, start, end);
    }

    /// <summary>True when every column is steered (no mask needed).</summary>
    internal bool IsAll => _kind == Kind.All;

    /// <summary>Whether column <paramref name="column"/> is steered when the prompt has <paramref name="promptLength"/> columns.</summary>
    public bool Contains(long column, long promptLength) => _kind switch
    {
        Kind.All => true,
        Kind.Range => column >= _start && (_end is not long e || column < e),
        Kind.LastPromptToken => column == promptLength - 1,
        _ => column >= promptLength,
    };

    /// <inheritdoc/>
    public override string ToString() => _kind switch
    {
        Kind.Range => _end is long e ? $"Range({_start}, {e})" : $"Range({_start}, end)",
        _ => _kind.ToString(),
    };
}

/// <summary>
/// A steering vector at one hook point (activation addition: Turner et al. 2023, <i>Activation Addition</i>; Rimsky et al.
/// 2024, <i>Contrastive Activation Addition</i>): added, times a coefficient, to the activation at chosen positions.
/// The vector has the shape of the activation after its [batch, pos] dimensions (<c>[d_model]</c> for the residual stream).
/// </summary>
public sealed class SteeringVector : IDisposable
{
    /// <summary>Wraps <paramref name="vector"/> (copied) for the hook <paramref name="hookName"/> (a full name; see <see cref="FromDirection"/> for shorthand).</summary>
    public SteeringVector(string hookName, Tensor vector)
    {
        ArgumentException.ThrowIfNullOrEmpty(hookName);
        ArgumentNullException.ThrowIfNull(vector);
        if (!vector.is_floating_point())
            throw new ArgumentException($"A steering vector must be floating point, got {vector.dtype}; build it from activations (e.g. .to_type(ScalarType.Float32)).", nameof(vector));
        HookName = Utils.GetActName(hookName);
        Vector = vector.detach().clone().DetachFromDisposeScope();
    }

    /// <summary>Full hook name, e.g. <c>blocks.2.hook_resid_pre</c>.</summary>
    public string HookName { get; }

    /// <summary>The vector, shape = the activation's shape after [batch, pos].</summary>
    public Tensor Vector { get; }

    /// <summary>L2 norm of the vector.</summary>
    public double Norm
    {
        get { using var n = Vector.norm(); return n.to_type(ScalarType.Float64).item<double>(); }
    }

    /// <summary>The same direction with norm 1 (a new vector).</summary>
    public SteeringVector Normalized()
    {
        double n = Norm;
        if (!(n > 0)) throw new InvalidOperationException($"The steering vector at '{HookName}' has norm {n}; a zero vector has no direction to normalize.");
        using var v = Vector / n;
        return new SteeringVector(HookName, v);
    }

    /// <summary>A vector along <paramref name="direction"/> at <paramref name="hookName"/> (full name or shorthand such as <c>resid_pre2</c>), e.g. a probe's weight row.</summary>
    public static SteeringVector FromDirection(string hookName, Tensor direction) => new(hookName, direction);

    /// <summary>Mean of <paramref name="positive"/> <c>[n, ...]</c> minus mean of <paramref name="negative"/> <c>[m, ...]</c>: the contrastive mean difference.</summary>
    public static SteeringVector FromActivations(string hookName, Tensor positive, Tensor negative)
    {
        ArgumentNullException.ThrowIfNull(positive);
        ArgumentNullException.ThrowIfNull(negative);
        if (positive.dim() < 2 || negative.dim() < 2 || !positive.shape.Skip(1).SequenceEqual(negative.shape.Skip(1)))
            throw new ArgumentException($"positive [{string.Join(", ", positive.shape)}] and negative [{string.Join(", ", negative.shape)}] must both be [examples, ...] with the same trailing shape; stack one activation vector per prompt.", nameof(positive));
        if (positive.shape[0] == 0 || negative.shape[0] == 0)
            throw new ArgumentException("positive and negative need at least one example each.", nameof(positive));
        TorchRuntime.EnsureLoaded();
        using var scope = torch.NewDisposeScope();
        var diff = positive.detach().to_type(ScalarType.Float64).mean(new long[] { 0 }) - negative.detach().to_type(ScalarType.Float64).mean(new long[] { 0 });
        return new SteeringVector(hookName, diff.to_type(positive.dtype));
    }

    /// <summary>
    /// The contrastive steering vector: mean activation at <paramref name="hookName"/> on <paramref name="positiveTokens"/> minus
    /// the mean on <paramref name="negativeTokens"/> (each <c>[n, pos]</c>; the two sets may differ in size and length), read at the
    /// last real token of each prompt or averaged over its real tokens. Runs the model without gradient.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="hookName">Hook point (full name or shorthand, e.g. <c>resid_pre2</c>).</param>
    /// <param name="positiveTokens">Prompts showing the behaviour, int64 <c>[n, pos]</c>.</param>
    /// <param name="negativeTokens">Prompts showing its opposite, int64 <c>[m, pos']</c>.</param>
    /// <param name="reduction">Last token (default) or mean over positions.</param>
    /// <param name="positiveMask">1/0 attention mask of padded positive prompts (null: no padding).</param>
    /// <param name="negativeMask">1/0 attention mask of padded negative prompts (null: no padding).</param>
    public static SteeringVector FromMeanDifference(HookedTransformer model, string hookName, Tensor positiveTokens, Tensor negativeTokens,
        SteeringReduction reduction = SteeringReduction.LastToken, Tensor? positiveMask = null, Tensor? negativeMask = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var name = model.GetHookPoint(hookName).Name;
        using var scope = torch.NewDisposeScope();
        var pos = PerPrompt(model, name, positiveTokens, positiveMask, reduction);
        var neg = PerPrompt(model, name, negativeTokens, negativeMask, reduction);
        return FromActivations(name, pos, neg);
    }

    /// <summary>One reduced activation per prompt, <c>[n, ...]</c>.</summary>
    static Tensor PerPrompt(HookedTransformer model, string name, Tensor tokens, Tensor? mask, SteeringReduction reduction)
    {
        if (tokens.dim() == 1) tokens = tokens.unsqueeze(0);
        using var noGrad = torch.no_grad();
        var (logits, cache) = model.RunWithCache(tokens, n => n == name, attentionMask: mask);
        logits.Dispose();
        using (cache)
        {
            var acts = cache[name];                                                  // [n, pos, ...]
            var real = (mask ?? torch.ones(tokens.shape, dtype: ScalarType.Int64, device: tokens.device)).ne(0).to(acts.device);
            var trailing = Enumerable.Repeat(1L, (int)acts.dim() - 2).ToArray();
            if (reduction == SteeringReduction.LastToken)
            {
                // Index of the last real token of each row: argmax of column index over real positions.
                var cols = torch.arange(tokens.shape[1], dtype: ScalarType.Int64, device: acts.device).unsqueeze(0);
                var last = (cols * real.to_type(ScalarType.Int64)).argmax(1);                // [n]
                var idx = last.reshape(new long[] { -1, 1 }.Concat(trailing).ToArray()).expand(new long[] { acts.shape[0], 1 }.Concat(acts.shape.Skip(2)).ToArray());
                return acts.gather(1, idx).squeeze(1).MoveToOuterDisposeScope();
            }
            var w = real.to_type(acts.dtype).reshape(new long[] { real.shape[0], real.shape[1] }.Concat(trailing).ToArray());
            return ((acts * w).sum(1) / w.sum(1).clamp_min(1)).MoveToOuterDisposeScope();
        }
    }

    /// <summary>
    /// A forward hook adding <paramref name="coefficient"/> × <see cref="Vector"/> at <paramref name="positions"/> (default all),
    /// for plain forward passes (column 0 = first input column). Coefficient 0 returns the activation untouched.
    /// </summary>
    public Func<Tensor, HookPoint, Tensor?> Hook(double coefficient, SteeringPositions? positions = null) =>
        (x, hp) => Add(x, coefficient, positions ?? SteeringPositions.All, 0, x.shape[1]);

    /// <summary>Adds the scaled vector to the columns <paramref name="start"/> … of <paramref name="x"/> <c>[batch, n, ...]</c> that <paramref name="positions"/> selects.</summary>
    internal Tensor? Add(Tensor x, double coefficient, SteeringPositions positions, long start, long promptLength)
    {
        if (coefficient == 0) return null;
        if (x.dim() < 3 || !x.shape.Skip(2).SequenceEqual(Vector.shape))
            throw new InvalidOperationException(
                $"The steering vector is [{string.Join(", ", Vector.shape)}] but '{HookName}' carries [{string.Join(", ", x.shape)}]; a vector must match the activation after its [batch, pos] dimensions (d_model for the residual stream).");
        long n = x.shape[1];
        var delta = (Vector.to(x.device).to_type(ScalarType.Float64) * coefficient).to_type(x.dtype);
        if (positions.IsAll) return x + delta;
        var flags = new float[n];
        bool any = false;
        for (long i = 0; i < n; i++) if (positions.Contains(start + i, promptLength)) { flags[i] = 1; any = true; }
        if (!any) return null;
        var shape = new long[] { 1, n }.Concat(Enumerable.Repeat(1L, (int)x.dim() - 2)).ToArray();
        var m = torch.tensor(flags, shape, device: x.device).to_type(x.dtype);
        return x + m * delta;
    }

    /// <summary>Frees the vector.</summary>
    public void Dispose() => Vector.Dispose();

    /// <inheritdoc/>
    public override string ToString() => $"SteeringVector({HookName}, [{string.Join(", ", Vector.shape)}], norm {Norm:G4})";
}

/// <summary>
/// Running and generating with steering vectors, and reading the effect. Hooks are attached for the call and removed
/// afterwards, also when it throws.
/// </summary>
public static class Steering
{
    /// <summary>Logits <c>[batch, pos, d_vocab]</c> with <paramref name="vector"/> × <paramref name="coefficient"/> added at <paramref name="positions"/> (default all).</summary>
    public static Tensor Run(HookedTransformer model, Tensor tokens, SteeringVector vector, double coefficient, SteeringPositions? positions = null, Tensor? attentionMask = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(vector);
        return model.RunWithHooks(tokens, attentionMask, (vector.HookName, vector.Hook(coefficient, positions)));
    }

    /// <summary>
    /// Attaches the vector for a <c>using</c> block of plain forward passes (each pass's column 0 is its first input column);
    /// for generation use <see cref="Generate(HookedTransformer, Tensor, SteeringVector, double, GenerationOptions?, Tensor?, SteeringPositions?)"/>,
    /// which follows positions across cached steps.
    /// </summary>
    public static HookScope Apply(HookedTransformer model, SteeringVector vector, double coefficient, SteeringPositions? positions = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(vector);
        return model.Hooks((vector.HookName, vector.Hook(coefficient, positions)));
    }

    /// <summary>
    /// <see cref="Generation.Generate"/> with a steering vector added at <paramref name="positions"/> (default all) in every
    /// forward pass. Works with the key/value cache: cached steps run only the new column, the hook sees it (as
    /// <c>[batch, 1, ...]</c>) and knows its column, so cached and uncached generation give the same tokens. Seeded options
    /// give the same output every time.
    /// </summary>
    public static GenerationResult Generate(HookedTransformer model, Tensor promptTokens, SteeringVector vector, double coefficient,
        GenerationOptions? options = null, Tensor? attentionMask = null, SteeringPositions? positions = null) =>
        Generate(model, promptTokens, new[] { (vector, coefficient, positions) }, options, attentionMask);

    /// <summary>Generation with several steering vectors at once (e.g. at several layers); see the single-vector overload.</summary>
    public static GenerationResult Generate(HookedTransformer model, Tensor promptTokens,
        IReadOnlyList<(SteeringVector Vector, double Coefficient, SteeringPositions? Positions)> steering, GenerationOptions? options = null, Tensor? attentionMask = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(promptTokens);
        ArgumentNullException.ThrowIfNull(steering);
        long promptLength = promptTokens.dim() == 1 ? promptTokens.shape[0] : promptTokens.shape[1];
        var hooks = steering.Select(s =>
        {
            ArgumentNullException.ThrowIfNull(s.Vector);
            model.GetHookPoint(s.Vector.HookName);                                 // unknown names fail before anything runs
            // Pass k (0-based) of generation sees the last n of promptLength + k columns: the whole prefix without a cache
            // (or its last ContextWindow columns), only the new column with one. So its first column is promptLength + k − n.
            int calls = 0;
            var pos = s.Positions ?? SteeringPositions.All;
            Func<Tensor, HookPoint, Tensor?> fn = (x, hp) =>
            {
                long n = x.shape[1], start = promptLength + calls - n;
                calls++;
                return s.Vector.Add(x, s.Coefficient, pos, start, promptLength);
            };
            return (s.Vector.HookName, fn);
        }).ToArray();
        using var scope = model.Hooks(hooks);
        return Generation.Generate(model, promptTokens, options, attentionMask);
    }

    /// <summary>
    /// <c>logits[b, position, target] − logits[b, position, baseline]</c> for every row (<c>[batch]</c>), the usual behaviour
    /// metric of a steering or patching experiment. A negative <paramref name="position"/> counts from the end.
    /// </summary>
    public static Tensor LogitDifference(Tensor logits, long position, long targetToken, long baselineToken)
    {
        ArgumentNullException.ThrowIfNull(logits);
        if (logits.dim() != 3) throw new ArgumentException($"logits are [{string.Join(", ", logits.shape)}]; pass [batch, pos, d_vocab].", nameof(logits));
        long p = position < 0 ? logits.shape[1] + position : position, v = logits.shape[2];
        if (p < 0 || p >= logits.shape[1]) throw new ArgumentOutOfRangeException(nameof(position), $"position {position} is outside the {logits.shape[1]} positions of the logits.");
        if (targetToken < 0 || targetToken >= v || baselineToken < 0 || baselineToken >= v)
            throw new ArgumentOutOfRangeException(nameof(targetToken), $"token ids {targetToken} and {baselineToken} must lie in [0, {v}) (d_vocab).");
        using var scope = torch.NewDisposeScope();
        var at = logits.select(1, p);
        return (at.select(1, targetToken) - at.select(1, baselineToken)).MoveToOuterDisposeScope();
    }
}
