//! Record then replay: every sample kernel in both clock modes replays bit-for-bit, from
//! the start and from every checkpoint; checkpoints restore exactly the state that was live;
//! nondeterministic inputs differ between recordings but each replay matches its own.

mod common;

use std::path::Path;

use common::{require_kvm, run, text};

/// Records `kernel` with `clock`, returns the trace path and the recorded serial output.
fn record(dir: &Path, kernel: &str, cmdline: &str, clock: &str, extra: &[&str]) -> (std::path::PathBuf, String) {
    let trace = dir.join(format!("{kernel}-{clock}.ttvm"));
    let out = dir.join(format!("{kernel}-{clock}.out"));
    let mut args = vec![
        "record",
        kernel,
        "-q",
        "--clock",
        clock,
        "--cmdline",
        cmdline,
        "-o",
        trace.to_str().unwrap(),
        "--serial-out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(matches!(o.status.code(), Some(0) | Some(13)), "{kernel} {clock}: {}", text(&o));
    (trace, std::fs::read_to_string(&out).unwrap())
}

fn verify(trace: &Path) -> String {
    let o = run(&["replay", "--verify", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}: {}", trace.display(), text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("final state digest match"), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn both_clocks(kernel: &str, cmdline: &str, expect: &str) {
    if !require_kvm(kernel) {
        return;
    }
    let dir = common::tempdir();
    for clock in ["icount", "realtime"] {
        let (trace, recorded) = record(dir.path(), kernel, cmdline, clock, &["--serial-in", "/dev/null"]);
        assert!(recorded.contains(expect), "{kernel} {clock} printed:\n{recorded}");
        let replayed = verify(&trace);
        assert_eq!(replayed, recorded, "{kernel} {clock}: replayed output differs from the recording");
    }
}

#[test]
fn hello_records_and_replays() {
    both_clocks("hello", "x=1", "Hello from ttvm!");
}

#[test]
fn timer_records_and_replays() {
    both_clocks("timer", "ticks=20", "timer: 20 ticks");
}

#[test]
fn threads_records_and_replays() {
    both_clocks("threads", "", "threads: ");
}

#[test]
fn bench_records_and_replays() {
    both_clocks("bench", "size=16 rounds=1", "bench: checksum=0x9438eac6c6dbfe98");
}

#[test]
fn memcorrupt_records_and_replays() {
    both_clocks("memcorrupt", "work=5000", "PANIC: config corrupted");
}

#[test]
fn uaf_records_and_replays() {
    both_clocks("uaf", "", "uaf: ");
}

#[test]
fn entropy_replays_its_own_nondeterministic_inputs() {
    if !require_kvm("entropy_replays_its_own_nondeterministic_inputs") {
        return;
    }
    let dir = common::tempdir();
    let input = dir.path().join("input.txt");
    for clock in ["icount", "realtime"] {
        let mut outputs = Vec::new();
        for (i, line) in ["first line", "second input"].iter().enumerate() {
            std::fs::write(&input, format!("{line}\n")).unwrap();
            let sub = dir.path().join(format!("{clock}{i}"));
            std::fs::create_dir(&sub).unwrap();
            let (trace, recorded) = record(&sub, "entropy", "", clock, &["--serial-in", input.to_str().unwrap()]);
            assert!(recorded.contains(&format!("echo: {line}")), "{recorded}");
            // The exact engine answers CPUID from ttvm's model (RDRAND + hypervisor in leaf
            // 1 ECX, the SSE2 baseline in EDX, CLFLUSHOPT + RDSEED in leaf 7), whatever
            // the host's KVM would pass through.
            assert!(
                recorded.contains("cpuid: 1.ecx=0xc0000000 1.edx=0x78ba9ff 7.ebx=0x840000 80000001.edx=0x20100800"),
                "the recorded guest must see the CPUID model:\n{recorded}"
            );
            // Right after an IRETQ too, where single-step would otherwise run them natively.
            assert!(recorded.contains("after iretq: rdtsc in order"), "{recorded}");
            assert!(
                recorded.contains("swapgs fwait nop: in order"),
                "after the instructions that merge steps\n{recorded}"
            );
            assert!(recorded.contains("after iretq: cpuid 1.ecx=0xc0000000 1.edx=0x78ba9ff\r\n"), "{recorded}");
            assert_eq!(verify(&trace), recorded, "the replay must reproduce this recording's RDRAND/RDTSC/input");
            outputs.push(recorded);
        }
        // RDRAND (and the echoed input) differ between the two recordings.
        let rdrand = |s: &str| s.lines().find(|l| l.starts_with("rdrand")).map(str::to_string);
        assert_ne!(
            rdrand(&outputs[0]),
            rdrand(&outputs[1]),
            "RDRAND should differ between runs:\n{}\n{}",
            outputs[0],
            outputs[1]
        );
    }
}

#[test]
fn replay_from_every_checkpoint_reaches_the_same_end() {
    if !require_kvm("replay_from_every_checkpoint_reaches_the_same_end") {
        return;
    }
    let dir = common::tempdir();
    let trace = dir.path().join("bench.ttvm");
    let o = run(&[
        "record",
        "bench",
        "-q",
        "--cmdline",
        "size=16 rounds=1",
        "--checkpoint-every",
        "25000",
        "-o",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&["info", "--json", trace.to_str().unwrap()]);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let checkpoints = info["checkpoints"].as_array().unwrap().len();
    assert!(checkpoints >= 5, "{checkpoints} checkpoints");
    for k in 0..checkpoints {
        let o = run(&["replay", "--verify", "-q", "--from-checkpoint", &k.to_string(), trace.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "from checkpoint {k}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("final state digest match"),
            "from checkpoint {k}: {}",
            text(&o)
        );
    }
    let o = run(&["replay", "--verify", "--from-checkpoint", &checkpoints.to_string(), trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "a checkpoint past the last must be refused: {}", text(&o));
}

#[test]
fn verify_to_checks_a_prefix_and_chains_with_from_checkpoint() {
    if !require_kvm("verify_to_checks_a_prefix_and_chains_with_from_checkpoint") {
        return;
    }
    let dir = common::tempdir();
    let (trace, _) = record(dir.path(), "timer", "ticks=12", "icount", &["--checkpoint-every", "2000"]);
    let t = trace.to_str().unwrap();
    let o = run(&["info", "--json", t]);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let at = |k: usize| info["checkpoints"][k]["icount"].as_u64().expect("checkpoint icount");
    let n = info["checkpoints"].as_array().expect("checkpoints").len();
    assert!(n >= 4, "{n} checkpoints");
    let verify_to = |to: u64| run(&["replay", "--verify", "-q", "--to", &to.to_string(), t]);

    // A prefix ending on a checkpoint compares the state there and names the command
    // that checks the rest; together the two halves cover the whole history.
    let mid = n / 2;
    let o = verify_to(at(mid));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("so does the state at checkpoint {mid}")), "{err}");
    assert!(err.contains(&format!("--from-checkpoint {mid}")), "{err}");
    let o = run(&["replay", "--verify", "-q", "--from-checkpoint", &mid.to_string(), t]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("final state digest match"), "{}", text(&o));

    // Off a checkpoint the report says the state itself was not compared, and which
    // checkpoints are either side.
    let o = verify_to(at(1) + 7);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("itself was not compared"), "{err}");
    assert!(err.contains(&format!("checkpoints 1 and 2 are at icounts {} and {}", at(1), at(2))), "{err}");

    // Ending right at and right after each console line's first byte: the output owed
    // by then is exactly what the recording has before that icount.
    let lines = info["console_lines"].as_array().expect("console_lines");
    assert!(lines.len() >= 3, "{lines:?}");
    for line in lines.iter().skip(1).take(2) {
        let start = line["icount"].as_u64().expect("line icount");
        for to in [start, start + 1] {
            let o = verify_to(to);
            assert_eq!(o.status.code(), Some(0), "--to {to}: {}", text(&o));
        }
    }
}

#[test]
fn checkpoint_restore_is_byte_identical_to_the_live_state() {
    use ttvm_replay::clock::ClockMode;
    use ttvm_replay::record::{RecordOptions, RecordSession};
    use ttvm_replay::recording::Recording;
    use ttvm_replay::replay::ReplaySession;
    use ttvm_vmm::console::{ConsoleInput, ConsoleOutput};
    use ttvm_vmm::machine::MachineConfig;

    if !require_kvm("checkpoint_restore_is_byte_identical_to_the_live_state") {
        return;
    }
    let dir = common::tempdir();
    let path = dir.path().join("bench.ttvm");
    let every = 20_000;
    let mut config = MachineConfig::new(ttvm_sample_kernels::get("bench").unwrap().elf.to_vec(), "size=16 rounds=1");
    config.mem_size = 64 << 20;
    let options = RecordOptions {
        clock: ClockMode::Icount,
        checkpoint_every: every,
        kernel_name: "bench".into(),
        stepping: ttvm_replay::stepping::host_signature(),
    };
    let mut s = RecordSession::start(config, &path, options, ConsoleOutput::Discard, ConsoleInput::none()).unwrap();
    // Capture the live state at each checkpoint boundary (a checkpoint is taken at the start
    // of the step at that icount, before it executes).
    let mut live = Vec::new();
    let capture = |s: &mut RecordSession| {
        let state = s.engine.machine.vm.vcpu_mut().save_state().unwrap();
        (s.icount(), state, s.engine.machine.vm.ram().as_slice().to_vec(), s.engine.machine.board.clone())
    };
    loop {
        if s.icount().is_multiple_of(every) {
            live.push(capture(&mut s));
        }
        match s.step().unwrap() {
            ttvm_replay::engine::StepOutcome::Continue => {}
            ttvm_replay::engine::StepOutcome::Stopped(stop) => {
                // Format 3 also keeps a checkpoint at the last step.
                live.push(capture(&mut s));
                s.finish(&ttvm_replay::record::RecordEnd::Guest(stop)).unwrap();
                break;
            }
        }
    }
    let rec = std::rc::Rc::new(Recording::open(&path).unwrap());
    assert_eq!(rec.checkpoints.len(), live.len());
    let mut r = ReplaySession::new(rec.clone(), &ttvm_replay::stepping::host_signature()).unwrap();
    // Restore in a scrambled order so every restore starts from a different RAM state.
    let mut order: Vec<usize> = (0..live.len()).collect();
    order.reverse();
    order.rotate_left(live.len() / 2);
    for k in order {
        r.restore_checkpoint(k).unwrap();
        let (icount, state, ram, board) = &live[k];
        assert_eq!(r.icount(), *icount);
        let restored = r.engine.machine.vm.vcpu_mut().save_state().unwrap();
        assert_eq!(&restored, state, "vCPU state after restoring checkpoint {k}");
        let now = r.engine.machine.vm.ram().as_slice();
        if now != &ram[..] {
            let first = now.iter().zip(ram.iter()).position(|(a, b)| a != b).unwrap();
            panic!("RAM differs after restoring checkpoint {k}, first at guest-physical {first:#x}");
        }
        assert_eq!(&r.engine.machine.board, board, "device state after restoring checkpoint {k}");
    }
}

#[test]
fn until_failure_keeps_a_trace_that_replays_the_same_panic_every_time() {
    if !require_kvm("until_failure_keeps_a_trace_that_replays_the_same_panic_every_time") {
        return;
    }
    let dir = common::tempdir();
    let trace = dir.path().join("threads.ttvm");
    let o = run(&["record", "threads", "-q", "--until-failure", "--runs", "40", "-o", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(13), "threads should fail within 40 realtime runs: {}", text(&o));
    assert!(!dir.path().join("threads.ttvm.tmp").exists(), "only the failing trace is kept");
    let o = run(&["info", "--json", trace.to_str().unwrap()]);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["clock"], "realtime");
    assert_eq!(info["exit_code"], 13);
    let steps = info["steps"].as_u64().unwrap();
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let o = run(&["replay", "--verify", trace.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("verified {steps} steps")), "{}", text(&o));
        outputs.push(String::from_utf8_lossy(&o.stdout).into_owned());
    }
    assert!(outputs[0].contains("PANIC: lost update"), "{}", outputs[0]);
    assert_eq!(outputs[0], outputs[1]);
}

/// `ttvm info --console` (and `--json`'s `console_lines`) gives each line of serial output
/// with the icount of its first byte: replaying to that icount has not printed the line
/// yet, one step more has.
#[test]
fn info_console_gives_the_icount_where_each_line_starts() {
    if !require_kvm("info_console_gives_the_icount_where_each_line_starts") {
        return;
    }
    let dir = common::tempdir();
    let (trace, recorded) = record(dir.path(), "timer", "ticks=20", "icount", &[]);
    let t = trace.to_str().unwrap();
    let o = run(&["info", "--json", t]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let lines: Vec<(u64, String)> = v["console_lines"]
        .as_array()
        .expect("console_lines")
        .iter()
        .map(|l| (l["icount"].as_u64().unwrap(), l["text"].as_str().unwrap().to_string()))
        .collect();
    let texts: Vec<&str> = lines.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts, recorded.lines().map(|l| l.trim_end_matches('\r')).collect::<Vec<_>>());
    assert!(lines.windows(2).all(|w| w[0].0 < w[1].0), "{lines:?}");
    let (at, _) = lines.iter().find(|(_, t)| t == "tick 10").expect("tick 10");
    let upto = |n: u64| String::from_utf8_lossy(&run(&["replay", t, "--to", &n.to_string()]).stdout).into_owned();
    assert!(upto(*at).ends_with("ticks\r\n"), "{}", upto(*at));
    assert!(upto(at + 1).ends_with("ticks\r\nt"), "{}", upto(at + 1));

    let o = run(&["info", "--console", t]);
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(listing.contains(&format!("{at:>12} | tick 10\n")), "{listing}");
}

/// `--verify --piece K/N` checks the piece `--jobs N` would give its K-th process, so N CI
/// jobs together verify the whole trace: each piece starts at a checkpoint and ends where
/// the next starts, and the last ends with the final state.
#[test]
fn verify_piece_k_of_n_covers_the_trace_in_separate_runs() {
    if !require_kvm("verify_piece_k_of_n_covers_the_trace_in_separate_runs") {
        return;
    }
    let dir = common::tempdir();
    let (trace, _) = record(dir.path(), "timer", "ticks=12", "icount", &["--checkpoint-every", "2000"]);
    let t = trace.to_str().unwrap();
    let mut covered = Vec::new();
    for k in 1..=3 {
        let spec = format!("{k}/3");
        let o = run(&["replay", "--verify", "-q", "--piece", &spec, t]);
        assert_eq!(o.status.code(), Some(0), "{spec}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let line = err.lines().find(|l| l.contains(&format!("piece {spec}: from checkpoint"))).expect(&err).to_string();
        // "piece K/3: from checkpoint C (icount A) to icount B" (or "to the end").
        let from: u64 = line.split("(icount ").nth(1).and_then(|r| r.split(')').next()).unwrap().parse().unwrap();
        let to =
            line.rsplit("to icount ").next().filter(|_| !line.ends_with("the end")).map(|v| v.parse::<u64>().unwrap());
        covered.push((from, to));
        if k == 3 {
            assert!(err.contains("final state digest match"), "the last piece checks the end: {err}");
        } else {
            assert!(err.contains("so does the state at checkpoint"), "a middle piece checks its end state: {err}");
        }
    }
    assert_eq!(covered[0].0, 0, "{covered:?}");
    assert_eq!(covered[0].1, Some(covered[1].0), "{covered:?}");
    assert_eq!(covered[1].1, Some(covered[2].0), "{covered:?}");
    assert_eq!(covered[2].1, None, "{covered:?}");
    // More pieces than checkpoints: the extra ones say so and succeed; nonsense is refused.
    let o = run(&["replay", "--verify", "-q", "--piece", "400/400", t]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("piece 400/400 is empty"), "{}", text(&o));
    for bad in ["0/3", "4/3", "three"] {
        let o = run(&["replay", "--verify", "--piece", bad, t]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
    }
}

/// Format 3 lists, for each interval between checkpoints, the code it executed (16-byte
/// blocks, so runs can skip intervals no breakpoint can stop in). The lists are exactly the
/// RIP blocks a replay of each interval passes through.
#[test]
fn code_pages_per_interval_match_what_replay_executes() {
    use std::collections::BTreeSet;
    use ttvm_replay::recording::Recording;
    use ttvm_replay::replay::{ReplaySession, ReplayStep};
    if !require_kvm("code_pages_per_interval_match_what_replay_executes") {
        return;
    }
    let dir = common::tempdir();
    let (trace, _) = record(dir.path(), "timer", "ticks=12", "icount", &["--checkpoint-every", "3000"]);
    let rec = std::rc::Rc::new(Recording::open(&trace).unwrap());
    let n = rec.checkpoints.len();
    assert!(n >= 4, "{n} checkpoints");
    assert_eq!(rec.interval_code.len(), n - 1, "one list per interval (the last ends at the final checkpoint)");
    let mut s = ReplaySession::new(rec.clone(), &ttvm_replay::stepping::host_signature()).unwrap();
    let mut seen: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); n - 1];
    loop {
        let q = s.icount();
        let k = rec.checkpoints.partition_point(|c| c.engine.icount <= q) - 1;
        if k < n - 1 {
            // The 16-byte block of each position's RIP.
            seen[k].insert(s.engine.machine.vm.vcpu().rip() >> 4);
        }
        match s.step().unwrap() {
            ReplayStep::Stepped => {}
            ReplayStep::Stopped(_) | ReplayStep::AtEnd => break,
        }
    }
    for (k, lines) in seen.iter().enumerate() {
        let code = rec.interval_code[k].clone().expect("listed");
        let listed: BTreeSet<u64> = code
            .pages
            .iter()
            .flat_map(|&(page, bits)| {
                (0..256u64).filter(move |b| bits[(b >> 6) as usize] & (1 << (b & 63)) != 0).map(move |b| page << 8 | b)
            })
            .collect();
        assert_eq!(&listed, lines, "interval {k}");
        assert!(!lines.is_empty());
    }
    // The query: a block no interval executed cannot stop anything; a listed one can, at
    // any byte of the block.
    let block = *seen[0].iter().next().unwrap();
    assert!(rec.interval_may_reach(0, [block << 4 | 0xf]));
    assert!(!rec.interval_may_reach(0, [0xdead_0000_0000]));
    if !seen[0].contains(&(block + 1)) {
        assert!(!rec.interval_may_reach(0, [(block + 1) << 4]), "the next block is not listed");
    }
    assert!(rec.interval_may_reach(n + 5, [0xdead_0000_0000]), "unknown intervals may always stop");
}

/// A replay that starts at any checkpoint takes the recording's steps. The `threads`
/// kernel returns from its timer interrupt with IRETQ, and an interrupt taken during a
/// single step pushes the host's stepping TF into the frame; left to the CPU, how far the
/// trap after such an IRETQ reached depended on KVM state no checkpoint holds, and replays
/// from checkpoints of realtime recordings diverged (about 1 in 16 recordings here). From
/// format 7 the engine carries those IRETQs out itself (`StepRules::iretq_drops_stepping_tf`).
#[test]
fn every_checkpoint_of_a_realtime_recording_replays_to_the_next() {
    if !require_kvm("every_checkpoint_of_a_realtime_recording_replays_to_the_next") {
        return;
    }
    let dir = common::tempdir();
    for round in 0..3 {
        let sub = dir.path().join(round.to_string());
        std::fs::create_dir_all(&sub).unwrap();
        let (trace, _) = record(&sub, "threads", "", "realtime", &["--serial-in", "/dev/null"]);
        let t = trace.to_str().unwrap();
        let rec = ttvm_replay::recording::Recording::open(&trace).expect("open");
        let starts: Vec<u64> = rec.checkpoints.iter().map(|c| c.engine.icount).collect();
        for (k, pair) in starts.windows(2).enumerate() {
            let (kk, to) = (k.to_string(), pair[1].to_string());
            let o = run(&["replay", "--verify", "-q", "--step-all", "--from-checkpoint", &kk, "--to", &to, t]);
            assert_eq!(o.status.code(), Some(0), "round {round}, from checkpoint {k}: {}", text(&o));
        }
    }
}
