//! Timeline: seeking in both directions reaches identical states, and breakpoints and
//! watchpoints stop at the same positions whichever way the timeline runs.

use std::rc::Rc;

use ttvm_replay::clock::ClockMode;
use ttvm_replay::record::{RecordEnd, RecordOptions, RecordSession};
use ttvm_replay::recording::Recording;
use ttvm_replay::timeline::{Direction, Stop, Timeline, WatchKind, Watchpoint};
use ttvm_vmm::console::{ConsoleInput, ConsoleOutput};
use ttvm_vmm::machine::MachineConfig;

/// A short deterministic kernel run (about 15 000 steps).
const KERNEL: &str = "hello";
const CMDLINE: &str = "";

use ttvm_test_support::require_kvm as kvm_or_skip;

fn record(dir: &std::path::Path, kernel: &str, cmdline: &str, checkpoint_every: u64) -> Rc<Recording> {
    record_until(dir, kernel, cmdline, checkpoint_every, None)
}

/// Records `kernel` until it exits, or for `max_steps` steps.
fn record_until(
    dir: &std::path::Path,
    kernel: &str,
    cmdline: &str,
    checkpoint_every: u64,
    max_steps: Option<u64>,
) -> Rc<Recording> {
    let (path, end) = ttvm_test_support::record_sample(dir, kernel, cmdline, checkpoint_every, 64 << 20, max_steps);
    let expected =
        if max_steps.is_some() { matches!(end, RecordEnd::StepLimit) } else { matches!(end, RecordEnd::Guest(_)) };
    assert!(expected, "{end:?}");
    Rc::new(Recording::open(&path).unwrap())
}

fn regs_at(t: &Timeline) -> (u64, u64, u64, u64) {
    let r = t.machine().vm.vcpu().regs();
    (r.rip, r.rsp, r.rax, r.rflags)
}

#[test]
fn seeks_agree_in_both_directions_and_breakpoints_match() {
    if !kvm_or_skip("seeks_agree_in_both_directions_and_breakpoints_match") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rec = record(dir.path(), KERNEL, CMDLINE, 2_000);
    assert!(rec.checkpoints.len() >= 3, "want several checkpoints, got {}", rec.checkpoints.len());
    let len = rec.length();
    let mut t = Timeline::new(rec.clone(), &ttvm_replay::stepping::host_signature()).unwrap();
    t.set_temp_policy(500, 64 << 20);

    // Walk forward recording RIPs at a few positions.
    let probes = [len / 7, len / 3, len / 2, len - 10];
    let mut forward = Vec::new();
    for &p in &probes {
        assert_eq!(t.seek(p).unwrap(), Stop::Done);
        assert_eq!(t.icount(), p);
        forward.push(regs_at(&t));
    }
    // And backward: the same states.
    for (i, &p) in probes.iter().enumerate().rev() {
        t.seek(p).unwrap();
        assert_eq!(regs_at(&t), forward[i], "state at {p} differs when reached backwards");
    }
    // Ten steps forward then ten back gives the same registers in reverse order.
    t.seek(len / 2).unwrap();
    let mut seen = vec![regs_at(&t)];
    for _ in 0..10 {
        assert_eq!(t.step_forward().unwrap(), Stop::Done);
        seen.push(regs_at(&t));
    }
    for i in (0..10).rev() {
        assert_eq!(t.step_backward().unwrap(), Stop::Done);
        assert_eq!(regs_at(&t), seen[i]);
    }
    assert!(t.temp_checkpoints().0 > 0, "seeks should leave in-memory checkpoints");

    // Breakpoint at the RIP seen at len/2 + 5: forward from len/2 stops at the first hit
    // after len/2; backward from the end stops at the last hit.
    let bp = seen[5].0;
    t.add_breakpoint(bp);
    t.seek(len / 2).unwrap();
    let stop = t.run_forward().unwrap();
    assert_eq!(stop, Stop::Breakpoint { addr: bp });
    let first_hit = t.icount();
    assert!(first_hit <= len / 2 + 5);
    // Collect all hits forward to the end.
    let mut hits = vec![first_hit];
    loop {
        match t.run_forward().unwrap() {
            Stop::Breakpoint { .. } => hits.push(t.icount()),
            Stop::HistoryEnd => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    // Backward from the end visits the same hits in reverse.
    for &h in hits.iter().rev() {
        assert_eq!(t.run_backward().unwrap(), Stop::Breakpoint { addr: bp });
        assert_eq!(t.icount(), h, "reverse-continue stopped at a different hit");
    }
    // Before the first hit there may be earlier hits (before len/2); keep going to the start.
    loop {
        match t.run_backward().unwrap() {
            Stop::Breakpoint { .. } => {}
            Stop::HistoryStart => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(t.icount(), 0);
}

#[test]
fn watchpoint_and_last_write_find_the_writer() {
    if !kvm_or_skip("watchpoint_and_last_write_find_the_writer") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rec = record(dir.path(), KERNEL, CMDLINE, 2_000);
    let len = rec.length();
    let mut t = Timeline::new(rec, &ttvm_replay::stepping::host_signature()).unwrap();
    let read = |t: &Timeline, addr: u64| {
        let m = t.machine();
        let space = ttvm_vmm::paging::AddressSpace::from_sregs(&m.vm.vcpu().sregs());
        let mut b = [0u8; 8];
        space.read_virt(m.vm.ram(), addr, &mut b).map(|_| b).ok()
    };
    // Find a step in the middle that pushes to the stack: the word at the new RSP changes.
    t.seek(len / 2).unwrap();
    let (writer, slot) = loop {
        let q = t.icount();
        assert!(q < len - 1, "no stack write found");
        let before_rsp = t.machine().vm.vcpu().regs().rsp;
        let old = read(&t, before_rsp.wrapping_sub(8));
        t.step_forward().unwrap();
        let rsp = t.machine().vm.vcpu().regs().rsp;
        if rsp == before_rsp.wrapping_sub(8) && read(&t, rsp) != old {
            break (q, rsp);
        }
    };
    let w = Watchpoint { addr: slot, len: 8, kind: WatchKind::Write };
    // "Who wrote this?" from a few steps later finds that step.
    t.seek(writer + 3).unwrap();
    assert_eq!(t.last_write(w.addr, w.len).unwrap(), Some(writer));
    assert_eq!(t.icount(), writer);
    // A forward run from before the writer with the watchpoint stops right after it.
    t.add_watchpoint(w);
    t.seek(writer.saturating_sub(50)).unwrap();
    let mut stop;
    loop {
        stop = t.run_forward().unwrap();
        if t.icount() > writer || stop == Stop::HistoryEnd {
            break;
        }
    }
    assert_eq!(stop, Stop::Watchpoint { watch: w });
    assert_eq!(t.icount(), writer + 1);
    // And backward from the end with the watchpoint stops on the writer.
    t.seek(len).unwrap();
    assert_eq!(t.run_backward().unwrap(), Stop::Watchpoint { watch: w });
    assert_eq!(t.icount(), writer);
}

#[test]
fn live_debugging_goes_back_then_records_new_history() {
    if !kvm_or_skip("live_debugging_goes_back_then_records_new_history") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.ttvm");
    let k = ttvm_sample_kernels::get(KERNEL).unwrap();
    let s = RecordSession::start(
        MachineConfig {
            mem_size: 64 << 20,
            kernel: k.elf.to_vec(),
            cmdline: CMDLINE.into(),
            rtc_base_unix_secs: 1_700_000_000,
            initrd: Vec::new(),
        },
        &path,
        RecordOptions {
            clock: ClockMode::Icount,
            checkpoint_every: 2_000,
            kernel_name: KERNEL.into(),
            stepping: ttvm_replay::stepping::host_signature(),
        },
        ConsoleOutput::Discard,
        ConsoleInput::none(),
    )
    .unwrap();
    let mut t = Timeline::live(s, &path, &ttvm_replay::stepping::host_signature()).unwrap();
    assert!(t.at_frontier());
    // Forward: records new steps.
    let mut seen = vec![regs_at(&t)];
    for _ in 0..5_000 {
        assert_eq!(t.step_forward().unwrap(), Stop::Done);
        seen.push(regs_at(&t));
    }
    assert_eq!(t.length(), 5_000);
    assert!(t.at_frontier());
    // Back 100 steps through replay: the same states.
    for i in (4_900..5_000).rev() {
        assert_eq!(t.step_backward().unwrap(), Stop::Done);
        assert_eq!(regs_at(&t), seen[i], "position {i}");
    }
    assert!(!t.at_frontier());
    // Forward again: replays to the frontier, then records new territory.
    for expected in &seen[4_901..=5_000] {
        t.step_forward().unwrap();
        assert_eq!(&regs_at(&t), expected);
    }
    let stop = t.run_forward().unwrap();
    assert_eq!(stop, Stop::HistoryEnd, "the guest runs to its exit");
    assert!(t.live_stop().is_some());
    let len = t.length();
    assert!(len > 5_000);
    // A breakpoint found going back agrees with the recorded history.
    t.add_breakpoint(seen[4_950].0);
    assert!(matches!(t.run_backward().unwrap(), Stop::Breakpoint { .. }));
    let end = RecordEnd::Guest(t.live_stop().cloned().unwrap());
    t.live_session().unwrap().finish(&end).unwrap();
    // The trace written during the session replays and verifies.
    let rec = Rc::new(Recording::open(&path).unwrap());
    assert_eq!(rec.length(), len);
    let mut r = ttvm_replay::replay::ReplaySession::new(rec, &ttvm_replay::stepping::host_signature()).unwrap();
    while r.icount() < len {
        r.step().unwrap();
    }
    r.verify_end().unwrap();
}

/// The 4 bytes at linear address `addr` in the timeline's current memory.
fn read_u32(t: &Timeline, addr: u64) -> u32 {
    let vcpu = t.machine().vm.vcpu();
    let space = ttvm_vmm::paging::AddressSpace::from_sregs(&vcpu.sregs());
    let mut b = [0u8; 4];
    space.read_virt(t.machine().vm.ram(), addr, &mut b).unwrap();
    u32::from_le_bytes(b)
}

/// Where the instruction at the current position is an STMXCSR, its operand address.
fn stmxcsr_operand(t: &Timeline) -> Option<u64> {
    let vm = &t.machine().vm;
    let (regs, sregs) = (vm.vcpu().regs(), vm.vcpu().sregs());
    let (bytes, n) = ttvm_vmm::insn::fetch_at_rip(vm.ram(), &regs, &sregs);
    let m = ttvm_vmm::operand::decode_memory(&bytes[..n], ttvm_vmm::insn::code_mode(&sregs), &regs, &sregs)?;
    ((m.opcode, m.reg) == (0x0fae, 3)).then_some(m.linear)
}

/// ttvm carries out STMXCSR itself on hosts whose KVM cannot (PVM), so KVM's dirty log
/// does not see the store: a checkpoint taken right after it must still hold the stored
/// value, or every seek that restores that checkpoint shows stale memory.
#[test]
fn stores_ttvm_carries_out_reach_the_next_checkpoint() {
    if !kvm_or_skip("stores_ttvm_carries_out_reach_the_next_checkpoint") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reference = record(dir.path(), KERNEL, "mxcsr", 1 << 40);
    let mut t = Timeline::new(reference.clone(), &ttvm_replay::stepping::host_signature()).unwrap();
    let (after_store, addr, stored) = loop {
        if let Some(addr) = stmxcsr_operand(&t) {
            assert_eq!(t.step_forward().unwrap(), Stop::Done);
            break (t.icount(), addr, read_u32(&t, addr));
        }
        assert_eq!(t.step_forward().unwrap(), Stop::Done, "no STMXCSR in `hello mxcsr`");
    };
    assert_eq!(stored, 0x7f80, "hello loads round-toward-zero before reading MXCSR back");

    // A second recording with a checkpoint after every step, so the one just after the
    // store holds exactly the pages that step changed.
    let dir2 = tempfile::tempdir().unwrap();
    let rec = record_until(dir2.path(), KERNEL, "mxcsr", 1, Some(after_store + 1));
    assert!(rec.checkpoints.iter().any(|c| c.engine.icount == after_store));
    let mut t2 = Timeline::new(rec, &ttvm_replay::stepping::host_signature()).unwrap();
    assert_eq!(t2.seek(after_store).unwrap(), Stop::Done);
    assert_eq!(read_u32(&t2, addr), stored, "the checkpoint after the STMXCSR lost its store");
}

/// A forward run leaves in-memory checkpoints just behind where it stops, so the first
/// reverse step after `continue` replays at most one spacing, like the ones after it, and
/// not the whole persistent-checkpoint interval; and it keeps only two of them.
#[test]
fn a_forward_run_leaves_checkpoints_behind_its_stop() {
    if !kvm_or_skip("a_forward_run_leaves_checkpoints_behind_its_stop") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // One persistent checkpoint interval covers the whole run.
    let rec = record(dir.path(), KERNEL, CMDLINE, 1_000_000);
    let mut t = Timeline::new(rec.clone(), &ttvm_replay::stepping::host_signature()).unwrap();
    t.set_temp_policy(1024, 64 << 20);
    // Stop somewhere well inside the history, off the spacing grid: a breakpoint on the
    // instruction at a position found by seeking there once.
    let target = rec.length() * 3 / 4 + 77;
    t.seek(target).unwrap();
    let rip = t.machine().vm.vcpu().rip();
    t.seek(0).unwrap();
    t.set_temp_policy(1024, 0); // forget the seek's checkpoints
    t.set_temp_policy(1024, 64 << 20);
    t.add_breakpoint(rip);
    let mut stop = t.run_forward().unwrap();
    while t.icount() < target {
        assert!(matches!(stop, Stop::Breakpoint { .. }), "{stop:?}");
        stop = t.run_forward().unwrap();
    }
    assert_eq!(t.icount(), target, "{stop:?}");
    let (kept, _) = t.temp_checkpoints();
    assert!(kept <= 2 * 3, "at most two trailing checkpoints per forward run, got {kept}");
    let behind = t.temp_checkpoint_positions().into_iter().filter(|&p| p <= target).max().unwrap();
    assert!(target - behind < 1024, "one on the grid just behind the stop: {behind} vs {target}");
    let before = t.stats().replayed_steps;
    assert_eq!(t.step_backward().unwrap(), Stop::Done);
    assert_eq!(t.icount(), target - 1);
    let replayed = t.stats().replayed_steps - before;
    assert!(replayed < 1024, "the first reverse-stepi replayed {replayed} steps");
}

/// A forward run that nothing can stop passes the intervals over and arrives at the end of
/// history by a seek, which leaves in-memory checkpoints just behind it: the first reverse
/// step replays no more than the next ones (not the last interval).
#[test]
fn a_forward_run_to_the_end_leaves_checkpoints_behind_it() {
    if !kvm_or_skip("a_forward_run_to_the_end_leaves_checkpoints_behind_it") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rec = record(dir.path(), KERNEL, CMDLINE, 2_000);
    let len = rec.length();
    let last_interval = len - rec.checkpoints[rec.checkpoints.len() - 2].engine.icount;
    let mut t = Timeline::new(rec.clone(), &ttvm_replay::stepping::host_signature()).unwrap();
    t.set_temp_policy(1024, 64 << 20);
    assert_eq!(t.run_forward().unwrap(), Stop::HistoryEnd);
    assert_eq!(t.icount(), len);
    assert!(t.stats().skipped_intervals > 0, "{:?}", t.stats());
    let behind = t.temp_checkpoint_positions().into_iter().max().expect("a checkpoint behind the end");
    // The seek's fine grid: an eighth of the spacing.
    assert!(len - behind <= 128 + 1, "{behind} vs the end {len}");
    let before = t.stats().replayed_steps;
    assert_eq!(t.step_backward().unwrap(), Stop::Done);
    assert_eq!(t.icount(), len - 1);
    let replayed = t.stats().replayed_steps - before;
    assert!(replayed <= 128, "the first reverse-stepi replayed {replayed} steps (last interval {last_interval})");
}

/// Runs skip the checkpoint intervals whose code (listed in format-3 traces) cannot reach
/// any breakpoint, and stop exactly where a step-by-step scan does.
#[test]
fn runs_skip_intervals_no_breakpoint_can_stop_in() {
    if !kvm_or_skip("runs_skip_intervals_no_breakpoint_can_stop_in") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rec = record(dir.path(), "timer", "ticks=5", 1500);
    assert!(rec.checkpoints.len() > 8, "{} checkpoints", rec.checkpoints.len());
    let mut t = Timeline::new(rec.clone(), &ttvm_replay::stepping::host_signature()).unwrap();
    // Every position's RIP, by stepping.
    let mut rips = Vec::new();
    t.seek(0).unwrap();
    while t.icount() < rec.length() {
        rips.push(t.machine().vm.vcpu().rip());
        if t.step_forward().unwrap() != Stop::Done {
            break;
        }
    }
    // A rarely executed instruction (from near the end) and a busy one (from the middle).
    for addr in [rips[rips.len() - 3], rips[rips.len() / 2]] {
        let hits: Vec<u64> = (1..rips.len() as u64).filter(|&q| rips[q as usize] == addr).collect();
        t.add_breakpoint(addr);
        t.seek(0).unwrap();
        let skipped_before = t.stats().skipped_intervals;
        let mut forward = Vec::new();
        while let Stop::Breakpoint { .. } = t.run_forward().unwrap() {
            forward.push(t.icount());
        }
        assert_eq!(forward, hits, "forward stops at {addr:#x}");
        t.seek(rec.length()).unwrap();
        let mut backward = Vec::new();
        while let Stop::Breakpoint { .. } = t.run_backward().unwrap() {
            backward.push(t.icount());
        }
        backward.reverse();
        assert_eq!(
            backward,
            hits.iter().copied().filter(|&q| q < rec.length()).collect::<Vec<_>>(),
            "backward stops at {addr:#x}"
        );
        let skipped = t.stats().skipped_intervals - skipped_before;
        let intervals_with_hits: std::collections::BTreeSet<usize> =
            hits.iter().map(|&q| rec.checkpoint_before(q)).collect();
        if intervals_with_hits.len() * 2 < rec.checkpoints.len() {
            assert!(
                skipped > 0,
                "{addr:#x} is hit in {} intervals, yet nothing was skipped",
                intervals_with_hits.len()
            );
        }
        t.remove_breakpoint(addr);
    }
}

/// How a run is driven to its end in the pause tests.
#[derive(Clone, Copy, Debug)]
enum Driving {
    /// One call.
    Uninterrupted,
    /// A pause every `n` steps of the run (its step budget).
    Budget(u64),
    /// The interrupt flag raised before every call, as gdb's Ctrl-C or the UI's slicer does.
    Flag,
    /// The flag raised before every call, and the position moved to 0 by someone else after
    /// every `n`-th pause.
    FlagAndMoves(u64),
}

/// What a driven run ended with.
#[derive(Debug)]
struct Driven {
    stop: Stop,
    at: u64,
    /// Steps replayed by the run alone (not the seek to its origin).
    replayed: u64,
    pauses: u64,
    moves: u64,
    temps: Vec<u64>,
}

/// Opens a fresh timeline on `rec` with in-memory checkpoints every `spacing` steps, lets
/// `setup` set its stop points, seeks to `origin` and drives a run in `direction` from there.
fn drive(
    rec: &Rc<Recording>,
    spacing: u64,
    setup: &dyn Fn(&mut Timeline),
    origin: u64,
    direction: Direction,
    how: Driving,
) -> Driven {
    let mut t = Timeline::new(rec.clone(), &ttvm_replay::stepping::host_signature()).unwrap();
    t.set_temp_policy(spacing, 256 << 20);
    setup(&mut t);
    assert_eq!(t.seek(origin).unwrap(), Stop::Done);
    let before = t.stats().replayed_steps;
    let flag = t.interrupt_handle();
    let mut run = t.start_run(direction);
    if let Driving::Budget(n) = how {
        run.set_step_budget(Some(n));
    }
    let (mut pauses, mut moves) = (0, 0);
    let stop = loop {
        if !matches!(how, Driving::Uninterrupted | Driving::Budget(_)) {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let stop = t.continue_run(&mut run).unwrap();
        if stop != Stop::Interrupted {
            break stop;
        }
        assert!(!matches!(how, Driving::Uninterrupted), "nothing raised the flag");
        pauses += 1;
        // Every call gets on with the run: a run that rescanned what it had scanned before
        // would never end.
        assert!(pauses <= rec.length(), "{how:?}: {pauses} pauses and the run is still going");
        let progress = t.run_progress(&run);
        assert_eq!((progress.direction, progress.from, progress.at), (direction, origin, t.icount()));
        if let Driving::FlagAndMoves(n) = how {
            if pauses % n == 0 {
                // Position 0 is a persistent checkpoint: moving there replays nothing.
                assert_eq!(t.seek(0).unwrap(), Stop::Done);
                moves += 1;
            }
        }
    };
    flag.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(run.is_finished());
    assert_eq!(t.continue_run(&mut run).unwrap(), stop, "a finished run reports its stop again");
    Driven {
        stop,
        at: t.icount(),
        replayed: t.stats().replayed_steps - before,
        pauses,
        moves,
        temps: t.temp_checkpoint_positions(),
    }
}

/// Drives the same run every way and checks each ends where the uninterrupted one does,
/// replaying no more than it (and, after a move, at most one persistent-checkpoint interval
/// more per move: the way back to where the run was).
fn pauses_change_nothing(
    rec: &Rc<Recording>,
    setup: &dyn Fn(&mut Timeline),
    origin: u64,
    direction: Direction,
    interval: u64,
) -> Driven {
    // No in-memory checkpoints on the way: a run's windows are then the persistent
    // checkpoint intervals, long enough for the flag (looked at every 1024 steps) to pause it.
    let spacing = if direction == Direction::Backward { 1 << 40 } else { 1000 };
    let whole = drive(rec, spacing, setup, origin, direction, Driving::Uninterrupted);
    assert_eq!(whole.pauses, 0);
    for how in [Driving::Budget(97), Driving::Flag, Driving::FlagAndMoves(2)] {
        let paused = drive(rec, spacing, setup, origin, direction, how);
        assert_eq!((&paused.stop, paused.at), (&whole.stop, whole.at), "{how:?} stopped elsewhere");
        // The flag is looked at every 1024 steps of a call, the budget after 97.
        let expected = if matches!(how, Driving::Budget(_)) { whole.replayed / 97 / 2 } else { 2 };
        assert!(paused.pauses >= expected, "{how:?} paused only {} times in {} steps", paused.pauses, whole.replayed);
        match how {
            Driving::FlagAndMoves(_) => {
                assert!(paused.moves >= 1, "{paused:?}");
                let bound = whole.replayed + paused.moves * interval;
                assert!(paused.replayed <= bound, "{how:?}: replayed {} > {bound}", paused.replayed);
            }
            _ => {
                assert_eq!(paused.replayed, whole.replayed, "{how:?} replayed a different number of steps");
                if direction == Direction::Forward {
                    assert_eq!(paused.temps, whole.temps, "{how:?} left other checkpoints behind its stop");
                }
            }
        }
    }
    whole
}

/// The RIP at position `at`.
fn rip_at(rec: &Rc<Recording>, at: u64) -> u64 {
    let mut t = Timeline::new(rec.clone(), &ttvm_replay::stepping::host_signature()).unwrap();
    assert_eq!(t.seek(at).unwrap(), Stop::Done);
    t.machine().vm.vcpu().rip()
}

/// The first step at or after `from` that pushes a new value, and the slot it writes.
fn stack_write_after(rec: &Rc<Recording>, from: u64) -> (u64, u64) {
    let mut t = Timeline::new(rec.clone(), &ttvm_replay::stepping::host_signature()).unwrap();
    t.seek(from).unwrap();
    loop {
        let q = t.icount();
        assert!(q < rec.length(), "no stack write after {from}");
        let before_rsp = t.machine().vm.vcpu().regs().rsp;
        let old = read_u32(&t, before_rsp - 8);
        t.step_forward().unwrap();
        let rsp = t.machine().vm.vcpu().regs().rsp;
        if rsp == before_rsp - 8 && read_u32(&t, rsp) != old {
            return (q, rsp);
        }
    }
}

/// A write watchpoint on the kernel's first code bytes, which nothing writes: it never
/// stops a run, and with skips off (the trace would show those pages unwritten) it keeps
/// runs from passing intervals over, so they scan every step (what the pause tests need
/// to have something to pause).
fn scan_everything(t: &mut Timeline) {
    t.set_free_runs(false);
    t.add_watchpoint(Watchpoint::new(0x10_0000, 8, WatchKind::Write).unwrap());
}

/// The boot code's instruction at position 10, which runs only then: a backward run to it
/// from the end scans the whole history.
const EARLY: u64 = 10;

/// A backward run paused many times (by its step budget, by the interrupt flag, and with
/// the position moved by someone else in between) stops exactly where an uninterrupted one
/// does, and scans nothing twice.
#[test]
fn paused_backward_runs_stop_where_uninterrupted_ones_do() {
    if !kvm_or_skip("paused_backward_runs_stop_where_uninterrupted_ones_do") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rec = record(dir.path(), KERNEL, CMDLINE, 2_000);
    let len = rec.length();
    let entry = rip_at(&rec, EARLY);
    let setup = |t: &mut Timeline| {
        scan_everything(t);
        t.add_breakpoint(entry);
    };
    let whole = pauses_change_nothing(&rec, &setup, len, Direction::Backward, 2_000);
    assert_eq!((&whole.stop, whole.at), (&Stop::Breakpoint { addr: entry }, EARLY));
    assert!(whole.replayed >= len, "the whole history scanned: {whole:?}");

    // A watchpoint on a stack slot a push changes after 3/4 of the history, and a
    // breakpoint that cannot be reached: the latest change of the slot wins.
    let (writer, slot) = stack_write_after(&rec, len * 3 / 4);
    let w = Watchpoint::new(slot, 8, WatchKind::Write).unwrap();
    let setup = |t: &mut Timeline| {
        t.add_watchpoint(w);
        t.add_breakpoint(0xdead_0000);
        // Stepped seeks: a native one to a waypoint could leave too few steps to pause in.
        t.set_free_runs(false);
    };
    let whole = pauses_change_nothing(&rec, &setup, len, Direction::Backward, 2_000);
    assert_eq!(whole.stop, Stop::Watchpoint { watch: w });
    assert!(whole.at >= writer, "{whole:?} before the write at {writer}");

    // Nothing to stop at: straight to the start, without scanning.
    let whole = drive(&rec, 1 << 40, &|_| {}, len, Direction::Backward, Driving::Budget(10));
    assert_eq!((whole.stop, whole.at), (Stop::HistoryStart, 0));
}

/// A forward run paused many times ends where an uninterrupted one does, replays the same
/// steps, and leaves the same in-memory checkpoints behind its stop.
#[test]
fn paused_forward_runs_stop_where_uninterrupted_ones_do() {
    if !kvm_or_skip("paused_forward_runs_stop_where_uninterrupted_ones_do") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rec = record(dir.path(), KERNEL, CMDLINE, 2_000);
    let len = rec.length();
    let mut t = Timeline::new(rec.clone(), &ttvm_replay::stepping::host_signature()).unwrap();
    t.seek(len * 3 / 4).unwrap();
    let late = t.machine().vm.vcpu().rip();
    let setup = |t: &mut Timeline| {
        scan_everything(t);
        t.add_breakpoint(late);
    };
    let whole = pauses_change_nothing(&rec, &setup, len / 2, Direction::Forward, 2_000);
    assert_eq!(whole.stop, Stop::Breakpoint { addr: late });
    assert!(whole.at > len / 2 && whole.at <= len * 3 / 4, "{whole:?}");
    assert!(!whole.temps.is_empty(), "a forward run leaves checkpoints behind its stop");
    // Nothing that fires: to the end.
    let whole = pauses_change_nothing(&rec, &scan_everything, 0, Direction::Forward, 2_000);
    assert_eq!((whole.stop, whole.at), (Stop::HistoryEnd, len));
    // Nothing set at all: no interval can stop the run, which restores the last checkpoint.
    let whole = drive(&rec, 1000, &|_| {}, 0, Direction::Forward, Driving::Uninterrupted);
    assert_eq!((whole.stop, whole.at), (Stop::HistoryEnd, len));
    assert!(whole.replayed < 2_000, "replayed {} steps to reach the end", whole.replayed);
}

/// gdb's reverse-continue, interrupted, ends at the bottom of what it scanned, where no
/// stop lies above; reverse-continuing from there finds the stop an uninterrupted run finds.
#[test]
fn an_interrupted_run_backward_ends_where_nothing_above_was_skipped() {
    if !kvm_or_skip("an_interrupted_run_backward_ends_where_nothing_above_was_skipped") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rec = record(dir.path(), KERNEL, CMDLINE, 2_000);
    let entry = rip_at(&rec, EARLY);
    // Start 500 steps above a checkpoint in the middle: the first window is those 500 steps,
    // and the flag (looked at every 1024 steps) pauses the run in the second.
    let checkpoints: Vec<u64> = rec.checkpoints.iter().map(|c| c.engine.icount).collect();
    let boundary = checkpoints[checkpoints.len() / 2];
    let origin = boundary + 500;
    assert!(checkpoints.iter().all(|&c| c <= boundary || c >= origin) && boundary >= 4_000, "{checkpoints:?}");
    let mut reference = Timeline::new(rec.clone(), &ttvm_replay::stepping::host_signature()).unwrap();
    scan_everything(&mut reference);
    reference.add_breakpoint(entry);
    reference.seek(origin).unwrap();
    assert_eq!(reference.run_backward().unwrap(), Stop::Breakpoint { addr: entry });
    assert_eq!(reference.icount(), EARLY);

    let mut t = Timeline::new(rec.clone(), &ttvm_replay::stepping::host_signature()).unwrap();
    t.set_temp_policy(1 << 40, 256 << 20);
    scan_everything(&mut t);
    t.add_breakpoint(entry);
    t.seek(origin).unwrap();
    t.interrupt_handle().store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(t.run_backward().unwrap(), Stop::Interrupted);
    assert_eq!(t.icount(), boundary, "not at the bottom of the part scanned");
    assert_eq!(t.run_backward().unwrap(), Stop::Breakpoint { addr: entry });
    assert_eq!(t.icount(), reference.icount());
}
