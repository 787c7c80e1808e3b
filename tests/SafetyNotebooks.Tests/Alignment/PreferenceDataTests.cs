using SafetyNotebooks.Alignment;
using SafetyNotebooks.Models;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Tokenization;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Alignment;

/// <summary>Tiny models and hand-made preference data shared by the alignment preference tests.</summary>
static class PreferenceTestModels
{
    public const long Pad = 0;

    public static HookedTransformer Tiny(int seed = 3) => new(new HookedTransformerConfig
    {
        NLayers = 1, DModel = 16, NHeads = 2, DHead = 8, DMlp = 32, NCtx = 16, DVocab = 12, Seed = seed,
    });

    public static long[] L(params long[] v) => v;

    /// <summary>Three pairs with prompts and completions of different lengths.</summary>
    public static PreferencePair[] Pairs() => new[]
    {
        new PreferencePair(L(1, 2), L(5, 5, 3), L(7, 3)),
        new PreferencePair(L(1, 4, 4, 2), L(5, 3), L(7, 7, 7, 3)),
        new PreferencePair(L(1), L(6, 5, 3), L(8, 3)),
    };

    /// <summary>log p(completion | prompt) of one unpadded row, by hand: Σ over completion positions p of
    /// log_softmax(logits[p − 1])[token p], from a forward pass on that row alone.</summary>
    public static double RowAlone(HookedTransformer model, IReadOnlyList<long> prompt, IReadOnlyList<long> completion)
    {
        using var _ = no_grad();
        var ids = prompt.Concat(completion).ToArray();
        var logits = model.forward(tensor(ids).unsqueeze(0))[0];
        var logp = nn.functional.log_softmax(logits, -1);
        double sum = 0;
        for (int p = prompt.Count; p < ids.Length; p++) sum += logp[p - 1, ids[p]].item<float>();
        return sum;
    }
}

public class PreferenceDataTests
{
    public PreferenceDataTests() => TorchRuntime.EnsureLoaded();

    static long[] Row(Tensor t, int i) => t[i].to_type(ScalarType.Int64).data<long>().ToArray();

    [Fact]
    public void Collate_puts_chosen_rows_then_rejected_rows_and_masks_prompt_and_padding()
    {
        var pairs = new[] { new PreferencePair(new long[] { 1, 2 }, new long[] { 5 }, new long[] { 7, 8 }) };
        using var right = PreferenceData.Collate(pairs, padTokenId: 0);
        // Width 4 = prompt 2 + longest completion 2. Chosen row: 1 2 5 pad; rejected row: 1 2 7 8.
        Assert.Equal(new long[] { 1, 2, 5, 0 }, Row(right.Tokens, 0));
        Assert.Equal(new long[] { 1, 2, 7, 8 }, Row(right.Tokens, 1));
        Assert.Equal(new long[] { 1, 1, 1, 0 }, Row(right.AttentionMask, 0));
        Assert.Equal(new long[] { 0, 0, 1, 0 }, Row(right.CompletionMask, 0));
        Assert.Equal(new long[] { 0, 0, 1, 1 }, Row(right.CompletionMask, 1));
        using var left = PreferenceData.Collate(pairs, padTokenId: 0, PaddingSide.Left);
        Assert.Equal(new long[] { 0, 1, 2, 5 }, Row(left.Tokens, 0));
        Assert.Equal(new long[] { 0, 1, 1, 1 }, Row(left.AttentionMask, 0));
        Assert.Equal(new long[] { 0, 0, 0, 1 }, Row(left.CompletionMask, 0));
    }

    [Fact]
    public void An_empty_completion_is_refused_with_a_message_naming_the_row()
    {
        var pairs = new[] { new PreferencePair(new long[] { 1 }, new long[] { 5 }, Array.Empty<long>()) };
        var e = Assert.Throws<ArgumentException>(() => PreferenceData.Collate(pairs, 0));
        Assert.Contains("Row 1 has an empty completion", e.Message);
    }

    [Fact]
    public void Kto_kl_rows_pair_each_prompt_with_the_previous_examples_completion()
    {
        var ex = new[]
        {
            new UnpairedExample(new long[] { 1, 2 }, new long[] { 5 }, true),
            new UnpairedExample(new long[] { 3 }, new long[] { 6, 7 }, false),
            new UnpairedExample(new long[] { 4 }, new long[] { 8 }, true),
        };
        using var b = PreferenceData.CollateUnpaired(ex, 0);
        // KL completions cycled by one: row 0 gets example 2's [8], row 1 example 0's [5], row 2 example 1's [6, 7].
        Assert.Equal(new long[] { 1, 2, 8 }, Row(b.Kl!.Tokens, 0));
        Assert.Equal(new long[] { 3, 5, 0 }, Row(b.Kl.Tokens, 1));
        Assert.Equal(new long[] { 4, 6, 7 }, Row(b.Kl.Tokens, 2));
        Assert.Equal(new long[] { 0, 1, 1 }, Row(b.Kl.CompletionMask, 2));
        Assert.Equal(new[] { true, false, true }, b.Desirable.data<bool>().ToArray());
    }

    [Fact]
    public void Padding_and_prompt_tokens_do_not_change_completion_log_probs_on_either_padding_side()
    {
        var model = PreferenceTestModels.Tiny();
        var pairs = PreferenceTestModels.Pairs();
        using var _ = no_grad();
        foreach (var side in new[] { PaddingSide.Right, PaddingSide.Left })
        {
            using var batch = PreferenceData.Collate(pairs, PreferenceTestModels.Pad, side);
            var (sum, count, _) = DpoObjective.CompletionLogProbs(model, batch.Tokens, batch.AttentionMask, batch.CompletionMask);
            var s = sum.data<float>().ToArray();
            var c = count.data<float>().ToArray();
            for (int i = 0; i < pairs.Length; i++)
            {
                Assert.Equal(PreferenceTestModels.RowAlone(model, pairs[i].Prompt, pairs[i].Chosen), s[i], 4);
                Assert.Equal(PreferenceTestModels.RowAlone(model, pairs[i].Prompt, pairs[i].Rejected), s[pairs.Length + i], 4);
                Assert.Equal(pairs[i].Chosen.Count, c[i]);
                Assert.Equal(pairs[i].Rejected.Count, c[pairs.Length + i]);
            }
        }
    }
}
