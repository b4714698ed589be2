//! Where a legacy virtio queue lives and how it becomes rust-vmm's `Queue`, shared by
//! virtio-blk and virtio-net: the legacy transport names a queue only by its page frame
//! number, and the ring's parts follow at fixed offsets (`vring_init` with 4 KiB alignment).

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;

/// Legacy queues are page-aligned: the PFN is the ring's address >> 12.
const PFN_SHIFT: u32 = 12;

/// The descriptor table, available ring and used ring of a `size`-entry queue at `pfn`.
pub(crate) fn ring_addresses(pfn: u32, size: u16) -> (u64, u64, u64) {
    let desc = u64::from(pfn) << PFN_SHIFT;
    let avail = desc + 16 * u64::from(size);
    let used = (avail + 6 + 2 * u64::from(size) + 4095) & !4095;
    (desc, avail, used)
}

/// The `size`-entry queue at `pfn` with the device's ring positions, ready for use (the
/// caller decides whether the driver has set it up, and checks it against guest memory
/// where it must).
pub(crate) fn queue(pfn: u32, size: u16, next_avail: u16, next_used: u16) -> Option<Queue> {
    let (desc, avail, used) = ring_addresses(pfn, size);
    let mut q = Queue::new(size).ok()?;
    q.try_set_desc_table_address(GuestAddress(desc)).ok()?;
    q.try_set_avail_ring_address(GuestAddress(avail)).ok()?;
    q.try_set_used_ring_address(GuestAddress(used)).ok()?;
    q.set_next_avail(next_avail);
    q.set_next_used(next_used);
    q.set_ready(true);
    Some(q)
}
