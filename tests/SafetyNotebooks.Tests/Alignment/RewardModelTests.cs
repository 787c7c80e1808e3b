using SafetyNotebooks.Alignment;
using SafetyNotebooks.Runtime;
using SafetyNotebooks.Tokenization;
using SafetyNotebooks.Training;
using Xunit;
using static TorchSharp.torch;
using static SafetyNotebooks.Tests.Alignment.PreferenceTestModels;

namespace SafetyNotebooks.Tests.Alignment;

public class RewardModelTests
{
    public RewardModelTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void Last_real_token_index_handles_right_left_and_no_padding()
    {
        var mask = tensor(new long[] { 1, 1, 0, 0, /**/ 0, 1, 1, 1, /**/ 1, 1, 1, 1, /**/ 0, 0, 1, 0 }, new long[] { 4, 4 });
        Assert.Equal(new long[] { 1, 3, 3, 2 }, RewardModel.LastRealTokenIndex(mask).data<long>().ToArray());
    }

    [Fact]
    public void An_all_padding_row_is_refused()
    {
        var e = Assert.Throws<ArgumentException>(() => RewardModel.LastRealTokenIndex(tensor(new long[] { 1, 0, 0, 0 }, new long[] { 2, 2 })));
        Assert.Contains("no real token", e.Message);
    }

    /// <summary>By hand: the score head's weight dotted with the final residual at the row's last token, from the row alone.</summary>
    static double RewardAlone(RewardModel rm, long[] ids)
    {
        using var _ = no_grad();
        var resid = rm.Transformer.FinalResidual(tensor(ids).unsqueeze(0))[0, ids.Length - 1];
        return (resid * rm.Score.weight![0]).sum().item<float>();
    }

    [Fact]
    public void The_reward_head_reads_the_last_real_token_on_either_padding_side()
    {
        var rm = new RewardModel(Tiny(), seed: 1);
        var rows = new[] { L(1, 2, 5), L(1, 4, 4, 2, 7, 3), L(1, 6) };
        foreach (var side in new[] { PaddingSide.Right, PaddingSide.Left })
        {
            using var batch = PreferenceData.Pad(rows.Select(r => ((IReadOnlyList<long>)r[..1], (IReadOnlyList<long>)r[1..])).ToList(), Pad, side);
            using var _ = no_grad();
            var rewards = rm.forward(batch.Tokens, batch.AttentionMask).data<float>().ToArray();
            for (int i = 0; i < rows.Length; i++) Assert.Equal(RewardAlone(rm, rows[i]), rewards[i], 4);
        }
    }

    [Fact]
    public void Reward_model_objective_is_bradley_terry_on_the_rows_rewards_with_margins()
    {
        var rm = new RewardModel(Tiny(), seed: 2);
        var pairs = Pairs().Select((p, i) => p with { Margin = 0.25 * i }).ToArray();
        using var batch = PreferenceData.Collate(pairs, Pad);
        var objective = new RewardModelObjective(rm, new RewardModelConfig { CenterRewardsCoefficient = 0.01 });
        var o = objective.Compute(batch);
        var c = pairs.Select(p => RewardAlone(rm, p.Prompt.Concat(p.Chosen).ToArray())).ToArray();
        var r = pairs.Select(p => RewardAlone(rm, p.Prompt.Concat(p.Rejected).ToArray())).ToArray();
        double bt = Enumerable.Range(0, 3).Average(i => Math.Log(1 + Math.Exp(-(c[i] - r[i] - 0.25 * i))));
        double center = 0.01 * Enumerable.Range(0, 3).Average(i => (c[i] + r[i]) * (c[i] + r[i]));
        Assert.Equal(bt + center, o.Loss.item<float>(), 4);
        Assert.Equal(Enumerable.Range(0, 3).Average(i => c[i] > r[i] ? 1.0 : 0.0), o.Metrics!["accuracy"].item<float>(), 5);
        Assert.Equal(c.Concat(r).Max(), o.Metrics["max_reward"].item<float>(), 4);
    }

    [Fact]
    public void Training_the_reward_model_raises_its_accuracy_and_leaves_the_unembedding_alone()
    {
        var rm = new RewardModel(Tiny(seed: 4), seed: 4);
        var objective = new RewardModelObjective(rm);
        var wu = rm.Transformer.W_U.detach().clone();
        var trainer = new Trainer<PreferenceBatch>(objective, new TrainerConfig { MaxSteps = 15, LearningRate = 1e-2, ConsoleProgress = false });
        trainer.Train(new[] { PreferenceData.Collate(Pairs(), Pad) });
        Assert.Equal(1, trainer.Records[^1].Metrics!["accuracy"]);
        Assert.True(trainer.Records[^1].Loss < trainer.Records[0].Loss);
        Assert.True(wu.eq(rm.Transformer.W_U.detach()).all().item<bool>());
    }
}
