//! Pins the KVM single-step semantics the exact engine is built on (DESIGN.md, "Facts
//! measured on these machines"), using the `stepprobe` sample kernel whose instruction
//! sequence is fixed and labelled. If a host steps differently, this fails and says which
//! property changed, before any trace with the wrong stepping signature is trusted.

mod common;

use ttvm_replay::engine::{Emulated, Engine, EngineError, HaltOutcome, StepEnv, StepOutcome};
use ttvm_replay::events::StopKind;
use ttvm_vmm::devices::Board;
use ttvm_vmm::machine::{Machine, MachineConfig};

/// A minimal environment: live devices, an interrupt injected on request.
struct ProbeEnv {
    inject: Option<u8>,
}

impl StepEnv for ProbeEnv {
    fn at_boundary(&mut self, _b: &mut Board, _i: u64, window_open: bool) -> Result<Option<u8>, EngineError> {
        if window_open {
            return Ok(self.inject.take());
        }
        Ok(None)
    }
    fn port_in(&mut self, b: &mut Board, _i: u64, port: u16, data: &mut [u8], _rip: u64) -> Result<(), EngineError> {
        b.pio_read(port, data, 0);
        Ok(())
    }
    fn port_out(
        &mut self,
        b: &mut Board,
        _i: u64,
        port: u16,
        data: &[u8],
        _rip: u64,
    ) -> Result<Option<StopKind>, EngineError> {
        let mut sink = Vec::new();
        let o = b.pio_write(port, data, 0);
        b.drain_serial_output(&mut sink);
        Ok(o.exit_code.map(StopKind::DebugExit))
    }
    fn mmio_read(&mut self, _b: &mut Board, _i: u64, _a: u64, data: &mut [u8], _rip: u64) -> Result<(), EngineError> {
        data.fill(0xff);
        Ok(())
    }
    fn mmio_write(&mut self, _b: &mut Board, _i: u64, _a: u64, _d: &[u8], _rip: u64) -> Result<(), EngineError> {
        Ok(())
    }
    fn emulated_value(&mut self, _b: &mut Board, _i: u64, _w: Emulated) -> Result<u64, EngineError> {
        Ok(0)
    }
    fn halt(&mut self, _b: &mut Board, _i: u64, enabled: bool) -> Result<HaltOutcome, EngineError> {
        Ok(if enabled { HaltOutcome::Continue } else { HaltOutcome::Stop(StopKind::Halted) })
    }
    fn guest_stop(&mut self, _b: &mut Board, _i: u64, _s: &StopKind) -> Result<(), EngineError> {
        Ok(())
    }
}

/// An engine at reset on the stepprobe kernel.
fn probe_engine(elf: &std::path::Path) -> Engine {
    let machine = Machine::new(MachineConfig {
        mem_size: 64 << 20,
        kernel: std::fs::read(elf).unwrap(),
        cmdline: String::new(),
        rtc_base_unix_secs: 0,
        initrd: Vec::new(),
    })
    .expect("machine");
    Engine::new(machine)
}

#[test]
fn single_step_semantics_match_design() {
    if !common::require_kvm("single_step_semantics_match_design") {
        return;
    }
    let elf = common::kernel_path("stepprobe");
    let sym = |s: &str| common::symbol(&elf, s);
    let mut engine = probe_engine(&elf);
    let mut env = ProbeEnv { inject: None };
    let rip = |e: &Engine| e.machine.vm.vcpu().rip();
    let step = |e: &mut Engine, env: &mut ProbeEnv| {
        let o = e.step(env).expect("step");
        assert!(
            matches!(o, StepOutcome::Continue | StepOutcome::Stopped(StopKind::DebugExit(0))),
            "guest stopped: {o:?}"
        );
        o
    };

    // Run the kernel's set-up until the probe sequence starts.
    let start = sym("probe_start");
    let mut n = 0;
    while rip(&engine) != start {
        step(&mut engine, &mut env);
        n += 1;
        assert!(n < 5_000_000, "never reached probe_start");
    }

    // One exit per instruction.
    step(&mut engine, &mut env);
    assert_eq!(rip(&engine), sym("probe_n1"), "a nop must be exactly one step");
    step(&mut engine, &mut env);
    assert_eq!(rip(&engine), sym("probe_pushf"));
    step(&mut engine, &mut env); // pushfq
    step(&mut engine, &mut env); // pop rax
    assert_eq!(rip(&engine), sym("probe_store"));
    let rflags_seen = engine.machine.vm.vcpu().regs().rax;
    assert_eq!(rflags_seen & 0x100, 0, "the guest must not see TF in PUSHF (saw {rflags_seen:#x})");
    step(&mut engine, &mut env); // mov [probe_rflags_saved], rax
    assert_eq!(rip(&engine), sym("probe_ud2"));

    // An exception is delivered and the handler's first instruction runs in the same step.
    let before = engine.icount();
    step(&mut engine, &mut env);
    assert_eq!(engine.icount(), before + 1);
    assert_eq!(rip(&engine), sym("probe_ud_skip"), "ud2 -> #UD -> handler's first nop must be one step");
    step(&mut engine, &mut env); // add [rsp], 2
    assert_eq!(rip(&engine), sym("probe_iretq"));

    // The host runs IRETQ and the instruction after it in one step (pinned by
    // `measured_signature_is_the_reference_one`); the engine carries out a ring-0 IRETQ
    // itself, so the instruction after it is a step of its own.
    step(&mut engine, &mut env);
    assert_eq!(rip(&engine), sym("probe_after_ud"), "the engine's IRETQ must be one step of its own");
    step(&mut engine, &mut env);
    assert_eq!(rip(&engine), sym("probe_after_ud2"));
    step(&mut engine, &mut env);
    assert_eq!(rip(&engine), sym("probe_sti"));

    // STI: the interrupt shadow covers the next instruction.
    step(&mut engine, &mut env);
    assert_eq!(rip(&engine), sym("probe_nop_after_sti"));
    assert!(!engine.state().window_open, "the STI shadow must close the interrupt window for one instruction");
    step(&mut engine, &mut env);
    assert_eq!(rip(&engine), sym("probe_hlt"));
    assert!(engine.state().window_open, "after the shadowed instruction the window must be open");

    // HLT is emulated by the engine: one step, the guest continues after it.
    step(&mut engine, &mut env);
    assert_eq!(rip(&engine), sym("probe_after_hlt"));

    // An injected interrupt is delivered and the handler's first instruction runs in the
    // same step.
    env.inject = Some(0x20);
    step(&mut engine, &mut env);
    assert_eq!(rip(&engine), sym("probe_irq_eoi"), "interrupt delivery + handler's first nop must be one step");

    // Run to the exit.
    let mut outcome = StepOutcome::Continue;
    for _ in 0..1000 {
        outcome = step(&mut engine, &mut env);
        if outcome != StepOutcome::Continue {
            break;
        }
    }
    assert_eq!(outcome, StepOutcome::Stopped(StopKind::DebugExit(0)));
}

/// Without the engine's emulation, KVM single-step of HLT does not halt on these hosts: it
/// returns a debug exit with RIP after the HLT. Pinned because the engine relies on
/// emulating HLT rather than on KVM's HLT exit.
#[test]
fn native_hlt_does_not_halt_under_single_step() {
    if !common::require_kvm("native_hlt_does_not_halt_under_single_step") {
        return;
    }
    let elf = common::kernel_path("stepprobe");
    let sym = |s: &str| common::symbol(&elf, s);
    let mut engine = probe_engine(&elf);
    let mut env = ProbeEnv { inject: None };
    let hlt = sym("probe_hlt");
    let mut n = 0;
    while engine.machine.vm.vcpu().rip() != hlt {
        let o = engine.step(&mut env).expect("step");
        assert_eq!(o, StepOutcome::Continue, "guest stopped before probe_hlt");
        n += 1;
        assert!(n < 5_000_000, "never reached probe_hlt");
    }
    let vcpu = engine.machine.vm.vcpu_mut();
    let exit = format!("{:?}", vcpu.run().expect("KVM_RUN"));
    assert!(exit.starts_with("Debug"), "single-stepped HLT gave exit {exit}, expected a debug exit");
    assert_eq!(vcpu.rip(), sym("probe_after_hlt"), "single-stepped HLT must complete without halting");
}

/// The signature stored in trace headers is measured on the host, and on these hosts it is
/// the documented one.
#[test]
fn measured_signature_is_the_reference_one() {
    if !common::require_kvm("measured_signature_is_the_reference_one") {
        return;
    }
    let started = std::time::Instant::now();
    let measured = ttvm_replay::stepping::measure().expect("probe runs");
    assert_eq!(measured, ttvm_replay::stepping::REFERENCE_SIGNATURE);
    eprintln!("stepping probe took {:?}", started.elapsed());
}

/// Format-1 traces were recorded with the CPU running IRETQ merged with the instruction
/// after it; their replay (`StepRules::strict_steps` off) must step it the same way.
#[test]
fn format_1_replay_lets_the_cpu_run_iretq() {
    if !common::require_kvm("format_1_replay_lets_the_cpu_run_iretq") {
        return;
    }
    let elf = common::kernel_path("stepprobe");
    let sym = |s: &str| common::symbol(&elf, s);
    let mut engine = probe_engine(&elf);
    engine.rules = ttvm_replay::engine::StepRules::for_format(1);
    let mut env = ProbeEnv { inject: None };
    let iretq = sym("probe_iretq");
    let mut n = 0;
    while engine.machine.vm.vcpu().rip() != iretq {
        assert_eq!(engine.step(&mut env).expect("step"), StepOutcome::Continue, "guest stopped before probe_iretq");
        n += 1;
        assert!(n < 5_000_000, "never reached probe_iretq");
    }
    engine.step(&mut env).expect("step");
    assert_eq!(engine.machine.vm.vcpu().rip(), sym("probe_after_ud2"), "iretq + the next instruction as one step");
}
