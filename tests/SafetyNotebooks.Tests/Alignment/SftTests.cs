using SafetyNotebooks.Alignment;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Tokenization;
using Xunit;
using static TorchSharp.torch;
using static SafetyNotebooks.Tests.Alignment.PreferenceTestModels;

namespace SafetyNotebooks.Tests.Alignment;

public class SftTests
{
    public SftTests() => TorchRuntime.EnsureLoaded();

    static (IReadOnlyList<long>, IReadOnlyList<long>)[] Examples() => new (IReadOnlyList<long>, IReadOnlyList<long>)[]
    {
        (L(1, 2), L(5, 5, 3)),
        (L(1, 4, 4, 2), L(7, 3)),
        (L(1), L(6, 3)),
    };

    [Fact]
    public void Completion_only_sft_loss_is_the_mean_cross_entropy_over_completion_tokens_alone()
    {
        var model = Tiny();
        var ex = Examples();
        // By hand: the completion tokens' log-probs of each row alone, summed over rows, divided by 7 completion tokens.
        double total = ex.Sum(e => RowAlone(model, e.Item1, e.Item2));
        double expected = -total / ex.Sum(e => e.Item2.Count);
        foreach (var side in new[] { PaddingSide.Right, PaddingSide.Left })
        {
            var batch = Sft.Collate(ex, Pad, completionOnly: true, side);
            var o = new SftObjective(model).Compute(batch);
            Assert.Equal(expected, o.Loss.item<float>(), 4);
            Assert.Equal(7f, o.Weight!.item<float>());
        }
    }

    [Fact]
    public void Without_completion_only_every_token_after_the_first_is_a_target()
    {
        var model = Tiny();
        var ex = Examples();
        // Treat everything after the first token as the "completion": 4 + 5 + 2 = 11 targets.
        double total = ex.Sum(e => { var all = e.Item1.Concat(e.Item2).ToArray(); return RowAlone(model, all[..1], all[1..]); });
        var o = new SftObjective(model).Compute(Sft.Collate(ex, Pad, completionOnly: false));
        Assert.Equal(-total / 11, o.Loss.item<float>(), 4);
    }

    [Fact]
    public void Packing_keeps_every_token_once_and_never_predicts_across_an_example_boundary()
    {
        // Examples + EOS (9): [1 2 | 3 9] [4 | 5 6 9] [7 | 8 9] → stream 1 2 3 9 4 5 6 9 7 8 9 (11 tokens), rows of 5:
        //   row 0: 1 2 3 9 4    targets F F T T F   (1, 2 prompt; 4 starts example 2)
        //   row 1: 5 6 9 7 8    targets F T T F T   (5 sits in column 0: nothing predicts it; 7 starts example 3)
        //   row 2: 9 _ _ _ _    targets F F F F F   (column 0; padding)
        var ex = new (IReadOnlyList<long>, IReadOnlyList<long>)[] { (L(1, 2), L(3)), (L(4), L(5, 6)), (L(7), L(8, 9)) };
        var b = Sft.Pack(ex, seqLength: 5, eosTokenId: 9, padTokenId: 0);
        Assert.Equal(new long[] { 1, 2, 3, 9, 4, 5, 6, 9, 7, 8, 9, 0, 0, 0, 0 }, b.Tokens.data<long>().ToArray());
        Assert.Equal(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0 }, b.AttentionMask!.data<long>().ToArray());
        Assert.Equal(new[] { false, false, true, true, false, false, true, true, false, true, false, false, false, false, false },
            b.TargetMask!.data<bool>().ToArray());
        // Every token once: the real tokens, read row by row, are the examples with their EOS, in order.
        var real = b.Tokens.masked_select(b.AttentionMask.ne(0)).data<long>().ToArray();
        Assert.Equal(ex.SelectMany(e => e.Item1.Concat(e.Item2).Concat(e.Item2[^1] == 9 ? Array.Empty<long>() : new long[] { 9 })).ToArray(), real);
    }

    [Fact]
    public void Packed_batches_train_through_the_sft_objective()
    {
        var model = Tiny();
        var b = Sft.Pack(Examples(), seqLength: 8, eosTokenId: 3, padTokenId: Pad, completionOnly: false);
        var o = new SftObjective(model).Compute(b);
        Assert.True(float.IsFinite(o.Loss.item<float>()));
        // Every example already ends with the EOS 3, so the stream is 5 + 6 + 3 = 14 tokens: 1 2 5 5 3 1 4 4 | 2 7 3 1 6 3.
        // Targets: 14 minus the 3 example starts (stream positions 0, 5, 11) minus row 1's column 0 (the continuation 2) = 10.
        Assert.Equal(10f, o.Weight!.item<float>());
    }
}
