namespace SafetyNotebooks.Runtime;

/// <summary>
/// Quick mode shrinks training so the whole curriculum runs in CI. Every host reads it from the
/// environment variable <c>SAFETY_NOTEBOOKS_QUICK=1</c> (the runner's <c>--quick</c> sets it), so a
/// notebook behaves the same under Jupyter, VS Code or the headless runner.
/// </summary>
public static class QuickMode
{
    /// <summary>The environment variable that turns quick mode on ("1" or "true").</summary>
    public const string EnvironmentVariable = "SAFETY_NOTEBOOKS_QUICK";

    /// <summary>True when quick mode is on.</summary>
    public static bool IsOn
    {
        get
        {
            var v = Environment.GetEnvironmentVariable(EnvironmentVariable);
            return v != null && (v == "1" || v.Equals("true", StringComparison.OrdinalIgnoreCase) || v.Equals("yes", StringComparison.OrdinalIgnoreCase));
        }
    }

    /// <summary>Returns <paramref name="full"/> normally and <paramref name="quick"/> in quick mode.</summary>
    public static T Pick<T>(T full, T quick) => IsOn ? quick : full;
}
