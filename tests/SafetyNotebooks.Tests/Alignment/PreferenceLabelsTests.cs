using SafetyNotebooks.Alignment;
using Xunit;

namespace SafetyNotebooks.Tests.Alignment;

public class PreferenceLabelsTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "sn-labels-" + Guid.NewGuid().ToString("N"));
    public void Dispose() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    static readonly DateTimeOffset When = new(2026, 1, 31, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Appended_records_reload_unchanged_and_earlier_lines_stay()
    {
        var path = Path.Combine(_dir, "sub", "prefs.jsonl");
        var first = new PreferenceRecord("", "great food", "bad food", "ada", When, "notebook");
        var second = new PreferenceRecord("say \"hi\"", "ok\nthen", "é", "bob", When.AddMinutes(1));
        PreferenceJsonl.Append(path, first);
        PreferenceJsonl.Append(path, second);
        var back = PreferenceJsonl.Load(path);
        Assert.Equal(new[] { first, second }, back);
        Assert.Equal(2, File.ReadAllLines(path).Length);
        Assert.Contains("\"labeled_at\":\"2026-01-31T12:00:00+00:00\"", File.ReadAllLines(path)[0]);
    }

    [Fact]
    public void A_malformed_line_is_an_error_naming_its_line_number()
    {
        var path = Path.Combine(_dir, "bad.jsonl");
        PreferenceJsonl.Append(path, new PreferenceRecord("", "a", "b", "ada", When));
        File.AppendAllText(path, "\n{\"prompt\": \"\", \"chosen\": \"a\"\n");          // line 2 blank (skipped), line 3 broken JSON
        var e = Assert.Throws<FormatException>(() => PreferenceJsonl.Load(path));
        Assert.Contains("bad.jsonl:3:", e.Message);
        File.WriteAllText(path, "{\"prompt\":\"\",\"chosen\":\"a\",\"rejected\":\"b\",\"labeled_at\":\"2026-01-31T12:00:00+00:00\"}\n");
        e = Assert.Throws<FormatException>(() => PreferenceJsonl.Load(path));
        Assert.Contains("bad.jsonl:1:", e.Message);
        Assert.Contains("\"labeler\"", e.Message);
    }

    [Fact]
    public void A_session_records_choices_with_who_and_when_and_a_bad_choice_writes_nothing()
    {
        var path = Path.Combine(_dir, "session.jsonl");
        var session = new LabelingSession("", new[] { ("good food", "bad food"), ("it was dull", "it was great") }, "ada", path, () => When);
        Assert.Contains("A: good food", session.Show(0));
        var e = Assert.Throws<FormatException>(() => session.RecordAll("# my picks\nA\nC\n", "choices.txt"));
        Assert.Contains("choices.txt:3", e.Message);
        Assert.False(File.Exists(path));
        Assert.Throws<FormatException>(() => session.RecordAll("A\n"));
        session.RecordAll("A\n\nb\n");
        var back = PreferenceJsonl.Load(path);
        Assert.Equal(new[] { ("good food", "bad food"), ("it was great", "it was dull") }, back.Select(r => (r.Chosen, r.Rejected)));
        Assert.All(back, r => { Assert.Equal("ada", r.Labeler); Assert.Equal(When, r.LabeledAt); });
    }
}
