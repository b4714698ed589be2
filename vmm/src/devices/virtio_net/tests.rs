//! The device driven the way a legacy virtio-net driver drives it, over real guest memory.

use super::*;
use crate::memory::GuestRam;

const RX_PFN: u32 = 0x10;
const TX_PFN: u32 = 0x20;
const RX_BUF: u64 = 0x40000;
const TX_BUF: u64 = 0x50000;
const BAR: u16 = DEFAULT_BAR0;

fn write_desc(ram: &mut GuestRam, pfn: u32, i: u16, addr: u64, len: u32, flags: u16) {
    let (desc, _, _) = VirtioNet::ring_addresses(pfn);
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[12..14].copy_from_slice(&flags.to_le_bytes());
    ram.write(desc + 16 * u64::from(i), &d).unwrap();
}

/// Publishes descriptor `head` as available entry `n` of the queue at `pfn`.
fn publish(ram: &mut GuestRam, pfn: u32, n: u16, head: u16) {
    let (_, avail, _) = VirtioNet::ring_addresses(pfn);
    ram.write(avail + 4 + 2 * u64::from(n % QUEUE_SIZE), &head.to_le_bytes()).unwrap();
    ram.write(avail + 2, &(n + 1).to_le_bytes()).unwrap();
}

fn used_entry(ram: &GuestRam, pfn: u32, n: u16) -> (u16, u32, u32) {
    let (_, _, used) = VirtioNet::ring_addresses(pfn);
    let mut idx = [0u8; 2];
    ram.read(used + 2, &mut idx).unwrap();
    let mut e = [0u8; 8];
    ram.read(used + 4 + 8 * u64::from(n), &mut e).unwrap();
    (
        u16::from_le_bytes(idx),
        u32::from_le_bytes(e[..4].try_into().unwrap()),
        u32::from_le_bytes(e[4..].try_into().unwrap()),
    )
}

/// I/O on, reset, both queues set up, DRIVER_OK.
fn set_up(net: &mut VirtioNet) {
    net.config_write(0x04, &[0x05]);
    net.io_write(BAR + reg::STATUS, &[0], 0);
    net.io_write(BAR + reg::STATUS, &[3], 0);
    for (q, pfn) in [(RX_QUEUE, RX_PFN), (TX_QUEUE, TX_PFN)] {
        net.io_write(BAR + reg::QUEUE_SEL, &q.to_le_bytes(), 0);
        let mut num = [0u8; 2];
        net.io_read(BAR + reg::QUEUE_NUM, &mut num);
        assert_eq!(u16::from_le_bytes(num), QUEUE_SIZE);
        net.io_write(BAR + reg::QUEUE_PFN, &pfn.to_le_bytes(), 0);
    }
    net.io_write(BAR + reg::STATUS, &[7], 0);
}

fn test_frame(n: u8) -> Vec<u8> {
    let mut f = mac_for(1).to_vec();
    f.extend_from_slice(&mac_for(0));
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend((0..46).map(|i| n.wrapping_add(i)));
    f
}

#[test]
fn pci_identity_and_mac_are_legacy_virtio_net() {
    let mut net = VirtioNet::new(mac_for(4));
    let mut d = [0u8; 4];
    net.config_read(0, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x1000_1af4);
    net.config_read(0x2c, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x0001_1af4, "subsystem id names the network type");
    net.config_read(0x08, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x0200_0000, "revision 0, class 0x0200");
    net.config_read(0x3c, &mut d);
    assert_eq!(d[..2], [NET_IRQ, 1]);
    net.config_write(0x04, &[0x01]);
    let mut mac = [0u8; 6];
    net.io_read(BAR + reg::CONFIG, &mut mac);
    assert_eq!(mac, [0x52, 0x54, 0x00, 0x74, 0x74, 5]);
    net.io_read(BAR + reg::HOST_FEATURES, &mut d);
    assert_eq!(u32::from_le_bytes(d), 1 << 5, "only VIRTIO_NET_F_MAC");
    assert!(net.claims(BAR + BAR0_SIZE - 1) && !net.claims(BAR + BAR0_SIZE));
}

#[test]
fn a_transmit_leaves_at_the_deadline_without_its_header() {
    let mut ram = GuestRam::new(8 << 20).unwrap();
    let mut net = VirtioNet::new(mac_for(0));
    set_up(&mut net);
    // Header and frame in two descriptors, as a legacy driver without ANY_LAYOUT sends.
    let frame = test_frame(7);
    ram.write(TX_BUF, &[0u8; NET_HDR_LEN]).unwrap();
    ram.write(TX_BUF + 0x100, &frame).unwrap();
    write_desc(&mut ram, TX_PFN, 0, TX_BUF, NET_HDR_LEN as u32, 1);
    let (desc, _, _) = VirtioNet::ring_addresses(TX_PFN);
    ram.write(desc + 14, &1u16.to_le_bytes()).unwrap();
    write_desc(&mut ram, TX_PFN, 1, TX_BUF + 0x100, frame.len() as u32, 0);
    publish(&mut ram, TX_PFN, 0, 0);
    assert!(!net.tx_due(0));
    net.io_write(BAR + reg::QUEUE_NOTIFY, &TX_QUEUE.to_le_bytes(), 1000);
    assert_eq!(net.deadline(), Some(1000 + TX_LATENCY_NS));
    assert!(net.tx_due(1000 + TX_LATENCY_NS));
    let view = ram.vm_memory().unwrap();
    let out = net.transmit(&view.mem);
    drop(view);
    assert_eq!(out.frames, vec![frame]);
    assert_eq!(out.dropped, 0);
    assert_eq!(used_entry(&ram, TX_PFN, 0), (1, 0, 0));
    assert!(net.irq_level());
    assert_eq!(net.deadline(), None);
    let mut isr = [0u8];
    net.io_read(BAR + reg::ISR, &mut isr);
    assert_eq!(isr[0], 1);
    assert!(!net.irq_level(), "reading the ISR lowers INTx");
}

#[test]
fn a_runt_transmit_is_dropped_but_its_buffer_returned() {
    let mut ram = GuestRam::new(8 << 20).unwrap();
    let mut net = VirtioNet::new(mac_for(0));
    set_up(&mut net);
    write_desc(&mut ram, TX_PFN, 0, TX_BUF, (NET_HDR_LEN + 5) as u32, 0);
    publish(&mut ram, TX_PFN, 0, 0);
    net.io_write(BAR + reg::QUEUE_NOTIFY, &TX_QUEUE.to_le_bytes(), 0);
    let view = ram.vm_memory().unwrap();
    let out = net.transmit(&view.mem);
    drop(view);
    assert!(out.frames.is_empty());
    assert_eq!(out.dropped, 1);
    assert_eq!(used_entry(&ram, TX_PFN, 0).0, 1);
}

#[test]
fn a_received_frame_lands_behind_a_zero_header_in_the_next_buffer() {
    let mut ram = GuestRam::new(8 << 20).unwrap();
    let mut net = VirtioNet::new(mac_for(1));
    {
        let view = ram.vm_memory().unwrap();
        assert_eq!(net.receive(&view.mem, &test_frame(1)), Err(RxError::NotReady));
    }
    set_up(&mut net);
    {
        let view = ram.vm_memory().unwrap();
        assert!(!net.rx_ready(&view.mem));
        assert_eq!(net.receive(&view.mem, &test_frame(1)), Err(RxError::NoBuffer));
    }
    ram.write(RX_BUF, &[0xaa; 2048]).unwrap();
    write_desc(&mut ram, RX_PFN, 0, RX_BUF, 2048, 2);
    publish(&mut ram, RX_PFN, 0, 0);
    let frame = test_frame(9);
    let view = ram.vm_memory().unwrap();
    assert!(net.rx_ready(&view.mem));
    let written = net.receive(&view.mem, &frame).unwrap();
    assert!(!net.rx_ready(&view.mem), "the one buffer is used");
    drop(view);
    assert!(written.contains(&(RX_BUF, 2048)));
    let mut got = vec![0u8; NET_HDR_LEN + frame.len() + 1];
    ram.read(RX_BUF, &mut got).unwrap();
    assert_eq!(&got[..NET_HDR_LEN], &[0u8; NET_HDR_LEN]);
    assert_eq!(&got[NET_HDR_LEN..NET_HDR_LEN + frame.len()], &frame[..]);
    assert_eq!(got[NET_HDR_LEN + frame.len()], 0xaa, "nothing written past the frame");
    assert_eq!(used_entry(&ram, RX_PFN, 0), (1, 0, (NET_HDR_LEN + frame.len()) as u32));
    assert!(net.irq_level());
}

#[test]
fn a_frame_longer_than_the_buffer_is_cut() {
    let mut ram = GuestRam::new(8 << 20).unwrap();
    let mut net = VirtioNet::new(mac_for(1));
    set_up(&mut net);
    write_desc(&mut ram, RX_PFN, 0, RX_BUF, 32, 2);
    publish(&mut ram, RX_PFN, 0, 0);
    let view = ram.vm_memory().unwrap();
    net.receive(&view.mem, &test_frame(1)).unwrap();
    drop(view);
    assert_eq!(used_entry(&ram, RX_PFN, 0), (1, 0, 32));
}
