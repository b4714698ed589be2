//! A trace whose user-mode steps were taken with another ring-3 method than this host's
//! (another KVM) replays up to its first user-mode step and is refused there as an
//! incompatible host, saying why; a trace that never entered user mode replays whole.

use std::rc::Rc;

use ttvm_replay::engine::{EngineError, Ring3Steps, StepRules};
use ttvm_replay::recording::Recording;
use ttvm_replay::replay::{ReplayError, ReplaySession};
use ttvm_replay::stepping::{host_signature, REFERENCE_SIGNATURE};
use ttvm_test_support::require_kvm;
use ttvm_vmm::error_kind::{Classify, ErrorKind};

#[test]
fn the_rules_refuse_only_another_hosts_user_steps() {
    let kvm = REFERENCE_SIGNATURE.replace("ring3=db-trap", "ring3=kvm");
    assert_eq!(StepRules::for_replay(6, REFERENCE_SIGNATURE, REFERENCE_SIGNATURE).ring3, Ring3Steps::DebugTrap);
    assert_eq!(StepRules::for_replay(6, REFERENCE_SIGNATURE, &kvm).ring3, Ring3Steps::OtherHost);
    let old = REFERENCE_SIGNATURE.split(" ring3=").next().unwrap();
    assert_eq!(StepRules::for_replay(6, old, &kvm).ring3, Ring3Steps::Refused, "it never stepped ring 3");
}

#[test]
fn user_steps_of_another_host_are_refused_where_they_start() {
    if !require_kvm("user_steps_of_another_host_are_refused_where_they_start") {
        return;
    }
    let dir = ttvm_test_support::tempdir();
    let (path, _) = ttvm_test_support::record_sample(dir.path(), "ring3", "spin=10", 25_000, 64 << 20, None);
    let rec = Rc::new(Recording::open(&path).unwrap());
    let host = host_signature();
    let other = if host.ends_with("ring3=kvm") {
        host.replace("ring3=kvm", "ring3=db-trap")
    } else {
        host.split(" ring3=").next().unwrap().to_string() + " ring3=kvm"
    };
    let mut s = ReplaySession::new(rec.clone(), &other).expect("the rest of the signature matches");
    let err = loop {
        match s.step() {
            Ok(_) => assert!(s.icount() < rec.length(), "the whole trace replayed without its user steps"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::IncompatibleHost, "{err}");
    let ReplayError::Engine(EngineError::UserModeOnOtherHost { icount, .. }) = &err else { panic!("{err:?}") };
    assert!(*icount > 1000, "the kernel part before user mode replayed: {err}");
    assert!(err.to_string().contains("this host steps ring 3 another way"), "{err}");
}
