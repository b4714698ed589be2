//! Splitting the byte stream from gdb into packets before gdbstub sees it.
//!
//! gdbstub 0.7 ends the whole session on a bad checksum, a stray byte outside a packet, a
//! packet longer than its buffer or a NACK. A debugging session should not die because of
//! one damaged packet, so this framer only passes on complete packets whose checksum is
//! right and which fit, plus the Ctrl-C byte; everything else is reported to the event
//! loop, which answers it the way the remote protocol expects.

use std::collections::VecDeque;
use std::io::Read;

/// One thing received from gdb.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A complete packet, `$body#cc`, checksum verified.
    Packet(Vec<u8>),
    /// The interrupt byte (Ctrl-C in gdb).
    Interrupt,
    /// gdb asked for the last reply again ('-').
    Nack,
    /// A packet that cannot be used.
    Rejected(Reject),
    /// The connection closed.
    Eof,
}

/// Why a packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// The checksum does not match the body (or is not hex).
    BadChecksum,
    /// Longer than the packet buffer.
    TooLong,
}

enum State {
    Outside,
    Body,
    Checksum1,
    Checksum2,
}

/// The framer over a byte source.
#[derive(Debug)]
pub struct Framer<R> {
    src: R,
    buf: Vec<u8>,
    pos: usize,
    max_len: usize,
    pending: VecDeque<Item>,
    /// Bytes seen outside packets and ignored (for the log).
    pub junk_bytes: u64,
}

impl<R: Read> Framer<R> {
    /// A framer passing on packets of at most `max_len` bytes (including `$`, `#cc`).
    pub fn new(src: R, max_len: usize) -> Self {
        Self { src, buf: Vec::new(), pos: 0, max_len: max_len.max(4), pending: VecDeque::new(), junk_bytes: 0 }
    }

    /// Whether received bytes or items are waiting (a run should not start then: they may
    /// be a Ctrl-C).
    pub fn has_buffered(&self) -> bool {
        self.pos < self.buf.len() || !self.pending.is_empty()
    }

    /// Puts an item back to be returned by the next [`Framer::next_item`].
    pub fn push_back(&mut self, item: Item) {
        self.pending.push_front(item);
    }

    fn byte(&mut self) -> std::io::Result<Option<u8>> {
        if self.pos == self.buf.len() {
            self.buf.resize(4096, 0);
            let n = loop {
                match self.src.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.buf.clear();
                        self.pos = 0;
                        return Err(e);
                    }
                }
            };
            self.buf.truncate(n);
            self.pos = 0;
            if n == 0 {
                return Ok(None);
            }
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(Some(b))
    }

    /// Blocks until the next item.
    pub fn next_item(&mut self) -> std::io::Result<Item> {
        if let Some(item) = self.pending.pop_front() {
            return Ok(item);
        }
        let mut state = State::Outside;
        let mut packet = Vec::new();
        let mut too_long = false;
        let mut sum = 0u8;
        loop {
            let Some(b) = self.byte()? else { return Ok(Item::Eof) };
            match state {
                State::Outside => match b {
                    b'$' => {
                        packet.clear();
                        packet.push(b);
                        sum = 0;
                        too_long = false;
                        state = State::Body;
                    }
                    0x03 => return Ok(Item::Interrupt),
                    b'-' => return Ok(Item::Nack),
                    // An ACK carries no information once the packet it acknowledges was sent.
                    b'+' => {}
                    _ => self.junk_bytes += 1,
                },
                State::Body => match b {
                    b'#' => {
                        packet.push(b);
                        state = State::Checksum1;
                    }
                    // A '$' cannot appear in a body (it is escaped): the previous packet was
                    // cut off, and this is the start of a new one.
                    b'$' => {
                        self.junk_bytes += packet.len() as u64;
                        packet.clear();
                        packet.push(b);
                        sum = 0;
                        too_long = false;
                    }
                    _ => {
                        sum = sum.wrapping_add(b);
                        if packet.len() + 3 >= self.max_len {
                            too_long = true;
                        } else {
                            packet.push(b);
                        }
                    }
                },
                State::Checksum1 => {
                    packet.push(b);
                    state = State::Checksum2;
                }
                State::Checksum2 => {
                    packet.push(b);
                    if too_long {
                        return Ok(Item::Rejected(Reject::TooLong));
                    }
                    let n = packet.len();
                    let given = std::str::from_utf8(&packet[n - 2..]).ok().and_then(|s| u8::from_str_radix(s, 16).ok());
                    return Ok(if given == Some(sum) {
                        Item::Packet(packet)
                    } else {
                        Item::Rejected(Reject::BadChecksum)
                    });
                }
            }
        }
    }
}

/// `$body#cc` with the checksum computed.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let sum = body.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(b'$');
    out.extend_from_slice(body);
    out.extend_from_slice(format!("#{sum:02x}").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(input: &[u8], max: usize) -> Vec<Item> {
        let mut f = Framer::new(input, max);
        let mut out = Vec::new();
        loop {
            let i = f.next_item().unwrap();
            let end = i == Item::Eof;
            out.push(i);
            if end {
                return out;
            }
        }
    }

    #[test]
    fn good_packets_interrupts_and_acks() {
        let mut input = b"+".to_vec();
        input.extend(frame(b"qSupported:multiprocess+"));
        input.push(3);
        input.extend(frame(b"g"));
        let got = items(&input, 100);
        assert_eq!(
            got,
            vec![
                Item::Packet(frame(b"qSupported:multiprocess+")),
                Item::Interrupt,
                Item::Packet(frame(b"g")),
                Item::Eof
            ]
        );
    }

    #[test]
    fn damage_is_reported_not_passed_on() {
        let mut input = b"garbage".to_vec();
        input.extend(b"$g#00");
        input.extend(b"$g#zz");
        input.extend(b"-");
        input.extend(frame(&[b'm'; 50]));
        input.extend(b"$cut off");
        input.extend(frame(b"?"));
        let mut f = Framer::new(&input[..], 32);
        assert_eq!(f.next_item().unwrap(), Item::Rejected(Reject::BadChecksum));
        assert_eq!(f.junk_bytes, 7);
        assert_eq!(f.next_item().unwrap(), Item::Rejected(Reject::BadChecksum));
        assert_eq!(f.next_item().unwrap(), Item::Nack);
        assert_eq!(f.next_item().unwrap(), Item::Rejected(Reject::TooLong));
        assert_eq!(f.next_item().unwrap(), Item::Packet(frame(b"?")));
        assert_eq!(f.next_item().unwrap(), Item::Eof);
    }

    #[test]
    fn longest_packet_that_fits_is_accepted() {
        let p = frame(&[b'x'; 28]);
        assert_eq!(p.len(), 32);
        assert_eq!(items(&p, 32)[0], Item::Packet(p.clone()));
        assert_eq!(items(&p, 31)[0], Item::Rejected(Reject::TooLong));
    }

    #[test]
    fn pushed_back_items_come_first() {
        let input = frame(b"g");
        let mut f = Framer::new(&input[..], 100);
        f.push_back(Item::Interrupt);
        assert!(f.has_buffered());
        assert_eq!(f.next_item().unwrap(), Item::Interrupt);
        assert_eq!(f.next_item().unwrap(), Item::Packet(frame(b"g")));
    }
}
