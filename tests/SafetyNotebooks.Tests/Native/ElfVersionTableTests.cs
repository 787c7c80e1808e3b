using System.Text;
using SafetyNotebooks.Native;

namespace SafetyNotebooks.Tests.Native;

/// <summary>
/// Tests the ELF version-needs reader/editor on a minimal ELF64 file built here byte by byte from
/// the ELF specification (section headers, .dynstr, .gnu.version_r), so the expected values are
/// known independently of the code under test.
/// </summary>
public class ElfVersionTableTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("sn-elf-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    /// <summary>
    /// Builds an ELF64 LE file with a .dynstr and a .gnu.version_r holding one Verneed for
    /// libstdc++.so.6 with the given (version, flags) Vernaux entries. Returns the path and the
    /// byte offset of each entry's vna_flags.
    /// </summary>
    public static (string Path, long[] FlagOffsets) BuildElf(string dir, params (string Version, ushort Flags)[] needs)
    {
        var strtab = new MemoryStream();
        strtab.WriteByte(0);
        int AddStr(string s) { int at = (int)strtab.Length; var b = Encoding.ASCII.GetBytes(s); strtab.Write(b); strtab.WriteByte(0); return at; }
        int fileName = AddStr("libstdc++.so.6");
        var names = needs.Select(n => AddStr(n.Version)).ToArray();
        byte[] dynstr = strtab.ToArray();

        const int ehdr = 64;
        int dynstrOff = ehdr;
        int verneedOff = dynstrOff + dynstr.Length;
        verneedOff += (8 - verneedOff % 8) % 8;
        int verneedSize = 16 + 16 * needs.Length;
        int shoff = verneedOff + verneedSize;
        shoff += (8 - shoff % 8) % 8;
        int shnum = 3; // null, .dynstr, .gnu.version_r
        var file = new byte[shoff + shnum * 64];
        // ELF header
        file[0] = 0x7f; file[1] = (byte)'E'; file[2] = (byte)'L'; file[3] = (byte)'F'; file[4] = 2; file[5] = 1; file[6] = 1;
        BitConverter.GetBytes((ulong)shoff).CopyTo(file, 0x28);
        BitConverter.GetBytes((ushort)64).CopyTo(file, 0x3A);
        BitConverter.GetBytes((ushort)shnum).CopyTo(file, 0x3C);
        dynstr.CopyTo(file, dynstrOff);
        // Verneed: vn_version=1, vn_cnt, vn_file, vn_aux=16, vn_next=0
        BitConverter.GetBytes((ushort)1).CopyTo(file, verneedOff);
        BitConverter.GetBytes((ushort)needs.Length).CopyTo(file, verneedOff + 2);
        BitConverter.GetBytes((uint)fileName).CopyTo(file, verneedOff + 4);
        BitConverter.GetBytes(16u).CopyTo(file, verneedOff + 8);
        var flagOffsets = new long[needs.Length];
        for (int i = 0; i < needs.Length; i++)
        {
            int aux = verneedOff + 16 + 16 * i;
            BitConverter.GetBytes(0x12345u + (uint)i).CopyTo(file, aux);         // vna_hash
            BitConverter.GetBytes(needs[i].Flags).CopyTo(file, aux + 4);         // vna_flags
            BitConverter.GetBytes((ushort)(2 + i)).CopyTo(file, aux + 6);        // vna_other
            BitConverter.GetBytes((uint)names[i]).CopyTo(file, aux + 8);         // vna_name
            BitConverter.GetBytes(i == needs.Length - 1 ? 0u : 16u).CopyTo(file, aux + 12); // vna_next
            flagOffsets[i] = aux + 4;
        }
        // Section 1: .dynstr (SHT_STRTAB=3)
        int sh1 = shoff + 64;
        BitConverter.GetBytes(3u).CopyTo(file, sh1 + 4);
        BitConverter.GetBytes((ulong)dynstrOff).CopyTo(file, sh1 + 24);
        BitConverter.GetBytes((ulong)dynstr.Length).CopyTo(file, sh1 + 32);
        // Section 2: .gnu.version_r (SHT_GNU_verneed=0x6ffffffe), sh_link=1, sh_info=1 entry
        int sh2 = shoff + 128;
        BitConverter.GetBytes(0x6ffffffeu).CopyTo(file, sh2 + 4);
        BitConverter.GetBytes((ulong)verneedOff).CopyTo(file, sh2 + 24);
        BitConverter.GetBytes((ulong)verneedSize).CopyTo(file, sh2 + 32);
        BitConverter.GetBytes(1u).CopyTo(file, sh2 + 40);
        BitConverter.GetBytes(1u).CopyTo(file, sh2 + 44);
        var path = System.IO.Path.Combine(dir, "libLibTorchSharp.so");
        File.WriteAllBytes(path, file);
        return (path, flagOffsets);
    }

    static string FakeLibStdCxx(string dir, params string[] versions)
    {
        var path = Path.Combine(dir, "libstdc++.so.6");
        var bytes = new List<byte> { 0x7f, (byte)'E', (byte)'L', (byte)'F', 0 };
        foreach (var v in versions) { bytes.AddRange(Encoding.ASCII.GetBytes(v)); bytes.Add(0); }
        File.WriteAllBytes(path, bytes.ToArray());
        return path;
    }

    [Fact]
    public void Reads_every_version_need_with_its_file_flags_and_offset()
    {
        var (path, offsets) = BuildElf(_dir, ("GLIBCXX_3.4.30", 0), ("GLIBCXX_3.4.32", 0), ("CXXABI_1.3.13", 2));
        var needs = ElfVersionTable.ReadNeeds(path);
        Assert.Equal(new[] { "GLIBCXX_3.4.30", "GLIBCXX_3.4.32", "CXXABI_1.3.13" }, needs.Select(n => n.Version));
        Assert.All(needs, n => Assert.Equal("libstdc++.so.6", n.File));
        Assert.Equal(new[] { false, false, true }, needs.Select(n => n.IsWeak));
        Assert.Equal(offsets, needs.Select(n => n.FlagsOffset));
    }

    [Fact]
    public void Mark_weak_sets_only_the_weak_bit_of_only_that_entry()
    {
        var (path, offsets) = BuildElf(_dir, ("GLIBCXX_3.4.30", 0), ("GLIBCXX_3.4.32", 0x1));
        var before = File.ReadAllBytes(path);
        Assert.True(ElfVersionTable.MarkWeak(path, "GLIBCXX_3.4.32"));
        var after = File.ReadAllBytes(path);
        var changed = Enumerable.Range(0, before.Length).Where(i => before[i] != after[i]).ToArray();
        Assert.Equal(new[] { (int)offsets[1] }, changed);          // one byte: the low byte of vna_flags
        Assert.Equal(0x1 | 0x2, after[offsets[1]]);                  // VER_FLG_BASE kept, VER_FLG_WEAK added
        Assert.False(ElfVersionTable.MarkWeak(path, "GLIBCXX_3.4.32")); // idempotent
        Assert.Equal(after, File.ReadAllBytes(path));
    }

    [Fact]
    public void Apply_is_not_needed_when_the_system_provides_the_version()
    {
        var (path, _) = BuildElf(_dir, ("GLIBCXX_3.4.32", 0));
        var std = FakeLibStdCxx(_dir, "GLIBCXX_3.4.30", "GLIBCXX_3.4.32", "CXXABI_1.3.13");
        Assert.Equal(NativeFixOutcome.NotNeeded, TorchSharpNativeFix.Apply(path, std, out _));
        Assert.False(ElfVersionTable.ReadNeeds(path)[0].IsWeak);
    }

    [Fact]
    public void Apply_weakens_the_one_known_safe_version_then_reports_already_applied()
    {
        var (path, _) = BuildElf(_dir, ("GLIBCXX_3.4.30", 0), ("GLIBCXX_3.4.32", 0));
        var std = FakeLibStdCxx(_dir, "GLIBCXX_3.4.29", "GLIBCXX_3.4.30");
        Assert.Equal(NativeFixOutcome.Applied, TorchSharpNativeFix.Apply(path, std, out var msg));
        Assert.Contains("GLIBCXX_3.4.32", msg);
        Assert.True(ElfVersionTable.ReadNeeds(path)[1].IsWeak);
        Assert.False(ElfVersionTable.ReadNeeds(path)[0].IsWeak);
        Assert.Equal(NativeFixOutcome.AlreadyApplied, TorchSharpNativeFix.Apply(path, std, out _));
    }

    [Fact]
    public void Apply_refuses_when_another_version_is_missing_and_names_the_fix()
    {
        var (path, _) = BuildElf(_dir, ("GLIBCXX_3.4.31", 0), ("GLIBCXX_3.4.32", 0));
        var std = FakeLibStdCxx(_dir, "GLIBCXX_3.4.30");
        Assert.Equal(NativeFixOutcome.CannotApply, TorchSharpNativeFix.Apply(path, std, out var msg));
        Assert.Contains("GLIBCXX_3.4.31", msg);
        Assert.Contains("libstdc++", msg);
        Assert.All(ElfVersionTable.ReadNeeds(path), n => Assert.False(n.IsWeak)); // nothing half-done
    }

    [Fact]
    public void Truncated_or_foreign_files_give_a_clear_error()
    {
        var (path, _) = BuildElf(_dir, ("GLIBCXX_3.4.32", 0));
        var bytes = File.ReadAllBytes(path);
        var truncated = Path.Combine(_dir, "trunc.so");
        File.WriteAllBytes(truncated, bytes[..100]);
        var e1 = Assert.Throws<InvalidDataException>(() => ElfVersionTable.ReadNeeds(truncated));
        Assert.Contains("truncated", e1.Message);
        var text = Path.Combine(_dir, "text.so");
        File.WriteAllText(text, "this is not an ELF file at all, just some text padding it out to 64 bytes.");
        var e2 = Assert.Throws<InvalidDataException>(() => ElfVersionTable.ReadNeeds(text));
        Assert.Contains("not an ELF file", e2.Message);
    }

    [Fact]
    public void The_shipped_TorchSharp_library_needs_glibcxx3432_and_loads_here()
    {
        // The real file from the NuGet cache: the need exists (that is the Debian 12 problem) and,
        // on a system without GLIBCXX_3.4.32, the build must have marked it weak.
        var lib = SafetyNotebooks.Runtime.TorchRuntime.CandidateNativeFolders()
            .Select(f => Path.Combine(f, "libLibTorchSharp.so")).First(File.Exists);
        var need = Assert.Single(ElfVersionTable.ReadNeeds(lib), n => n.Version == "GLIBCXX_3.4.32");
        var std = TorchSharpNativeFix.FindSystemLibStdCxx();
        if (std != null && !TorchSharpNativeFix.ProvidedGlibcxxVersions(std).Contains("GLIBCXX_3.4.32"))
            Assert.True(need.IsWeak, $"{lib} still has a strict GLIBCXX_3.4.32 need although {std} lacks it");
        SafetyNotebooks.Runtime.TorchRuntime.EnsureLoaded();
        using var t = TorchSharp.torch.tensor(new float[] { 1, 2, 3 });
        Assert.Equal(6f, t.sum().item<float>());
    }
}
