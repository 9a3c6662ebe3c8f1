//! vmm-core used as a library: a custom MMIO device on the bus, captured
//! console output, typed outcomes and errors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use integration_tests::code_asm::*;
use integration_tests::{assemble, require_kvm};
use vm_device::bus::{MmioAddress, MmioAddressOffset};
use vm_device::DeviceMmio;
use vmm_core::devices::Console;
use vmm_core::loader::BootMode;
use vmm_core::{ErrorClass, VmBuilder, VmOutcome};

/// Records writes; reads return `0xc0de0000 | offset`.
#[derive(Default)]
struct TestDevice {
    writes: Mutex<Vec<(u64, Vec<u8>)>>,
}

impl DeviceMmio for TestDevice {
    fn mmio_read(&self, _: MmioAddress, offset: MmioAddressOffset, data: &mut [u8]) {
        let v = 0xc0de_0000u64 | offset;
        data.copy_from_slice(&v.to_le_bytes()[..data.len()]);
    }
    fn mmio_write(&self, _: MmioAddress, offset: MmioAddressOffset, data: &[u8]) {
        self.writes.lock().unwrap().push((offset, data.to_vec()));
    }
}

#[test]
fn test_mmio_reaches_test_device_both_ways() {
    require_kvm();
    let dev = Arc::new(TestDevice::default());
    let code = assemble(64, 0x1000, |a| {
        a.mov(rbx, 0xd000_0000u64).unwrap();
        a.mov(dword_ptr(rbx + 0x10), 0x1234_5678).unwrap();
        a.mov(byte_ptr(rbx + 0x20), 0x9a).unwrap();
        a.mov(rax, qword_ptr(rbx + 0x8)).unwrap();
        a.mov(qword_ptr(rbx + 0x30), rax).unwrap(); // echo what was read
        a.hlt().unwrap();
    });
    let report = VmBuilder::new()
        .memory_mib(16)
        .mode(BootMode::Long)
        .kernel_bytes(code)
        .console(Console::discard())
        .mmio_device("test-device", 0xd000_0000, 0x1000, dev.clone())
        .timeout(Duration::from_secs(20))
        // run() would confine this test thread for good.
        .seccomp(false)
        .build()
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(report.outcome, VmOutcome::Halted { vcpu: 0 });
    assert_eq!(
        *dev.writes.lock().unwrap(),
        vec![
            (0x10, 0x1234_5678u32.to_le_bytes().to_vec()),
            (0x20, vec![0x9a]),
            (0x30, 0xc0de_0008u64.to_le_bytes().to_vec()),
        ]
    );
    let row = report
        .stats
        .bus
        .iter()
        .find(|r| r.device.as_deref() == Some("test-device"))
        .expect("device counted");
    assert_eq!((row.count.reads, row.count.writes), (1, 3));
}

#[test]
fn test_console_capture_and_exit_counts() {
    require_kvm();
    let console = Console::memory();
    let code = assemble(16, 0x1000, |a| {
        for b in b"ok" {
            a.mov(al, *b as i32).unwrap();
            a.out(0xe9, al).unwrap();
        }
        a.hlt().unwrap();
    });
    let report = VmBuilder::new()
        .memory_mib(1)
        .kernel_bytes(code)
        .console(console.clone())
        .timeout(Duration::from_secs(20))
        // run() would confine this test thread for good.
        .seccomp(false)
        .build()
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(console.captured(), b"ok");
    let kinds: std::collections::HashMap<_, _> =
        report.stats.exits_by_kind.iter().copied().collect();
    assert_eq!(kinds[&vmm_core::cpu::ExitKind::IoOut], 2);
    assert_eq!(kinds[&vmm_core::cpu::ExitKind::Hlt], 1);
    assert_eq!(report.stats.vcpus.len(), 1);
    assert!(report.stats.vcpus[0].1.run_time > Duration::ZERO);
}

#[test]
fn test_builder_errors_are_classified() {
    let e = VmBuilder::new().memory_mib(1).build().err().unwrap();
    assert_eq!(e.class(), ErrorClass::BadInput);
    let e = VmBuilder::new()
        .kernel_bytes(vec![0xf4])
        .kvm_path("/nonexistent/kvm")
        .build()
        .err()
        .unwrap();
    assert_eq!(e.class(), ErrorClass::KvmUnavailable);
    // Bad input is reported before KVM is even opened.
    let e = VmBuilder::new()
        .memory_mib(0)
        .kernel_bytes(vec![0xf4])
        .kvm_path("/nonexistent/kvm")
        .build()
        .err()
        .unwrap();
    assert_eq!(e.class(), ErrorClass::BadInput, "{e}");
}
