using System.Diagnostics;
using System.Globalization;

namespace SafetyNotebooks.Runtime;

/// <summary>A snapshot of a long loop: where it is and its latest metrics.</summary>
public sealed record ProgressUpdate(string Title, long Step, long Total, TimeSpan Elapsed, IReadOnlyDictionary<string, double> Metrics, bool Done)
{
    /// <summary>Fraction done, 0..1.</summary>
    public double Fraction => Total <= 0 ? 0 : Math.Clamp((double)Step / Total, 0, 1);

    /// <summary>Estimated time left, from the average pace so far.</summary>
    public TimeSpan? Remaining => Step <= 0 || Total <= 0 ? null : TimeSpan.FromSeconds(Elapsed.TotalSeconds / Step * Math.Max(0, Total - Step));

    /// <summary>e.g. <c>training  45% [#########-----------] 450/1000  loss=1.2345  0:12 elapsed, 0:15 left</c>.</summary>
    public string ToLine(int barWidth = 20)
    {
        int filled = (int)Math.Round(Fraction * barWidth);
        var bar = new string('#', filled) + new string('-', barWidth - filled);
        var metrics = string.Join("  ", Metrics.Select(kv => $"{kv.Key}={Format(kv.Value)}"));
        var left = Done ? "done" : Remaining is { } r ? $"{Clock(r)} left" : "";
        return $"{Title} {Fraction * 100,3:0}% [{bar}] {Step}/{Total}  {metrics}  {Clock(Elapsed)} elapsed{(left == "" ? "" : ", " + left)}".TrimEnd();
    }

    static string Format(double v) => Math.Abs(v) >= 1e4 || (Math.Abs(v) < 1e-3 && v != 0)
        ? v.ToString("0.###e0", CultureInfo.InvariantCulture)
        : v.ToString("0.####", CultureInfo.InvariantCulture);

    static string Clock(TimeSpan t) => t.TotalHours >= 1 ? t.ToString(@"h\:mm\:ss") : t.ToString(@"m\:ss");
}

/// <summary>Where progress goes: the console by default, a live notebook output when the notebook setup ran.</summary>
public interface IProgressSink
{
    /// <summary>Called often; sinks throttle themselves.</summary>
    void Report(ProgressUpdate update);
}

/// <summary>
/// Live progress for long loops (training). Use <c>using var p = Progress.Start("training", steps);</c>
/// then <c>p.Report(step, ("loss", loss))</c>. A notebook shows one updating output; the console shows
/// one line rewritten in place on a terminal, or a line every 10% when output is redirected.
/// </summary>
public sealed class Progress : IDisposable
{
    /// <summary>Makes the sink for each new loop. The notebook integration replaces it.</summary>
    public static Func<IProgressSink> SinkFactory { get; set; } = () => new ConsoleProgressSink();

    readonly IProgressSink _sink;
    readonly Stopwatch _clock = Stopwatch.StartNew();
    readonly Dictionary<string, double> _metrics = new();
    long _step;
    bool _done;

    /// <summary>The loop's title.</summary>
    public string Title { get; }
    /// <summary>Total number of steps.</summary>
    public long Total { get; }

    Progress(string title, long total, IProgressSink sink) { Title = title; Total = total; _sink = sink; }

    /// <summary>Starts reporting a loop of <paramref name="total"/> steps.</summary>
    public static Progress Start(string title, long total, IProgressSink? sink = null) =>
        new(title, total, sink ?? SinkFactory());

    /// <summary>Reports that <paramref name="step"/> steps are done, with optional metrics.</summary>
    public void Report(long step, params (string Name, double Value)[] metrics)
    {
        _step = step;
        foreach (var (n, v) in metrics) _metrics[n] = v;
        _sink.Report(Snapshot(false));
    }

    /// <summary>Marks the loop finished (also done by Dispose).</summary>
    public void Complete()
    {
        if (_done) return;
        _done = true;
        _sink.Report(Snapshot(true));
    }

    ProgressUpdate Snapshot(bool done) => new(Title, done ? Math.Max(_step, 0) : _step, Total, _clock.Elapsed, new Dictionary<string, double>(_metrics), done);

    /// <inheritdoc />
    public void Dispose() => Complete();
}

/// <summary>Console progress: in place on a terminal, every 10% (and at the end) when redirected.</summary>
public sealed class ConsoleProgressSink : IProgressSink
{
    readonly TextWriter _out;
    readonly bool _inPlace;
    int _lastDecile = -1;
    long _lastTicks;

    /// <summary>Creates a sink writing to <paramref name="writer"/> (stdout by default).</summary>
    public ConsoleProgressSink(TextWriter? writer = null, bool? inPlace = null)
    {
        _out = writer ?? Console.Out;
        _inPlace = inPlace ?? (writer == null && !Console.IsOutputRedirected);
    }

    /// <inheritdoc />
    public void Report(ProgressUpdate u)
    {
        if (_inPlace)
        {
            long now = Environment.TickCount64;
            if (!u.Done && now - _lastTicks < 200) return;
            _lastTicks = now;
            _out.Write("\r" + u.ToLine().PadRight(Console.IsOutputRedirected ? 0 : Math.Max(0, SafeWidth() - 1)));
            if (u.Done) _out.WriteLine();
            return;
        }
        int decile = (int)Math.Floor(u.Fraction * 10);
        if (u.Done || decile > _lastDecile)
        {
            _lastDecile = u.Done ? 11 : decile;
            _out.WriteLine(u.ToLine());
        }
    }

    static int SafeWidth() { try { return Console.WindowWidth; } catch { return 100; } }
}
