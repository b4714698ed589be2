//! What the host CPU is, and what it leaves in the flags the architecture leaves undefined.
//!
//! Both go into every trace header (format 3 on) so that a trace says where it was made,
//! and into divergence reports of older traces, whose replay still depends on the
//! recording CPU's undefined flags. The probe runs the instruction classes of
//! [`crate::undefined_flags`] natively in ttvm's own process, over fixed operands and from
//! two initial flag states (all six set, all clear), and keeps only the undefined bits: the
//! guest's ring-0 code runs on the same silicon (natively, or through KVM's emulator, which
//! executes the same instructions on the host), so this is what a guest would see. It takes
//! microseconds.

use std::arch::asm;
use std::arch::x86_64::__cpuid;
use std::sync::OnceLock;

use crate::undefined_flags::{AF, ARITHMETIC, CF, OF, PF, SF, ZF};

/// "AuthenticAMD family 25 model 17 stepping 1 (AMD EPYC 9R14 96-Core Processor)".
pub fn describe() -> String {
    let l0 = __cpuid(0);
    let mut vendor = Vec::with_capacity(12);
    for r in [l0.ebx, l0.edx, l0.ecx] {
        vendor.extend_from_slice(&r.to_le_bytes());
    }
    let sig = __cpuid(1).eax;
    let base_family = (sig >> 8) & 0xf;
    let family = if base_family == 0xf { base_family + ((sig >> 20) & 0xff) } else { base_family };
    let model = if base_family == 0x6 || base_family == 0xf {
        ((sig >> 12) & 0xf0) | ((sig >> 4) & 0xf)
    } else {
        (sig >> 4) & 0xf
    };
    let stepping = sig & 0xf;
    format!(
        "{} family {family} model {model} stepping {stepping} ({})",
        String::from_utf8_lossy(&vendor),
        brand().unwrap_or_else(|| "no brand string".into())
    )
}

fn brand() -> Option<String> {
    if __cpuid(0x8000_0000).eax < 0x8000_0004 {
        return None;
    }
    let mut b = Vec::with_capacity(48);
    for leaf in 0x8000_0002..=0x8000_0004u32 {
        let r = __cpuid(leaf);
        for w in [r.eax, r.ebx, r.ecx, r.edx] {
            b.extend_from_slice(&w.to_le_bytes());
        }
    }
    Some(String::from_utf8_lossy(&b).trim_matches(['\0', ' ']).to_string())
}

include!("flag_probe_classes.rs");

/// This host's undefined-flags profile: `class=hex` per class, the hex a digest of the
/// undefined bits over every operand pair and both initial states. Two CPUs with the same
/// profile leave the same undefined flags for these operands. Measured once per process.
pub fn undefined_flags_profile() -> &'static str {
    static PROFILE: OnceLock<String> = OnceLock::new();
    PROFILE.get_or_init(|| {
        let mut parts = vec!["flags/2".to_string()];
        for (name, mask, run) in classes() {
            let mut seen = Vec::new();
            for init in [ARITHMETIC, 0] {
                for (a, b) in OPERANDS {
                    seen.push((run(init, a, b) & mask) as u16);
                }
            }
            let bytes: Vec<u8> = seen.iter().flat_map(|v| v.to_le_bytes()).collect();
            parts.push(format!("{name}={:04x}", xxhash_rust::xxh3::xxh3_64(&bytes) & 0xffff));
        }
        parts.join(" ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_stable_and_well_formed() {
        let p = undefined_flags_profile();
        assert!(p.starts_with("flags/2 imul="), "{p}");
        assert_eq!(p.split(' ').count(), 12, "{p}");
        // Defined flags really are what the SDM says, so the asm ran what it claims:
        // imul 3*5 leaves CF = OF = 0; and of 3 & 5 = 1 clears CF and OF, ZF = 0.
        assert_eq!(flags_after!("imul rax, rcx", 0u64, 3u64, 5u64, 0u64) & (CF | OF), 0);
        assert_eq!(flags_after!("imul rax, rcx", 0u64, u64::MAX >> 1, 4u64, 0u64) & (CF | OF), CF | OF);
        assert_eq!(flags_after!("and rax, rcx", ARITHMETIC, 2u64, 1u64, 0u64) & (ZF | CF | OF), ZF);
    }

    #[test]
    fn describes_the_host() {
        let d = describe();
        assert!(d.contains(" family ") && d.contains(" model ") && d.contains(" stepping "), "{d}");
    }
}
