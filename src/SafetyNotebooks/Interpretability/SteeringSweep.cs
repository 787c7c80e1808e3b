using Microsoft.Data.Analysis;
using SafetyNotebooks.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SafetyNotebooks.Interpretability;

/// <summary>
/// Measures what a steering vector does, as a table across coefficients, instead of eyeballing samples. Each row holds the
/// coefficient, the metric's mean and standard error over examples, and the change from the unsteered run (coefficient 0,
/// run without any hook).
/// </summary>
public static class SteeringSweep
{
    /// <summary>
    /// For each coefficient, runs <paramref name="tokens"/> with the vector added at <paramref name="positions"/> and scores the
    /// logits with <paramref name="metric"/> (logits <c>[batch, pos, d_vocab]</c> → one value per example, e.g.
    /// <see cref="Steering.LogitDifference"/>). Columns: <c>coefficient</c>, <c>{name}</c> (mean), <c>{name}_stderr</c>,
    /// <c>change</c> (mean − unsteered mean), <c>n</c>.
    /// </summary>
    public static DataFrame Logits(HookedTransformer model, Tensor tokens, SteeringVector vector, IEnumerable<double> coefficients,
        Func<Tensor, Tensor> metric, SteeringPositions? positions = null, Tensor? attentionMask = null, string metricName = "metric")
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(vector);
        ArgumentNullException.ThrowIfNull(metric);
        return Table(coefficients, metricName, c =>
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var logits = c == 0 ? model.forward(tokens, attentionMask) : Steering.Run(model, tokens, vector, c, positions, attentionMask);
            return Values(metric(logits), "metric");
        });
    }

    /// <summary>
    /// For each coefficient, generates from <paramref name="promptTokens"/> with the vector added (<see cref="Steering.Generate(HookedTransformer, Tensor, SteeringVector, double, GenerationOptions?, Tensor?, SteeringPositions?)"/>;
    /// pass a seeded <paramref name="options"/> so every coefficient samples with the same seed) and scores the samples with
    /// <paramref name="score"/> (one value per row, e.g. a classifier's verdict or a rule on the tokens).
    /// Columns as in <see cref="Logits"/>.
    /// </summary>
    public static DataFrame Generations(HookedTransformer model, Tensor promptTokens, SteeringVector vector, IEnumerable<double> coefficients,
        GenerationOptions options, Func<GenerationResult, double[]> score, Tensor? attentionMask = null, SteeringPositions? positions = null, string metricName = "score")
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(vector);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(score);
        return Table(coefficients, metricName, c =>
        {
            using var result = c == 0 ? Generation.Generate(model, promptTokens, options, attentionMask)
                                      : Steering.Generate(model, promptTokens, vector, c, options, attentionMask, positions);
            return score(result);
        });
    }

    static double[] Values(Tensor perExample, string what)
    {
        if (perExample.dim() > 1) perExample = perExample.reshape(-1);
        return perExample.detach().to_type(ScalarType.Float64).cpu().data<double>().ToArray();
    }

    static DataFrame Table(IEnumerable<double> coefficients, string metricName, Func<double, double[]> measure)
    {
        ArgumentNullException.ThrowIfNull(coefficients);
        var coefs = coefficients.ToArray();
        if (coefs.Length == 0) throw new ArgumentException("Pass at least one coefficient (e.g. new[] { -4.0, -2, 0, 2, 4 }).", nameof(coefficients));
        if (coefs.Any(c => !double.IsFinite(c))) throw new ArgumentException("Every steering coefficient must be a finite number.", nameof(coefficients));
        var baseline = measure(0);
        if (baseline.Length == 0) throw new InvalidOperationException("The metric returned no value; return one value per example.");
        double baseMean = baseline.Average();
        var means = new List<double>(); var errs = new List<double>(); var changes = new List<double>(); var ns = new List<int>();
        foreach (var c in coefs)
        {
            var v = c == 0 ? baseline : measure(c);
            double mean = v.Average();
            double sd = v.Length > 1 ? Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Length - 1)) : 0;
            means.Add(mean); errs.Add(sd / Math.Sqrt(v.Length)); changes.Add(mean - baseMean); ns.Add(v.Length);
        }
        return new DataFrame(new DoubleDataFrameColumn("coefficient", coefs), new DoubleDataFrameColumn(metricName, means),
            new DoubleDataFrameColumn(metricName + "_stderr", errs), new DoubleDataFrameColumn("change", changes), new Int32DataFrameColumn("n", ns));
    }
}
