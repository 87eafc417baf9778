//! The start-up fix for glibc's block copies on AMD Zen 3 and Zen 4.
//!
//! On CPUs that announce fast short `rep movsb` (FSRM), glibc 2.36 (Debian 12) copies
//! blocks from 2,112 bytes up (to a bound near the cache's size) with `rep movsb`. On AMD
//! family 0x19 (Zen 3, Zen 4) that instruction drops from 50-90 GB/s to about 3 GB/s when
//! the destination lies 1 to 15 bytes past the source, counted modulo 4 KiB; glibc's
//! vector loops have no such case. A punched TCP link copies each 16 KiB TLS record once
//! in user space on either side (rustls: the plaintext into its record, the decrypted
//! plaintext out of it), and the heap's layout can put every record of a transfer in the
//! slow case: on a Zen 4 (family 0x19, model 0x11) the receiver spent over a third of its
//! core in that one copy, and a bulk transfer ran at 0.6-0.8 of its speed with the vector
//! loops.
//!
//! glibc chooses its copy routine once, when the program starts, from the `GLIBC_TUNABLES`
//! environment variable, so no call made later can change it: [`reexec_with_copy_tunable`]
//! runs the program again, in place (same process, arguments and environment), with
//! `glibc.cpu.x86_rep_movsb_threshold` raised past any copy a program makes, which leaves
//! every size to the vector loops. It does so only on those CPUs, only when the variable does
//! not already set that tunable (a value the user chose is kept), and never for a program
//! started with elevated rights (the loader drops the variable there, so it could not
//! stick). A program that embeds punch and moves bulk data over TCP can call it first
//! thing in `main`, before any thread starts.
//!
//! Hand-written: no crate tunes glibc, and the check is a few CPUID bits.

/// The glibc tunable that sets the smallest copy glibc does with `rep movsb`.
pub const TUNABLE: &str = "glibc.cpu.x86_rep_movsb_threshold";

/// The value given to [`TUNABLE`]: 1 TiB, past any copy (the vector loops take every size
/// below glibc's non-temporal threshold, non-temporal stores the rest).
pub const THRESHOLD: u64 = 1 << 40;

/// What decides the fix: the CPU's vendor, family and fast-short-`rep movsb` flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// `AuthenticAMD`.
    pub amd: bool,
    /// The family, base and extended added as the CPUID documentation says.
    pub family: u32,
    /// FSRM (CPUID leaf 7, EDX bit 4): glibc then copies with `rep movsb` from 2,112 bytes.
    pub fsrm: bool,
}

impl Cpu {
    /// The CPU this runs on (x86-64 only; `None` elsewhere).
    pub fn this() -> Option<Cpu> {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{__cpuid, __cpuid_count};
            let leaf0 = __cpuid(0);
            // "AuthenticAMD", as EBX, EDX, ECX.
            let amd = (leaf0.ebx, leaf0.edx, leaf0.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163);
            let family = family_of(__cpuid(1).eax);
            let fsrm = leaf0.eax >= 7 && __cpuid_count(7, 0).edx & (1 << 4) != 0;
            Some(Cpu { amd, family, fsrm })
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    }

    /// Whether glibc's `rep movsb` copies have the slow case here: AMD family 0x19 with FSRM.
    pub fn needs_fix(&self) -> bool {
        self.amd && self.family == 0x19 && self.fsrm
    }
}

/// The family from CPUID leaf 1's EAX: the base family, plus the extended family when the
/// base is 0xF.
pub fn family_of(eax: u32) -> u32 {
    let base = (eax >> 8) & 0xf;
    if base == 0xf {
        base + ((eax >> 20) & 0xff)
    } else {
        base
    }
}

/// The `GLIBC_TUNABLES` value to run with on `cpu`, given the value the program started
/// with (`current`); `None` when nothing is to change: the CPU has no slow case, or the
/// user set the tunable already.
pub fn tunables_for(cpu: Cpu, current: Option<&str>) -> Option<String> {
    if !cpu.needs_fix() {
        return None;
    }
    let ours = format!("{TUNABLE}={THRESHOLD}");
    match current.map(str::trim) {
        None | Some("") => Some(ours),
        Some(cur) if has_tunable(cur) => None,
        Some(cur) => Some(format!("{cur}:{ours}")),
    }
}

/// Whether the auxiliary vector (`/proc/self/auxv`: native-endian pairs of words, type and
/// value) says the program runs with elevated rights (`AT_SECURE`, type 23, non-zero). A
/// vector that cannot be read counts as secure: then nothing is re-run.
pub fn secure_in(auxv: &[u8]) -> bool {
    const AT_SECURE: usize = 23;
    const WORD: usize = std::mem::size_of::<usize>();
    let mut pairs = auxv.chunks_exact(2 * WORD).map(|p| {
        let word = |b: &[u8]| usize::from_ne_bytes(b.try_into().expect("one word"));
        (word(&p[..WORD]), word(&p[WORD..]))
    });
    match pairs.find(|&(t, _)| t == AT_SECURE || t == 0) {
        Some((AT_SECURE, value)) => value != 0,
        // The list ended (type 0) without AT_SECURE, or was cut short: assume secure.
        _ => true,
    }
}

/// Run this program again, in place, with the copy tunable when [`tunables_for`] asks for it
/// (see the module's documentation). Returns when nothing is to change, or when the program
/// cannot be re-run (then it goes on as it is). Call it before any thread starts.
pub fn reexec_with_copy_tunable() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let Some(cpu) = Cpu::this() else { return };
        let current = match std::env::var("GLIBC_TUNABLES") {
            Ok(v) => Some(v),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => return,
        };
        let Some(tunables) = tunables_for(cpu, current.as_deref()) else {
            return;
        };
        if std::fs::read("/proc/self/auxv").map_or(true, |a| secure_in(&a)) {
            return;
        }
        // The file's own path, not /proc/self/exe: the process keeps its name ("punch",
        // not "exe") in ps, top and pgrep.
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_else(|| exe.clone().into());
        // `exec` returns only on failure; the program then runs on unchanged.
        let _ = std::process::Command::new(exe)
            .arg0(arg0)
            .args(args)
            .env("GLIBC_TUNABLES", tunables)
            .exec();
    }
}

/// `GLIBC_TUNABLES` as this process sees it, when it holds the copy tunable (set by
/// [`reexec_with_copy_tunable`] or by the user): for a line in the log at start. (glibc 2.36
/// cuts the variable's original text short after its first tunable as it parses it, so
/// `/proc/PID/environ` can show less than the process runs with; the C library's own
/// copy, read here, is whole.)
pub fn tunables_in_effect() -> Option<String> {
    let cur = std::env::var("GLIBC_TUNABLES").ok()?;
    has_tunable(&cur).then_some(cur)
}

/// Whether a `GLIBC_TUNABLES` value sets [`TUNABLE`].
fn has_tunable(tunables: &str) -> bool {
    tunables
        .split(':')
        .any(|t| t.split('=').next() == Some(TUNABLE))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZEN4: Cpu = Cpu {
        amd: true,
        family: 0x19,
        fsrm: true,
    };

    #[test]
    fn only_amd_family_0x19_with_fsrm_is_fixed() {
        assert!(ZEN4.needs_fix());
        assert!(!Cpu {
            fsrm: false,
            ..ZEN4
        }
        .needs_fix());
        assert!(!Cpu { amd: false, ..ZEN4 }.needs_fix());
        assert!(!Cpu {
            family: 0x17,
            ..ZEN4
        }
        .needs_fix());
        assert!(!Cpu {
            family: 0x1a,
            ..ZEN4
        }
        .needs_fix());
        assert_eq!(tunables_for(Cpu { amd: false, ..ZEN4 }, None), None);
    }

    #[test]
    fn the_family_adds_the_extended_family_to_base_0xf() {
        // Zen 4 (EPYC 9004): family 0xF + 0xA, model 0x11.
        assert_eq!(family_of(0x00a1_0f11), 0x19);
        // Zen 2: 0xF + 0x8.
        assert_eq!(family_of(0x0083_0f10), 0x17);
        // An Intel family 6 part: the extended family is not added.
        assert_eq!(family_of(0x0009_06ea), 6);
    }

    #[test]
    fn the_tunable_is_added_to_what_the_user_set_and_never_replaces_it() {
        let ours = format!("{TUNABLE}={THRESHOLD}");
        assert_eq!(tunables_for(ZEN4, None), Some(ours.clone()));
        assert_eq!(tunables_for(ZEN4, Some("")), Some(ours.clone()));
        assert_eq!(
            tunables_for(ZEN4, Some("glibc.malloc.tcache_count=7")),
            Some(format!("glibc.malloc.tcache_count=7:{ours}"))
        );
        // The user's own threshold stays, alone or among others.
        assert_eq!(tunables_for(ZEN4, Some(&format!("{TUNABLE}=4096"))), None);
        assert_eq!(
            tunables_for(
                ZEN4,
                Some(&format!("glibc.malloc.tcache_count=7:{TUNABLE}=4096"))
            ),
            None
        );
        // A tunable whose name only starts like ours is another tunable.
        assert_eq!(
            tunables_for(ZEN4, Some("glibc.cpu.x86_rep_movsb_threshold_x=1")),
            Some(format!("glibc.cpu.x86_rep_movsb_threshold_x=1:{ours}"))
        );
    }

    fn auxv(pairs: &[(usize, usize)]) -> Vec<u8> {
        pairs
            .iter()
            .flat_map(|&(t, v)| [t.to_ne_bytes(), v.to_ne_bytes()])
            .flatten()
            .collect()
    }

    #[test]
    fn at_secure_is_read_from_the_auxiliary_vector() {
        assert!(!secure_in(&auxv(&[(6, 4096), (23, 0), (0, 0)])));
        assert!(secure_in(&auxv(&[(6, 4096), (23, 1), (0, 0)])));
        // Missing, cut short or empty: treated as secure, so nothing is re-run.
        assert!(secure_in(&auxv(&[(6, 4096), (0, 0)])));
        assert!(secure_in(&auxv(&[(6, 4096)])[..12]));
        assert!(secure_in(&[]));
        // This test's own process runs without elevated rights.
        let own = std::fs::read("/proc/self/auxv").expect("/proc/self/auxv");
        assert!(!secure_in(&own));
    }
}
