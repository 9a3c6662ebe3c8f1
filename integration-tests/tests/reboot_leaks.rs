//! Rebooting leaks nothing: the library's `run_rebooting` over a guest
//! that resets itself until its sixth boot, with the process's open
//! descriptors, threads and address space measured between boots (this
//! test is alone in its binary, so nothing else opens or spawns meanwhile).
//! Each boot runs with seccomp on, as by default.

use std::time::{Duration, Instant};

use integration_tests::reboot_guest::{reboot_guest, REBOOTS_DONE};
use integration_tests::require_kvm;
use vmm_core::devices::Console;
use vmm_core::loader::BootMode;
use vmm_core::{run_rebooting, Platform, VmBuilder, VmOutcome};

const BOOTS: u8 = 6;

/// (open descriptors, threads, VmSize in KiB) of this process.
fn usage() -> (usize, usize, u64) {
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let threads = std::fs::read_dir("/proc/self/task").unwrap().count();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let vm_size = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    (fds, threads, vm_size)
}

/// [`usage`] once no more threads than `floor` are left, or after a
/// second. A joined thread has finished its work, but the kernel lists it
/// in /proc/self/task until it has reaped it, a moment after `join`
/// returns; a leaked thread never leaves, so waiting for the reaping
/// hides no leak.
fn settled_usage(floor: usize) -> (usize, usize, u64) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let u = usage();
        if u.1 <= floor || Instant::now() >= deadline {
            return u;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn test_reboots_leak_no_descriptors_threads_or_memory() {
    require_kvm();
    let console = Console::memory();
    let builder = || {
        VmBuilder::new()
            .memory_mib(32)
            .mode(BootMode::Long)
            .platform(Platform::Pc)
            .kernel_bytes(reboot_guest(BOOTS, true))
            .console(console.clone())
            .timeout(Duration::from_secs(60))
            .seccomp(true)
    };
    // Before any boot: the threads of the test harness only.
    let (_, harness_threads, _) = usage();
    let mut seen = Vec::new();
    let report = run_rebooting(builder().build().unwrap(), |next| {
        // The boot before is gone: its VM, devices and threads.
        seen.push(settled_usage(harness_threads));
        builder().next_boot(next).build()
    })
    .unwrap();
    assert_eq!(
        report.outcome,
        VmOutcome::DebugExit {
            value: u32::from(REBOOTS_DONE)
        },
        "{}",
        String::from_utf8_lossy(&console.captured())
    );
    assert_eq!(report.stats.reboots, u64::from(BOOTS) - 1);
    assert_eq!(console.captured(), b"1\n2\n3\n4\n5\n6\n");
    assert_eq!(seen.len(), usize::from(BOOTS) - 1);
    eprintln!("usage between boots: {seen:?}");
    let first = seen[0];
    for (i, u) in seen.iter().enumerate() {
        assert_eq!(
            u.1,
            harness_threads,
            "threads before boot {} vs before the first boot: {seen:?}",
            i + 2
        );
        assert_eq!(
            u.0,
            first.0,
            "descriptors before boot {} vs before boot 2: {seen:?}",
            i + 2
        );
    }
    // Each boot maps 32 MiB of guest RAM: a leak would grow the address
    // space by at least that much per boot. Allocator arenas and cached
    // thread stacks may move it by a few MiB.
    let sizes: Vec<u64> = seen.iter().map(|u| u.2).collect();
    let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
    assert!(
        max - min < 16 << 10,
        "VmSize (KiB) between boots: {sizes:?}"
    );
}
