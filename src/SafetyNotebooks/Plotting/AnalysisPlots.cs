using Plotly.NET;

namespace SafetyNotebooks.Plotting;

/// <summary>Heatmaps for interpretability results: per-head scores [layer, head] and logit-lens grids [layer, position].</summary>
public static class AnalysisPlots
{
    /// <summary>A heatmap of one score per head, [n_layers, n_heads] (rows "L0", "L1", ...; columns "H0", "H1", ...).</summary>
    public static GenericChart HeadScores(string title, double[,] scores, string colorScale = "Blues") =>
        Plots.Heatmap(title, "head", "layer", scores,
            Enumerable.Range(0, scores.GetLength(1)).Select(h => $"H{h}"), Enumerable.Range(0, scores.GetLength(0)).Select(l => $"L{l}"), colorScale);

    /// <summary>
    /// A logit-lens heatmap: rows are the residual-stream layers (labels such as "0_pre" … "final_post"), columns the positions
    /// (labelled with the tokens), values e.g. the probability of the next token (<c>LogitLens.NextTokenProbs</c>).
    /// </summary>
    public static GenericChart LogitLens(string title, double[,] values, IEnumerable<string> layerLabels, IEnumerable<string> positionLabels, string valueName = "probability of the next token") =>
        Plots.Heatmap($"{title} ({valueName})", "position (token read)", "residual stream before layer", values, positionLabels, layerLabels, "Blues");

    /// <summary>Converts a 2-D tensor to a grid for <see cref="Plots.Heatmap"/>.</summary>
    public static double[,] ToGrid(TorchSharp.torch.Tensor t)
    {
        if (t.dim() != 2) throw new ArgumentException($"ToGrid needs a 2-D tensor; got [{string.Join(", ", t.shape)}].", nameof(t));
        var a = t.detach().cpu().to_type(TorchSharp.torch.ScalarType.Float64).contiguous().data<double>().ToArray();
        int rows = (int)t.shape[0], cols = (int)t.shape[1];
        var g = new double[rows, cols];
        for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) g[r, c] = a[r * cols + c];
        return g;
    }
}
