using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Training;

/// <summary>Returns fixed next-token logits that depend only on the current token: logits[b, p] = Table[tokens[b, p]].</summary>
sealed class MarkovLogits : nn.Module<Tensor, Tensor>
{
    readonly Tensor _table;
    public int MaxInputLength;
    public MarkovLogits(float[,] table) : base(nameof(MarkovLogits))
    {
        _table = torch.tensor(table);
    }
    public override Tensor forward(Tensor tokens)
    {
        MaxInputLength = Math.Max(MaxInputLength, (int)tokens.shape[1]);
        return _table.index_select(0, tokens.flatten()).reshape(tokens.shape[0], tokens.shape[1], _table.shape[1]);
    }
}

/// <summary>A single 1-D parameter broadcast to logits [batch, pos, 2]; lets a test control gradients exactly.</summary>
sealed class VectorParam : nn.Module<Tensor, Tensor>
{
    public readonly Parameter W;
    public VectorParam(float a, float b) : base(nameof(VectorParam))
    {
        W = nn.Parameter(torch.tensor(new[] { a, b }));
        register_parameter("w", W);
    }
    public override Tensor forward(Tensor tokens) => W.expand(tokens.shape[0], tokens.shape[1], 2);
}

static class TinyModels
{
    /// <summary>Embedding → Linear bigram model.</summary>
    public static nn.Module<Tensor, Tensor> Bigram(int vocab, int dim, long seed)
    {
        torch.random.manual_seed(seed);
        return nn.Sequential(("emb", nn.Embedding(vocab, dim)), ("head", nn.Linear(dim, vocab)));
    }
}

/// <summary>A 2-D parameter [1, 2] broadcast to logits [batch, pos, 2].</summary>
sealed class MatrixParam : nn.Module<Tensor, Tensor>
{
    public readonly Parameter W;
    public MatrixParam(float a, float b) : base(nameof(MatrixParam))
    {
        W = nn.Parameter(torch.tensor(new[] { a, b }).reshape(1, 2));
        register_parameter("w", W);
    }
    public override Tensor forward(Tensor tokens) => W[0].expand(tokens.shape[0], tokens.shape[1], 2);
}

/// <summary>logits[b, p] = Linear(token id as a number). No embedding lookup (index_select has no meta-device kernel),
/// so training can run on the meta device.</summary>
sealed class TokenValueLm : nn.Module<Tensor, Tensor>
{
    readonly Linear head;
    public TokenValueLm(int vocab) : base(nameof(TokenValueLm))
    {
        head = nn.Linear(1, vocab);
        RegisterComponents();
    }
    public override Tensor forward(Tensor tokens) => head.call(tokens.to_type(ScalarType.Float32).unsqueeze(-1));
}
