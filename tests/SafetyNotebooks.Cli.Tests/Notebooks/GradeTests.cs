using SafetyNotebooks.Cli.Notebooks;

namespace SafetyNotebooks.Cli.Tests.Notebooks;

/// <summary><c>safety-notebooks grade</c>: real notebook hosts running the real Exercises.Check and Check.*.</summary>
public class GradeTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("sn-grade-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch { } }

    // The library as the test project holds it (SafetyNotebooks.dll with its dependencies beside it).
    static readonly string Library = typeof(SafetyNotebooks.Teaching.Exercises).Assembly.Location;

    static string[] Lesson(string square, string cube, string? crashAfterSquare = null) => new[]
    {
        "md:# A tiny lesson",
        $"#r \"{Library}\"",
        "using SafetyNotebooks.Teaching;",
        $"double Square(double x) => {square};",
        "Exercises.Check<double>(\"Square\", x => Square(x), x => x * x, r => r.NextDouble() * 10);",
        crashAfterSquare ?? "// nothing",
        $"double Cube(double x) => {cube};",
        "Exercises.Check<double>(\"Cube\", x => Cube(x), x => x * x * x, r => 1 + r.NextDouble());",
        "Check.That(Square(3) == 9, \"three squared is nine\");",
        "Check.Close(Cube(2), 8, 1e-9, \"two cubed is eight\");",
    };

    [Fact]
    public async Task Grade_writes_the_expected_cell_for_every_learner_and_exercise()
    {
        var folder = Directory.CreateDirectory(Path.Combine(_dir, "submissions")).FullName;
        TestNotebooks.Write(folder, "ada.ipynb", Lesson("x * x", "x * x * x"));                                   // correct
        TestNotebooks.Write(folder, "bob.ipynb", Lesson("x * x", "x * x"));                                       // Cube wrong
        TestNotebooks.Write(folder, "cyd.ipynb", Lesson("x * x", "x * x * x", "System.Environment.Exit(3);"));   // the host dies after Square
        TestNotebooks.Write(folder, "dee.ipynb", Lesson("x * x", "x * y"));                                       // Cube does not compile
        var outDir = Path.Combine(_dir, "grades");
        var r = await CliProcess.RunAsync("grade", folder, "--out", outDir, "--timeout", "4", "--quick");
        Assert.True(r.Exit == 0, $"exit {r.Exit}\n{r.Stdout}\n{r.Stderr}");

        var csv = File.ReadAllLines(Path.Combine(outDir, "grades.csv"));
        Assert.Equal(new[]
        {
            "learner,Square,Cube,three squared is nine,two cubed is eight,exercises_passed,exercises_total,checks_passed,checks_total,run_status",
            "ada,pass,pass,pass,pass,2,2,2,2,ok",
            "bob,pass,fail,pass,fail,1,2,1,2,error",
            "cyd,pass,not-reached,not-reached,not-reached,1,2,0,2,crashed",
            "dee,pass,error,pass,error,1,2,1,2,error",
        }, csv);

        var results = File.ReadAllText(Path.Combine(outDir, "results.csv"));
        Assert.Contains("bob,,exercise,Cube,fail,,\"✗ Cube: trial 1 of 5 failed", results);
        Assert.Contains("the run stopped before this check (crashed: the notebook host exited with code 3", results);
        var html = File.ReadAllText(Path.Combine(outDir, "grades.html"));
        Assert.Contains("<td class=\"not-reached\"", html);
        Assert.Contains("href=\"runs/cyd/cyd.html\"", html);
        Assert.True(File.Exists(Path.Combine(outDir, "runs", "bob", "bob.html")));
    }

    [Fact]
    public void Both_layouts_are_discovered_and_mixing_them_is_refused()
    {
        var flat = Directory.CreateDirectory(Path.Combine(_dir, "flat")).FullName;
        TestNotebooks.Write(flat, "zoe.ipynb", "1");
        TestNotebooks.Write(flat, "amy.ipynb", "1");
        Directory.CreateDirectory(Path.Combine(flat, ".ipynb_checkpoints"));
        TestNotebooks.Write(Path.Combine(flat, ".ipynb_checkpoints"), "amy-checkpoint.ipynb", "1");
        Assert.Equal(new[] { ("amy", ""), ("zoe", "") }, Grader.Discover(flat).Select(s => (s.Learner, s.Lesson)));

        var nested = Directory.CreateDirectory(Path.Combine(_dir, "nested")).FullName;
        foreach (var (learner, lesson) in new[] { ("amy", "31-induction-heads"), ("amy", "00-setup"), ("zoe", "00-setup") })
            TestNotebooks.Write(Directory.CreateDirectory(Path.Combine(nested, learner)).FullName, lesson + ".ipynb", "1");
        Assert.Equal(new[] { ("amy", "00-setup"), ("amy", "31-induction-heads"), ("zoe", "00-setup") },
            Grader.Discover(nested).Select(s => (s.Learner, s.Lesson)));

        TestNotebooks.Write(nested, "bob.ipynb", "1");
        Assert.Contains("mixes the two layouts", Assert.Throws<UserError>(() => Grader.Discover(nested)).Message);
        Assert.Contains("no such folder", Assert.Throws<UserError>(() => Grader.Discover(Path.Combine(_dir, "none"))).Message);
    }

    [Fact]
    public void A_lesson_a_learner_did_not_hand_in_is_not_reached_and_exercises_nobody_reached_still_get_a_column()
    {
        var ok = new NotebookResult { Notebook = "l.ipynb", Status = RunStatus.Ok };
        var crashed = new NotebookResult { Notebook = "l.ipynb", Status = RunStatus.Timeout, ErrorMessage = "time limit of 1 min reached" };
        var rec = new SafetyNotebooks.Teaching.GradeRecord("exercise", "A", true, false, null);
        var table = Grader.Build(new[]
        {
            (new Submission("amy", "l1", "amy/l1.ipynb"), ok, new List<SafetyNotebooks.Teaching.GradeRecord> { rec, rec }, new List<string> { "A", "B" }),
            (new Submission("amy", "l2", "amy/l2.ipynb"), crashed, new List<SafetyNotebooks.Teaching.GradeRecord>(), new List<string> { "C" }),
            (new Submission("zoe", "l1", "zoe/l1.ipynb"), crashed, new List<SafetyNotebooks.Teaching.GradeRecord>(), new List<string> { "A", "B" }),
        });
        Assert.Equal(new[] { "l1: A", "l1: A (#2)", "l1: B", "l2: C" }, table.Items.Select(i => i.Header(table.SeveralLessons)));
        Assert.Equal(new[] { "pass", "pass", "error", "not-reached" }, table.Items.Select(i => table["amy", i].Outcome));
        Assert.Equal(new[] { "not-reached", "not-reached", "not-reached", "not-reached" }, table.Items.Select(i => table["zoe", i].Outcome));
        Assert.Equal("no l2.ipynb from this learner", table["zoe", table.Items[3]].Message);
    }
}
