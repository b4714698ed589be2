//! Machine snapshots for the free-running engine: `ttvm run --save-state FILE` writes one
//! when the run is stopped (timeout or Ctrl-C), `ttvm resume FILE` continues from it. A
//! Linux boot to user space takes 18 minutes of ring-0 emulation on PVM hosts; a snapshot
//! taken there lets a kernel developer (or ttvm's own diagnosis) rerun the interesting
//! minute as often as needed.
//!
//! Nothing here is recorded or deterministic: the free engine's device time comes from the
//! host clock, which a resumed run continues from the saved reading at the saved slowdown,
//! and the guest TSC is set back to its saved value, so the guest sees no jump in either.
//! Format 1 (before the slowdown existed) still loads, as slowdown 1.
//!
//! From format 3 a snapshot also says where the machine came from ([`SnapshotOrigin`]:
//! the kernel image, command line, RAM size and CPUID vendor it booted with), so
//! `ttvm record --from SNAPSHOT` can write a self-contained trace that starts there.
//! Formats 1 and 2 load without it.
//!
//! From format 4 it also holds the virtio-net card ([`VirtioNetState`]), so a VM of a
//! network (`ttvm snapshot DIR --at VM:ICOUNT`) resumes with its card, its rings and any
//! transmission it had not finished. It is a record of its own after the origin, not a
//! field of [`MachineState`], whose encoding live checkpoints share (they have no network).
//! Formats 1 to 3 load without a card.
//!
//! File layout: the magic `TTVMSNAP`, a little-endian u32 format version, then one LZ4
//! frame with a content checksum holding the bincode-encoded [`MachineState`] (u64 length
//! first), from format 3 the bincode-encoded `Option<SnapshotOrigin>` (u64 length first),
//! from format 4 the bincode-encoded `Option<VirtioNetState>` (u64 length first), and the
//! non-zero RAM pages as (u32 frame number, 4 KiB) pairs in ascending
//! order, ended by `u32::MAX`. Truncation and corruption fail the checksum or the decoding.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, HostClock};
use crate::cpuid::CpuVendor;
use crate::devices::virtio_blk::VirtioBlkState;
use crate::devices::virtio_net::VirtioNetState;
use crate::devices::{Board, BoardState};
use crate::machine::{Machine, MachineConfig};
use crate::memory::PAGE_SIZE;
use crate::vcpu::{VcpuError, VcpuState};
use crate::vm::{Vm, VmError};

/// First bytes of every snapshot file.
pub const MAGIC: &[u8; 8] = b"TTVMSNAP";
/// The format this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 4;
/// The first format whose snapshots hold their [`SnapshotOrigin`] (and a disk's state).
const ORIGIN_SINCE: u32 = 3;
/// The first format whose snapshots hold the network card's state.
pub const NET_SINCE: u32 = 4;
/// A network card record larger than this is not one this build wrote (it is ~100 bytes).
const MAX_NET_LEN: u64 = 1 << 16;
const END_OF_PAGES: u32 = u32::MAX;
/// A state record larger than this is not one this build wrote (the real one is ~10 KiB).
const MAX_STATE_LEN: u64 = 16 << 20;
/// An origin record larger than this is not one this build wrote (it holds the kernel and
/// initrd, which the loader caps well below this).
const MAX_ORIGIN_LEN: u64 = 1 << 30;

/// Everything but RAM. Made of state types only (see [`crate::persist`]), so its encoding
/// does not follow the live structs; a change to it is a new version type plus a
/// conversion, as format 1's `MachineStateV1` is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineState {
    /// Guest RAM size in bytes.
    pub mem_size: u64,
    /// The vCPU.
    pub vcpu: VcpuState,
    /// Guest TSC when the snapshot was taken.
    pub tsc: u64,
    /// The devices.
    pub board: BoardState,
    /// The free engine's device clock (ns since boot) when the snapshot was taken.
    pub clock_ns: u64,
    /// How many times slower than host time that clock ran ([`HostClock`]); a resumed run
    /// keeps it, since the guest calibrated its timers against it.
    pub clock_slowdown: u32,
    /// The virtio-blk device, if the machine has a disk (format 3 on).
    pub disk: Option<VirtioBlkState>,
}

/// Format 2: no disk; frozen, never edited.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineStateV2 {
    /// Guest RAM size in bytes.
    pub mem_size: u64,
    /// The vCPU.
    pub vcpu: VcpuState,
    /// Guest TSC.
    pub tsc: u64,
    /// The devices.
    pub board: BoardState,
    /// Device clock reading.
    pub clock_ns: u64,
    /// Device clock slowdown.
    pub clock_slowdown: u32,
}

impl From<MachineStateV2> for MachineState {
    fn from(v2: MachineStateV2) -> Self {
        let MachineStateV2 { mem_size, vcpu, tsc, board, clock_ns, clock_slowdown } = v2;
        Self { mem_size, vcpu, tsc, board, clock_ns, clock_slowdown, disk: None }
    }
}

/// What a snapshot's machine booted from: enough to build the same machine again (a trace
/// header's [`MachineConfig`]) and to name it. Its encoding is frozen like the state types'.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotOrigin {
    /// The kernel's display name (a sample kernel's name or the file given).
    pub kernel_name: String,
    /// The configuration the machine was built from (kernel image, command line, RAM).
    pub machine: MachineConfig,
    /// Whether the guest saw the vendor-neutral CPU (else the host's vendor).
    pub neutral_vendor: bool,
}

impl SnapshotOrigin {
    /// The CPUID vendor the machine showed its guest.
    pub fn vendor(&self) -> CpuVendor {
        if self.neutral_vendor {
            CpuVendor::Neutral
        } else {
            CpuVendor::Host
        }
    }
}

/// A loaded snapshot: the machine, its device clock, and (format 3 on) where it came from.
pub struct LoadedSnapshot {
    /// The machine, RAM, vCPU, TSC and devices restored.
    pub machine: Machine,
    /// Its device clock, continuing from the saved reading.
    pub clock: HostClock,
    /// The guest TSC when the snapshot was taken.
    pub tsc: u64,
    /// What it booted from; `None` for formats 1 and 2.
    pub origin: Option<SnapshotOrigin>,
}

/// What a snapshot file holds besides RAM, as read: the state, the origin (format 3 on) and
/// the network card (format 4 on).
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotRecords {
    /// Everything but RAM and the network card.
    pub state: MachineState,
    /// What the machine booted from.
    pub origin: Option<SnapshotOrigin>,
    /// The virtio-net card, if the machine had one.
    pub net: Option<VirtioNetState>,
}

/// Format 1: no slowdown (the clock ran at host speed).
#[derive(Deserialize)]
struct MachineStateV1 {
    mem_size: u64,
    vcpu: VcpuState,
    tsc: u64,
    board: BoardState,
    clock_ns: u64,
}

impl From<MachineStateV1> for MachineState {
    fn from(v1: MachineStateV1) -> Self {
        let MachineStateV1 { mem_size, vcpu, tsc, board, clock_ns } = v1;
        Self { mem_size, vcpu, tsc, board, clock_ns, clock_slowdown: 1, disk: None }
    }
}

/// Errors saving or loading a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file does not start with the magic.
    #[error("{0}: not a ttvm snapshot (no TTVMSNAP header)")]
    NotASnapshot(PathBuf),
    /// Written by a newer ttvm.
    #[error("{path}: snapshot format {found} is newer than this ttvm reads ({FORMAT_VERSION}); use a newer ttvm")]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// Truncated, corrupted or inconsistent contents.
    #[error("{path}: damaged snapshot: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Capturing or restoring the vCPU failed.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// Creating the VM failed.
    #[error(transparent)]
    Vm(#[from] VmError),
}

/// Writes `machine` to `path` (through a temporary file renamed into place, so an
/// interrupted save never leaves a half-written snapshot under the final name), with the
/// device clock's reading and slowdown.
pub fn save(
    machine: &mut Machine,
    clock: &HostClock,
    origin: Option<&SnapshotOrigin>,
    path: &Path,
) -> Result<(), SnapshotError> {
    let state = machine_state(machine, clock)?;
    let tmp = path.with_extension("partial");
    let io = |source| SnapshotError::Io { path: tmp.clone(), source };
    let file = File::create(&tmp).map_err(io)?;
    let net = machine.board.net_state();
    write_snapshot(BufWriter::new(file), &state, origin, net.as_ref(), machine.vm.ram().as_slice()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|source| SnapshotError::Io { path: path.to_path_buf(), source })
}

/// Everything but RAM of `machine` now, with the device clock's reading and slowdown (also
/// what each live checkpoint holds).
pub(crate) fn machine_state(machine: &mut Machine, clock: &HostClock) -> Result<MachineState, VcpuError> {
    Ok(MachineState {
        mem_size: machine.vm.ram().size(),
        tsc: guest_tsc(machine)?,
        vcpu: machine.vm.vcpu_mut().save_state()?,
        board: machine.board.state(),
        clock_ns: clock.now_ns(),
        clock_slowdown: clock.slowdown(),
        disk: machine.board.disk_state(),
    })
}

fn write_snapshot(
    out: impl Write,
    state: &MachineState,
    origin: Option<&SnapshotOrigin>,
    net: Option<&VirtioNetState>,
    ram: &[u8],
) -> std::io::Result<()> {
    let pages = ram.chunks_exact(PAGE_SIZE).enumerate().filter(|(_, p)| p.iter().any(|&b| b != 0));
    write_snapshot_pages(out, state, origin, net, pages.map(|(pfn, p)| (pfn as u32, p)))
}

/// [`write_snapshot`] from the non-zero pages only, as (frame number, 4 KiB) in ascending
/// order: a network's live snapshots write each VM's RAM from a host copy kept up to date
/// page by page (`live::image`), which knows its non-zero pages without scanning.
pub(crate) fn write_snapshot_pages<'a>(
    mut out: impl Write,
    state: &MachineState,
    origin: Option<&SnapshotOrigin>,
    net: Option<&VirtioNetState>,
    pages: impl Iterator<Item = (u32, &'a [u8])>,
) -> std::io::Result<()> {
    out.write_all(MAGIC)?;
    out.write_all(&FORMAT_VERSION.to_le_bytes())?;
    let info = lz4_flex::frame::FrameInfo::new().content_checksum(true);
    let mut z = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
    let encoded = bincode::serialize(state).map_err(std::io::Error::other)?;
    z.write_all(&(encoded.len() as u64).to_le_bytes())?;
    z.write_all(&encoded)?;
    let encoded = bincode::serialize(&origin).map_err(std::io::Error::other)?;
    z.write_all(&(encoded.len() as u64).to_le_bytes())?;
    z.write_all(&encoded)?;
    let encoded = bincode::serialize(&net).map_err(std::io::Error::other)?;
    z.write_all(&(encoded.len() as u64).to_le_bytes())?;
    z.write_all(&encoded)?;
    for (pfn, page) in pages {
        z.write_all(&pfn.to_le_bytes())?;
        z.write_all(page)?;
    }
    z.write_all(&END_OF_PAGES.to_le_bytes())?;
    let mut out = z.finish().map_err(std::io::Error::other)?;
    out.flush()
}

/// The guest's TSC now: what a recording that starts from this machine must not go back
/// behind.
pub fn guest_tsc(machine: &Machine) -> Result<u64, VcpuError> {
    machine.vm.vcpu().get_msr(crate::msr::TSC)
}

/// Reads a snapshot and builds the machine it describes: a fresh VM (showing the vendor
/// the guest booted with, the host's for formats that did not record it) with the saved
/// RAM, vCPU, TSC and devices, and its device clock continuing from the saved reading at
/// the saved slowdown.
pub fn load(path: &Path) -> Result<LoadedSnapshot, SnapshotError> {
    let file = File::open(path).map_err(|source| SnapshotError::Io { path: path.to_path_buf(), source })?;
    let (SnapshotRecords { state, origin, net }, mut pages) = read_state(path, BufReader::new(file))?;
    // Refused before a VM is built: a state that decodes but no machine could be in.
    let board = restorable_board(path, &state, net.as_ref())?;
    let vendor = origin.as_ref().map_or(crate::cpuid::CpuVendor::Host, SnapshotOrigin::vendor);
    let mut vm = Vm::new(state.mem_size, vendor)?;
    read_pages(path, &mut pages, vm.ram_mut().as_mut_slice())?;
    let (machine, clock) = restore_into(vm, board, &state)?;
    Ok(LoadedSnapshot { machine, clock, tsc: state.tsc, origin })
}

/// The machine of `state` from a VM whose RAM is already restored and the checked `board`:
/// vCPU and TSC set, device clock going on from the saved reading at the saved slowdown.
pub(crate) fn restore_into(mut vm: Vm, board: Board, state: &MachineState) -> Result<(Machine, HostClock), VmError> {
    vm.vcpu_mut().restore_state(&state.vcpu)?;
    vm.vcpu().set_msr(crate::msr::TSC, state.tsc)?;
    // RAM written by ttvm is not guest history: dirty tracking starts here.
    vm.take_dirty_pages()?;
    let clock = HostClock::resumed_at(state.clock_ns, state.clock_slowdown);
    Ok((Machine { vm, board }, clock))
}

/// The live board of `state` once its devices and vCPU have passed their checks, or what
/// is wrong with them.
pub(crate) fn restorable(state: &MachineState) -> Result<Board, String> {
    state.vcpu.validate().map_err(|e| format!("vCPU state: {e}"))?;
    let mut board = Board::from_state(&state.board).map_err(|e| format!("device state: {e}"))?;
    board.restore_disk(state.disk.as_ref()).map_err(|e| format!("disk state: {e}"))?;
    Ok(board)
}

/// The live board of `state` with the network card `net`, once its devices and vCPU have
/// passed their checks: a state that decodes but that no machine could be in is a damaged
/// snapshot.
fn restorable_board(path: &Path, state: &MachineState, net: Option<&VirtioNetState>) -> Result<Board, SnapshotError> {
    let damaged = |reason| SnapshotError::Damaged { path: path.to_path_buf(), reason };
    let mut board = restorable(state).map_err(damaged)?;
    board.restore_net(net).map_err(|e| damaged(format!("network card state: {e}")))?;
    Ok(board)
}

/// Reads one length-prefixed bincode record named `what`, refusing one longer than `max`.
fn read_record<T: serde::de::DeserializeOwned>(
    path: &Path,
    z: &mut impl Read,
    what: &str,
    max: u64,
) -> Result<T, SnapshotError> {
    let damaged = |reason: String| SnapshotError::Damaged { path: path.to_path_buf(), reason };
    let mut len = [0u8; 8];
    z.read_exact(&mut len).map_err(|e| damaged(format!("{what} length: {e}")))?;
    let len = u64::from_le_bytes(len);
    if len > max {
        return Err(damaged(format!("{what} record of {len} bytes")));
    }
    let mut encoded = vec![0u8; len as usize];
    z.read_exact(&mut encoded).map_err(|e| damaged(format!("{what}: {e}")))?;
    bincode::deserialize::<T>(&encoded).map_err(|e| damaged(format!("{what}: {e}")))
}

/// The header, the state record, (format 3 on) the origin and (format 4 on) the network
/// card; the returned decoder is positioned at the pages.
fn read_state<R: Read>(
    path: &Path,
    mut input: R,
) -> Result<(SnapshotRecords, lz4_flex::frame::FrameDecoder<R>), SnapshotError> {
    let damaged = |reason: String| SnapshotError::Damaged { path: path.to_path_buf(), reason };
    let mut header = [0u8; 12];
    if input.read_exact(&mut header).is_err() || &header[..8] != MAGIC {
        return Err(SnapshotError::NotASnapshot(path.to_path_buf()));
    }
    let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if version > FORMAT_VERSION {
        return Err(SnapshotError::NewerFormat { path: path.to_path_buf(), found: version });
    }
    let mut z = lz4_flex::frame::FrameDecoder::new(input);
    let mut len = [0u8; 8];
    z.read_exact(&mut len).map_err(|e| damaged(format!("state length: {e}")))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_STATE_LEN {
        return Err(damaged(format!("state record of {len} bytes")));
    }
    let mut encoded = vec![0u8; len as usize];
    z.read_exact(&mut encoded).map_err(|e| damaged(format!("state: {e}")))?;
    let state = match version {
        1 => bincode::deserialize::<MachineStateV1>(&encoded).map(MachineState::from),
        2 => bincode::deserialize::<MachineStateV2>(&encoded).map(MachineState::from),
        _ => bincode::deserialize::<MachineState>(&encoded),
    }
    .map_err(|e| damaged(format!("state: {e}")))?;
    let origin = if version >= ORIGIN_SINCE {
        read_record::<Option<SnapshotOrigin>>(path, &mut z, "origin", MAX_ORIGIN_LEN)?
    } else {
        None
    };
    let net = if version >= NET_SINCE {
        read_record::<Option<VirtioNetState>>(path, &mut z, "network card", MAX_NET_LEN)?
    } else {
        None
    };
    Ok((SnapshotRecords { state, origin, net }, z))
}

/// The RAM pages into `ram` (zeroed), then the end of the frame, whose checksum the decoder
/// verifies only when it is read.
fn read_pages(path: &Path, z: &mut impl Read, ram: &mut [u8]) -> Result<(), SnapshotError> {
    let pages = ram.len() / PAGE_SIZE;
    read_pages_into(path, z, pages, |pfn, page| ram[pfn * PAGE_SIZE..(pfn + 1) * PAGE_SIZE].copy_from_slice(page))
}

/// Reads the page list of a RAM of `pages` pages, handing each page to `store`, then the
/// end of the frame.
fn read_pages_into(
    path: &Path,
    z: &mut impl Read,
    pages: usize,
    mut store: impl FnMut(usize, &[u8]),
) -> Result<(), SnapshotError> {
    let damaged = |reason: String| SnapshotError::Damaged { path: path.to_path_buf(), reason };
    let mut previous: Option<usize> = None;
    let mut page = vec![0u8; PAGE_SIZE];
    loop {
        let mut pfn = [0u8; 4];
        z.read_exact(&mut pfn).map_err(|e| damaged(format!("page list: {e}")))?;
        let pfn = u32::from_le_bytes(pfn);
        if pfn == END_OF_PAGES {
            break;
        }
        let pfn = pfn as usize;
        if pfn >= pages || previous.is_some_and(|p| pfn <= p) {
            return Err(damaged(format!("page {pfn:#x} out of order or beyond {pages} pages of RAM")));
        }
        z.read_exact(&mut page).map_err(|e| damaged(format!("page {pfn:#x}: {e}")))?;
        store(pfn, &page);
        previous = Some(pfn);
    }
    let mut rest = Vec::new();
    z.read_to_end(&mut rest).map_err(|e| damaged(format!("after the pages: {e}")))?;
    if !rest.is_empty() {
        return Err(damaged(format!("{} unexpected bytes after the pages", rest.len())));
    }
    Ok(())
}

/// Reads and checks a whole snapshot from `input` without building a machine (no KVM):
/// the header, the state record (refused as [`load`] would refuse it), every page's place
/// and the frame's checksum; `path` names it in errors. Returns the state. For checking a
/// file before use, and for fuzzing the reader.
pub fn check(path: &Path, input: impl Read) -> Result<MachineState, SnapshotError> {
    check_records(path, input).map(|r| r.state)
}

/// [`check`], returning everything the file holds besides RAM (the origin and the network
/// card too).
pub fn check_records(path: &Path, input: impl Read) -> Result<SnapshotRecords, SnapshotError> {
    let (records, mut pages) = read_state(path, input)?;
    restorable_board(path, &records.state, records.net.as_ref())?;
    let count = usize::try_from(records.state.mem_size / PAGE_SIZE as u64).unwrap_or(usize::MAX);
    read_pages_into(path, &mut pages, count, |_, _| {})?;
    Ok(records)
}

impl crate::error_kind::Classify for SnapshotError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        match self {
            Self::Io { .. } | Self::NotASnapshot(_) => crate::error_kind::ErrorKind::BadInput,
            Self::Damaged { .. } | Self::NewerFormat { .. } => crate::error_kind::ErrorKind::Damaged,
            Self::Vcpu(e) => crate::error_kind::Classify::kind(e),
            Self::Vm(e) => crate::error_kind::Classify::kind(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: usize = 64 * PAGE_SIZE;

    fn sample() -> (MachineState, Vec<u8>) {
        let regs = crate::vcpu::RegsState { rip: 0xffff_ffff_8100_0000, ..Default::default() };
        let state = MachineState {
            mem_size: RAM as u64,
            vcpu: VcpuState {
                regs,
                sregs: Default::default(),
                xsave: vec![7; 1024],
                xcrs: Default::default(),
                debugregs: Default::default(),
                events: Default::default(),
                mp_state: Default::default(),
                msrs: vec![(0xc000_0082, 0x1234)],
            },
            tsc: 0x1234_5678_9abc,
            board: Board::new(1_700_000_000).state(),
            clock_ns: 42_000_000_000,
            clock_slowdown: 10,
            disk: Some(crate::devices::virtio_blk::VirtioBlk::new(2048).state()),
        };
        let mut ram = vec![0u8; RAM];
        ram[3 * PAGE_SIZE + 17] = 0xaa;
        ram[40 * PAGE_SIZE..41 * PAGE_SIZE].fill(0x5c);
        (state, ram)
    }

    fn sample_origin() -> SnapshotOrigin {
        SnapshotOrigin {
            kernel_name: "timer".into(),
            machine: MachineConfig::new(vec![0x7f, b'E', b'L', b'F', 2], "ticks=5"),
            neutral_vendor: true,
        }
    }

    fn encode(state: &MachineState, ram: &[u8]) -> Vec<u8> {
        let mut file = Vec::new();
        write_snapshot(&mut file, state, Some(&sample_origin()), None, ram).unwrap();
        file
    }

    fn decode_with_origin(file: &[u8]) -> Result<(MachineState, Option<SnapshotOrigin>, Vec<u8>), SnapshotError> {
        let path = Path::new("test.snap");
        let (SnapshotRecords { state, origin, .. }, mut z) = read_state(path, file)?;
        let mut ram = vec![0u8; state.mem_size as usize];
        read_pages(path, &mut z, &mut ram)?;
        Ok((state, origin, ram))
    }

    fn decode(file: &[u8]) -> Result<(MachineState, Vec<u8>), SnapshotError> {
        decode_with_origin(file).map(|(state, _, ram)| (state, ram))
    }

    #[test]
    fn round_trips_state_origin_and_ram() {
        let (state, ram) = sample();
        let file = encode(&state, &ram);
        assert!(file.len() < 2 * PAGE_SIZE, "zero pages are left out: {} bytes", file.len());
        let (back, origin, back_ram) = decode_with_origin(&file).unwrap();
        assert_eq!(back, state);
        assert_eq!(origin, Some(sample_origin()));
        assert!(back_ram == ram);
    }

    fn sample_net() -> VirtioNetState {
        let mut net = crate::devices::virtio_net::VirtioNet::new(crate::devices::virtio_net::mac_for(1)).state();
        net.tx_due_ns = Some(42_000_123_456);
        net.queues[1].next_avail = 3;
        net
    }

    /// Format 4 holds the network card after the origin: it comes back as written, and the
    /// records are laid out in that order (state, origin, card, pages).
    #[test]
    fn the_network_card_round_trips_in_its_own_record() {
        let (state, ram) = sample();
        let mut file = Vec::new();
        write_snapshot(&mut file, &state, Some(&sample_origin()), Some(&sample_net()), &ram).unwrap();
        assert_eq!(&file[8..12], &4u32.to_le_bytes());
        let (records, mut z) = read_state(Path::new("t.snap"), &file[..]).unwrap();
        assert_eq!(
            records,
            SnapshotRecords { state: state.clone(), origin: Some(sample_origin()), net: Some(sample_net()) }
        );
        let mut back = vec![0u8; RAM];
        read_pages(Path::new("t.snap"), &mut z, &mut back).unwrap();
        assert!(back == ram);
        // The card record's bytes: its length, then bincode of Some(state).
        let mut body = Vec::new();
        lz4_flex::frame::FrameDecoder::new(&file[12..]).read_to_end(&mut body).unwrap();
        let card = bincode::serialize(&Some(sample_net())).unwrap();
        let mut record = (card.len() as u64).to_le_bytes().to_vec();
        record.extend_from_slice(&card);
        let at = body.windows(record.len()).position(|w| w == record).expect("the card record is in the body");
        let state_len = 8 + bincode::serialize(&state).unwrap().len();
        let origin_len = 8 + bincode::serialize(&Some(sample_origin())).unwrap().len();
        assert_eq!(at, state_len + origin_len, "right after the state and origin records");
        // check() reads it too.
        assert_eq!(check_records(Path::new("t.snap"), &file[..]).unwrap().net, Some(sample_net()));
    }

    /// Format 3 (origin, no card record) still loads, without a card.
    #[test]
    fn format_3_files_load_without_a_network_card() {
        let (state, ram) = sample();
        let mut file = Vec::new();
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&3u32.to_le_bytes());
        let mut z = lz4_flex::frame::FrameEncoder::new(&mut file);
        for record in [bincode::serialize(&state).unwrap(), bincode::serialize(&Some(sample_origin())).unwrap()] {
            z.write_all(&(record.len() as u64).to_le_bytes()).unwrap();
            z.write_all(&record).unwrap();
        }
        for (pfn, page) in ram.chunks_exact(PAGE_SIZE).enumerate().filter(|(_, p)| p.iter().any(|&b| b != 0)) {
            z.write_all(&(pfn as u32).to_le_bytes()).unwrap();
            z.write_all(page).unwrap();
        }
        z.write_all(&END_OF_PAGES.to_le_bytes()).unwrap();
        z.finish().unwrap();
        let records = check_records(Path::new("v3.snap"), &file[..]).unwrap();
        assert_eq!(records, SnapshotRecords { state, origin: Some(sample_origin()), net: None });
    }

    #[test]
    fn a_network_card_no_machine_could_have_is_refused() {
        let (state, ram) = sample();
        let mut net = sample_net();
        net.bar0 = 0xc001; // an I/O BAR's low bits are not writable
        let mut file = Vec::new();
        write_snapshot(&mut file, &state, None, Some(&net), &ram).unwrap();
        let err = check(Path::new("bad.snap"), &file[..]).map(|_| ()).unwrap_err();
        assert!(matches!(err, SnapshotError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("network card state"), "{err}");
    }

    /// A snapshot file of format `version` (1 or 2: no origin record) holding the encoded
    /// state record and the non-zero pages of `ram`.
    fn old_format_file(version: u32, state: &[u8], ram: &[u8]) -> Vec<u8> {
        let mut file = Vec::new();
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&version.to_le_bytes());
        let mut z = lz4_flex::frame::FrameEncoder::new(&mut file);
        z.write_all(&(state.len() as u64).to_le_bytes()).unwrap();
        z.write_all(state).unwrap();
        for (pfn, page) in ram.chunks_exact(PAGE_SIZE).enumerate().filter(|(_, p)| p.iter().any(|&b| b != 0)) {
            z.write_all(&(pfn as u32).to_le_bytes()).unwrap();
            z.write_all(page).unwrap();
        }
        z.write_all(&END_OF_PAGES.to_le_bytes()).unwrap();
        z.finish().unwrap();
        file
    }

    /// Format 2 (its own state type, no origin record) still loads, without an origin.
    #[test]
    fn format_2_files_load_without_an_origin() {
        let (mut state, ram) = sample();
        state.disk = None; // format 2 had no disk
        let v2 = MachineStateV2 {
            mem_size: state.mem_size,
            vcpu: state.vcpu.clone(),
            tsc: state.tsc,
            board: state.board.clone(),
            clock_ns: state.clock_ns,
            clock_slowdown: state.clock_slowdown,
        };
        let file = old_format_file(2, &bincode::serialize(&v2).unwrap(), &ram);
        let (back, origin, back_ram) = decode_with_origin(&file).unwrap();
        assert_eq!((back, origin), (state, None));
        assert!(back_ram == ram);
    }

    #[test]
    fn damage_is_reported_not_loaded() {
        let (state, ram) = sample();
        let file = encode(&state, &ram);
        for cut in [4, 12, 20, file.len() / 2, file.len() - 1] {
            let err = decode(&file[..cut]).unwrap_err();
            let expected = if cut < 12 { "not a ttvm snapshot" } else { "damaged snapshot" };
            assert!(err.to_string().contains(expected), "cut at {cut}: {err}");
        }
        // A flipped bit anywhere in the compressed body: the page contents or the checksum
        // no longer match.
        for at in [13, file.len() / 2, file.len() - 2] {
            let mut bad = file.clone();
            bad[at] ^= 0x10;
            let err = decode(&bad).map(|_| ()).unwrap_err();
            assert!(matches!(err, SnapshotError::Damaged { .. }), "bit flip at {at}: {err}");
        }
    }

    #[test]
    fn format_1_files_load_with_the_clock_at_host_speed() {
        #[derive(Serialize)]
        struct V1<'a>(u64, &'a VcpuState, u64, &'a BoardState, u64);
        let (state, ram) = sample();
        let v1 = V1(state.mem_size, &state.vcpu, state.tsc, &state.board, state.clock_ns);
        let file = old_format_file(1, &bincode::serialize(&v1).unwrap(), &ram);
        let (back, back_ram) = decode(&file).unwrap();
        assert_eq!(back, MachineState { clock_slowdown: 1, disk: None, ..state });
        assert!(back_ram == ram);
    }

    #[test]
    fn newer_format_and_foreign_files_are_refused() {
        let (state, ram) = sample();
        let mut file = encode(&state, &ram);
        file[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let err = decode(&file).unwrap_err();
        assert!(matches!(err, SnapshotError::NewerFormat { found, .. } if found == FORMAT_VERSION + 1), "{err}");
        assert!(err.to_string().contains("use a newer ttvm"), "{err}");
        let err = decode(b"TTVMTRACE and more bytes").unwrap_err();
        assert!(matches!(err, SnapshotError::NotASnapshot(_)), "{err}");
    }

    #[test]
    fn a_state_no_machine_could_be_in_is_refused_before_a_vm_is_built() {
        let (mut state, ram) = sample();
        state.board.serial.rx = vec![0; 17];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.snap");
        std::fs::write(&path, encode(&state, &ram)).unwrap();
        let err = load(&path).map(|_| ()).unwrap_err();
        assert!(matches!(err, SnapshotError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("device state: UART receive FIFO holds 17 entries"), "{err}");

        let (mut state, ram) = sample();
        state.vcpu.mp_state.mp_state = 99;
        std::fs::write(&path, encode(&state, &ram)).unwrap();
        let err = load(&path).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("vCPU state: vCPU MP state is 99"), "{err}");
        let err = check(&path, &encode(&state, &ram)[..]).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("vCPU state: vCPU MP state is 99"), "check refuses it too: {err}");
    }
}
