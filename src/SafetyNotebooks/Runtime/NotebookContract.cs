namespace SafetyNotebooks.Runtime;

/// <summary>
/// Names shared by the notebook integration (SafetyNotebooks.Interactive) and the headless runner
/// (the CLI), so that neither recognises the other's outputs by a copied string literal.
/// </summary>
public static class NotebookContract
{
    /// <summary>CSS class of a live progress output; its <c>title</c> attribute holds the plain-text line.</summary>
    public const string ProgressCssClass = "sn-progress";

    /// <summary>CSS class of the div that holds one offline chart.</summary>
    public const string ChartCssClass = "safety-notebooks-chart";

    /// <summary>The text/plain form of a chart output, shown by viewers that do not run the chart's script.</summary>
    public const string ChartTextFallback = "chart: open the HTML report or re-run this cell (this viewer did not run the chart's script)";

    /// <summary>Name of the notebook integration assembly that every lesson's setup cell loads with <c>#r</c>.</summary>
    public const string InteractiveAssemblyName = "SafetyNotebooks.Interactive";
}
