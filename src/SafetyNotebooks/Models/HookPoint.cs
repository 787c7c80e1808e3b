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

    /// <summary>All submodules and parameters are registered explicitly under TransformerLens names; no reflection-based registration.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates a hook point; its full <see cref="Name"/> is assigned by the model after construction.</summary>
    public HookPoint(string localName) : base(localName) => Name = localName;

    /// <summary>The full dotted name, e.g. <c>blocks.0.attn.hook_pattern</c>.</summary>
    public string Name { get; internal set; }

    /// <summary>True when at least one hook is attached (components use this to skip optional work).</summary>
    public bool HasHooks => _hooks.Count > 0;

    /// <summary>Number of attached hooks.</summary>
    public int HookCount => _hooks.Count;

    /// <summary>Attaches a hook. Non-permanent hooks are removed by <see cref="RemoveHooks"/>(includePermanent: false).</summary>
    public void AddHook(Func<Tensor, HookPoint, Tensor?> hook, bool permanent = false) => _hooks.Add((hook, permanent));

    /// <summary>Removes one specific hook (by reference); returns whether it was attached.</summary>
    public bool RemoveHook(Func<Tensor, HookPoint, Tensor?> hook)
    {
        int i = _hooks.FindIndex(h => h.Fn == hook);
        if (i < 0) return false;
        _hooks.RemoveAt(i);
        return true;
    }

    /// <summary>Removes the temporary hooks, and the permanent ones too if asked.</summary>
    public void RemoveHooks(bool includePermanent = false) =>
        _hooks.RemoveAll(h => includePermanent || !h.Permanent);

    /// <summary>Moves all hooks (with their permanence) to <paramref name="target"/>, after any it already has.</summary>
    internal void MoveHooksTo(HookPoint target)
    {
        if (ReferenceEquals(target, this)) return;
        target._hooks.AddRange(_hooks);
        _hooks.Clear();
    }

    /// <summary>Runs the hooks in the order they were added, each seeing the previous one's output.</summary>
    public override Tensor forward(Tensor x)
    {
        if (_hooks.Count == 0) return x;
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
        return x;
    }

    /// <summary>
    /// A replacement must look exactly like the activation it replaces: a wrong shape would broadcast silently, fail
    /// far downstream, or abort the process inside libtorch.
    /// </summary>
    void CheckReplacement(Tensor activation, Tensor replacement)
    {
        if (replacement.IsInvalid)
            throw new InvalidOperationException($"The hook on '{Name}' returned a disposed tensor. Return a live tensor (or null to leave the activation unchanged).");
        if (replacement.shape.SequenceEqual(activation.shape) && replacement.dtype == activation.dtype &&
            replacement.device_type == activation.device_type && replacement.device_index == activation.device_index)
            return;
        throw new InvalidOperationException(
            $"The hook on '{Name}' returned a tensor of shape {Describe(replacement)}, but the activation it replaces is {Describe(activation)}. " +
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
