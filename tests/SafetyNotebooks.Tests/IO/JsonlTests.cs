using SafetyNotebooks.IO;
using Xunit;

namespace SafetyNotebooks.Tests.IO;

public class JsonlTests
{
    [Fact]
    public void Objects_come_with_their_line_numbers_and_bad_lines_are_named()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllLines(path, ["{\"a\": 1}", "", "  ", "{\"a\": 2, \"s\": \"x\"}"]);
            var rows = Jsonl.Read(path, "{\"a\"}").ToList();
            Assert.Equal([1, 4], rows.Select(r => r.Line));
            Assert.Equal("x", rows[1].Node.RequireString("s", path, 4));
            Assert.Contains(":1: needs a string field \"s\"", Assert.Throws<FormatException>(() => rows[0].Node.RequireString("s", path, 1)).Message);
            File.WriteAllLines(path, ["{\"a\": 1}", "[1, 2]"]);
            Assert.Contains(":2: not a JSON object", Assert.Throws<FormatException>(() => Jsonl.Read(path, "{\"a\"}").ToList()).Message);
            File.WriteAllLines(path, ["{\"a\": "]);
            Assert.Contains(":1: not valid JSON", Assert.Throws<FormatException>(() => Jsonl.Read(path, "{\"a\"}").ToList()).Message);
        }
        finally { File.Delete(path); }
        Assert.Throws<FileNotFoundException>(() => Jsonl.Read("/no/such.jsonl", "{}").ToList());
    }
}
