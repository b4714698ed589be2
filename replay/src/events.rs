//! The event log: every value that entered the guest from outside guest state, and what the
//! guest sent out, each stamped with the icount of the step it happened in.
//!
//! Events of one step appear in the order they happened: an injected interrupt first (it is
//! delivered at the step boundary), then the port/MMIO accesses and emulated instructions of
//! the step itself.

use serde::{Deserialize, Serialize};
use ttvm_vmm::disk::{BLOCK_SIZE, SECTORS_PER_BLOCK, SECTOR_SIZE};

/// Bytes moved by one port or MMIO access. Stored inline up to 8 bytes (all non-string
/// accesses), on the heap for `rep ins/outs`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IoData {
    /// Up to 8 bytes.
    Inline {
        /// Valid length.
        len: u8,
        /// Storage.
        bytes: [u8; 8],
    },
    /// Longer data.
    Heap(Vec<u8>),
}

impl IoData {
    /// Copies `data`.
    pub fn from_slice(data: &[u8]) -> Self {
        if data.len() <= 8 {
            let mut bytes = [0u8; 8];
            bytes[..data.len()].copy_from_slice(data);
            Self::Inline { len: data.len() as u8, bytes }
        } else {
            Self::Heap(data.to_vec())
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..*len as usize],
            Self::Heap(v) => v,
        }
    }

    /// Little-endian value of up to the first 8 bytes.
    pub fn value(&self) -> u64 {
        let mut b = [0u8; 8];
        let s = self.as_slice();
        let n = s.len().min(8);
        b[..n].copy_from_slice(&s[..n]);
        u64::from_le_bytes(b)
    }
}

impl std::fmt::Debug for IoData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.as_slice();
        if s.len() <= 8 {
            write!(f, "{:#x}/{}", self.value(), s.len())
        } else {
            write!(f, "{} bytes", s.len())
        }
    }
}

/// How the guest stopped, as logged at the end of a recording: the vmm's one stop enum,
/// under the name the trace format has always given it.
pub use ttvm_vmm::stop::GuestStop as StopKind;

/// One logged event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)] // each variant's doc says what its fields are
pub enum EventKind {
    /// `in` from a port: the value the guest received.
    PortIn { port: u16, data: IoData },
    /// `out` to a port: the value the guest sent.
    PortOut { port: u16, data: IoData },
    /// MMIO read: the value the guest received.
    MmioRead { addr: u64, data: IoData },
    /// MMIO write.
    MmioWrite { addr: u64, data: IoData },
    /// External interrupt injected at the start of the step.
    Interrupt { vector: u8 },
    /// RDTSC result.
    Rdtsc { value: u64 },
    /// RDTSCP result (TSC part; TSC_AUX is guest state).
    Rdtscp { value: u64 },
    /// RDRAND result.
    Rdrand { value: u64 },
    /// RDSEED result.
    Rdseed { value: u64 },
    /// RDMSR of IA32_TSC result.
    RdmsrTsc { value: u64 },
    /// A byte the UART transmitted (informational: derived from PortOut).
    SerialOut { byte: u8 },
    /// A byte that entered the UART's receive FIFO (informational: the guest sees it
    /// through PortIn).
    SerialIn { byte: u8 },
    /// First access to an unmodelled port or MMIO page (informational).
    Unmodelled { mmio: bool, addr: u64, rip: u64 },
    /// The guest stopped during this step.
    Stop(StopKind),
    /// A 4 KiB disk block as the image held it when the recording started, logged the
    /// first time the guest read a sector of it that it had not written (format 4 on).
    /// Informational for the event cursor: replay takes every such block up front, as the
    /// trace's copy of the image (`Recording::disk_base`).
    DiskBlock { block: u64, data: Vec<u8> },
    /// The disk completed a read of `sectors` sectors from `sector` (format 4 on).
    DiskRead { sector: u64, sectors: u32 },
    /// The disk completed a write of `data` (whole sectors) from `sector` (format 4 on).
    DiskWrite { sector: u64, data: Vec<u8> },
    /// The disk finished `requests` requests at this step boundary and raised its
    /// interrupt; the `DiskRead`/`DiskWrite` events before it are what they did.
    DiskDone { requests: u32 },
    /// A frame the switch delivered into the VM's virtio-net card at this step boundary
    /// (format 6 on): `frame` is its id in the network's manifest, `data` the Ethernet
    /// frame without the virtio header. Replay delivers it from here.
    NetRx { frame: u64, data: Vec<u8> },
    /// A frame the VM's card transmitted at this step boundary (format 6 on); replay checks
    /// the guest sends the same bytes, as it does serial output.
    NetTx { data: Vec<u8> },
}

/// An event and the step it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Step count when the event happened (the step being executed).
    pub icount: u64,
    /// What happened.
    pub kind: EventKind,
}

/// Coarse event classes, for statistics and the UI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventClass {
    /// Port and MMIO accesses.
    Io,
    /// Injected interrupts.
    Interrupt,
    /// RDTSC/RDTSCP/RDMSR TSC.
    Time,
    /// RDRAND/RDSEED.
    Random,
    /// Serial output bytes.
    SerialOut,
    /// Serial input bytes.
    SerialIn,
    /// Unmodelled device accesses.
    Unmodelled,
    /// The end of the run.
    Stop,
    /// Disk requests and the disk blocks the trace holds.
    Disk,
    /// Network frames received and sent.
    Net,
}

impl EventClass {
    /// All classes, in display order.
    pub const ALL: [EventClass; 10] = [
        EventClass::Interrupt,
        EventClass::Io,
        EventClass::Time,
        EventClass::Random,
        EventClass::SerialOut,
        EventClass::SerialIn,
        EventClass::Unmodelled,
        EventClass::Stop,
        EventClass::Disk,
        EventClass::Net,
    ];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            EventClass::Io => "io",
            EventClass::Interrupt => "interrupt",
            EventClass::Time => "time",
            EventClass::Random => "random",
            EventClass::SerialOut => "serial-out",
            EventClass::SerialIn => "serial-in",
            EventClass::Unmodelled => "unmodelled",
            EventClass::Stop => "stop",
            EventClass::Disk => "disk",
            EventClass::Net => "net",
        }
    }
}

impl EventKind {
    /// The class of this event.
    pub fn class(&self) -> EventClass {
        match self {
            EventKind::PortIn { .. }
            | EventKind::PortOut { .. }
            | EventKind::MmioRead { .. }
            | EventKind::MmioWrite { .. } => EventClass::Io,
            EventKind::Interrupt { .. } => EventClass::Interrupt,
            EventKind::Rdtsc { .. } | EventKind::Rdtscp { .. } | EventKind::RdmsrTsc { .. } => EventClass::Time,
            EventKind::Rdrand { .. } | EventKind::Rdseed { .. } => EventClass::Random,
            EventKind::SerialOut { .. } => EventClass::SerialOut,
            EventKind::SerialIn { .. } => EventClass::SerialIn,
            EventKind::Unmodelled { .. } => EventClass::Unmodelled,
            EventKind::Stop(_) => EventClass::Stop,
            EventKind::DiskBlock { .. }
            | EventKind::DiskRead { .. }
            | EventKind::DiskWrite { .. }
            | EventKind::DiskDone { .. } => EventClass::Disk,
            EventKind::NetRx { .. } | EventKind::NetTx { .. } => EventClass::Net,
        }
    }

    /// Whether replay consumes this event to feed the guest or check it (as opposed to
    /// informational events kept for people and tools).
    pub fn drives_replay(&self) -> bool {
        !matches!(
            self,
            EventKind::SerialOut { .. }
                | EventKind::SerialIn { .. }
                | EventKind::Unmodelled { .. }
                | EventKind::DiskBlock { .. }
        )
    }

    /// One-line description.
    pub fn describe(&self) -> String {
        match self {
            EventKind::PortIn { port, data } => format!("in  port {port:#06x} -> {data:?}"),
            EventKind::PortOut { port, data } => format!("out port {port:#06x} <- {data:?}"),
            EventKind::MmioRead { addr, data } => format!("mmio read  {addr:#x} -> {data:?}"),
            EventKind::MmioWrite { addr, data } => format!("mmio write {addr:#x} <- {data:?}"),
            EventKind::Interrupt { vector } => format!("interrupt vector {vector:#04x}"),
            EventKind::Rdtsc { value } => format!("rdtsc = {value:#x}"),
            EventKind::Rdtscp { value } => format!("rdtscp = {value:#x}"),
            EventKind::Rdrand { value } => format!("rdrand = {value:#x}"),
            EventKind::Rdseed { value } => format!("rdseed = {value:#x}"),
            EventKind::RdmsrTsc { value } => format!("rdmsr IA32_TSC = {value:#x}"),
            EventKind::SerialOut { byte } => format!("serial out {:?}", *byte as char),
            EventKind::SerialIn { byte } => format!("serial in  {:?}", *byte as char),
            EventKind::Unmodelled { mmio, addr, rip } => {
                format!("unmodelled {} {addr:#x} at RIP {rip:#x}", if *mmio { "MMIO" } else { "port" })
            }
            EventKind::Stop(s) => match s {
                StopKind::DebugExit(c) => format!("guest exit, status {c}"),
                StopKind::TripleFault => "triple fault".to_string(),
                StopKind::Halted => "halted with nothing to wake it".to_string(),
                StopKind::InternalError(e) => format!("KVM internal error: {e}"),
            },
            EventKind::DiskBlock { block, .. } => {
                format!("disk block {block} (sectors {}..) as the image held it", block * 8)
            }
            EventKind::DiskRead { sector, sectors } => format!("disk read  sector {sector} +{sectors}"),
            EventKind::DiskWrite { sector, data } => format!("disk write sector {sector} +{}", data.len() / 512),
            EventKind::DiskDone { requests } => format!("disk completed {requests} request(s)"),
            EventKind::NetRx { frame, data } => format!("net rx frame {frame} ({} bytes)", data.len()),
            EventKind::NetTx { data } => format!("net tx {} bytes", data.len()),
        }
    }
}

/// Errors decoding an event stream.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The stream ended inside an event.
    #[error("event stream truncated at byte {0}")]
    Truncated(usize),
    /// An unknown event tag.
    #[error("unknown event tag {tag} at byte {offset}")]
    UnknownTag {
        /// The tag.
        tag: u8,
        /// Byte offset within the chunk payload.
        offset: usize,
    },
    /// A field out of range.
    #[error("invalid event field at byte {0}")]
    Invalid(usize),
    /// A disk event refers to the page store where none was given (not format 5).
    #[error("disk event at byte {0} refers to a stored page, which this stream's format cannot")]
    NoPageStore(usize),
    /// A disk event refers to a page not stored before its chunk.
    #[error("disk event at byte {offset} refers to page {page}, which is not stored before it")]
    MissingPage {
        /// The page id.
        page: u32,
        /// Byte offset within the chunk payload.
        offset: usize,
    },
}

mod tag {
    pub const PORT_IN: u8 = 1;
    pub const PORT_OUT: u8 = 2;
    pub const MMIO_READ: u8 = 3;
    pub const MMIO_WRITE: u8 = 4;
    pub const INTERRUPT: u8 = 5;
    pub const RDTSC: u8 = 6;
    pub const RDTSCP: u8 = 7;
    pub const RDRAND: u8 = 8;
    pub const RDSEED: u8 = 9;
    pub const RDMSR_TSC: u8 = 10;
    pub const SERIAL_OUT: u8 = 11;
    pub const SERIAL_IN: u8 = 12;
    pub const UNMODELLED: u8 = 13;
    pub const STOP: u8 = 14;
    pub const DISK_BLOCK: u8 = 15;
    pub const DISK_READ: u8 = 16;
    pub const DISK_WRITE: u8 = 17;
    pub const DISK_DONE: u8 = 18;
    /// Format 5: a `DiskBlock` whose contents are a page of the trace's page store.
    pub const DISK_BLOCK_PAGE: u8 = 19;
    /// Format 5: a `DiskWrite` whose whole aligned 4 KiB blocks are pages of the store.
    pub const DISK_WRITE_PAGES: u8 = 20;
    /// Format 6: a frame delivered into the network card.
    pub const NET_RX: u8 = 21;
    /// Format 6: a frame the network card sent.
    pub const NET_TX: u8 = 22;
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_data(out: &mut Vec<u8>, d: &IoData) {
    let s = d.as_slice();
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Appends the compact encoding of `e` to `out`; `prev_icount` is the icount of the
/// previous event in the stream (icounts are delta-coded).
pub fn encode(out: &mut Vec<u8>, e: &Event, prev_icount: u64) {
    encode_with_pages(out, e, prev_icount, None);
}

/// Interns a 4 KiB page in the trace's page store and returns its id.
pub type PageInterner<'a> = &'a mut dyn FnMut(&[u8]) -> u32;

/// [`encode`], with the disk data that fills whole 4 KiB-aligned blocks put in the page
/// store through `pages` (format 5) when it is given: a disk block shares its bytes with
/// every checkpoint page of the same contents, in either order (VEE'11's disk-aware
/// checkpoints). Without `pages`, disk data is inline (format 4's encoding, still valid).
pub fn encode_with_pages(out: &mut Vec<u8>, e: &Event, prev_icount: u64, pages: Option<PageInterner<'_>>) {
    put_varint(out, e.icount - prev_icount);
    if let Some(intern) = pages {
        match &e.kind {
            EventKind::DiskBlock { block, data } if data.len() == BLOCK_SIZE => {
                out.push(tag::DISK_BLOCK_PAGE);
                put_varint(out, *block);
                put_varint(out, u64::from(intern(data)));
                return;
            }
            EventKind::DiskWrite { sector, data } if !data.is_empty() && data.len() % SECTOR_SIZE == 0 => {
                out.push(tag::DISK_WRITE_PAGES);
                put_varint(out, *sector);
                put_varint(out, (data.len() / SECTOR_SIZE) as u64);
                let (head, blocks, tail) = split_write(*sector, data.len() / SECTOR_SIZE);
                out.extend_from_slice(&data[..head * SECTOR_SIZE]);
                let body = &data[head * SECTOR_SIZE..data.len() - tail * SECTOR_SIZE];
                for page in body.chunks_exact(BLOCK_SIZE).take(blocks) {
                    put_varint(out, u64::from(intern(page)));
                }
                out.extend_from_slice(&data[data.len() - tail * SECTOR_SIZE..]);
                return;
            }
            _ => {}
        }
    }
    match &e.kind {
        EventKind::PortIn { port, data } => {
            out.push(tag::PORT_IN);
            out.extend_from_slice(&port.to_le_bytes());
            put_data(out, data);
        }
        EventKind::PortOut { port, data } => {
            out.push(tag::PORT_OUT);
            out.extend_from_slice(&port.to_le_bytes());
            put_data(out, data);
        }
        EventKind::MmioRead { addr, data } => {
            out.push(tag::MMIO_READ);
            put_varint(out, *addr);
            put_data(out, data);
        }
        EventKind::MmioWrite { addr, data } => {
            out.push(tag::MMIO_WRITE);
            put_varint(out, *addr);
            put_data(out, data);
        }
        EventKind::Interrupt { vector } => {
            out.push(tag::INTERRUPT);
            out.push(*vector);
        }
        EventKind::Rdtsc { value } => {
            out.push(tag::RDTSC);
            put_varint(out, *value);
        }
        EventKind::Rdtscp { value } => {
            out.push(tag::RDTSCP);
            put_varint(out, *value);
        }
        EventKind::Rdrand { value } => {
            out.push(tag::RDRAND);
            out.extend_from_slice(&value.to_le_bytes());
        }
        EventKind::Rdseed { value } => {
            out.push(tag::RDSEED);
            out.extend_from_slice(&value.to_le_bytes());
        }
        EventKind::RdmsrTsc { value } => {
            out.push(tag::RDMSR_TSC);
            put_varint(out, *value);
        }
        EventKind::SerialOut { byte } => {
            out.push(tag::SERIAL_OUT);
            out.push(*byte);
        }
        EventKind::SerialIn { byte } => {
            out.push(tag::SERIAL_IN);
            out.push(*byte);
        }
        EventKind::Unmodelled { mmio, addr, rip } => {
            out.push(tag::UNMODELLED);
            out.push(u8::from(*mmio));
            put_varint(out, *addr);
            put_varint(out, *rip);
        }
        EventKind::Stop(s) => {
            out.push(tag::STOP);
            match s {
                StopKind::DebugExit(c) => {
                    out.push(0);
                    put_varint(out, u64::from(*c));
                }
                StopKind::TripleFault => out.push(1),
                StopKind::Halted => out.push(2),
                StopKind::InternalError(msg) => {
                    out.push(3);
                    put_varint(out, msg.len() as u64);
                    out.extend_from_slice(msg.as_bytes());
                }
            }
        }
        EventKind::DiskBlock { block, data } => {
            out.push(tag::DISK_BLOCK);
            put_varint(out, *block);
            put_varint(out, data.len() as u64);
            out.extend_from_slice(data);
        }
        EventKind::DiskRead { sector, sectors } => {
            out.push(tag::DISK_READ);
            put_varint(out, *sector);
            put_varint(out, u64::from(*sectors));
        }
        EventKind::DiskWrite { sector, data } => {
            out.push(tag::DISK_WRITE);
            put_varint(out, *sector);
            put_varint(out, data.len() as u64);
            out.extend_from_slice(data);
        }
        EventKind::DiskDone { requests } => {
            out.push(tag::DISK_DONE);
            put_varint(out, u64::from(*requests));
        }
        EventKind::NetRx { frame, data } => {
            out.push(tag::NET_RX);
            put_varint(out, *frame);
            put_varint(out, data.len() as u64);
            out.extend_from_slice(data);
        }
        EventKind::NetTx { data } => {
            out.push(tag::NET_TX);
            put_varint(out, data.len() as u64);
            out.extend_from_slice(data);
        }
    }
}

/// How a write of `sectors` sectors from `sector` splits in format 5: (sectors before the
/// first 4 KiB boundary, whole aligned blocks, sectors after the last): only whole
/// aligned blocks can be pages, the partial ends stay inline.
pub fn split_write(sector: u64, sectors: usize) -> (usize, usize, usize) {
    let per_block = SECTORS_PER_BLOCK as usize;
    let head = (((per_block as u64 - sector % per_block as u64) % per_block as u64) as usize).min(sectors);
    let blocks = (sectors - head) / per_block;
    (head, blocks, sectors - head - blocks * per_block)
}

/// Looks up page `id` of the trace's page store (for format-5 disk events); `None` when
/// the store has no such page (yet).
pub type PageResolver<'a> = &'a dyn Fn(u32) -> Option<Vec<u8>>;

/// A cursor decoding a stream produced by [`encode`].
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    prev_icount: u64,
    pages: Option<PageResolver<'a>>,
    /// Page ids the disk events decoded so far referred to (format 5).
    pub disk_pages: Vec<u32>,
}

impl std::fmt::Debug for Decoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").field("pos", &self.pos).field("prev_icount", &self.prev_icount).finish()
    }
}

impl<'a> Decoder<'a> {
    /// Decodes `buf`, whose first event is delta-coded against `base_icount`. Disk events
    /// that refer to the page store (format 5) are errors: see [`Decoder::with_pages`].
    pub fn new(buf: &'a [u8], base_icount: u64) -> Self {
        Self { buf, pos: 0, prev_icount: base_icount, pages: None, disk_pages: Vec::new() }
    }

    /// [`Decoder::new`] for a format-5 stream whose disk events may refer to pages, which
    /// `pages` resolves (the events come back with the data filled in).
    pub fn with_pages(buf: &'a [u8], base_icount: u64, pages: PageResolver<'a>) -> Self {
        Self { pages: Some(pages), ..Self::new(buf, base_icount) }
    }

    fn page(&mut self) -> Result<Vec<u8>, DecodeError> {
        let at = self.pos;
        let id = u32::try_from(self.varint()?).map_err(|_| DecodeError::Invalid(at))?;
        let resolve = self.pages.ok_or(DecodeError::NoPageStore(at))?;
        let data = resolve(id).ok_or(DecodeError::MissingPage { page: id, offset: at })?;
        self.disk_pages.push(id);
        Ok(data)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Invalid(self.pos))?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated(self.pos))?;
        self.pos = end;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Invalid(start))
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u64le(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn data(&mut self) -> Result<IoData, DecodeError> {
        let at = self.pos;
        let n = self.varint()?;
        if n > 1 << 20 {
            return Err(DecodeError::Invalid(at));
        }
        Ok(IoData::from_slice(self.bytes(n as usize)?))
    }

    /// Disk data: whole sectors, at most 4 MiB (a request's limit).
    fn sectors(&mut self) -> Result<Vec<u8>, DecodeError> {
        let at = self.pos;
        let n = self.varint()?;
        if n > 4 << 20 || n % 512 != 0 {
            return Err(DecodeError::Invalid(at));
        }
        Ok(self.bytes(n as usize)?.to_vec())
    }

    /// A network frame: at most the card's largest frame.
    fn frame(&mut self) -> Result<Vec<u8>, DecodeError> {
        let at = self.pos;
        let n = self.varint()?;
        if n > ttvm_vmm::devices::virtio_net::MAX_FRAME as u64 {
            return Err(DecodeError::Invalid(at));
        }
        Ok(self.bytes(n as usize)?.to_vec())
    }

    /// Whether the whole buffer has been decoded.
    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Decodes the next event, or `None` at the end of the buffer.
    pub fn next_event(&mut self) -> Result<Option<Event>, DecodeError> {
        if self.at_end() {
            return Ok(None);
        }
        let at = self.pos;
        let delta = self.varint()?;
        let icount = self.prev_icount.checked_add(delta).ok_or(DecodeError::Invalid(at))?;
        let tag_at = self.pos;
        let kind = match self.byte()? {
            tag::PORT_IN => EventKind::PortIn { port: self.u16()?, data: self.data()? },
            tag::PORT_OUT => EventKind::PortOut { port: self.u16()?, data: self.data()? },
            tag::MMIO_READ => EventKind::MmioRead { addr: self.varint()?, data: self.data()? },
            tag::MMIO_WRITE => EventKind::MmioWrite { addr: self.varint()?, data: self.data()? },
            tag::INTERRUPT => EventKind::Interrupt { vector: self.byte()? },
            tag::RDTSC => EventKind::Rdtsc { value: self.varint()? },
            tag::RDTSCP => EventKind::Rdtscp { value: self.varint()? },
            tag::RDRAND => EventKind::Rdrand { value: self.u64le()? },
            tag::RDSEED => EventKind::Rdseed { value: self.u64le()? },
            tag::RDMSR_TSC => EventKind::RdmsrTsc { value: self.varint()? },
            tag::SERIAL_OUT => EventKind::SerialOut { byte: self.byte()? },
            tag::SERIAL_IN => EventKind::SerialIn { byte: self.byte()? },
            tag::UNMODELLED => {
                let mmio = self.byte()? != 0;
                EventKind::Unmodelled { mmio, addr: self.varint()?, rip: self.varint()? }
            }
            tag::STOP => EventKind::Stop(match self.byte()? {
                0 => StopKind::DebugExit(u32::try_from(self.varint()?).map_err(|_| DecodeError::Invalid(tag_at))?),
                1 => StopKind::TripleFault,
                2 => StopKind::Halted,
                3 => {
                    let n = self.varint()? as usize;
                    if n > 1 << 16 {
                        return Err(DecodeError::Invalid(tag_at));
                    }
                    StopKind::InternalError(String::from_utf8_lossy(self.bytes(n)?).into_owned())
                }
                _ => return Err(DecodeError::Invalid(tag_at)),
            }),
            tag::DISK_BLOCK => {
                let block = self.varint()?;
                let data = self.sectors()?;
                if data.len() != ttvm_vmm::disk::BLOCK_SIZE {
                    return Err(DecodeError::Invalid(tag_at));
                }
                EventKind::DiskBlock { block, data }
            }
            tag::DISK_READ => {
                let sector = self.varint()?;
                let sectors = u32::try_from(self.varint()?).map_err(|_| DecodeError::Invalid(tag_at))?;
                EventKind::DiskRead { sector, sectors }
            }
            tag::DISK_WRITE => EventKind::DiskWrite { sector: self.varint()?, data: self.sectors()? },
            tag::DISK_BLOCK_PAGE => EventKind::DiskBlock { block: self.varint()?, data: self.page()? },
            tag::DISK_WRITE_PAGES => {
                let sector = self.varint()?;
                let at = self.pos;
                let sectors = self.varint()?;
                if sectors == 0 || sectors > (4 << 20) / SECTOR_SIZE as u64 {
                    return Err(DecodeError::Invalid(at));
                }
                let (head, blocks, tail) = split_write(sector, sectors as usize);
                let mut data = Vec::with_capacity(sectors as usize * SECTOR_SIZE);
                data.extend_from_slice(self.bytes(head * SECTOR_SIZE)?);
                for _ in 0..blocks {
                    data.extend_from_slice(&self.page()?);
                }
                data.extend_from_slice(self.bytes(tail * SECTOR_SIZE)?);
                EventKind::DiskWrite { sector, data }
            }
            tag::DISK_DONE => EventKind::DiskDone {
                requests: u32::try_from(self.varint()?).map_err(|_| DecodeError::Invalid(tag_at))?,
            },
            tag::NET_RX => EventKind::NetRx { frame: self.varint()?, data: self.frame()? },
            tag::NET_TX => EventKind::NetTx { data: self.frame()? },
            t => return Err(DecodeError::UnknownTag { tag: t, offset: tag_at }),
        };
        self.prev_icount = icount;
        Ok(Some(Event { icount, kind }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Event> {
        let e = |icount, kind| Event { icount, kind };
        vec![
            e(5, EventKind::Interrupt { vector: 0x20 }),
            e(5, EventKind::PortIn { port: 0x3fd, data: IoData::from_slice(&[0x60]) }),
            e(9, EventKind::PortOut { port: 0xf4, data: IoData::from_slice(&7u32.to_le_bytes()) }),
            e(9, EventKind::PortIn { port: 0x60, data: IoData::from_slice(&[1; 40]) }),
            e(10, EventKind::MmioRead { addr: 0xfee0_0030, data: IoData::from_slice(&[0xff; 4]) }),
            e(10, EventKind::MmioWrite { addr: 0xfee0_00b0, data: IoData::from_slice(&[0; 4]) }),
            e(11, EventKind::Rdtsc { value: u64::MAX }),
            e(12, EventKind::Rdtscp { value: 1234 }),
            e(13, EventKind::Rdrand { value: 0xdead_beef_0bad_f00d }),
            e(14, EventKind::Rdseed { value: 3 }),
            e(15, EventKind::RdmsrTsc { value: 99 }),
            e(15, EventKind::SerialOut { byte: b'x' }),
            e(16, EventKind::SerialIn { byte: b'\n' }),
            e(17, EventKind::Unmodelled { mmio: false, addr: 0x2f8, rip: 0x10_0000 }),
            e(18, EventKind::DiskBlock { block: 3, data: vec![7; 4096] }),
            e(18, EventKind::DiskRead { sector: 24, sectors: 2 }),
            e(18, EventKind::DiskWrite { sector: 1 << 33, data: vec![9; 1024] }),
            e(18, EventKind::DiskDone { requests: 2 }),
            e(19, EventKind::NetRx { frame: 7, data: vec![0x52; 60] }),
            e(19, EventKind::NetTx { data: vec![0xff; 14] }),
            e(1 << 40, EventKind::Stop(StopKind::InternalError("oops".into()))),
        ]
    }

    #[test]
    fn round_trips_every_kind() {
        let events = sample();
        let mut buf = Vec::new();
        let mut prev = 3;
        for e in &events {
            encode(&mut buf, e, prev);
            prev = e.icount;
        }
        let mut d = Decoder::new(&buf, 3);
        let mut back = Vec::new();
        while let Some(e) = d.next_event().unwrap() {
            back.push(e);
        }
        assert_eq!(back, events);
    }

    #[test]
    fn truncation_and_garbage_are_errors_not_panics() {
        let mut buf = Vec::new();
        let mut prev = 0;
        for e in &sample() {
            encode(&mut buf, e, prev);
            prev = e.icount;
        }
        for cut in 0..buf.len() {
            let mut d = Decoder::new(&buf[..cut], 0);
            let mut result = Ok(None);
            for _ in 0..100 {
                result = d.next_event();
                if !matches!(result, Ok(Some(_))) {
                    break;
                }
            }
            assert!(matches!(result, Ok(None) | Err(_)));
        }
        let mut d = Decoder::new(&[0, 200], 0);
        assert_eq!(d.next_event(), Err(DecodeError::UnknownTag { tag: 200, offset: 1 }));
    }

    #[test]
    fn small_events_are_small() {
        let mut buf = Vec::new();
        encode(&mut buf, &Event { icount: 100, kind: EventKind::Interrupt { vector: 0x20 } }, 0);
        assert_eq!(buf.len(), 3);
    }

    /// A toy page store for the format-5 disk encoding: ids in order of first content.
    #[derive(Default)]
    struct Store(Vec<Vec<u8>>);

    impl Store {
        fn intern(&mut self, page: &[u8]) -> u32 {
            match self.0.iter().position(|p| p[..] == page[..]) {
                Some(i) => i as u32,
                None => {
                    self.0.push(page.to_vec());
                    self.0.len() as u32 - 1
                }
            }
        }
    }

    /// Format 5's disk events, byte by byte: a block is its number and a page id; a write
    /// keeps its partial ends inline and refers to its whole aligned blocks.
    #[test]
    fn the_format_5_disk_encoding_is_pinned() {
        let mut store = Store::default();
        store.intern(&[1; 4096]);
        let mut buf = Vec::new();
        let block = Event { icount: 7, kind: EventKind::DiskBlock { block: 300, data: vec![2; 4096] } };
        encode_with_pages(&mut buf, &block, 5, Some(&mut |p: &[u8]| store.intern(p)));
        // delta 2, tag 19, block 300 (varint ac 02), page 1.
        assert_eq!(buf, [2, 19, 0xac, 0x02, 1]);

        // Sectors 6..18: 2 sectors up to the 4 KiB boundary at 8, block 1 (8..16), 2 after.
        let mut data = vec![0xaa; 1024];
        data.extend_from_slice(&[2; 4096]);
        data.extend_from_slice(&[0xbb; 1024]);
        let write = Event { icount: 7, kind: EventKind::DiskWrite { sector: 6, data: data.clone() } };
        let mut w = Vec::new();
        encode_with_pages(&mut w, &write, 7, Some(&mut |p: &[u8]| store.intern(p)));
        assert_eq!(&w[..4], &[0, 20, 6, 12], "delta, tag, sector, sectors");
        assert_eq!(&w[4..1028], &[0xaa; 1024][..], "the head, inline");
        assert_eq!(w[1028], 1, "the whole block: the page the DiskBlock stored, not again");
        assert_eq!(&w[1029..], &[0xbb; 1024][..], "the tail, inline");
        assert_eq!(store.0.len(), 2, "the written block's contents were already stored");

        buf.extend_from_slice(&w);
        let resolve = |id: u32| store.0.get(id as usize).cloned();
        let mut d = Decoder::with_pages(&buf, 5, &resolve);
        assert_eq!(d.next_event().unwrap(), Some(block));
        assert_eq!(d.next_event().unwrap(), Some(write));
        assert_eq!(d.next_event().unwrap(), None);
        assert_eq!(d.disk_pages, [1, 1]);

        // Without a page store (formats 1-4) or with a page not stored: errors, no panic.
        assert_eq!(Decoder::new(&buf, 5).next_event(), Err(DecodeError::NoPageStore(4)));
        let none = |_: u32| None;
        assert_eq!(
            Decoder::with_pages(&buf, 5, &none).next_event(),
            Err(DecodeError::MissingPage { page: 1, offset: 4 })
        );
    }

    #[test]
    fn writes_split_at_4k_boundaries() {
        assert_eq!(split_write(0, 8), (0, 1, 0));
        assert_eq!(split_write(2, 3), (3, 0, 0), "inside one block: all inline");
        assert_eq!(split_write(6, 12), (2, 1, 2));
        assert_eq!(split_write(8, 17), (0, 2, 1));
        assert_eq!(split_write(7, 1), (1, 0, 0));
        // A partial write is inline whole, so nothing but full aligned blocks is a page.
        let mut buf = Vec::new();
        let e = Event { icount: 0, kind: EventKind::DiskWrite { sector: 2, data: vec![3; 1536] } };
        encode_with_pages(&mut buf, &e, 0, Some(&mut |_: &[u8]| panic!("no whole block")));
        assert_eq!(buf.len(), 4 + 1536);
    }
}
