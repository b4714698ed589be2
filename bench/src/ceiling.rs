//! The single-step ceiling: a bare KVM single-step loop over the same guest as a recorded
//! trace, with nothing the exact engine adds — no instruction fetch or decoding, no devices,
//! no event log, no checkpoints. Port and MMIO reads are answered with the values the trace
//! recorded (in order) and its interrupts are injected at their recorded icounts, so the
//! guest follows the recorded path and the loop runs as many steps as the trace holds.
//! Instructions the engine emulates (RDTSC, HLT, ...) are simply executed by KVM here.

use std::collections::VecDeque;
use std::time::Instant;

use kvm_ioctls::VcpuExit;
use serde::Serialize;
use ttvm_replay::events::EventKind;
use ttvm_replay::recording::Recording;
use ttvm_vmm::machine::Machine;

use ttvm::exit_code::{self, Exit};

/// The debug-exit port (32-bit write of the status).
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// One run of the bare loop.
#[derive(Clone, Debug, Serialize)]
pub struct CeilingRun {
    /// Single-step exits counted.
    pub steps: u64,
    /// Seconds spent in the loop (machine construction excluded).
    pub secs: f64,
    /// Port and MMIO exits answered.
    pub io_exits: u64,
    /// Interrupts injected.
    pub interrupts: u64,
}

/// What the loop feeds the guest, taken from the recording.
struct Inputs {
    reads: VecDeque<Vec<u8>>,
    interrupts: Vec<(u64, u8)>,
}

fn inputs(rec: &Recording) -> Inputs {
    let mut reads = VecDeque::new();
    let mut interrupts = Vec::new();
    for e in &rec.events {
        match &e.kind {
            EventKind::PortIn { data, .. } | EventKind::MmioRead { data, .. } => {
                reads.push_back(data.as_slice().to_vec())
            }
            EventKind::Interrupt { vector } => interrupts.push((e.icount, *vector)),
            _ => {}
        }
    }
    Inputs { reads, interrupts }
}

fn kvm_failure(what: &str, e: impl std::fmt::Display) -> Exit {
    Exit::new(exit_code::KVM_INTERNAL, format!("ceiling loop: {what}: {e}"))
}

/// Runs the bare single-step loop for the length of `rec`.
pub fn run(rec: &Recording) -> Result<CeilingRun, Exit> {
    let mut machine = Machine::with_vendor(rec.header().machine.clone(), Some(rec.header().cpuid.vendor_choice()))
        .map_err(|e| Exit::of("ceiling loop", &e))?;
    let mut input = inputs(rec);
    let target = rec.length();
    let vcpu = machine.vm.vcpu_mut();
    vcpu.set_single_step(true).map_err(|e| kvm_failure("single-step", e))?;
    let (mut steps, mut io_exits, mut next_irq) = (0u64, 0u64, 0usize);
    let mut window_open = false;
    let started = Instant::now();
    'steps: while steps < target {
        if window_open && input.interrupts.get(next_irq).is_some_and(|&(at, _)| at <= steps) {
            let vector = input.interrupts[next_irq].1;
            vcpu.inject_interrupt(vector).map_err(|e| kvm_failure("KVM_INTERRUPT", e))?;
            next_irq += 1;
        }
        loop {
            match vcpu.run() {
                Ok(VcpuExit::Debug(_)) | Ok(VcpuExit::Hlt) => break,
                Ok(VcpuExit::IoIn(_, data)) | Ok(VcpuExit::MmioRead(_, data)) => {
                    io_exits += 1;
                    match input.reads.pop_front() {
                        Some(v) if v.len() == data.len() => data.copy_from_slice(&v),
                        _ => data.fill(0xff),
                    }
                }
                Ok(VcpuExit::IoOut(port, _)) => {
                    io_exits += 1;
                    if port == DEBUG_EXIT_PORT {
                        steps += 1;
                        break 'steps;
                    }
                }
                Ok(VcpuExit::MmioWrite(..)) => io_exits += 1,
                Ok(VcpuExit::IrqWindowOpen) => {}
                Ok(VcpuExit::Shutdown) => {
                    steps += 1;
                    break 'steps;
                }
                Ok(other) => return Err(kvm_failure("unexpected exit", format!("{other:?} at step {steps}"))),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    vcpu.set_immediate_exit(false);
                }
                Err(e) => return Err(kvm_failure("KVM_RUN", e)),
            }
        }
        window_open = vcpu.interrupt_window_open();
        steps += 1;
    }
    Ok(CeilingRun { steps, secs: started.elapsed().as_secs_f64(), io_exits, interrupts: next_irq as u64 })
}
