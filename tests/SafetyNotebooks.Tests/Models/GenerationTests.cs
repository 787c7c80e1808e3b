using SafetyNotebooks.Runtime;
using SafetyNotebooks.Models;
using SafetyNotebooks.Tests.Training;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Models;

public class GenerationTests
{
    public GenerationTests() => TorchRuntime.EnsureLoaded();

    // Next-token logits by current token (vocab 4). Argmax: 0→2, 1→3, 2→1, 3→0.
    static readonly float[,] Table =
    {
        { 0.0f, 1.0f, 2.0f, -1.0f },
        { 0.5f, 0.0f, 0.0f, 1.5f },
        { 0.0f, 3.0f, 1.0f, 0.0f },
        { 2.0f, 0.0f, 1.0f, 1.0f },
    };

    static double LogSoftmax(int row, int col)
    {
        double lse = Math.Log(Enumerable.Range(0, 4).Sum(j => Math.Exp(Table[row, j])));
        return Table[row, col] - lse;
    }

    [Fact]
    public void Greedy_FollowsArgmax_AndLogProbsAreLogSoftmaxAtPickedTokens()
    {
        var model = new MarkovLogits(Table);
        using var prompt = tensor(new long[] { 0, 3 }).reshape(2, 1);
        using var r = Generation.Generate(model, prompt, GenerationOptions.Greedy(3));
        // row 0: 0 → 2 → 1 → 3 ; row 1: 3 → 0 → 2 → 1
        Assert.Equal(new long[] { 0, 2, 1, 3, 3, 0, 2, 1 }, r.Tokens.data<long>().ToArray());
        var expected = new[] { LogSoftmax(0, 2), LogSoftmax(2, 1), LogSoftmax(1, 3), LogSoftmax(3, 0), LogSoftmax(0, 2), LogSoftmax(2, 1) };
        var got = r.LogProbs.data<float>().ToArray();
        for (int i = 0; i < 6; i++) Assert.Equal(expected[i], got[i], 5);
        Assert.All(r.GeneratedMask.data<bool>().ToArray(), Assert.True);
    }

    [Fact]
    public void TopK1_Sampling_EqualsGreedy_AndLogProbsIgnoreTemperature()
    {
        var model = new MarkovLogits(Table);
        using var prompt = tensor(new long[] { 1 }).reshape(1, 1);
        using var g = Generation.Generate(model, prompt, GenerationOptions.Greedy(5));
        using var s = Generation.Generate(model, prompt, new GenerationOptions { MaxNewTokens = 5, TopK = 1, Temperature = 5, Seed = 3 });
        Assert.Equal(g.Tokens.data<long>().ToArray(), s.Tokens.data<long>().ToArray());
        // 1 → 3, picked with log_softmax of the temperature-1 logits
        Assert.Equal(LogSoftmax(1, 3), s.LogProbs.data<float>()[0], 5);
    }

    [Fact]
    public void TopK_MasksAllButKLargest()
    {
        using var l = tensor(new[] { 1f, 3f, 2f, 0f }).reshape(1, 4);
        using var f = Generation.ApplyTopK(l, 2);
        var v = f.data<float>().ToArray();
        Assert.Equal(new[] { float.NegativeInfinity, 3f, 2f, float.NegativeInfinity }, v);
    }

    [Theory]
    // probabilities 0.5, 0.3, 0.15, 0.05 (token order shuffled: ids 2, 0, 3, 1)
    [InlineData(0.4, new[] { false, false, true, false })]   // 0.5 alone reaches 0.4
    [InlineData(0.7, new[] { true, false, true, false })]    // 0.5 + 0.3 = 0.8 ≥ 0.7
    [InlineData(0.85, new[] { true, false, true, true })]    // needs 0.5 + 0.3 + 0.15
    [InlineData(1.0, new[] { true, true, true, true })]
    public void TopP_KeepsSmallestNucleus(double p, bool[] kept)
    {
        using var l = tensor(new[] { 0.3f, 0.05f, 0.5f, 0.15f }).log().reshape(1, 4);
        using var f = Generation.ApplyTopP(l, p);
        Assert.Equal(kept, f.data<float>().ToArray().Select(x => !float.IsNegativeInfinity(x)).ToArray());
    }

    [Fact]
    public void StopsAtEos_PerRow_PaddingFinishedRows()
    {
        // EOS = 3. Greedy: row 0 prompt 1 → 3 (done); row 1 prompt 2 → 1 → 3 (done). Stops after 2 new tokens.
        var model = new MarkovLogits(Table);
        using var prompt = tensor(new long[] { 1, 2 }).reshape(2, 1);
        using var r = Generation.Generate(model, prompt, new GenerationOptions { DoSample = false, MaxNewTokens = 10, EosTokenId = 3, PadTokenId = 0 });
        Assert.Equal(2, r.NewTokens);
        Assert.Equal(new long[] { 1, 3, 0, 2, 1, 3 }, r.Tokens.data<long>().ToArray());
        Assert.Equal(new[] { true, false, true, true }, r.GeneratedMask.data<bool>().ToArray());
        Assert.Equal(0f, r.LogProbs.data<float>()[1]);
    }

    [Fact]
    public void SameSeed_SameSamples_DifferentSeed_Differs()
    {
        var model = new MarkovLogits(new float[4, 4]); // uniform
        using var prompt = zeros(new long[] { 3, 1 }, dtype: ScalarType.Int64);
        long[] Run(long seed)
        {
            using var r = Generation.Generate(model, prompt, new GenerationOptions { MaxNewTokens = 20, Seed = seed });
            return r.Tokens.data<long>().ToArray();
        }
        var a = Run(7);
        Assert.Equal(a, Run(7));
        Assert.NotEqual(a, Run(8));
        Assert.Contains(a.Skip(1), t => t != a[1]); // actually random, not constant
    }

    [Fact]
    public void GenerateText_WithSyntheticTokenizer()
    {
        // tokens t0..t2 plus <bos> = 3, also used as EOS here.
        var tok = new SafetyNotebooks.Tokenization.SyntheticTokenizer(3, new[] { "<bos>" }, bosToken: "<bos>", eosToken: "<bos>");
        var model = new MarkovLogits(Table);
        // prompt "t1": 1 → 3 (= EOS, stop). Decoded text keeps the generated EOS name.
        Assert.Equal("t1 <bos>", Generation.GenerateText(model, tok, "t1", GenerationOptions.Greedy(5)));
        // prompt "t0": 0 → 2 → 1 → 3 (EOS)
        Assert.Equal("t0 t2 t1 <bos>", Generation.GenerateText(model, tok, "t0", GenerationOptions.Greedy(5)));
    }

    [Fact]
    public void ContextWindow_CropsInput()
    {
        var model = new MarkovLogits(Table);
        using var prompt = zeros(new long[] { 1, 6 }, dtype: ScalarType.Int64);
        using var r = Generation.Generate(model, prompt, new GenerationOptions { DoSample = false, MaxNewTokens = 4, ContextWindow = 4 });
        Assert.Equal(4, model.MaxInputLength);
        Assert.Equal(new long[] { 1, 10 }, r.Tokens.shape);
    }
}
