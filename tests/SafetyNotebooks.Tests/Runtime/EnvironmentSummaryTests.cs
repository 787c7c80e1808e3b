using SafetyNotebooks.Runtime;
using Xunit;

namespace SafetyNotebooks.Tests.Runtime;

public class EnvironmentSummaryTests
{
    [Fact]
    public void One_line_says_results_reproduce_at_this_thread_count()
    {
        var line = EnvironmentSummary.OneLine();
        Assert.Contains($"threads {TorchSharp.torch.get_num_threads()} (seeded results reproduce exactly at this thread count)", line);
    }
}
