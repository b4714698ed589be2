//! One virtio-blk request: a 16-byte header the device reads, data, and a status byte the
//! device writes last (`struct virtio_blk_outhdr`, legacy framing).

use std::io::{Read, Write};

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::DescriptorChain;
use vm_memory::GuestMemoryMmap;

use super::Completion;
use crate::disk::{DiskBackend, SECTOR_SIZE};

/// Largest data part of one request (Linux sends at most `seg_max` pages).
const MAX_REQUEST_BYTES: usize = 4 << 20;
/// The serial number GET_ID returns (NUL-padded to 20 bytes).
const DEVICE_ID: &[u8] = b"ttvm-disk";

/// Which way a disk access went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskOpKind {
    /// The guest read sectors (T_IN).
    Read,
    /// The guest wrote sectors (T_OUT).
    Write,
}

/// A disk access a completion did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskOp {
    /// Read or write.
    pub kind: DiskOpKind,
    /// First sector.
    pub sector: u64,
    /// The bytes read or written (whole sectors).
    pub data: Vec<u8>,
}

/// Does the request in `chain`; returns the used length (bytes written to the guest).
pub(super) fn process(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    capacity: u64,
    backend: &mut dyn DiskBackend,
    done: &mut Completion,
) -> u32 {
    for d in chain.clone().writable() {
        done.written.push((d.addr().0, u64::from(d.len())));
    }
    let (Ok(mut reader), Ok(mut writer)) = (chain.clone().reader(mem), chain.writer(mem)) else {
        return 0;
    };
    // The status byte is the last writable byte; without one the request cannot be answered.
    let Some(data_room) = writer.available_bytes().checked_sub(1) else { return 0 };
    let Ok(mut status_writer) = writer.split_at(data_room) else { return 0 };
    let status = match read_header(&mut reader) {
        None => VIRTIO_BLK_S_IOERR,
        Some((kind, sector)) => match kind {
            VIRTIO_BLK_T_IN => read_sectors(sector, data_room, capacity, backend, &mut writer, done),
            VIRTIO_BLK_T_OUT => write_sectors(sector, capacity, backend, &mut reader, done),
            VIRTIO_BLK_T_FLUSH => VIRTIO_BLK_S_OK,
            VIRTIO_BLK_T_GET_ID => {
                let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
                id[..DEVICE_ID.len()].copy_from_slice(DEVICE_ID);
                let n = id.len().min(data_room);
                if writer.write_all(&id[..n]).is_ok() {
                    VIRTIO_BLK_S_OK
                } else {
                    VIRTIO_BLK_S_IOERR
                }
            }
            _ => VIRTIO_BLK_S_UNSUPP,
        },
    };
    let _ = status_writer.write_all(&[status as u8]);
    (writer.bytes_written() + status_writer.bytes_written()) as u32
}

/// The request's type and first sector (`struct virtio_blk_outhdr`: type, reserved, sector).
fn read_header(reader: &mut impl Read) -> Option<(u32, u64)> {
    let mut header = [0u8; 16];
    reader.read_exact(&mut header).ok()?;
    let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let mut sector = [0u8; 8];
    sector.copy_from_slice(&header[8..16]);
    Some((kind, u64::from_le_bytes(sector)))
}

/// The access the request in `chain` would make, found without doing it or writing
/// anything: `(kind, first sector, sectors)`, or `None` for a request that reads or writes
/// no sector (or would fail before touching the disk).
pub(super) fn peek(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    capacity: u64,
) -> Option<(DiskOpKind, u64, u64)> {
    let (mut reader, writer) = (chain.clone().reader(mem).ok()?, chain.writer(mem).ok()?);
    let data_room = writer.available_bytes().checked_sub(1)?;
    let (kind, sector) = read_header(&mut reader)?;
    let (kind, len) = match kind {
        VIRTIO_BLK_T_IN => (DiskOpKind::Read, data_room),
        VIRTIO_BLK_T_OUT => (DiskOpKind::Write, reader.available_bytes()),
        _ => return None,
    };
    in_bounds(sector, len, capacity).then_some((kind, sector, (len / SECTOR_SIZE) as u64))
}

/// Whether `len` bytes from `sector` are whole sectors inside the disk.
fn in_bounds(sector: u64, len: usize, capacity: u64) -> bool {
    len.is_multiple_of(SECTOR_SIZE)
        && len <= MAX_REQUEST_BYTES
        && sector.checked_add((len / SECTOR_SIZE) as u64).is_some_and(|end| end <= capacity)
}

fn read_sectors(
    sector: u64,
    len: usize,
    capacity: u64,
    backend: &mut dyn DiskBackend,
    writer: &mut impl Write,
    done: &mut Completion,
) -> u32 {
    if !in_bounds(sector, len, capacity) {
        return VIRTIO_BLK_S_IOERR;
    }
    let mut data = vec![0u8; len];
    if let Err(e) = backend.read(sector, &mut data) {
        done.errors.push(e);
        return VIRTIO_BLK_S_IOERR;
    }
    if writer.write_all(&data).is_err() {
        return VIRTIO_BLK_S_IOERR;
    }
    done.ops.push(DiskOp { kind: DiskOpKind::Read, sector, data });
    VIRTIO_BLK_S_OK
}

fn write_sectors(
    sector: u64,
    capacity: u64,
    backend: &mut dyn DiskBackend,
    reader: &mut virtio_queue::Reader<'_, ()>,
    done: &mut Completion,
) -> u32 {
    let len = reader.available_bytes();
    if !in_bounds(sector, len, capacity) {
        return VIRTIO_BLK_S_IOERR;
    }
    let mut data = vec![0u8; len];
    if reader.read_exact(&mut data).is_err() {
        return VIRTIO_BLK_S_IOERR;
    }
    if let Err(e) = backend.write(sector, &data) {
        done.errors.push(e);
        return VIRTIO_BLK_S_IOERR;
    }
    done.ops.push(DiskOp { kind: DiskOpKind::Write, sector, data });
    VIRTIO_BLK_S_OK
}
