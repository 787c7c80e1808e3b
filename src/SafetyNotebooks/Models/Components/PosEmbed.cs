using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Components;

/// <summary>Learned absolute positional embedding <c>W_pos</c> [n_ctx, d_model].</summary>
public sealed class PosEmbed : nn.Module<Tensor, Tensor>
{
    readonly Parameter _W_pos;

    /// <summary>All submodules and parameters are registered explicitly under TransformerLens names; no reflection-based registration.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates the embedding with zero weights (the model initialises them).</summary>
    public PosEmbed(HookedTransformerConfig cfg) : base("pos_embed")
    {
        _W_pos = new Parameter(zeros(cfg.NCtx, cfg.DModel, dtype: cfg.DType));
        register_parameter("W_pos", _W_pos);
    }

    /// <summary>The positional embedding matrix, [n_ctx, d_model].</summary>
    public Parameter W_pos => _W_pos;

    /// <summary>tokens [batch, pos] → positional embeddings [batch, pos, d_model] (a broadcast view, no copy).</summary>
    public override Tensor forward(Tensor tokens)
    {
        long batch = tokens.shape[0], pos = tokens.shape[1];
        return _W_pos.narrow(0, 0, pos).unsqueeze(0).expand(batch, pos, _W_pos.shape[1]); // [batch, pos, d_model]
    }
}
