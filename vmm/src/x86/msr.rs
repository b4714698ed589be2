//! The model-specific registers ttvm names, in one place: their numbers, and which of them
//! a checkpoint saves.

/// IA32_TIME_STAMP_COUNTER: not part of the saved vCPU state (recordings virtualise time;
/// a free-run snapshot saves it apart).
pub const TSC: u32 = 0x10;
/// IA32_SYSENTER_CS.
pub const SYSENTER_CS: u32 = 0x174;
/// IA32_SYSENTER_ESP.
pub const SYSENTER_ESP: u32 = 0x175;
/// IA32_SYSENTER_EIP.
pub const SYSENTER_EIP: u32 = 0x176;
/// IA32_MISC_ENABLE.
pub const MISC_ENABLE: u32 = 0x1a0;
/// IA32_PAT.
pub const PAT: u32 = 0x277;
/// IA32_MTRR_DEF_TYPE.
pub const MTRR_DEF_TYPE: u32 = 0x2ff;
/// STAR: SYSCALL/SYSRET segment selectors.
pub const STAR: u32 = 0xc000_0081;
/// LSTAR: the 64-bit SYSCALL entry point.
pub const LSTAR: u32 = 0xc000_0082;
/// CSTAR: the compatibility-mode SYSCALL entry point.
pub const CSTAR: u32 = 0xc000_0083;
/// SFMASK: the RFLAGS bits SYSCALL clears.
pub const SFMASK: u32 = 0xc000_0084;
/// KERNEL_GS_BASE: the GS base SWAPGS swaps in.
pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
/// TSC_AUX: what RDTSCP returns in ECX.
pub const TSC_AUX: u32 = 0xc000_0103;

/// MSRs a kernel uses that are not already part of `kvm_sregs`; saved in checkpoints when
/// the host's KVM knows them.
pub const STATE_MSRS: &[u32] = &[
    SYSENTER_CS,
    SYSENTER_ESP,
    SYSENTER_EIP,
    MISC_ENABLE,
    PAT,
    MTRR_DEF_TYPE,
    STAR,
    LSTAR,
    CSTAR,
    SFMASK,
    KERNEL_GS_BASE,
    TSC_AUX,
];
