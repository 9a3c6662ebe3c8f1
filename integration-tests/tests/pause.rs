//! Pause and resume through the VM handle: a paused guest makes no
//! progress, a resumed one continues exactly where it stopped (no lost or
//! repeated output), every vCPU parks (APs waiting for SIPI too), and the
//! guest's KVM clock does not jump over the pause.

use std::time::{Duration, Instant};

use iced_x86::code_asm::*;
use integration_tests::guest_asm::kvmclock_guest;
use integration_tests::{assemble, require_kvm};
use vmm_core::devices::Console;
use vmm_core::loader::BootMode;
use vmm_core::{Platform, VmBuilder, VmHandle, VmOutcome, VmmError};

/// Long mode at CPL0: writes 0, 1, 2, ... (mod 256) to the debug console
/// forever.
fn counting_guest() -> Vec<u8> {
    assemble(64, 0x1000, |a| {
        a.xor(eax, eax).unwrap();
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        a.out(0xe9, al).unwrap();
        a.inc(al).unwrap();
        a.jmp(top).unwrap();
    })
}

/// pvclock structure (`struct pvclock_vcpu_time_info`) the guest asks KVM
/// to keep at this guest-physical address.
const PVCLOCK: u64 = 0x3000;

/// Long mode at CPL0: kvmclock's nanoseconds, forever, to the debug
/// console (see [`kvmclock_guest`]).
fn clock_guest() -> Vec<u8> {
    kvmclock_guest(0x1000, PVCLOCK)
}

fn builder(guest: Vec<u8>, console: Console) -> VmBuilder {
    VmBuilder::new()
        .memory_mib(16)
        .mode(BootMode::Long)
        .kernel_bytes(guest)
        .console(console)
        // A backstop only: the tests stop the guest themselves.
        .timeout(Duration::from_secs(60))
        // run() would confine this test thread for good.
        .seccomp(false)
}

/// Waits until `console` holds more than `len` bytes.
fn wait_for_output(console: &Console, len: usize) {
    let until = Instant::now() + Duration::from_secs(30);
    while console.captured().len() <= len {
        assert!(Instant::now() < until, "guest output stuck at {len} bytes");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `vm` on a thread; returns its handle and the join handle.
fn start(
    vm: vmm_core::Vm,
) -> (
    VmHandle,
    std::thread::JoinHandle<Result<vmm_core::RunReport, VmmError>>,
) {
    let handle = vm.handle();
    (handle, std::thread::spawn(move || vm.run()))
}

/// Pauses, checks nothing moves for a while, resumes; returns how long the
/// VM was paused (host time).
fn pause_for(handle: &VmHandle, console: &Console, hold: Duration) -> Duration {
    handle.pause().expect("pause");
    let paused_at = Instant::now();
    assert!(handle.is_paused());
    // pause() returned: no vCPU runs, so the output is final until resume.
    let len = console.captured().len();
    std::thread::sleep(hold);
    assert_eq!(
        console.captured().len(),
        len,
        "the guest wrote while paused"
    );
    // Pausing twice is harmless.
    handle.pause().expect("second pause");
    handle.resume().expect("resume");
    let held = paused_at.elapsed();
    assert!(!handle.is_paused());
    wait_for_output(console, len);
    held
}

#[test]
fn test_pause_freezes_the_guest_and_resume_continues_exactly() {
    require_kvm();
    let console = Console::memory();
    let vm = builder(counting_guest(), console.clone()).build().unwrap();
    let (handle, run) = start(vm);
    wait_for_output(&console, 100);
    for _ in 0..3 {
        pause_for(&handle, &console, Duration::from_millis(300));
    }
    handle.stop();
    let report = run.join().unwrap().unwrap();
    assert_eq!(report.outcome, VmOutcome::Stopped);
    let out = console.captured();
    // 0, 1, 2, ...: nothing lost or repeated across three pauses.
    for (i, pair) in out.windows(2).enumerate() {
        assert_eq!(
            pair[1],
            pair[0].wrapping_add(1),
            "byte {i} of {}",
            out.len()
        );
    }
    assert_eq!(out[0], 0);
}

#[test]
fn test_pause_parks_every_vcpu_including_waiting_aps() {
    require_kvm();
    let console = Console::memory();
    let vm = builder(counting_guest(), console.clone())
        .platform(Platform::Pc)
        .cpus(2)
        .build()
        .unwrap();
    let (handle, run) = start(vm);
    wait_for_output(&console, 100);
    pause_for(&handle, &console, Duration::from_millis(300));
    handle.stop();
    assert_eq!(run.join().unwrap().unwrap().outcome, VmOutcome::Stopped);
}

#[test]
fn test_stop_while_paused_ends_the_vm() {
    require_kvm();
    let console = Console::memory();
    let vm = builder(counting_guest(), console.clone()).build().unwrap();
    let (handle, run) = start(vm);
    wait_for_output(&console, 10);
    handle.pause().unwrap();
    handle.stop();
    assert_eq!(run.join().unwrap().unwrap().outcome, VmOutcome::Stopped);
    // A stopped VM is not paused or resumed.
    assert!(matches!(handle.resume(), Err(VmmError::NotRunning)));
    assert!(matches!(handle.pause(), Err(VmmError::NotRunning)));
}

#[test]
fn test_guest_clock_does_not_jump_over_a_pause() {
    require_kvm();
    let console = Console::memory();
    let vm = builder(clock_guest(), console.clone()).build().unwrap();
    let (handle, run) = start(vm);
    wait_for_output(&console, 8 * 50);
    let held = pause_for(&handle, &console, Duration::from_millis(1500));
    wait_for_output(&console, console.captured().len() + 8 * 50);
    handle.stop();
    run.join().unwrap().unwrap();
    let out = console.captured();
    let samples: Vec<u64> = out
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert!(samples.len() > 100, "{} samples", samples.len());
    for (i, pair) in samples.windows(2).enumerate() {
        assert!(
            pair[1] >= pair[0],
            "clock went back at sample {i}: {pair:?}"
        );
    }
    let total = samples[samples.len() - 1] - samples[0];
    let largest = samples.windows(2).map(|p| p[1] - p[0]).max().unwrap();
    // Without the restore, the step across the pause is at least the time
    // held (1.5 s); with it, the guest clock stands still while paused.
    assert!(
        Duration::from_nanos(largest) < held / 3,
        "largest step of the guest clock {:?} over a pause of {held:?} (guest time covered {:?})",
        Duration::from_nanos(largest),
        Duration::from_nanos(total)
    );
    assert!(total > 0, "the guest clock moved");
}
