// TorchSharp 0.107's libLibTorchSharp.so was linked against GCC 13's libstdc++ and records a need
// for the symbol version GLIBCXX_3.4.32, which Debian 12 / Ubuntu 22.04 do not provide (they stop at
// 3.4.30). Only one symbol carries that version (_ZSt21ios_base_library_initv, referenced to pull in
// iostream initialisation; nothing relocates against it), so marking that version need as weak
// (VER_FLG_WEAK in .gnu.version_r) lets the dynamic loader accept the file.
//
// This one file is compiled twice: into the MSBuild inline task that patches the NuGet cache during
// build, and into the library (SAFETYNOTEBOOKS_LIBRARY defined) for runtime checks, the doctor and
// tests. No package on NuGet edits ELF version tables, so it is written here; it is small and
// bounds-checked everywhere.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;

namespace SafetyNotebooks.Native
{
    /// <summary>One entry of an ELF file's version-needs table (.gnu.version_r).</summary>
    public sealed class ElfVersionNeed
    {
        public string File = "";
        public string Version = "";
        public ushort Flags;
        /// <summary>Byte offset of the entry's vna_flags field in the file.</summary>
        public long FlagsOffset;
        public bool IsWeak => (Flags & ElfVersionTable.VerFlgWeak) != 0;
    }

    /// <summary>Reads and edits the version-needs table of a 64-bit little-endian ELF shared object.</summary>
    public static class ElfVersionTable
    {
        public const ushort VerFlgWeak = 0x2;
        const uint ShtGnuVerneed = 0x6ffffffe;

        /// <summary>Lists the version needs (library file, version name, flags) of an ELF64 LE file.</summary>
        public static List<ElfVersionNeed> ReadNeeds(string path)
        {
            byte[] data = System.IO.File.ReadAllBytes(path);
            return ReadNeeds(data, path);
        }

        public static List<ElfVersionNeed> ReadNeeds(byte[] d, string nameForErrors)
        {
            if (d.Length < 64 || d[0] != 0x7f || d[1] != (byte)'E' || d[2] != (byte)'L' || d[3] != (byte)'F')
                throw new InvalidDataException($"{nameForErrors} is not an ELF file.");
            if (d[4] != 2 || d[5] != 1)
                throw new InvalidDataException($"{nameForErrors} is not a 64-bit little-endian ELF file.");
            long shoff = (long)U64(d, 0x28, nameForErrors);
            int shentsize = U16(d, 0x3A, nameForErrors);
            int shnum = U16(d, 0x3C, nameForErrors);
            var result = new List<ElfVersionNeed>();
            for (int i = 0; i < shnum; i++)
            {
                long sh = shoff + (long)i * shentsize;
                if (U32(d, sh + 4, nameForErrors) != ShtGnuVerneed) continue;
                long off = (long)U64(d, sh + 24, nameForErrors);
                uint link = U32(d, sh + 40, nameForErrors);
                uint count = U32(d, sh + 44, nameForErrors);
                long strSh = shoff + (long)link * shentsize;
                long strOff = (long)U64(d, strSh + 24, nameForErrors);
                long strSize = (long)U64(d, strSh + 32, nameForErrors);
                long vn = off;
                for (uint n = 0; n < count && n < 4096; n++)
                {
                    int cnt = U16(d, vn + 2, nameForErrors);
                    string file = Str(d, strOff, strSize, U32(d, vn + 4, nameForErrors), nameForErrors);
                    long aux = vn + U32(d, vn + 8, nameForErrors);
                    for (int a = 0; a < cnt && a < 4096; a++)
                    {
                        result.Add(new ElfVersionNeed
                        {
                            File = file,
                            Flags = U16(d, aux + 4, nameForErrors),
                            FlagsOffset = aux + 4,
                            Version = Str(d, strOff, strSize, U32(d, aux + 8, nameForErrors), nameForErrors),
                        });
                        uint nextAux = U32(d, aux + 12, nameForErrors);
                        if (nextAux == 0) break;
                        aux += nextAux;
                    }
                    uint next = U32(d, vn + 12, nameForErrors);
                    if (next == 0) break;
                    vn += next;
                }
            }
            return result;
        }

        /// <summary>Sets VER_FLG_WEAK on the need for <paramref name="version"/>; returns true if the file changed.</summary>
        public static bool MarkWeak(string path, string version)
        {
            var need = ReadNeeds(path).FirstOrDefault(n => n.Version == version);
            if (need == null || need.IsWeak) return false;
            using (var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read))
            {
                fs.Position = need.FlagsOffset;
                ushort flags = (ushort)(need.Flags | VerFlgWeak);
                fs.WriteByte((byte)(flags & 0xff));
                fs.WriteByte((byte)(flags >> 8));
            }
            return true;
        }

        static ushort U16(byte[] d, long o, string n) { Check(d, o, 2, n); return (ushort)(d[o] | d[o + 1] << 8); }
        static uint U32(byte[] d, long o, string n) { Check(d, o, 4, n); return BitConverter.ToUInt32(d, (int)o); }
        static ulong U64(byte[] d, long o, string n) { Check(d, o, 8, n); return BitConverter.ToUInt64(d, (int)o); }
        static void Check(byte[] d, long o, int len, string n)
        {
            if (o < 0 || o + len > d.Length) throw new InvalidDataException($"{n}: ELF structure points outside the file (offset {o}); the file is truncated or corrupt.");
        }
        static string Str(byte[] d, long strOff, long strSize, uint idx, string n)
        {
            long start = strOff + idx;
            if (idx >= strSize) throw new InvalidDataException($"{n}: string index {idx} outside the string table.");
            long end = start;
            while (end < d.Length && end < strOff + strSize && d[end] != 0) end++;
            return Encoding.ASCII.GetString(d, (int)start, (int)(end - start));
        }
    }

    /// <summary>What the native fix found or did for one file.</summary>
    public enum NativeFixOutcome { NotNeeded, AlreadyApplied, Applied, CannotApply }

    /// <summary>Decides whether libLibTorchSharp.so needs the weak-version fix on this system and applies it.</summary>
    public static class TorchSharpNativeFix
    {
        /// <summary>The only version need that is known to be safe to weaken (see the file header).</summary>
        public const string WeakableVersion = "GLIBCXX_3.4.32";

        static readonly string[] LibStdCxxDirs =
        {
            "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib",
            "/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu",
        };

        /// <summary>Path of the system's libstdc++.so.6, or null.</summary>
        public static string? FindSystemLibStdCxx()
        {
            foreach (var dir in LibStdCxxDirs)
            {
                var p = Path.Combine(dir, "libstdc++.so.6");
                if (System.IO.File.Exists(p)) return p;
            }
            return null;
        }

        /// <summary>The GLIBCXX_* and CXXABI_* version names a libstdc++ defines (read from its bytes).</summary>
        public static HashSet<string> ProvidedGlibcxxVersions(string libStdCxxPath)
        {
            var text = Encoding.ASCII.GetString(System.IO.File.ReadAllBytes(libStdCxxPath));
            var set = new HashSet<string>();
            foreach (var prefix in new[] { "GLIBCXX_", "CXXABI_" })
            {
                int i = 0;
                while ((i = text.IndexOf(prefix, i, StringComparison.Ordinal)) >= 0)
                {
                    int j = i + prefix.Length;
                    while (j < text.Length && (char.IsDigit(text[j]) || text[j] == '.')) j++;
                    if (j > i + prefix.Length && j < text.Length && text[j] == '\0') set.Add(text.Substring(i, j - i));
                    i = j;
                }
            }
            return set;
        }

        /// <summary>
        /// Checks <paramref name="libTorchSharpPath"/> against the system libstdc++ and weakens the one
        /// known-safe missing version. <paramref name="message"/> explains the outcome.
        /// </summary>
        public static NativeFixOutcome Apply(string libTorchSharpPath, string? libStdCxxPath, out string message)
        {
            if (!System.IO.File.Exists(libTorchSharpPath))
            {
                message = $"{libTorchSharpPath} does not exist.";
                return NativeFixOutcome.CannotApply;
            }
            if (libStdCxxPath == null || !System.IO.File.Exists(libStdCxxPath))
            {
                message = "No system libstdc++.so.6 found; nothing to compare against, leaving TorchSharp as shipped.";
                return NativeFixOutcome.NotNeeded;
            }
            var provided = ProvidedGlibcxxVersions(libStdCxxPath);
            var needs = ElfVersionTable.ReadNeeds(libTorchSharpPath)
                .Where(n => n.File.StartsWith("libstdc++", StringComparison.Ordinal) && !provided.Contains(n.Version))
                .ToList();
            var strict = needs.Where(n => !n.IsWeak).ToList();
            if (needs.Count == 0)
            {
                message = $"{libStdCxxPath} provides every GLIBCXX version TorchSharp needs.";
                return NativeFixOutcome.NotNeeded;
            }
            if (strict.Count == 0)
            {
                message = $"{WeakableVersion} need already marked weak in {libTorchSharpPath}.";
                return NativeFixOutcome.AlreadyApplied;
            }
            var unsafeNeeds = strict.Where(n => n.Version != WeakableVersion).Select(n => n.Version).ToList();
            if (unsafeNeeds.Count > 0)
            {
                message = $"The system libstdc++ ({libStdCxxPath}) lacks {string.Join(", ", unsafeNeeds)}, which TorchSharp needs " +
                          "and which cannot safely be weakened. Fix: install a newer libstdc++ (GCC 13 or later), e.g. " +
                          "'apt-get install -t bookworm-backports libstdc++6' or use Debian 13 / Ubuntu 24.04.";
                return NativeFixOutcome.CannotApply;
            }
            try
            {
                ElfVersionTable.MarkWeak(libTorchSharpPath, WeakableVersion);
            }
            catch (Exception e) when (e is UnauthorizedAccessException || e is IOException)
            {
                message = $"Cannot write {libTorchSharpPath} ({e.Message}). Fix: make it writable (or run once as its owner) " +
                          "and rebuild, e.g. 'chmod u+w \"" + libTorchSharpPath + "\" && dotnet build'.";
                return NativeFixOutcome.CannotApply;
            }
            bool ok = ElfVersionTable.ReadNeeds(libTorchSharpPath).Any(n => n.Version == WeakableVersion && n.IsWeak);
            message = ok ? $"Marked {WeakableVersion} weak in {libTorchSharpPath} (system libstdc++ stops earlier)."
                         : $"Writing the weak flag into {libTorchSharpPath} did not take effect.";
            return ok ? NativeFixOutcome.Applied : NativeFixOutcome.CannotApply;
        }
    }

#if !SAFETYNOTEBOOKS_LIBRARY
    /// <summary>MSBuild task: applies the fix to every given libLibTorchSharp.so that exists.</summary>
    public class PatchTorchSharpNative : Microsoft.Build.Utilities.Task
    {
        public string[] Files { get; set; } = Array.Empty<string>();

        public override bool Execute()
        {
            string? libstd = TorchSharpNativeFix.FindSystemLibStdCxx();
            bool ok = true;
            foreach (var f in Files.Distinct())
            {
                if (!System.IO.File.Exists(f)) continue;
                var outcome = TorchSharpNativeFix.Apply(f, libstd, out var msg);
                switch (outcome)
                {
                    case NativeFixOutcome.Applied:
                        Log.LogMessage(Microsoft.Build.Framework.MessageImportance.High, "SafetyNotebooks native fix: " + msg);
                        break;
                    case NativeFixOutcome.CannotApply:
                        Log.LogError("SafetyNotebooks native fix: TorchSharp's native library will not load here. " + msg);
                        ok = false;
                        break;
                    default:
                        Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low, "SafetyNotebooks native fix: " + msg);
                        break;
                }
            }
            return ok;
        }
    }
#endif
}
