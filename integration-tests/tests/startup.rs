//! The vCPU threads `Vm::create` starts (see `vmm-core/src/vcpu_threads.rs`):
//! they confine themselves and wait for their vCPUs while the VM is built,
//! and a VM dropped before it runs ends and joins them. Kept in a file of
//! its own: it counts this process's threads, so no other test may run VMs
//! beside it.

use std::time::Duration;

use integration_tests::{assemble, require_kvm};
use vmm_core::devices::Console;
use vmm_core::loader::BootMode;
use vmm_core::{Platform, VmBuilder, VmOutcome};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn builder(cpus: u64, seccomp: bool) -> VmBuilder {
    let code = assemble(64, 0x1000, |a| {
        a.hlt().unwrap();
    });
    let b = VmBuilder::new()
        .memory_mib(16)
        .mode(BootMode::Long)
        .kernel_bytes(code)
        .console(Console::discard())
        .timeout(Duration::from_secs(20))
        .seccomp(seccomp);
    if cpus > 1 {
        b.platform(Platform::Pc).cpus(cpus)
    } else {
        b
    }
}

#[test]
fn test_vm_dropped_before_it_runs_ends_its_confined_vcpu_threads() {
    require_kvm();
    let before = threads();
    for cpus in [1, 2] {
        let vm = builder(cpus, true).build().unwrap();
        // The threads exist (and have confined themselves) before run.
        assert_eq!(threads(), before + cpus as usize, "{cpus} vCPUs");
        drop(vm);
        assert_eq!(
            threads(),
            before,
            "threads left after dropping a {cpus}-vCPU VM"
        );
    }
    // And a VM built afterwards still runs (seccomp off: run() would
    // confine this test's thread for good).
    let report = builder(1, false).build().unwrap().run().unwrap();
    assert_eq!(report.outcome, VmOutcome::Halted { vcpu: 0 });
    assert_eq!(threads(), before);
}
