using SafetyNotebooks.Alignment;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Alignment;

public class GroupBaselineTests
{
    public GroupBaselineTests() => TorchRuntime.EnsureLoaded();

    static float[] F(Tensor t) => t.to_type(ScalarType.Float32).data<float>().ToArray();
    static bool Close(float a, float b) => Math.Abs(a - b) < 1e-5;

    // One group of k = 3 with rewards [1, 2, 6]: leave-one-out baselines [(2+6)/2, (1+6)/2, (1+2)/2] = [4, 3.5, 1.5],
    // advantages [−3, −1.5, 4.5].
    [Fact]
    public void Rloo_advantages_subtract_the_mean_of_the_other_completions()
    {
        using var r = tensor(new[] { 1f, 2f, 6f });
        Assert.Equal(new[] { -3f, -1.5f, 4.5f }, F(RlooAdvantages.Compute(r, 3)), Close);
    }

    // Two groups (k = 2): [1, 3] → baselines [3, 1] → [−2, 2]; [5, 5] → [0, 0]: each group uses only its own rewards.
    [Fact]
    public void Rloo_keeps_groups_apart()
    {
        using var r = tensor(new[] { 1f, 3f, 5f, 5f });
        Assert.Equal(new[] { -2f, 2f, 0f, 0f }, F(RlooAdvantages.Compute(r, 2)), Close);
    }

    // The same group under GRPO: mean 3, unbiased std √((4 + 1 + 9)/2) = √7 = 2.6457513;
    // advantages [−2, −1, 3]/(√7 + 1e−4) = [−0.7559004, −0.3779502, 1.1338506]; without scaling [−2, −1, 3].
    [Fact]
    public void Grpo_advantages_are_the_group_centred_rewards_over_the_group_std()
    {
        using var r = tensor(new[] { 1f, 2f, 6f });
        Assert.Equal(new[] { -0.7559004f, -0.3779502f, 1.1338506f }, F(GrpoAdvantages.Compute(r, 3)), Close);
        Assert.Equal(new[] { -2f, -1f, 3f }, F(GrpoAdvantages.Compute(r, 3, GrpoRewardScaling.None)), Close);
    }

    // A group whose completions all score the same carries no signal: advantages 0 (not NaN).
    [Fact]
    public void Grpo_gives_zero_advantage_to_a_group_with_equal_rewards()
    {
        using var r = tensor(new[] { 2f, 2f, 2f, 2f });
        Assert.Equal(new[] { 0f, 0f, 0f, 0f }, F(GrpoAdvantages.Compute(r, 4)));
    }

    [Fact]
    public void Group_baselines_reject_rewards_that_do_not_split_into_groups()
    {
        using var r = tensor(new[] { 1f, 2f, 3f });
        var e = Assert.Throws<ArgumentException>(() => GrpoAdvantages.Compute(r, 2));
        Assert.Contains("k = 2", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => RlooAdvantages.Compute(r, 1));
    }
}
