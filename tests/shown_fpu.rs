//! The host's FPU fields are shown alike on every host (trace format 8,
//! `ttvm_vmm::shown_fpu`): driven through real gdb on a fresh recording of `timer`, whose
//! interrupt stub saves the FPU with `fxsave (%rsp)`. The FXSAVE is one step (the next
//! instruction is the next step, forwards and backwards) and the image it stored holds the
//! MXCSR_MASK 0x0000ffff on every host: an AMD EPYC's CPU stores 0x0002ffff, and traces that
//! kept it diverged on Intel hosts (and the other way round).

mod common;
#[path = "gdb/harness.rs"]
mod harness;

use harness::{gdb, hex, mark, marks, serve, shared_trace};

const SHOWN_MXCSR_MASK: u64 = 0xffff;

#[test]
fn fxsave_is_a_step_of_its_own_and_stores_the_shown_mask() {
    if !common::require_kvm("fxsave_is_a_step_of_its_own_and_stores_the_shown_mask") {
        return;
    }
    let server = serve(&shared_trace("timer", "ticks=5"), &[]);
    let out = gdb(&server, &[], "fxsave.py");
    let fxsave = hex(&mark(&out, "fxsave-at")[0]);
    // `fxsave (%rsp)` is 4 bytes: one stepi lands on the instruction right after it.
    let after_fxsave = fxsave + 4;
    let steps = marks(&out, "step");
    assert_eq!(steps.len(), 2, "{out}");
    for s in &steps {
        let (at, after, pc, mask) = (hex(&s[1]), hex(&s[2]), hex(&s[3]), hex(&s[4]));
        assert_eq!(after, at + 1, "{out}");
        assert_eq!(pc, after_fxsave, "the step ran past the FXSAVE\n{out}");
        assert_eq!(mask, SHOWN_MXCSR_MASK, "the image holds the host's MXCSR_MASK\n{out}");
    }
    let second_at = hex(&steps[1][1]);
    let back = mark(&out, "back");
    assert_eq!((hex(&back[0]), hex(&back[1])), (second_at, fxsave), "{out}");
    let again = mark(&out, "again");
    assert_eq!(
        (hex(&again[0]), hex(&again[1]), hex(&again[2])),
        (second_at + 1, after_fxsave, SHOWN_MXCSR_MASK),
        "{out}"
    );
}
