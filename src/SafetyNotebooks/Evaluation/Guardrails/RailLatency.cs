using System.Diagnostics;
using Microsoft.Data.Analysis;

namespace SafetyNotebooks.Evaluation.Guardrails;

/// <summary>What each rail costs: per-call latency over a set of texts (a measurement to report, not a test threshold).</summary>
public static class RailLatency
{
    /// <summary>
    /// One row per rail: <c>rail</c>, <c>calls</c>, <c>mean_us</c>, <c>p50_us</c>, <c>p99_us</c> — microseconds per
    /// <see cref="IRail.Check"/> over every text, <paramref name="repeats"/> times (after one warm-up pass).
    /// </summary>
    public static DataFrame Measure(IEnumerable<IRail> rails, IReadOnlyList<string> texts, int repeats = 5)
    {
        if (texts.Count == 0) throw new ArgumentException("Give at least one text to time the rails on.", nameof(texts));
        var names = new List<string>(); var calls = new List<int>(); var mean = new List<double>(); var p50 = new List<double>(); var p99 = new List<double>();
        foreach (var rail in rails)
        {
            foreach (var t in texts) rail.Check(t);                     // warm-up (regex compilation, JIT)
            var us = new List<double>(texts.Count * repeats);
            for (int r = 0; r < repeats; r++)
                foreach (var t in texts)
                {
                    long start = Stopwatch.GetTimestamp();
                    rail.Check(t);
                    us.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds * 1000);
                }
            us.Sort();
            names.Add(rail.Name); calls.Add(us.Count); mean.Add(us.Average());
            p50.Add(us[(us.Count - 1) / 2]); p99.Add(us[(int)Math.Ceiling(0.99 * us.Count) - 1]);
        }
        return new DataFrame(new StringDataFrameColumn("rail", names), new Int32DataFrameColumn("calls", calls),
            new DoubleDataFrameColumn("mean_us", mean), new DoubleDataFrameColumn("p50_us", p50), new DoubleDataFrameColumn("p99_us", p99));
    }
}
