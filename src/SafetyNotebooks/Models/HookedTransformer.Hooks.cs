using static TorchSharp.torch;

namespace SafetyNotebooks.Models;

public sealed partial class HookedTransformer
{
    /// <summary>
    /// Runs the model and caches the activations whose names pass <paramref name="namesFilter"/> (all if null).
    /// Only those activations are kept (and <c>hook_result</c> is only computed if it passes the filter). Without a filter,
    /// every hook point is cached except <c>attn.hook_result</c>, which needs <see cref="HookedTransformerConfig.UseAttnResult"/>
    /// (<see cref="SetUseAttnResult"/>) as in TransformerLens, or a filter that names it.
    /// </summary>
    /// <param name="tokens">int64 [batch, pos].</param>
    /// <param name="namesFilter">Which full hook names to cache; null caches everything.</param>
    /// <param name="detach">True (default): cached tensors are detached from autograd. False keeps them in the graph.</param>
    /// <param name="attentionMask">[batch, pos], 1 = real token, 0 = padding (see <see cref="forward(Tensor, Tensor?, HookedTransformerKeyValueCache?, int?, int?)"/>); null: all real.</param>
    /// <param name="startAtLayer">Run from this block on, with <paramref name="tokens"/> a residual stream (TransformerLens' <c>start_at_layer</c>).</param>
    /// <param name="stopAtLayer">Stop before this block (TransformerLens' <c>stop_at_layer</c>): "Logits" is then the residual stream [batch, pos, d_model].</param>
    /// <returns>The logits [batch, pos, d_vocab] and the cache (dispose it to free the activations).</returns>
    public (Tensor Logits, ActivationCache Cache) RunWithCache(Tensor tokens, Func<string, bool>? namesFilter = null, bool detach = true, Tensor? attentionMask = null,
        int? startAtLayer = null, int? stopAtLayer = null)
    {
        var store = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var added = new List<(HookPoint Hp, Func<Tensor, HookPoint, Tensor?> Fn)>();
        try
        {
            foreach (var (name, hp) in _hookPoints)
            {
                if (namesFilter is not null ? !namesFilter(name) : !Cfg.UseAttnResult && name.EndsWith(".attn.hook_result", StringComparison.Ordinal)) continue;
                Func<Tensor, HookPoint, Tensor?> fn = (x, h) =>
                {
                    var kept = (detach ? x.detach() : x.alias()).DetachFromDisposeScope();
                    if (store.Remove(h.Name, out var old)) old.Dispose();
                    store[h.Name] = kept;
                    return null;
                };
                hp.AddHook(fn);
                added.Add((hp, fn));
            }
            var logits = forward(tokens, attentionMask, null, startAtLayer, stopAtLayer);
            return (logits, new ActivationCache(store, this));
        }
        catch
        {
            foreach (var t in store.Values) t.Dispose();
            throw;
        }
        finally
        {
            foreach (var (hp, fn) in added) hp.RemoveHook(fn);
        }
    }

    /// <summary>
    /// Runs the model with temporary hooks (full names or shorthand such as <c>"pattern0"</c>); a hook returning a tensor
    /// replaces the activation. The hooks are removed when the call returns, also when it throws.
    /// </summary>
    /// <returns>Logits [batch, pos, d_vocab].</returns>
    public Tensor RunWithHooks(Tensor tokens, params (string Name, Func<Tensor, HookPoint, Tensor?> Hook)[] hooks) =>
        RunWithHooks(tokens, null, hooks);

    /// <summary>
    /// <see cref="RunWithHooks(Tensor, ValueTuple{string, Func{Tensor, HookPoint, Tensor}}[])"/> on a padded batch:
    /// <paramref name="attentionMask"/> [batch, pos] is 1 for real tokens and 0 for padding (null: all real).
    /// </summary>
    public Tensor RunWithHooks(Tensor tokens, Tensor? attentionMask, params (string Name, Func<Tensor, HookPoint, Tensor?> Hook)[] hooks)
    {
        var resolved = hooks.Select(h => (Hp: GetHookPoint(h.Name), h.Hook)).ToList(); // validate all names first
        return RunWithResolvedHooks(tokens, attentionMask, resolved);
    }

    /// <summary>Runs the model with a temporary hook on every hook point whose full name passes <paramref name="namePredicate"/> (optionally on a padded batch, see <paramref name="attentionMask"/>).</summary>
    public Tensor RunWithHooks(Tensor tokens, Func<string, bool> namePredicate, Func<Tensor, HookPoint, Tensor?> hook, Tensor? attentionMask = null)
    {
        var resolved = _hookPoints.Where(kv => namePredicate(kv.Key)).Select(kv => (Hp: kv.Value, Hook: hook)).ToList();
        return RunWithResolvedHooks(tokens, attentionMask, resolved);
    }

    Tensor RunWithResolvedHooks(Tensor tokens, Tensor? attentionMask, List<(HookPoint Hp, Func<Tensor, HookPoint, Tensor?> Hook)> hooks)
    {
        var added = new List<(HookPoint, Func<Tensor, HookPoint, Tensor?>)>();
        try
        {
            foreach (var (hp, fn) in hooks)
            {
                // Wrap so that adding the same delegate twice is still removed exactly once per addition.
                Func<Tensor, HookPoint, Tensor?> wrapper = (x, h) => fn(x, h);
                hp.AddHook(wrapper);
                added.Add((hp, wrapper));
            }
            return forward(tokens, attentionMask);
        }
        finally
        {
            foreach (var (hp, fn) in added) hp.RemoveHook(fn);
        }
    }

    /// <summary>
    /// Adds a hook that stays until <see cref="ResetHooks"/> (or forever if <paramref name="permanent"/>, unless reset with
    /// includePermanent). <paramref name="dir"/> = <see cref="HookDirection.Bwd"/> adds a backward hook (see <see cref="HookPoint.AddHook"/>).
    /// </summary>
    public void AddHook(string name, Func<Tensor, HookPoint, Tensor?> hook, bool permanent = false, HookDirection dir = HookDirection.Fwd) =>
        GetHookPoint(name).AddHook(hook, permanent, dir);

    /// <summary>Adds a hook to every hook point whose full name passes <paramref name="namePredicate"/>.</summary>
    public void AddHook(Func<string, bool> namePredicate, Func<Tensor, HookPoint, Tensor?> hook, bool permanent = false, HookDirection dir = HookDirection.Fwd)
    {
        foreach (var (name, hp) in _hookPoints)
            if (namePredicate(name)) hp.AddHook(hook, permanent, dir);
    }

    /// <summary>
    /// Adds hooks for the lifetime of a <c>using</c> block, as TransformerLens' <c>with model.hooks(fwd_hooks, bwd_hooks)</c>:
    /// <c>using (model.Hooks(("pattern0", fn))) { ... }</c>. Disposing the returned scope removes exactly these hooks, also when
    /// the block throws. All names are checked before any hook is added.
    /// </summary>
    /// <param name="fwdHooks">Forward hooks by full name or shorthand.</param>
    public HookScope Hooks(params (string Name, Func<Tensor, HookPoint, Tensor?> Hook)[] fwdHooks) => Hooks(fwdHooks, null);

    /// <summary>Scoped forward and backward hooks (see <see cref="Hooks(ValueTuple{string, Func{Tensor, HookPoint, Tensor}}[])"/>).</summary>
    /// <param name="fwdHooks">Forward hooks by full name or shorthand.</param>
    /// <param name="bwdHooks">Backward hooks by full name or shorthand; they see gradients in a backward pass run inside the block.</param>
    public HookScope Hooks(IEnumerable<(string Name, Func<Tensor, HookPoint, Tensor?> Hook)>? fwdHooks,
        IEnumerable<(string Name, Func<Tensor, HookPoint, Tensor?> Hook)>? bwdHooks)
    {
        var all = (fwdHooks ?? []).Select(h => (Hp: GetHookPoint(h.Name), h.Hook, Dir: HookDirection.Fwd))
            .Concat((bwdHooks ?? []).Select(h => (Hp: GetHookPoint(h.Name), h.Hook, Dir: HookDirection.Bwd)))
            .ToList();                                                              // validates every name first
        var scope = new HookScope();
        foreach (var (hp, fn, dir) in all)
        {
            // Wrap so that adding the same delegate twice is still removed exactly once per addition.
            Func<Tensor, HookPoint, Tensor?> wrapper = (x, h) => fn(x, h);
            hp.AddHook(wrapper, permanent: false, dir);
            scope.Added.Add((hp, wrapper));
        }
        return scope;
    }

    /// <summary>Removes hooks added with <see cref="AddHook(string, Func{Tensor, HookPoint, Tensor?}, bool, HookDirection)"/> (permanent ones only if asked).</summary>
    public void ResetHooks(bool includePermanent = false)
    {
        foreach (var hp in _hookPoints.Values) hp.RemoveHooks(includePermanent);
    }

    /// <summary>Total number of hooks currently attached anywhere in the model.</summary>
    public int HookCount => _hookPoints.Values.Sum(h => h.HookCount);

    /// <summary>
    /// TransformerLens' <c>set_use_split_qkv_input</c>: turns the per-head <c>hook_q_input</c>/<c>hook_k_input</c>/<c>hook_v_input</c>
    /// of every block on or off (<see cref="HookedTransformerConfig.UseSplitQkvInput"/>); outputs are unchanged. Returns this model.
    /// </summary>
    public HookedTransformer SetUseSplitQkvInput(bool useSplitQkvInput) => SetInputHookFlags(Cfg with { UseSplitQkvInput = useSplitQkvInput });

    /// <summary>TransformerLens' <c>set_use_attn_in</c>: turns the per-head <c>hook_attn_in</c> of every block on or off (<see cref="HookedTransformerConfig.UseAttnIn"/>). Returns this model.</summary>
    public HookedTransformer SetUseAttnIn(bool useAttnIn) => SetInputHookFlags(Cfg with { UseAttnIn = useAttnIn });

    /// <summary>TransformerLens' <c>set_use_hook_mlp_in</c>: turns <c>hook_mlp_in</c> of every block on or off (<see cref="HookedTransformerConfig.UseHookMlpIn"/>). Returns this model.</summary>
    public HookedTransformer SetUseHookMlpIn(bool useHookMlpIn) => SetInputHookFlags(Cfg with { UseHookMlpIn = useHookMlpIn });

    /// <summary>
    /// TransformerLens' <c>set_use_attn_result</c>: whether <see cref="RunWithCache"/> without a names filter caches the per-head
    /// outputs <c>attn.hook_result</c> (<see cref="HookedTransformerConfig.UseAttnResult"/>); outputs are unchanged. Returns this model.
    /// </summary>
    public HookedTransformer SetUseAttnResult(bool useAttnResult)
    {
        Cfg = Cfg with { UseAttnResult = useAttnResult };
        return this;
    }

    HookedTransformer SetInputHookFlags(HookedTransformerConfig cfg)
    {
        cfg.Validate();
        foreach (var block in _blockArray) block.SetInputHooks(cfg);
        Cfg = cfg;
        IndexHookPoints();
        return this;
    }
}

/// <summary>Hooks added by <see cref="HookedTransformer.Hooks(ValueTuple{string, Func{Tensor, HookPoint, Tensor}}[])"/>; disposing removes them.</summary>
public sealed class HookScope : IDisposable
{
    internal readonly List<(HookPoint Hp, Func<Tensor, HookPoint, Tensor?> Fn)> Added = new();

    /// <summary>Number of hooks this scope added and still holds.</summary>
    public int Count => Added.Count;

    /// <summary>Removes this scope's hooks (idempotent).</summary>
    public void Dispose()
    {
        foreach (var (hp, fn) in Added) hp.RemoveHook(fn);
        Added.Clear();
    }
}
