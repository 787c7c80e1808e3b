using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Models.Components;

/// <summary>Token embedding: looks up rows of <c>W_E</c> [d_vocab, d_model].</summary>
public sealed class Embed : nn.Module<Tensor, Tensor>
{
    readonly Parameter _W_E;

    /// <summary>All submodules and parameters are registered explicitly under TransformerLens names; no reflection-based registration.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates the embedding with zero weights (the model initialises them).</summary>
    public Embed(HookedTransformerConfig cfg) : base("embed")
    {
        _W_E = new Parameter(zeros(cfg.DVocab, cfg.DModel, dtype: cfg.DType));
        register_parameter("W_E", _W_E);
    }

    /// <summary>The embedding matrix, [d_vocab, d_model].</summary>
    public Parameter W_E => _W_E;

    /// <summary>tokens [batch, pos] (int64) → embeddings [batch, pos, d_model].</summary>
    public override Tensor forward(Tensor tokens) => _W_E.index_select(0, tokens.reshape(-1)).view(tokens.shape[0], tokens.shape[1], -1);
}
