namespace SafetyNotebooks.Runtime;

/// <summary>One place to seed everything, so a cohort sees the same numbers.</summary>
public static class Seeds
{
    /// <summary>The default seed notebooks use.</summary>
    public const int Default = 42;

    /// <summary>The seed last passed to <see cref="Set"/>.</summary>
    public static int Current { get; private set; } = Default;

    /// <summary>Seeds TorchSharp's global generator and returns a <see cref="Random"/> with the same seed for data order.</summary>
    public static Random Set(int seed = Default)
    {
        TorchRuntime.EnsureLoaded();
        Current = seed;
        TorchSharp.torch.random.manual_seed(seed);
        return new Random(seed);
    }
}
