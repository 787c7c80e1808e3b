using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace SafetyNotebooks.Evaluation;

/// <summary>
/// Reads the project's YAML configs (scans, rails) defensively: a size cap, no anchors or aliases (so a "billion laughs" file
/// cannot expand), a nesting limit, snake_case field names, unknown fields rejected; every problem is one error naming the file,
/// the line and the column.
/// </summary>
public static class SafeYaml
{
    /// <summary>Largest config accepted; configs are short files.</summary>
    public const long MaxBytes = 256 * 1024;

    /// <summary>Deserializes <paramref name="path"/> into <typeparamref name="T"/> (see the class summary).</summary>
    public static T Load<T>(string path, string what) where T : class
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{what} '{path}' does not exist.", path);
        if (new FileInfo(path).Length > MaxBytes) throw new InvalidDataException($"{what} '{path}' is larger than {MaxBytes / 1024} KB; it should be a short YAML file.");
        var text = File.ReadAllText(path);
        try
        {
            var parser = new Parser(new StringReader(text));
            int depth = 0;
            while (parser.MoveNext())
            {
                var e = parser.Current!;
                if (e is AnchorAlias || e is NodeEvent { Anchor.IsEmpty: false })
                    throw new InvalidDataException($"{path}: line {e.Start.Line}, column {e.Start.Column}: YAML anchors and aliases are not allowed in a {what.ToLowerInvariant()} (write the values out).");
                if (e is MappingStart or SequenceStart && ++depth > 16)
                    throw new InvalidDataException($"{path}: line {e.Start.Line}: nested more than 16 levels deep; a {what.ToLowerInvariant()} is flat.");
                if (e is MappingEnd or SequenceEnd) depth--;
            }
            var deserializer = new DeserializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance).WithMaximumRecursion(32).Build();
            return deserializer.Deserialize<T?>(text) ?? throw new InvalidDataException($"{what} '{path}' is empty.");
        }
        catch (YamlException e)
        {
            throw new InvalidDataException($"{path}: line {e.Start.Line}, column {e.Start.Column}: {e.Message.Split('\n')[0]}");
        }
    }
}
