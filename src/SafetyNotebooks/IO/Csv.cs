using System.Globalization;
using System.Text;
using CsvHelper;
using CsvHelper.Configuration;

namespace SafetyNotebooks.IO;

/// <summary>
/// Comma-separated files as RFC 4180 writes them (and Python's <c>csv</c> module, pandas and HarmBench's files): a header row,
/// fields optionally quoted with <c>"</c>, a doubled <c>""</c> inside quotes for a quote, and quoted fields that may span lines,
/// parsed by CsvHelper. Errors name the file and the line.
/// </summary>
public static class Csv
{
    /// <summary>
    /// The records of <paramref name="path"/> as header → value maps, each with the 1-based line on which the record starts.
    /// A record with a different number of fields than the header is an error naming its line.
    /// </summary>
    public static IEnumerable<(int Line, IReadOnlyDictionary<string, string> Fields)> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"'{path}' does not exist; it should be a CSV file with a header row.", path);
        using var reader = new StreamReader(path, Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        string[]? header = null;
        foreach (var (line, fields) in Records(reader, path))
        {
            if (header is null)
            {
                header = fields;
                var dup = header.GroupBy(h => h, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
                if (dup is not null) throw new FormatException($"{path}:{line}: the header names column \"{dup.Key}\" twice.");
                continue;
            }
            if (fields.Length == 1 && fields[0].Length == 0) continue;                 // a blank line
            if (fields.Length != header.Length)
                throw new FormatException($"{path}:{line}: {fields.Length} fields but the header has {header.Length} ({string.Join(", ", header)}); quote fields that contain commas.");
            var map = new Dictionary<string, string>(header.Length, StringComparer.Ordinal);
            for (int i = 0; i < header.Length; i++) map[header[i]] = fields[i];
            yield return (line, map);
        }
        if (header is null) throw new FormatException($"{path}: empty; a CSV file needs a header row.");
    }

    /// <summary>
    /// The raw records with the 1-based line each starts on. Parsing (quotes, doubled quotes, fields spanning lines, CRLF) is
    /// CsvHelper's RFC 4180 parser; this adds the record's first line, which CsvHelper reports as the line where it ends.
    /// </summary>
    static IEnumerable<(int Line, string[] Fields)> Records(StreamReader reader, string path)
    {
        var config = new CsvConfiguration(CultureInfo.InvariantCulture)
        {
            HasHeaderRecord = false, DetectColumnCountChanges = false, IgnoreBlankLines = false,
            BadDataFound = args => throw new FormatException($"{path}:{args.Context.Parser?.RawRow}: a stray quote inside an unquoted field; quote the field and double its quotes (\"\").")
        };
        using var parser = new CsvParser(reader, config);
        while (true)
        {
            bool more;
            try { more = parser.Read(); }
            catch (CsvHelperException e) when (e is not BadDataException)
            {
                throw new FormatException($"{path}:{parser.RawRow}: {e.Message.Split('\n')[0]}");
            }
            if (!more) yield break;
            // CsvHelper's RawRow is the line the record ends on; the start is that minus the newlines inside the record. In a record
            // whose quote never closes, the final newline is inside the field too.
            var raw = parser.RawRecord;
            bool unclosed = raw.Count(ch => ch == '"') % 2 == 1;
            int inner = (unclosed ? raw : raw.TrimEnd('\r', '\n')).Count(ch => ch == '\n');
            if (unclosed) throw new FormatException($"{path}:{parser.RawRow - inner}: a quoted field is never closed.");
            int endLine = parser.RawRow;
            yield return (endLine - inner, parser.Record ?? []);
        }
    }
}
