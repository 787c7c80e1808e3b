using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models;

/// <summary>
/// An identity module placed at every interesting activation of a <see cref="HookedTransformer"/>
/// (TransformerLens' <c>HookPoint</c>). Hooks added here can read the activation or replace it;
/// autograd flows through whatever the hooks return.
/// </summary>
/// <remarks>
/// A hook receives the activation and this hook point; it returns null to leave the activation unchanged, or a
/// tensor of the same shape, dtype and device that replaces it downstream (anything else throws
/// <see cref="InvalidOperationException"/> naming the hook, the expected and the returned shape). No hook ever receives a
/// view of a parameter, so editing the activation in place never changes the model's weights. The activation is owned by the forward pass and is
/// disposed when the pass returns: to keep it, use <see cref="Keep"/> or <see cref="HookedTransformer.RunWithCache"/>.
/// </remarks>
public sealed class HookPoint : nn.Module<Tensor, Tensor>
{
    readonly List<(Func<Tensor, HookPoint, Tensor?> Fn, bool Permanent)> _hooks = new();
    readonly List<(Func<Tensor, HookPoint, Tensor?> Fn, bool Permanent)> _bwdHooks = new();

    /// <summary>All submodules and parameters are registered explicitly under TransformerLens names; no reflection-based registration.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates a hook point; its full <see cref="Name"/> is assigned by the model after construction.</summary>
    public HookPoint(string localName) : base(localName) => Name = localName;

    /// <summary>The full dotted name, e.g. <c>blocks.0.attn.hook_pattern</c>.</summary>
    public string Name { get; internal set; }

    /// <summary>True when at least one hook (forward or backward) is attached (components use this to skip optional work).</summary>
    public bool HasHooks => _hooks.Count > 0 || _bwdHooks.Count > 0;

    /// <summary>Number of attached hooks, forward and backward.</summary>
    public int HookCount => _hooks.Count + _bwdHooks.Count;

    /// <summary>
    /// Attaches a hook. Non-permanent hooks are removed by <see cref="RemoveHooks"/>(includePermanent: false).
    /// A forward hook (<see cref="HookDirection.Fwd"/>) sees the activation; a backward hook (<see cref="HookDirection.Bwd"/>,
    /// TransformerLens' <c>dir="bwd"</c>) sees the gradient of whatever is differentiated with respect to the activation
    /// when a backward pass reaches it, and may return a replacement gradient (same shape, dtype, device) or null.
    /// </summary>
    /// <remarks>
    /// Backward hooks are bound to an activation when the forward pass runs (only if it requires grad), so they fire in the
    /// next backward pass even if removed in between. An exception thrown by a backward hook cannot cross libtorch's
    /// backward engine: it is kept and rethrown (as the inner exception) by the next hook point that runs, or by
    /// <see cref="HookedTransformer.RunWithCacheAndGradients"/> / <see cref="HookedTransformer.Backward"/> right after the pass.
    /// </remarks>
    public void AddHook(Func<Tensor, HookPoint, Tensor?> hook, bool permanent = false, HookDirection dir = HookDirection.Fwd)
    {
        ArgumentNullException.ThrowIfNull(hook);
        (dir == HookDirection.Fwd ? _hooks : _bwdHooks).Add((hook, permanent));
    }

    /// <summary>Removes one specific hook (by reference, either direction); returns whether it was attached.</summary>
    public bool RemoveHook(Func<Tensor, HookPoint, Tensor?> hook)
    {
        foreach (var list in new[] { _hooks, _bwdHooks })
        {
            int i = list.FindIndex(h => h.Fn == hook);
            if (i < 0) continue;
            list.RemoveAt(i);
            return true;
        }
        return false;
    }

    /// <summary>Removes the temporary hooks (both directions), and the permanent ones too if asked.</summary>
    public void RemoveHooks(bool includePermanent = false)
    {
        _hooks.RemoveAll(h => includePermanent || !h.Permanent);
        _bwdHooks.RemoveAll(h => includePermanent || !h.Permanent);
    }

    /// <summary>Moves all hooks (with their permanence and direction) to <paramref name="target"/>, after any it already has.</summary>
    internal void MoveHooksTo(HookPoint target)
    {
        if (ReferenceEquals(target, this)) return;
        target._hooks.AddRange(_hooks);
        target._bwdHooks.AddRange(_bwdHooks);
        _hooks.Clear();
        _bwdHooks.Clear();
    }

    /// <summary>
    /// Runs the forward hooks in the order they were added, each seeing the previous one's output; then, if backward hooks
    /// are attached and the activation requires grad, routes it through an identity autograd node that calls them.
    /// </summary>
    public override Tensor forward(Tensor x)
    {
        BackwardHookFunction.ThrowPending();
        if (_hooks.Count == 0 && _bwdHooks.Count == 0) return x;
        // Copy: a hook may add or remove hooks while running.
        foreach (var (fn, _) in _hooks.ToArray())
        {
            var r = fn(x, this);
            if (r is not null)
            {
                CheckReplacement(x, r);
                x = r;
            }
        }
        if (_bwdHooks.Count > 0 && x.requires_grad && is_grad_enabled())
            x = BackwardHookFunction.apply(x, this, _bwdHooks.Select(h => h.Fn).ToArray());
        return x;
    }

    /// <summary>Runs the backward hooks on a gradient (called by the autograd node); returns the gradient to pass on.</summary>
    internal Tensor RunBackwardHooks(Tensor grad, Func<Tensor, HookPoint, Tensor?>[] hooks)
    {
        foreach (var fn in hooks)
        {
            var r = fn(grad, this);
            if (r is not null)
            {
                CheckReplacement(grad, r, "gradient");
                grad = r;
            }
        }
        return grad;
    }

    /// <summary>
    /// A replacement must look exactly like the activation it replaces: a wrong shape would broadcast silently, fail
    /// far downstream, or abort the process inside libtorch.
    /// </summary>
    void CheckReplacement(Tensor activation, Tensor replacement, string what = "activation")
    {
        if (replacement.IsInvalid)
            throw new InvalidOperationException($"The hook on '{Name}' returned a disposed tensor. Return a live tensor (or null to leave the activation unchanged).");
        if (replacement.shape.SequenceEqual(activation.shape) && replacement.dtype == activation.dtype &&
            replacement.device_type == activation.device_type && replacement.device_index == activation.device_index)
            return;
        throw new InvalidOperationException(
            $"The hook on '{Name}' returned a tensor of shape {Describe(replacement)}, but the {what} it replaces is {Describe(activation)}. " +
            "Return a tensor of the same shape, dtype and device (e.g. edit a clone of the activation), or null to leave it unchanged.");
    }

    static string Describe(Tensor t) => $"[{string.Join(", ", t.shape)}] {t.dtype} on {t.device}";

    /// <summary>
    /// Keeps a tensor alive after the forward pass returns (removes it from the pass's dispose scope).
    /// The caller then owns it and should dispose it.
    /// </summary>
    public static Tensor Keep(Tensor x) => x.DetachFromDisposeScope();

    /// <inheritdoc/>
    public override string ToString() => $"HookPoint({Name}, hooks: {_hooks.Count})";
}

/// <summary>Which pass a hook runs in (TransformerLens' <c>dir</c>).</summary>
public enum HookDirection
{
    /// <summary>Forward hook: sees (and may replace) the activation.</summary>
    Fwd,
    /// <summary>Backward hook: sees (and may replace) the activation's gradient during a backward pass.</summary>
    Bwd,
}

/// <summary>Identity in the forward pass; calls a hook point's backward hooks on the gradient in the backward pass.</summary>
internal sealed class BackwardHookFunction : autograd.SingleTensorFunction<BackwardHookFunction>
{
    static readonly object Gate = new();
    static Exception? s_pending;

    public override string Name => "HookPointBackward";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        ctx.save_data("hp", vars[1]);
        ctx.save_data("hooks", vars[2]);
        return ((Tensor)vars[0]).alias();
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        var hp = (HookPoint)ctx.get_data("hp");
        var hooks = (Func<Tensor, HookPoint, Tensor?>[])ctx.get_data("hooks");
        Tensor result = grad_output;
        try
        {
            using (no_grad()) result = hp.RunBackwardHooks(grad_output, hooks);
        }
        catch (Exception e)
        {
            // A managed exception must not unwind through libtorch's engine: keep it for the next managed call site.
            lock (Gate) s_pending ??= new InvalidOperationException($"A backward hook on '{hp.Name}' threw during the backward pass: {e.Message}", e);
        }
        return new List<Tensor> { result, null!, null! };
    }

    /// <summary>Rethrows (once) an exception a backward hook threw during the last backward pass.</summary>
    public static void ThrowPending()
    {
        if (s_pending is null) return;
        Exception? e;
        lock (Gate) { e = s_pending; s_pending = null; }
        if (e is not null) throw e;
    }
}
