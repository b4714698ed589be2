//! The single-step semantics a trace depends on.
//!
//! Replay is only faithful on a host whose KVM steps the guest exactly as the recording
//! host did: where exceptions and interrupts merge with the handler's first instruction,
//! whether IRETQ merges with the next instruction, how HLT behaves. The signature below
//! names those semantics; it is stored in every trace header and compared on replay. The
//! `stepping_semantics` integration test pins each property on the host it runs on, so a
//! host that behaves differently fails loudly instead of producing traces with a wrong
//! signature.

/// Signature of the semantics ttvm's exact engine is built for (see DESIGN.md, "Facts
/// measured on these machines", and tests/stepping_semantics.rs).
pub const STEPPING_SIGNATURE: &str =
    "ttvm-step/1: exception+handler-first-insn merged; injected-irq+handler-first-insn merged; iretq+next merged; hlt emulated";

/// This host's signature.
pub fn host_signature() -> String {
    STEPPING_SIGNATURE.to_string()
}
