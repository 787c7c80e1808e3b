using SafetyNotebooks.Data;
using SafetyNotebooks.Runtime;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Data;

/// <summary>
/// The toy IOI task: every row is checked by counting its tokens directly (the subject twice, the indirect object once, the
/// end token last, left padding under the mask), the corrupted and ABC variants differ only at the second subject, and a seed
/// gives identical batches.
/// </summary>
public class IndirectObjectTaskTests
{
    static IndirectObjectTaskTests() => TorchRuntime.EnsureLoaded();

    static long[][] Rows(Tensor t) => Enumerable.Range(0, (int)t.shape[0]).Select(r => t[r].data<long>().ToArray()).ToArray();

    [Fact]
    public void Every_clean_prompt_repeats_the_subject_once_and_names_the_indirect_object_once()
    {
        var task = new IndirectObjectTask(numNames: 8, numFillers: 5, maxGap: 3);
        using var b = task.Generate(200, seed: 3);
        var clean = Rows(b.Clean);
        var corrupt = Rows(b.Corrupted);
        var abc = Rows(b.Abc);
        var mask = Rows(b.AttentionMask);
        var io = b.IndirectObject.data<long>().ToArray();
        var s = b.Subject.data<long>().ToArray();
        int width = clean[0].Length;
        Assert.Equal(task.MaxPromptLength, 17);
        for (int r = 0; r < 200; r++)
        {
            int pad = mask[r].TakeWhile(m => m == 0).Count();
            Assert.True(mask[r].Skip(pad).All(m => m == 1), $"row {r}: the padding is on the left only");
            Assert.Equal(width - pad, b.Lengths[r]);
            Assert.True(clean[r].Take(pad).All(t => t == task.PadId), $"row {r}: padded with <pad>");
            Assert.Equal(task.BosId, clean[r][pad]);
            Assert.Equal(task.EndId, clean[r][^1]);
            var names = clean[r].Where(t => t < 8).ToArray();
            Assert.Equal(3, names.Length);
            Assert.Equal(2, names.Count(t => t == s[r]));
            Assert.Equal(1, names.Count(t => t == io[r]));
            Assert.NotEqual(s[r], io[r]);
            Assert.Equal(s[r], names[2]);                                      // the third name is the repeated one
            Assert.Equal(s[r], clean[r][b.SecondSubjectPositions[r]]);
            var fillers = clean[r].Skip(pad + 1).SkipLast(1).Where(t => t >= 8).ToArray();
            Assert.True(fillers.All(t => t < 8 + 5), $"row {r}: only filler words between the names");
            Assert.Equal(b.Lengths[r] - 5, fillers.Length);

            // Corrupted: IO repeats instead; ABC: a third name. Both differ from clean only at the second S.
            var diff = Enumerable.Range(0, width).Where(p => corrupt[r][p] != clean[r][p]).ToArray();
            Assert.Equal(new[] { b.SecondSubjectPositions[r] }, diff);
            Assert.Equal(2, corrupt[r].Count(t => t == io[r]));
            Assert.Equal(1, corrupt[r].Count(t => t == s[r]));
            var abcNames = abc[r].Where(t => t < 8).ToArray();
            Assert.Equal(3, abcNames.Distinct().Count());
            Assert.Equal(new[] { b.SecondSubjectPositions[r] }, Enumerable.Range(0, width).Where(p => abc[r][p] != clean[r][p]).ToArray());
        }
        Assert.True(b.Lengths.Distinct().Count() >= 8, "prompts have many different lengths");
        Assert.Equal(17, b.Lengths.Max());
        Assert.Equal(5, b.Lengths.Min());
        Assert.Equal(Enumerable.Range(0, 8).Select(n => (long)n).ToHashSet(), io.ToHashSet());
        int sFirst = Enumerable.Range(0, 200).Count(r => clean[r].First(t => t < 8) == s[r]);
        Assert.InRange(sFirst, 70, 130);                                        // both orders, ABA and BAA, about half each
    }

    [Fact]
    public void The_training_sequence_is_the_clean_prompt_with_its_answer_as_the_only_target()
    {
        var task = new IndirectObjectTask();
        using var b = task.Generate(5, seed: 1);
        var (tokens, target, mask) = b.TrainingSequences();
        Assert.Equal(new[] { 5L, b.Clean.shape[1] + 1 }, tokens.shape);
        Assert.Equal(b.IndirectObject.data<long>().ToArray(), tokens.select(1, -1).data<long>().ToArray());
        Assert.True(tokens.narrow(1, 0, b.Clean.shape[1]).eq(b.Clean).all().item<bool>());
        var t = Rows(target.to_type(ScalarType.Int64));
        Assert.All(t, row => Assert.Equal(Enumerable.Repeat(0L, row.Length - 1).Append(1L), row));
        Assert.All(Rows(mask), row => Assert.Equal(1L, row[^1]));
        Assert.Equal(task.Tokenizer.VocabSize, task.PadId + 1);
        Assert.StartsWith("<bos>", task.Decode(b.Clean, 0));
        Assert.EndsWith(" to", task.Decode(b.Clean, 0));
    }

    [Fact]
    public void The_same_seed_gives_the_same_batch_and_another_seed_another()
    {
        var task = new IndirectObjectTask();
        using var a = task.Generate(16, seed: 9);
        using var b = task.Generate(16, seed: 9);
        using var c = task.Generate(16, seed: 10);
        Assert.True(a.Clean.shape.SequenceEqual(b.Clean.shape) && a.Clean.eq(b.Clean).all().item<bool>() && a.Abc.eq(b.Abc).all().item<bool>());
        Assert.False(a.Clean.shape.SequenceEqual(c.Clean.shape) && a.Clean.eq(c.Clean).all().item<bool>());
    }

    [Fact]
    public void Bad_settings_fail_with_the_allowed_range()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new IndirectObjectTask(numNames: 2));
        Assert.Contains("three different names", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new IndirectObjectTask(numFillers: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new IndirectObjectTask().Generate(0, seed: 1));
    }
}
