using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Components;

/// <summary>Unembedding: residual [batch, pos, d_model] → logits [batch, pos, d_vocab] via <c>W_U</c> [d_model, d_vocab] and <c>b_U</c>.</summary>
public sealed class Unembed : nn.Module<Tensor, Tensor>
{
    Parameter? _W_U;
    readonly Parameter _b_U;
    readonly Embed? _tiedTo;

    /// <summary>All submodules and parameters are registered explicitly under TransformerLens names; no reflection-based registration.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates the unembedding; if <paramref name="tiedTo"/> is given, <c>W_U</c> is <c>W_E.T</c> of that embedding.</summary>
    public Unembed(HookedTransformerConfig cfg, Embed? tiedTo = null) : base("unembed")
    {
        _tiedTo = tiedTo;
        if (tiedTo is null)
        {
            _W_U = new Parameter(zeros(cfg.DModel, cfg.DVocab, dtype: cfg.DType));
            register_parameter("W_U", _W_U);
        }
        _b_U = new Parameter(zeros(cfg.DVocab, dtype: cfg.DType));
        register_parameter("b_U", _b_U);
    }

    /// <summary>True while <c>W_U</c> is shared with the token embedding.</summary>
    public bool IsTied => _W_U is null;

    /// <summary>The unembedding matrix [d_model, d_vocab] (a transposed view of <c>W_E</c> while tied).</summary>
    public Tensor W_U => _W_U ?? _tiedTo!.W_E.t();

    /// <summary>The unembedding bias [d_vocab].</summary>
    public Parameter b_U => _b_U;

    /// <summary>Gives the unembedding its own copy of <c>W_E.T</c>, so it can change independently (weight processing does this).</summary>
    public void Untie()
    {
        if (_W_U is not null) return;
        using (no_grad())
            _W_U = new Parameter(_tiedTo!.W_E.t().contiguous().clone());
        register_parameter("W_U", _W_U);
    }

    /// <summary>[batch, pos, d_model] → [batch, pos, d_vocab].</summary>
    public override Tensor forward(Tensor x)
    {
        long batch = x.shape[0], pos = x.shape[1], dModel = x.shape[2];
        var logits = _b_U.addmm(x.reshape(batch * pos, dModel), W_U); // [batch*pos, d_vocab]
        return logits.view(batch, pos, -1);
    }
}
