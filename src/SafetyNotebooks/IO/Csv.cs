using System.Text;

namespace SafetyNotebooks.IO;

/// <summary>
/// Comma-separated files as RFC 4180 writes them (and Python's <c>csv</c> module, pandas and HarmBench's files): a header row,
/// fields optionally quoted with <c>"</c>, a doubled <c>""</c> inside quotes for a quote, and quoted fields that may span lines.
/// Errors name the file and the line.
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

    static IEnumerable<(int Line, string[] Fields)> Records(StreamReader reader, string path)
    {
        int line = 1, recordLine = 1;
        var fields = new List<string>();
        var field = new StringBuilder();
        bool quoted = false, any = false;
        int c;
        while ((c = reader.Read()) >= 0)
        {
            any = true;
            char ch = (char)c;
            if (quoted)
            {
                if (ch == '"')
                {
                    if (reader.Peek() == '"') { reader.Read(); field.Append('"'); }
                    else quoted = false;
                }
                else { if (ch == '\n') line++; field.Append(ch); }
                continue;
            }
            switch (ch)
            {
                case '"' when field.Length == 0: quoted = true; break;
                case ',': fields.Add(field.ToString()); field.Clear(); break;
                case '\r': break;
                case '\n':
                    fields.Add(field.ToString()); field.Clear();
                    yield return (recordLine, fields.ToArray());
                    fields.Clear(); line++; recordLine = line; any = false;
                    break;
                default: field.Append(ch); break;
            }
        }
        if (quoted) throw new FormatException($"{path}:{recordLine}: a quoted field is never closed.");
        if (any) { fields.Add(field.ToString()); yield return (recordLine, fields.ToArray()); }
    }
}
