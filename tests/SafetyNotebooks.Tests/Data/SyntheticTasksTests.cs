using SafetyNotebooks.Data;
using SafetyNotebooks.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace SafetyNotebooks.Tests.Data;

public class SyntheticTasksTests
{
    public SyntheticTasksTests() => TorchRuntime.EnsureLoaded();

    static long[][] Rows(Tensor t)
    {
        var flat = t.data<long>().ToArray();
        int w = (int)t.shape[1];
        return Enumerable.Range(0, (int)t.shape[0]).Select(r => flat[(r * w)..((r + 1) * w)]).ToArray();
    }
    static bool[] Flat(Tensor mask) => mask.data<bool>().ToArray();

    public static IEnumerable<object[]> AllTasks() => new[]
    {
        new object[] { new InductionTask(10, 5) },
        new object[] { new ModularAdditionTask(7) },
        new object[] { new BalancedBracketsTask(8) },
        new object[] { new SequenceTransformTask(SequenceTransform.Copy, 6, 4) },
        new object[] { new SequenceTransformTask(SequenceTransform.Reverse, 6, 4) },
        new object[] { new SequenceTransformTask(SequenceTransform.Sort, 6, 4) },
    };

    [Theory, MemberData(nameof(AllTasks))]
    public void Same_seed_identical_data_different_seed_different(ISyntheticTask task)
    {
        using var a = task.Generate(32, seed: 123);
        using var b = task.Generate(32, seed: 123);
        using var c = task.Generate(32, seed: 124);
        Assert.Equal(a.Tokens.data<long>().ToArray(), b.Tokens.data<long>().ToArray());
        Assert.Equal(Flat(a.TargetMask), Flat(b.TargetMask));
        Assert.NotEqual(a.Tokens.data<long>().ToArray(), c.Tokens.data<long>().ToArray());
        Assert.Equal(new long[] { 32, task.SequenceLength }, a.Tokens.shape);
        Assert.Equal(ScalarType.Int64, a.Tokens.dtype);
        var ids = a.Tokens.data<long>().ToArray();
        Assert.All(ids, id => Assert.InRange(id, 0, task.Tokenizer.VocabSize - 1));
    }

    [Fact]
    public void Induction_second_half_repeats_first_mask_worked_by_hand()
    {
        var task = new InductionTask(vocabSize: 10, seqLen: 3);
        using var b = task.Generate(4, seed: 1);
        foreach (var row in Rows(b.Tokens))
        {
            Assert.Equal(7, row.Length);
            Assert.Equal(10, row[0]); // <bos> = id 10
            Assert.Equal(row[1..4], row[4..7]);
            Assert.All(row[1..], t => Assert.InRange(t, 0, 9));
        }
        // width 7 = bos + 3 + 3; targets are positions 5 and 6 (repeated half minus its first token)
        var expected = new[] { false, false, false, false, false, true, true };
        Assert.Equal(Enumerable.Repeat(expected, 4).SelectMany(x => x).ToArray(), Flat(b.TargetMask));
    }

    [Fact]
    public void Repeated_tokens_gpt2_vocab_never_uses_bos_in_body()
    {
        using var t = SyntheticTasks.RepeatedTokens(batch: 8, seqLen: 50, vocabSize: 50257, bosTokenId: 50256, seed: 0);
        Assert.Equal(new long[] { 8, 101 }, t.shape);
        foreach (var row in Rows(t))
        {
            Assert.Equal(50256, row[0]);
            Assert.DoesNotContain(50256L, row[1..]);
            Assert.Equal(row[1..51], row[51..]);
        }
    }

    [Fact]
    public void Modular_addition_answer_is_sum_mod_p()
    {
        var task = new ModularAdditionTask(7);
        using var b = task.Generate(50, seed: 3);
        var labels = b.Labels!.data<long>().ToArray();
        var rows = Rows(b.Tokens);
        for (int i = 0; i < rows.Length; i++)
        {
            var r = rows[i];
            Assert.Equal(7, r[2]); // '='
            Assert.Equal((r[0] + r[1]) % 7, r[3]);
            Assert.Equal(r[3], labels[i]);
        }
        Assert.Equal(Enumerable.Repeat(new[] { false, false, false, true }, 50).SelectMany(x => x).ToArray(), Flat(b.TargetMask));
        Assert.Equal("3 5 = 1", task.Tokenizer.Decode(new[] { 3, 5, 7, 1 }));
    }

    [Fact]
    public void Modular_addition_all_pairs_split_partitions_all_pairs()
    {
        var task = new ModularAdditionTask(5);
        var (train, test) = task.AllPairsSplit(0.8, seed: 0);
        using (train) using (test)
        {
            Assert.Equal(20, train.Tokens.shape[0]);
            Assert.Equal(5, test.Tokens.shape[0]);
            var pairs = Rows(train.Tokens).Concat(Rows(test.Tokens)).Select(r => (r[0], r[1])).ToHashSet();
            Assert.Equal(25, pairs.Count);
        }
    }

    // Independent reference: repeatedly delete "()" until nothing changes; balanced iff empty.
    static bool BalancedByDeletion(string s)
    {
        string prev;
        do { prev = s; s = s.Replace("()", ""); } while (s != prev);
        return s.Length == 0;
    }

    [Fact]
    public void Brackets_labels_match_independent_checker()
    {
        var task = new BalancedBracketsTask(10);
        using var b = task.Generate(400, seed: 9);
        var labels = b.Labels!.data<long>().ToArray();
        var rows = Rows(b.Tokens);
        int balanced = 0, equalCountUnbalanced = 0;
        for (int i = 0; i < rows.Length; i++)
        {
            var r = rows[i];
            Assert.Equal(13, r.Length);
            Assert.Equal(2, r[0]);   // <bos>
            Assert.Equal(3, r[11]);  // =
            var s = new string(r[1..11].Select(t => t switch { 0 => '(', 1 => ')', _ => throw new Exception("bad") }).ToArray());
            bool expected = BalancedByDeletion(s);
            Assert.Equal(expected ? 1 : 0, labels[i]);
            Assert.Equal(expected ? 5 : 4, r[12]); // T / F
            if (expected) balanced++;
            else if (s.Count(c => c == '(') == 5) equalCountUnbalanced++;
        }
        Assert.InRange(balanced, 150, 250);          // about half
        Assert.True(equalCountUnbalanced > 50);     // the hard negatives are present
    }

    [Theory]
    [InlineData(SequenceTransform.Copy)]
    [InlineData(SequenceTransform.Reverse)]
    [InlineData(SequenceTransform.Sort)]
    public void Sequence_transforms_output_worked_out(SequenceTransform kind)
    {
        var task = new SequenceTransformTask(kind, numValues: 5, length: 4);
        using var b = task.Generate(20, seed: 5);
        foreach (var r in Rows(b.Tokens))
        {
            Assert.Equal(5, r[0]); // <bos>
            Assert.Equal(6, r[5]); // |
            var x = r[1..5]; var y = r[6..10];
            for (int i = 0; i < 4; i++)
            {
                long want = kind switch
                {
                    SequenceTransform.Copy => x[i],
                    SequenceTransform.Reverse => x[3 - i],
                    _ => SortedAt(x, i),
                };
                Assert.Equal(want, y[i]);
            }
        }
        var expectedMask = new[] { false, false, false, false, false, false, true, true, true, true };
        Assert.Equal(Enumerable.Repeat(expectedMask, 20).SelectMany(z => z).ToArray(), Flat(b.TargetMask));
    }

    // i-th smallest by counting: the value v such that #(<v) <= i < #(<=v).
    static long SortedAt(long[] x, int i) => x.First(v => x.Count(u => u < v) <= i && i < x.Count(u => u <= v));

    [Fact]
    public void Metrics_hand_worked_loss_and_accuracy()
    {
        // p = 3, vocab 4; one row [1, 2, =, 0]. Logits are zero except position 2 gives token 1 a logit of 1.
        var task = new ModularAdditionTask(3);
        using var batch = new TaskBatch(tensor(new long[] { 1, 2, 3, 0 }).reshape(1, 4),
            tensor(new[] { false, false, false, true }).reshape(1, 4));
        using var logits = zeros(1, 4, 4);
        logits[0, 2, 1] = tensor(1f);
        var m = task.Metrics(logits, batch);
        Assert.Equal(Math.Log(Math.E + 3), m["loss"], 5);  // -log(e^0 / (e^1 + 3·e^0))
        Assert.Equal(0.0, m["accuracy"]);
        logits[0, 2, 0] = tensor(2f);                        // now argmax is the right answer, 0
        m = task.Metrics(logits, batch);
        Assert.Equal(Math.Log(Math.Exp(2) + Math.E + 2) - 2, m["loss"], 5);
        Assert.Equal(1.0, m["accuracy"]);
    }

    [Fact]
    public void Sequence_metrics_hand_worked()
    {
        // copy task, length 2, values 0..2 (<bos>=3, |=4). Rows: [3,0,1,4,0,1] and [3,2,2,4,2,2].
        var task = new SequenceTransformTask(SequenceTransform.Copy, 3, 2);
        using var batch = new TaskBatch(tensor(new long[] { 3, 0, 1, 4, 0, 1, 3, 2, 2, 4, 2, 2 }).reshape(2, 6),
            tensor(new[] { false, false, false, false, true, true, false, false, false, false, true, true }).reshape(2, 6));
        using var logits = zeros(2, 6, 5);
        // Row 0 predicts both outputs right (positions 3, 4 predict tokens 4, 5); row 1 gets one of two right.
        logits[0, 3, 0] = tensor(5f); logits[0, 4, 1] = tensor(5f);
        logits[1, 3, 2] = tensor(5f); logits[1, 4, 0] = tensor(5f);
        var m = task.Metrics(logits, batch);
        Assert.Equal(0.75, m["accuracy"], 10);
        Assert.Equal(0.5, m["sequence_accuracy"], 10);
    }
}

public class TokenWindowsTests
{
    [Fact]
    public void Windows_are_contiguous_slices_and_seeded()
    {
        TorchRuntime.EnsureLoaded();
        var ids = Enumerable.Range(100, 50).ToArray(); // 100..149, so a window starting at s is s+100, s+101, …
        using var a = TokenWindows.Sample(ids, 6, 5, new Random(4));
        using var b = TokenWindows.Sample(ids, 6, 5, new Random(4));
        Assert.Equal(a.data<long>().ToArray(), b.data<long>().ToArray());
        var flat = a.data<long>().ToArray();
        for (int r = 0; r < 6; r++)
        {
            long first = flat[r * 5];
            Assert.InRange(first, 100, 145);
            for (int i = 0; i < 5; i++) Assert.Equal(first + i, flat[r * 5 + i]);
        }
        Assert.Throws<ArgumentException>(() => TokenWindows.Sample(ids[..3], 1, 5, new Random(0)));
    }
}
