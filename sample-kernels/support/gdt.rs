//! GDT (same selectors as the boot GDT) plus a 64-bit TSS whose IST1 stack is
//! used for double faults, so a kernel stack overflow still prints something.
use core::arch::asm;
use core::mem::size_of;

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const TSS_SEL: u16 = 0x18;

/// The 64-bit task-state segment: the stacks the CPU switches to.
#[repr(C, packed)]
pub struct Tss {
    reserved0: u32,
    /// RSP0-2: the stack for entries from ring 3 (RSP0).
    pub rsp: [u64; 3],
    reserved1: u64,
    /// IST1-7.
    pub ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

impl Tss {
    /// No stacks, no I/O bitmap.
    pub const EMPTY: Tss = Tss {
        reserved0: 0,
        rsp: [0; 3],
        reserved1: 0,
        ist: [0; 7],
        reserved2: 0,
        reserved3: 0,
        iomap_base: size_of::<Tss>() as u16, // no I/O bitmap
    };
}

static mut TSS: Tss = Tss::EMPTY;

static mut GDT: [u64; 5] = [
    0,
    0x00AF_9A00_0000_FFFF, // 0x08: 64-bit code, DPL 0
    0x00CF_9200_0000_FFFF, // 0x10: data
    0,                     // 0x18: TSS (low), filled in init()
    0,                     // 0x20: TSS (high)
];

#[repr(C, packed)]
struct DescPtr {
    limit: u16,
    base: u64,
}

extern "C" {
    static ttvm_df_stack_top: u8;
}

pub fn init() {
    unsafe {
        TSS.ist[0] = &raw const ttvm_df_stack_top as u64;
        let base = &raw const TSS as u64;
        let limit = (size_of::<Tss>() - 1) as u64;
        GDT[3] = (limit & 0xFFFF)
            | (base & 0xFF_FFFF) << 16
            | 0x89 << 40 // present, available 64-bit TSS
            | ((limit >> 16) & 0xF) << 48
            | ((base >> 24) & 0xFF) << 56;
        GDT[4] = base >> 32;
        let ptr = DescPtr { limit: (size_of::<[u64; 5]>() - 1) as u16, base: &raw const GDT as u64 };
        asm!(
            "lgdt [{ptr}]",
            // Reload CS with a far return, then the data segments.
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:e}",
            "mov es, {ds:e}",
            "mov ss, {ds:e}",
            "mov fs, {ds:e}",
            "mov gs, {ds:e}",
            "ltr {tss:x}",
            ptr = in(reg) &ptr,
            cs = const KERNEL_CS as u64,
            ds = in(reg) KERNEL_DS as u32,
            tss = in(reg) TSS_SEL,
            tmp = out(reg) _,
        );
    }
}
