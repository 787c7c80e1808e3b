using SafetyNotebooks.Teaching;

namespace SafetyNotebooks.Tests.Teaching;

/// <summary>ARENA's fallback (Exercises.Use / CheckOrFallback) and the machine-readable grade log.</summary>
[Collection("console")]
public class FallbackAndGradeLogTests : IDisposable
{
    readonly StringWriter _shown = new();
    readonly string _log = Path.Combine(Path.GetTempPath(), $"sn-grade-{Guid.NewGuid():N}.jsonl");

    public FallbackAndGradeLogTests() { Check.Out = _shown; Exercises.Out = _shown; }

    public void Dispose()
    {
        Check.Out = TextWriter.Null; Exercises.Out = TextWriter.Null;
        Environment.SetEnvironmentVariable(GradeLog.EnvironmentVariable, null);
        File.Delete(_log);
    }

    static double Square(double x) => x * x;

    [Fact]
    public void A_correct_function_is_used_as_it_is_without_a_note()
    {
        Func<double, double> mine = x => x * x;
        var used = Exercises.CheckOrFallback("square", mine, Square, r => r.NextDouble() * 10);
        Assert.Same(mine, used);
        Assert.DoesNotContain("FALLBACK", _shown.ToString());
        Assert.Equal(49.0, used(7.0));
    }

    [Fact]
    public void A_missing_function_falls_back_to_the_reference_and_says_so()
    {
        Func<double, double> stub = _ => throw new NotImplementedException("Exercise: write your solution here");
        var used = Exercises.CheckOrFallback("square", stub, Square, r => r.NextDouble() * 10);
        Assert.Equal(49.0, used(7.0));                                   // the reference: 7² by hand
        var shown = _shown.ToString();
        Assert.Contains("✗ square: not implemented yet", shown);
        Assert.Contains("↪ FALLBACK: the cells below use the reference solution of square, because yours is not written yet", shown);
    }

    [Fact]
    public void A_wrong_or_throwing_function_falls_back_too()
    {
        var used = Exercises.CheckOrFallback<double>("square", x => 2 * x, Square, r => 3 + r.NextDouble());
        Assert.Equal(9.0, used(3.0));
        Assert.Contains("because yours is not correct yet", _shown.ToString());
        var used2 = Exercises.Use<Func<double, int, double>>("power", (x, n) => throw new InvalidOperationException("oops"), (x, n) => Math.Pow(x, n),
            f => Exercises.Check<double>("power", x => f(x, 3), x => x * x * x, r => r.NextDouble()));
        Assert.Equal(8.0, used2(2.0, 3));
        Assert.Contains("your function threw InvalidOperationException: oops", _shown.ToString());
    }

    [Fact]
    public void With_the_grade_log_variable_every_result_is_one_json_line()
    {
        Environment.SetEnvironmentVariable(GradeLog.EnvironmentVariable, _log);
        Check.Close(1.0, 1.0, 0.1, "one is one");
        Assert.Throws<CheckFailedException>(() => Check.Less(2.0, 1.0, "two below one"));
        Exercises.CheckOrFallback<double>("square", x => x + 1, Square, r => r.NextDouble());
        Exercises.Check<double>("square again", Square, x => x * x, r => r.NextDouble());
        var lines = File.ReadAllLines(_log);
        Assert.Equal(4, lines.Length);
        Assert.Equal("""{"kind":"check","name":"one is one","passed":true,"fallback":false,"message":null}""", lines[0]);
        Assert.StartsWith("""{"kind":"check","name":"two below one","passed":false,"fallback":false,"message":""", lines[1]);
        Assert.StartsWith("""{"kind":"exercise","name":"square","passed":false,"fallback":true,""", lines[2]);
        Assert.Equal("""{"kind":"exercise","name":"square again","passed":true,"fallback":false,"message":null}""", lines[3]);
        // The learner sees the usual line, not the JSON.
        Assert.Contains("✓ one is one: 1 ≈ 1 (±0.1)", _shown.ToString());
        Assert.DoesNotContain("\"kind\"", _shown.ToString());
    }

    [Fact]
    public void Without_the_variable_nothing_is_written()
    {
        Environment.SetEnvironmentVariable(GradeLog.EnvironmentVariable, null);
        Check.That(true, "quiet");
        Assert.False(File.Exists(_log));
    }
}
