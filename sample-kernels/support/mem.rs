//! mem* functions (there is no libc) and a bump allocator for the RAM above
//! the kernel image.
use crate::boot::HvmStartInfo;
use core::arch::asm;

// `rep movs/stos` rather than loops: the compiler would turn a byte loop back
// into a call to memcpy/memset.

#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    asm!(
        "rep movsq",
        "mov ecx, {tail:e}",
        "rep movsb",
        tail = in(reg) n & 7,
        inout("rcx") n >> 3 => _,
        inout("rdi") dst => _,
        inout("rsi") src => _,
        options(nostack, preserves_flags)
    );
    dst
}

#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // dst before src, or no overlap: a forward copy is safe.
        return memcpy(dst, src, n);
    }
    // Overlap with dst after src: copy backwards (DF=1), then restore DF=0.
    asm!(
        "std",
        "rep movsb",
        "cld",
        inout("rcx") n => _,
        inout("rdi") dst.add(n).wrapping_sub(1) => _,
        inout("rsi") src.add(n).wrapping_sub(1) => _,
        options(nostack)
    );
    dst
}

#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    let b = c as u8 as u64 * 0x0101_0101_0101_0101;
    asm!(
        "rep stosq",
        "mov ecx, {tail:e}",
        "rep stosb",
        tail = in(reg) n & 7,
        inout("rcx") n >> 3 => _,
        inout("rdi") dst => _,
        in("rax") b,
        options(nostack, preserves_flags)
    );
    dst
}

#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        let (x, y) = (*a.add(i), *b.add(i));
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    memcmp(a, b, n)
}

// ---- free memory ------------------------------------------------------------

extern "C" {
    static __kernel_end: u8;
}

/// Used when the loader gives no memory map: QEMU and ttvm give far more.
const FALLBACK_RAM_END: u64 = 32 << 20;

static mut NEXT: u64 = 0;
static mut END: u64 = 0;

pub(crate) fn init(info: &'static HvmStartInfo) {
    let start = &raw const __kernel_end as u64;
    let mut end = FALLBACK_RAM_END;
    for e in info.memmap() {
        if e.kind == 1 && e.addr <= start && start < e.addr + e.size {
            end = e.addr + e.size;
        }
    }
    // Stay below 4 GiB: that is all the boot page tables map.
    unsafe {
        NEXT = start;
        END = end.min(4 << 30);
    }
}

/// Bytes of RAM still available to [`alloc`].
pub fn available() -> u64 {
    unsafe { END - NEXT }
}

/// Carves `size` bytes (aligned to `align`, a power of two) from the RAM above
/// the kernel. Never freed. Not zeroed: callers initialise what they use (and
/// zeroing megabytes would cost a single-step per `rep` iteration).
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    crate::cpu::without_interrupts(|| unsafe {
        let p = (NEXT + align as u64 - 1) & !(align as u64 - 1);
        if p + size as u64 > END {
            panic!("out of memory: want {} bytes, {} left", size, END.saturating_sub(p));
        }
        NEXT = p + size as u64;
        p as *mut u8
    })
}
