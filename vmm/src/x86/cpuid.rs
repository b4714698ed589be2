//! The fixed CPUID model every guest sees.
//!
//! Everything is fixed: feature bits come from a whitelist the host must support, and
//! family/model/stepping, brand string, cache and address-size leaves are constants. The
//! vendor is one choice ([`CpuVendor`]): kernels other than Linux see a vendor-neutral CPU
//! (`ttvm-neutral`), so one trace replays on AMD and Intel hosts alike; Linux sees the
//! host's vendor, because it takes vendor-specific paths (errata MSRs, mitigations, the
//! SYSCALL/SYSENTER rules of KVM's emulator follow the guest's vendor) that the host's KVM
//! only accepts for its own vendor. The undefined flags that once made a trace depend on
//! the vendor are canonicalised by the exact engine (`undefined_flags`). The trace stores
//! the whole table and replay refuses a host whose table differs.
//!
//! KVM_SET_CPUID2 is not the whole story: on PVM hosts the guest's CPUID returns the host's
//! feature leaves (1 ECX/EDX, 7, 0xD) whatever the table says, so the exact engine answers
//! CPUID itself from this table ([`CpuidModel::query`]): recorded and replayed guests see
//! exactly the model on every host. The free engine (`ttvm run`) cannot intercept CPUID.
//!
//! Hidden on purpose: KVM paravirt leaves (0x4000_0000..), kvmclock, x2APIC, the local APIC
//! itself (there is no in-kernel APIC; interrupts come from the userspace 8259A), the TSC
//! deadline timer, PMU, MONITOR/MWAIT, XSAVE/AVX and everything above the SSE2 baseline
//! (the reference hosts' KVM cannot run it in ring 0), CX16 (same reason) and RDTSCP (its
//! TSC_AUX MSR cannot be written on hosts without it). RDRAND and RDSEED are offered even
//! where the host lacks them because both engines emulate them.

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_MAX_CPUID_ENTRIES};
use serde::{Deserialize, Serialize};

use crate::kvm::KvmSystem;

/// Name of the model; bump it when the whitelist or what the guest sees of it changes
/// (v3: the exact engine answers CPUID from the table itself, see [`CpuidModel::query`]).
pub const CPUID_MODEL_NAME: &str = "ttvm-x86-64-v3";

/// The vendor string a guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuVendor {
    /// The host's own (Linux guests).
    Host,
    /// `ttvm-neutral`: the same CPU on every host (every other kernel).
    Neutral,
}

/// CPUID.0 EBX, EDX, ECX of the vendor-neutral model: "ttvm-neutral".
pub const NEUTRAL_VENDOR: [u32; 3] =
    [u32::from_le_bytes(*b"ttvm"), u32::from_le_bytes(*b"-neu"), u32::from_le_bytes(*b"tral")];

/// Errors building the CPUID model.
#[derive(Debug, thiserror::Error)]
pub enum CpuidError {
    /// KVM_GET_SUPPORTED_CPUID failed.
    #[error("cannot read the host's supported CPUID: {0}")]
    Supported(kvm_ioctls::Error),
    /// The host lacks a whitelisted feature.
    #[error("this host's CPU lacks features the {CPUID_MODEL_NAME} CPUID model requires: {0}")]
    MissingFeatures(String),
    /// The table could not be converted for KVM.
    #[error("cannot build the CPUID table: {0}")]
    Build(String),
}

/// One CPUID leaf as presented to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuidLeaf {
    /// EAX input.
    pub function: u32,
    /// ECX input (subleaf), meaningful when `indexed`.
    pub index: u32,
    /// Whether the leaf depends on ECX.
    pub indexed: bool,
    /// Outputs.
    pub eax: u32,
    /// Outputs.
    pub ebx: u32,
    /// Outputs.
    pub ecx: u32,
    /// Outputs.
    pub edx: u32,
}

/// The complete CPUID table given to the guest, serialisable into a trace header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuidModel {
    /// Whitelist name ([`CPUID_MODEL_NAME`]).
    pub name: String,
    /// The leaves, sorted by (function, index).
    pub leaves: Vec<CpuidLeaf>,
}

// The whitelist is the x86-64 baseline that the reference hosts' KVM (PVM, which emulates
// ring-0 code) offers: SSE2 without SSE3, no XSAVE/AVX. Anything above it would be code the
// hosts cannot run.
// Leaf 1 EDX: fpu vme de pse tsc msr pae mce cx8 sep pge cmov pat pse36 clflush mmx fxsr sse sse2.
const L1_EDX: u32 = (1 << 0)
    | (1 << 1)
    | (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 11)
    | (1 << 13)
    | (1 << 15)
    | (1 << 16)
    | (1 << 17)
    | (1 << 19)
    | (1 << 23)
    | (1 << 24)
    | (1 << 25)
    | (1 << 26);
// Leaf 1 ECX: nothing beyond the RDRAND and hypervisor bits below. CX16 is left out:
// the reference hosts' ring-0 emulator cannot execute LOCK CMPXCHG16B (Linux's SLUB
// allocator uses it when offered).
const L1_ECX: u32 = 0;
/// Leaf 1 ECX bit 30: RDRAND. Offered although the hosts lack it: the exact engine
/// emulates RDRAND itself (and logs the value), so recorded guests can always use it.
const L1_ECX_RDRAND: u32 = 1 << 30;
/// Leaf 1 ECX bit 31: running under a hypervisor. Set so guests don't assume bare metal.
const L1_ECX_HYPERVISOR: u32 = 1 << 31;
// Leaf 7.0 EBX: clflushopt.
const L7_EBX: u32 = 1 << 23;
/// Leaf 7.0 EBX bit 18: RDSEED, emulated by the exact engine like RDRAND.
const L7_EBX_RDSEED: u32 = 1 << 18;
// 0x8000_0001 EDX: syscall nx lm.
const E1_EDX: u32 = (1 << 11) | (1 << 20) | (1 << 29);
// 0x8000_0001 ECX: lahf_lm prefetchw.
const E1_ECX: u32 = (1 << 0) | (1 << 8);

/// Highest basic and extended leaves of the model.
const MAX_BASIC_LEAF: u32 = 0xd;
const MAX_EXT_LEAF: u32 = 0x8000_0008;
/// Brand string (CPUID 0x8000_0002..4 holds 48 bytes, NUL padded).
const BRAND: &str = "ttvm virtual CPU (ttvm-x86-64-v3)";

fn feature_names(leaf: &str, missing: u32) -> String {
    (0..32).filter(|b| missing & (1 << b) != 0).map(|b| format!("{leaf} bit {b}")).collect::<Vec<_>>().join(", ")
}

impl CpuidModel {
    /// Builds the model for this host, with the vendor `vendor` chooses.
    pub fn for_host(kvm: &KvmSystem, vendor: CpuVendor) -> Result<Self, CpuidError> {
        let supported = kvm.kvm().get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(CpuidError::Supported)?;
        Self::from_supported(supported.as_slice(), vendor)
    }

    /// Builds the model from a host's supported-CPUID list (separate for testing).
    pub fn from_supported(host: &[kvm_cpuid_entry2], vendor: CpuVendor) -> Result<Self, CpuidError> {
        let find = |f: u32, i: u32| host.iter().find(|e| e.function == f && e.index == i).copied();
        let zero = kvm_cpuid_entry2::default();
        let mut missing = Vec::new();
        let mut require = |name: &str, have: u32, want: u32| {
            if have & want != want {
                missing.push(feature_names(name, want & !have));
            }
        };
        let l0 = find(0, 0).unwrap_or(zero);
        let l1 = find(1, 0).unwrap_or(zero);
        require("CPUID.1:EDX", l1.edx, L1_EDX);
        require("CPUID.1:ECX", l1.ecx, L1_ECX);
        if find(7, 0).is_some() || L7_EBX != 0 {
            require("CPUID.7.0:EBX", find(7, 0).unwrap_or(zero).ebx, L7_EBX);
        }
        let e1 = find(0x8000_0001, 0).unwrap_or(zero);
        require("CPUID.0x80000001:EDX", e1.edx, E1_EDX);
        require("CPUID.0x80000001:ECX", e1.ecx, E1_ECX);
        if !missing.is_empty() {
            return Err(CpuidError::MissingFeatures(missing.join(", ")));
        }
        Ok(Self::for_vendor(match vendor {
            CpuVendor::Host => [l0.ebx, l0.edx, l0.ecx],
            CpuVendor::Neutral => NEUTRAL_VENDOR,
        }))
    }

    /// Which vendor choice made this table (a recorded table: replay builds the same).
    pub fn vendor_choice(&self) -> CpuVendor {
        match self.leaf(0, 0) {
            Some(l) if [l.ebx, l.edx, l.ecx] == NEUTRAL_VENDOR => CpuVendor::Neutral,
            _ => CpuVendor::Host,
        }
    }

    /// The model for a CPU of `vendor` (CPUID.0 EBX, EDX, ECX). Everything but the vendor
    /// is fixed, so every host of that vendor presents the same CPU.
    pub fn for_vendor(vendor: [u32; 3]) -> Self {
        let mut leaves = Vec::new();
        let mut push = |function: u32, index: u32, indexed: bool, r: [u32; 4]| {
            leaves.push(CpuidLeaf { function, index, indexed, eax: r[0], ebx: r[1], ecx: r[2], edx: r[3] })
        };
        let amd = vendor == [0x6874_7541, 0x6974_6e65, 0x444d_4163];
        // Family/model/stepping: a fixed identity keeps family-specific guest code paths the
        // same on every host. AMD: family 1Ah model 02h, as the reference hosts (Linux's
        // family 17h errata paths write MSRs these hosts' KVM refuses and hang the boot).
        // Intel and the neutral vendor: family 6 model 8Fh.
        let signature = if amd { 0x00b0_0f21 } else { 0x0008_06f8 };
        push(0, 0, false, [MAX_BASIC_LEAF, vendor[0], vendor[2], vendor[1]]);
        // EBX: CLFLUSH line 8 qwords, one logical CPU, APIC id 0.
        push(1, 0, false, [signature, (8 << 8) | (1 << 16), L1_ECX | L1_ECX_RDRAND | L1_ECX_HYPERVISOR, L1_EDX]);
        for f in 2..=6u32 {
            push(f, 0, f == 4, [0; 4]);
        }
        push(7, 0, true, [0, L7_EBX | L7_EBX_RDSEED, 0, 0]);
        for f in 8..=0xcu32 {
            push(f, 0, f == 0xb, [0; 4]);
        }
        // No XSAVE in the model: the guest uses FXSAVE, and checkpoints stay small.
        push(0xd, 0, true, [0; 4]);

        push(0x8000_0000, 0, false, [MAX_EXT_LEAF, vendor[0], vendor[2], vendor[1]]);
        push(0x8000_0001, 0, false, [signature, 0, E1_ECX, E1_EDX]);
        let mut brand = [0u8; 48];
        brand[..BRAND.len()].copy_from_slice(BRAND.as_bytes());
        for (i, chunk) in brand.chunks(16).enumerate() {
            let w = |k: usize| u32::from_le_bytes([chunk[k], chunk[k + 1], chunk[k + 2], chunk[k + 3]]);
            push(0x8000_0002 + i as u32, 0, false, [w(0), w(4), w(8), w(12)]);
        }
        push(0x8000_0005, 0, false, [0; 4]);
        push(0x8000_0006, 0, false, [0; 4]);
        // Invariant TSC: the guest TSC is derived from guest time by the engine.
        push(0x8000_0007, 0, false, [0, 0, 0, 1 << 8]);
        // 40-bit physical, 48-bit virtual addresses: below every x86-64 host's limits.
        push(0x8000_0008, 0, false, [0x3028, 0, 0, 0]);
        leaves.sort_by_key(|l| (l.function, l.index));
        Self { name: CPUID_MODEL_NAME.to_string(), leaves }
    }

    /// The table in KVM's format.
    pub fn to_kvm(&self) -> Result<CpuId, CpuidError> {
        let entries: Vec<kvm_cpuid_entry2> = self
            .leaves
            .iter()
            .map(|l| kvm_cpuid_entry2 {
                function: l.function,
                index: l.index,
                flags: if l.indexed { kvm_bindings::KVM_CPUID_FLAG_SIGNIFCANT_INDEX } else { 0 },
                eax: l.eax,
                ebx: l.ebx,
                ecx: l.ecx,
                edx: l.edx,
                ..Default::default()
            })
            .collect();
        CpuId::from_entries(&entries).map_err(|e| CpuidError::Build(format!("{e:?}")))
    }

    /// The leaf for `function`/`index`, if present.
    pub fn leaf(&self, function: u32, index: u32) -> Option<&CpuidLeaf> {
        self.leaves.iter().find(|l| l.function == function && (!l.indexed || l.index == index))
    }

    /// What CPUID with EAX = `function`, ECX = `index` returns under the model: the leaf's
    /// registers, or zeros for a leaf the model does not have (AMD's behaviour for leaves
    /// past the maximum; the same on every vendor here, so the answer is the table alone).
    pub fn query(&self, function: u32, index: u32) -> [u32; 4] {
        self.leaf(function, index).map_or([0; 4], |l| [l.eax, l.ebx, l.ecx, l.edx])
    }

    /// The 12-byte vendor string.
    pub fn vendor(&self) -> String {
        let l = self.leaf(0, 0).copied().unwrap_or(CpuidLeaf {
            function: 0,
            index: 0,
            indexed: false,
            eax: 0,
            ebx: 0,
            ecx: 0,
            edx: 0,
        });
        let mut b = Vec::with_capacity(12);
        for r in [l.ebx, l.edx, l.ecx] {
            b.extend_from_slice(&r.to_le_bytes());
        }
        String::from_utf8_lossy(&b).into_owned()
    }

    /// A human-readable list of the leaves that differ from `other`, empty when equal.
    pub fn differences(&self, other: &CpuidModel) -> Vec<String> {
        let mut out = Vec::new();
        if self.name != other.name {
            out.push(format!("model {} vs {}", self.name, other.name));
        }
        for l in &self.leaves {
            match other.leaves.iter().find(|o| o.function == l.function && o.index == l.index) {
                Some(o) if o == l => {}
                Some(o) => out.push(format!(
                    "leaf {:#x}.{}: {:08x} {:08x} {:08x} {:08x} vs {:08x} {:08x} {:08x} {:08x}",
                    l.function, l.index, l.eax, l.ebx, l.ecx, l.edx, o.eax, o.ebx, o.ecx, o.edx
                )),
                None => out.push(format!("leaf {:#x}.{} missing", l.function, l.index)),
            }
        }
        for o in &other.leaves {
            if !self.leaves.iter().any(|l| l.function == o.function && l.index == o.index) {
                out.push(format!("leaf {:#x}.{} extra", o.function, o.index));
            }
        }
        out
    }
}

impl crate::error_kind::Classify for CpuidError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        crate::error_kind::ErrorKind::Host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32, r: [u32; 4]) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 { function, index, eax: r[0], ebx: r[1], ecx: r[2], edx: r[3], ..Default::default() }
    }

    fn rich_host() -> Vec<kvm_cpuid_entry2> {
        vec![
            entry(0, 0, [0x10, 0x6874_7541, 0x444d_4163, 0x6974_6e65]),
            entry(1, 0, [0xa10f11, 0x0010_0800, 0xffff_ffff, 0xffff_ffff]),
            entry(7, 0, [0, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff]),
            entry(0xd, 0, [0xe7, 0x988, 0x988, 0]),
            entry(0xd, 1, [0xf, 0, 0, 0]),
            entry(0xd, 2, [256, 576, 0, 0]),
            entry(0x4000_0000, 0, [0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x4d]),
            entry(0x8000_0000, 0, [0x8000_0021, 0, 0, 0]),
            entry(0x8000_0001, 0, [0, 0, 0xffff_ffff, 0xffff_ffff]),
            entry(0x8000_0008, 0, [0x3030, 0xffff, 0, 0]),
        ]
    }

    #[test]
    fn hides_paravirt_x2apic_and_apic() {
        let m = CpuidModel::from_supported(&rich_host(), CpuVendor::Host).unwrap();
        assert!(m.leaves.iter().all(|l| l.function < 0x4000_0000 || l.function >= 0x8000_0000));
        let l1 = m.leaf(1, 0).unwrap();
        assert_eq!(l1.ecx & (1 << 21), 0, "x2apic must be hidden");
        assert_eq!(l1.edx & (1 << 9), 0, "apic must be hidden");
        assert_eq!(l1.ecx & (1 << 24), 0, "tsc deadline must be hidden");
        assert_ne!(l1.ecx & L1_ECX_HYPERVISOR, 0);
        assert_eq!(m.leaf(0xd, 0).unwrap().eax, 0, "no XSAVE in the model");
        assert_eq!(m.query(1, 0)[2] & (1 << 26), 0, "no XSAVE bit");
        assert_eq!(m.query(0xd, 2), [0; 4], "subleaves the model lacks are zeros");
        assert_eq!(m.query(0x4000_0000, 0), [0; 4], "no hypervisor leaves");
        assert_eq!(m.query(0, 0)[0], 0xd, "maximum basic leaf");
        assert_eq!(m.leaf(7, 0).unwrap().ebx, L7_EBX | L7_EBX_RDSEED, "feature bits come from the whitelist");
        assert_eq!(m.vendor(), "AuthenticAMD");
    }

    #[test]
    fn identity_is_fixed_across_hosts_of_a_vendor() {
        let a = CpuidModel::from_supported(&rich_host(), CpuVendor::Host).unwrap();
        let mut other = rich_host();
        other[1].eax = 0x00a2_0f12; // another family/model/stepping
        other[8].eax = 0x3934; // 52-bit physical addresses
        let b = CpuidModel::from_supported(&other, CpuVendor::Host).unwrap();
        assert!(a.differences(&b).is_empty(), "{:?}", a.differences(&b));
        assert_eq!(a.leaf(0x8000_0008, 0).unwrap().eax, 0x3028);
        assert_eq!(a.leaf(1, 0).unwrap().eax, 0x00b0_0f21, "AMD family 1Ah model 02h");
    }

    #[test]
    fn same_features_on_hosts_with_different_extras() {
        let a = CpuidModel::from_supported(&rich_host(), CpuVendor::Host).unwrap();
        let mut other = rich_host();
        other[2] = entry(7, 0, [0, L7_EBX | (1 << 16), 0, 0]); // host with AVX-512F only extra
        let b = CpuidModel::from_supported(&other, CpuVendor::Host).unwrap();
        assert!(a.differences(&b).is_empty());
    }

    #[test]
    fn reports_missing_features_by_name() {
        let mut host = rich_host();
        host[1] = entry(1, 0, [0, 0, 0, L1_EDX & !(1 << 26)]); // no SSE2
        let e = CpuidModel::from_supported(&host, CpuVendor::Host).unwrap_err().to_string();
        assert!(e.contains("CPUID.1:EDX bit 26"), "{e}");
    }

    #[test]
    fn differences_name_the_leaf() {
        let a = CpuidModel::from_supported(&rich_host(), CpuVendor::Host).unwrap();
        let mut host = rich_host();
        host[0] = entry(0, 0, [0x10, 0x756e_6547, 0x6c65_746e, 0x4965_6e69]);
        let b = CpuidModel::from_supported(&host, CpuVendor::Host).unwrap();
        let d = a.differences(&b);
        assert!(d[0].starts_with("leaf 0x0.0"), "{d:?}");
        assert!(
            d.iter().all(|l| ["leaf 0x0.0", "leaf 0x1.0", "leaf 0x80000000.0", "leaf 0x80000001.0"]
                .iter()
                .any(|p| l.starts_with(p))),
            "{d:?}"
        );
    }

    #[test]
    fn the_neutral_model_is_the_same_on_every_vendor() {
        let amd = CpuidModel::from_supported(&rich_host(), CpuVendor::Neutral).unwrap();
        let mut intel = rich_host();
        intel[0] = entry(0, 0, [0x10, 0x756e_6547, 0x6c65_746e, 0x4965_6e69]);
        intel[1].eax = 0x000a_06a6;
        let intel = CpuidModel::from_supported(&intel, CpuVendor::Neutral).unwrap();
        assert!(amd.differences(&intel).is_empty(), "{:?}", amd.differences(&intel));
        assert_eq!(amd.vendor(), "ttvm-neutral");
        assert_eq!(amd.vendor_choice(), CpuVendor::Neutral);
        assert_eq!(CpuidModel::from_supported(&rich_host(), CpuVendor::Host).unwrap().vendor_choice(), CpuVendor::Host);
        // The neutral model still requires the whitelist of the host.
        let mut poor = rich_host();
        poor[1] = entry(1, 0, [0, 0, 0, L1_EDX & !(1 << 26)]);
        assert!(CpuidModel::from_supported(&poor, CpuVendor::Neutral).is_err());
    }
}
