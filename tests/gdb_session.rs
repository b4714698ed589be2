//! A gdb session against `ttvm replay --gdb`: what gdb sees at a stop (system and FPU
//! registers, disassembly, backtrace with the ELF written by `--write-kernel`), and
//! robustness: malformed packets, unmapped memory, refused writes, bad monitor commands
//! and Ctrl-C all leave the session usable; bad listen addresses and a busy port are clear
//! CLI errors.

mod common;
#[path = "gdb/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use harness::{gdb, hex, mark, serve, shared_trace};

const BENCH: (&str, &str) = ("bench", "size=16 rounds=1");

/// `$body#cc`.
fn frame(body: &[u8]) -> Vec<u8> {
    let sum = body.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    let mut p = vec![b'$'];
    p.extend_from_slice(body);
    p.extend_from_slice(format!("#{sum:02x}").as_bytes());
    p
}

/// A raw remote-protocol client in ack mode.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(addr: &str) -> Self {
        let s = TcpStream::connect(addr).expect("connect to the gdb server");
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        Raw { s, buf: Vec::new() }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("send");
    }

    /// Everything received until `done` says the answer is complete (or `wait` passes).
    fn recv_until(&mut self, wait: Duration, done: impl Fn(&[u8]) -> bool) -> String {
        let deadline = Instant::now() + wait;
        let mut chunk = [0u8; 65536];
        while !done(&self.buf) && Instant::now() < deadline {
            match self.s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
        String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned()
    }

    /// The reply to a packet: ACK plus one complete packet.
    fn reply(&mut self) -> String {
        self.recv_until(Duration::from_secs(30), |b| {
            b.iter().position(|&c| c == b'#').is_some_and(|i| b.len() >= i + 3)
        })
    }

    /// Whatever arrives in a short while (for answers that are a single byte or nothing).
    fn quiet(&mut self) -> String {
        self.recv_until(Duration::from_millis(300), |_| false)
    }
}

#[test]
fn registers_disassembly_and_backtrace() {
    if !common::require_kvm("registers_disassembly_and_backtrace") {
        return;
    }
    let dir = common::tempdir();
    let elf = dir.path().join("kernel.elf");
    let server = serve(&shared_trace(BENCH.0, BENCH.1), &["--write-kernel", elf.to_str().unwrap()]);
    assert_eq!(server.kernel, elf, "the server should point gdb at the written ELF");
    assert_eq!(std::fs::read(&elf).unwrap(), std::fs::read(common::kernel_path("bench")).unwrap());
    let out = gdb(&server, &[], "registers.py");
    let pc = hex(&mark(&out, "pc")[0]);
    let regs: std::collections::HashMap<String, u64> =
        harness::marks(&out, "reg").into_iter().map(|m| (m[0].clone(), hex(&m[1]))).collect();
    for r in ["cr0", "cr3", "cr4", "efer", "fs_base", "gs_base", "k_gs_base", "cr2", "cr8"] {
        assert!(regs.contains_key(r), "{r} missing from `info registers`\n{out}");
    }
    // kmain runs in long mode with paging: CR0.PG+PE, EFER.LMA+LME, CR4.PAE, a page-aligned CR3.
    assert_eq!(regs["cr0"] & 0x8000_0001, 0x8000_0001, "{out}");
    assert_eq!(regs["efer"] & 0x500, 0x500, "{out}");
    assert_ne!(regs["cr4"] & 0x20, 0, "{out}");
    assert!(regs["cr3"] != 0 && regs["cr3"] & 0xfff == 0, "{out}");
    let kmain = common::symbol(&elf, "kmain");
    assert!(pc > kmain && pc - kmain < 64, "`break kmain` stops after its prologue\n{out}");
    assert_eq!(hex(&mark(&out, "rip")[0]), pc);
    // The FPU/SSE state comes from the vCPU (reset values: no kernel here touches them).
    assert_eq!(hex(&mark(&out, "mxcsr")[0]), 0x1f80, "{out}");
    assert_eq!(hex(&mark(&out, "fctrl")[0]), 0x37f, "{out}");
    assert_eq!(mark(&out, "xmm15"), ["ok"], "{out}");
    assert_eq!(mark(&out, "x4i"), ["4", "arrow"], "{out}");
    assert_eq!(mark(&out, "bt"), ["kmain", "source"], "{out}");
}

#[test]
fn malformed_packets_get_errors_and_the_session_goes_on() {
    if !common::require_kvm("malformed_packets_get_errors_and_the_session_goes_on") {
        return;
    }
    let server = serve(&shared_trace(BENCH.0, BENCH.1), &[]);
    let mut c = Raw::connect(&server.addr);
    c.send(&frame(b"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386"));
    let r = c.reply();
    assert!(r.starts_with('+') && r.contains("ReverseContinue+") && r.contains("ReverseStep+"), "{r}");

    // Bad checksum: NACKed, nothing else.
    c.send(b"$g#00");
    assert_eq!(c.quiet(), "-");
    // Bytes outside any packet, and a NACK from the client: ignored.
    c.send(b"hello, gdb server");
    c.send(b"-");
    assert_eq!(c.quiet(), "");
    // Longer than the packet buffer: an error reply.
    let mut long = vec![b'$'];
    long.extend(std::iter::repeat_n(b'm', 40_000));
    long.extend_from_slice(b"#00");
    c.send(&long);
    assert!(c.reply().contains("$E16#"), "over-long packet");
    // Well framed but unparsable commands: error replies from a fresh protocol state.
    for bad in [&b"mzz,zz"[..], b"Z0,notanaddress,1", b"vCont;q"] {
        c.send(&frame(bad));
        let r = c.reply();
        assert!(r.contains("$E"), "{}: {r}", String::from_utf8_lossy(bad));
    }
    // An unknown command: the empty "unsupported" reply.
    c.send(&frame(b"qTtvmNoSuchThing"));
    assert_eq!(c.reply(), "+$#00");

    // The session still works: registers, memory, an out-of-RAM read, stepping.
    c.send(&frame(b"g"));
    // (Replies are run-length encoded, so only their shape is checked.)
    let regs = c.reply();
    assert!(regs.starts_with("+$") && !regs.starts_with("+$E") && regs.len() > 20, "{regs}");
    c.send(&frame(b"m100000,4"));
    let mem = c.reply();
    assert!(mem.starts_with("+$") && !mem.starts_with("+$E"), "{mem}");
    c.send(&frame(b"mfff00000,4"));
    assert_eq!(c.reply(), format!("+{}", String::from_utf8_lossy(&frame(b"E0e"))));
    c.send(&frame(b"vCont;s:1"));
    let step = c.reply();
    assert!(step.contains("$S05#") || step.contains("$T05"), "single step: {step}");

    // Ctrl-C while running forward stops the run with SIGINT. A write watchpoint on code
    // nothing writes keeps the run checking every step (with nothing set, `continue`
    // jumps straight to the end of history).
    c.send(&frame(b"Z2,100000,8"));
    assert_eq!(c.reply(), format!("+{}", String::from_utf8_lossy(&frame(b"OK"))));
    c.send(&frame(b"vCont;c"));
    std::thread::sleep(Duration::from_millis(100));
    c.send(&[0x03]);
    let stop = c.reply();
    assert!(stop.contains("$S02#") || stop.contains("$T02"), "{stop}");

    c.send(&frame(b"D"));
    assert!(c.reply().contains("$OK#"));
    let (status, err) = server.wait(Duration::from_secs(30));
    assert!(status.success(), "{err}");
    assert!(err.contains("gdb detached"), "{err}");
}

#[test]
fn gdb_errors_refused_writes_and_ctrl_c() {
    if !common::require_kvm("gdb_errors_refused_writes_and_ctrl_c") {
        return;
    }
    let server = serve(&shared_trace(BENCH.0, BENCH.1), &[]);
    let out = gdb(&server, &[], "errors.py");
    let start = hex(&mark(&out, "start")[0]);

    let unmapped = mark(&out, "unmapped");
    assert_eq!(unmapped[0], "error", "{out}");
    assert!(unmapped[1].contains("Cannot_access_memory_at_address_0xdead00000000"), "{out}");
    assert_eq!(mark(&out, "pc-after")[0], mark(&out, "start")[1], "{out}");

    assert_eq!(mark(&out, "regwrite"), ["error", "unchanged"], "{out}");
    assert_eq!(mark(&out, "memwrite"), ["error"], "{out}");
    assert_ne!(mark(&out, "code")[0], "cc", "guest memory was patched\n{out}");
    assert!(server.stderr().contains("refused a register write"), "{}", server.stderr());

    assert_eq!(mark(&out, "goto-past"), ["error"], "{out}");
    assert_eq!(mark(&out, "goto-garbage"), ["error"], "{out}");
    assert_eq!(mark(&out, "unknown"), ["error"], "{out}");
    assert_eq!(hex(&mark(&out, "still")[0]), start, "a failed goto moved the position\n{out}");
    assert_eq!(hex(&mark(&out, "stepped")[0]), start + 1, "{out}");
    assert!(hex(&mark(&out, "events")[0]) >= 5, "{out}");

    // Ctrl-C (SIGINT to gdb 0.3 s into the run) stops both directions before they finish
    // (the whole history takes a second or more to replay), reported as SIGINT: had a run
    // finished first, its stop would be the end of history instead.
    // An interrupted forward run stays where it stopped; an interrupted reverse run goes
    // back to where it started (the part of history it had not fully scanned may hold
    // breakpoint hits a later reverse-continue must not skip).
    for (key, expect_at_start) in [("ctrlc-fwd", false), ("ctrlc-rev", true)] {
        let m = mark(&out, key);
        let (at, len, ms) = (hex(&m[0]), hex(&m[1]), m[3].parse::<u64>().unwrap());
        assert_eq!(m[2], "signal-SIGINT", "{key}\n{out}");
        assert_eq!(at == len, expect_at_start, "{key}: stopped at {at} of {len}\n{out}");
        assert!(ms < 5000, "{key}: took {ms} ms to stop\n{out}");
    }
    assert!(mark(&out, "alive").len() == 1, "{out}");
}

#[test]
fn bad_listen_address_and_busy_port_are_clear_errors() {
    if !common::require_kvm("bad_listen_address_and_busy_port_are_clear_errors") {
        return;
    }
    let trace = shared_trace(BENCH.0, BENCH.1);
    let t = trace.to_str().unwrap();
    let o = common::run(&["replay", t, "--gdb", "not-a-port"]);
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("[ADDR:]PORT"), "{}", common::text(&o));

    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let o = common::run(&["replay", t, "--gdb", &port]);
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already in use"), "{}", common::text(&o));
}
