using SafetyNotebooks.IO;

namespace SafetyNotebooks.Tests.IO;

/// <summary>RFC 4180 cases written by hand: quotes, doubled quotes, CRLF, multi-line fields and the lines errors name.</summary>
public class CsvTests
{
    static string Temp(string text)
    {
        var path = Path.Combine(Path.GetTempPath(), $"csv-{Guid.NewGuid():N}.csv");
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void Quoted_commas_doubled_quotes_crlf_and_multi_line_fields_parse_with_their_start_lines()
    {
        var path = Temp("a,b\r\n\"x, y\",\"he said \"\"hi\"\"\"\r\n\"two\nlines\",z\r\nlast,row");
        var rows = Csv.Read(path).ToList();
        Assert.Equal([2, 3, 5], rows.Select(r => r.Line));
        Assert.Equal("x, y", rows[0].Fields["a"]);
        Assert.Equal("he said \"hi\"", rows[0].Fields["b"]);
        Assert.Equal("two\nlines", rows[1].Fields["a"]);
        Assert.Equal("row", rows[2].Fields["b"]);
    }

    [Fact]
    public void An_unclosed_quote_and_a_ragged_row_name_the_file_and_line()
    {
        var unclosed = Temp("a,b\nok,fine\n\"never closed,x\n");
        var e = Assert.Throws<FormatException>(() => Csv.Read(unclosed).ToList());
        Assert.Contains($"{unclosed}:3:", e.Message);
        Assert.Contains("never closed", e.Message);
        var ragged = Temp("a,b\n1,2,3\n");
        Assert.Contains($"{ragged}:2: 3 fields but the header has 2", Assert.Throws<FormatException>(() => Csv.Read(ragged).ToList()).Message);
        Assert.Contains("empty", Assert.Throws<FormatException>(() => Csv.Read(Temp("")).ToList()).Message);
    }
}
