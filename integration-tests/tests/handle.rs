//! The VM handle: a stop asked for from another thread ends a guest that
//! never exits on its own (one kick, no polling), and a stop asked for
//! before `run` means the guest never runs.

use std::time::{Duration, Instant};

use integration_tests::{assemble, require_kvm};
use vmm_core::devices::Console;
use vmm_core::loader::BootMode;
use vmm_core::{VmBuilder, VmOutcome};

/// Long mode at CPL0: `jmp $` forever, no exit of its own.
fn spinning_guest() -> Vec<u8> {
    assemble(64, 0x1000, |a| {
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        a.jmp(top).unwrap();
    })
}

fn builder() -> VmBuilder {
    VmBuilder::new()
        .memory_mib(16)
        .mode(BootMode::Long)
        .kernel_bytes(spinning_guest())
        .console(Console::discard())
        // The watchdog is a backstop only: the test fails if it fires.
        .timeout(Duration::from_secs(60))
        // run() would confine this test thread for good.
        .seccomp(false)
}

#[test]
fn test_handle_stop_ends_a_spinning_guest() {
    require_kvm();
    let vm = builder().build().unwrap();
    let handle = vm.handle();
    assert!(!handle.is_stopping());
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let at = Instant::now();
        handle.stop();
        at
    });
    let report = vm.run().unwrap();
    let ended = Instant::now();
    let asked = stopper.join().unwrap();
    assert_eq!(report.outcome, VmOutcome::Stopped);
    // Not a timing assertion on speed: only that the stop, not the 60 s
    // watchdog, ended the run.
    assert!(ended.duration_since(asked) < Duration::from_secs(30));
}

#[test]
fn test_handle_stop_before_run_never_runs_the_guest() {
    require_kvm();
    let vm = builder().build().unwrap();
    vm.handle().stop();
    let report = vm.run().unwrap();
    assert_eq!(report.outcome, VmOutcome::Stopped);
    let exits: u64 = report.stats.vcpus.iter().map(|(_, s)| s.exits).sum();
    assert_eq!(exits, 0, "{:?}", report.stats.vcpus);
}
