namespace SafetyNotebooks.Runtime;

/// <summary>
/// "Did you mean" suggestions for error messages: the valid names closest to a mistyped one. Lives at the bottom
/// layer so that IO, tokenization and models can all use it without referencing each other.
/// </summary>
public static class NameSuggestions
{
    /// <summary>Levenshtein distance between two strings.</summary>
    public static int EditDistance(string a, string b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) prev[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (int j = 1; j <= b.Length; j++)
                cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }

    /// <summary>The <paramref name="count"/> candidates closest to <paramref name="name"/> by edit distance (ties in ordinal order).</summary>
    public static string[] Closest(string name, IEnumerable<string> candidates, int count = 5) =>
        candidates.OrderBy(c => EditDistance(name, c)).ThenBy(c => c, StringComparer.Ordinal).Take(count).ToArray();
}
