//! A VMM built on vmm-core with one extra device that makes a system call
//! the vCPU thread's seccomp list forbids (`socket`) when the guest writes
//! to port 0x99. The seccomp test runs it and expects SIGSYS to end it.

use std::sync::Arc;

use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::DevicePio;
use vmm_core::VmBuilder;

struct ForbiddenCall;

impl DevicePio for ForbiddenCall {
    fn pio_read(&self, _: PioAddress, _: PioAddressOffset, data: &mut [u8]) {
        data.fill(0);
    }
    fn pio_write(&self, _: PioAddress, _: PioAddressOffset, _: &[u8]) {
        // SAFETY: a plain socket(2) call; the filter should stop it.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        eprintln!("seccomp_probe: socket() was NOT blocked (fd {fd})");
    }
}

fn main() {
    let seccomp = !std::env::args().any(|a| a == "--no-seccomp");
    // mov al,1; out 0x99,al; hlt
    let guest = vec![0xb0, 0x01, 0xe6, 0x99, 0xf4];
    let result = VmBuilder::new()
        .memory_mib(1)
        .kernel_bytes(guest)
        .seccomp(seccomp)
        .timeout(std::time::Duration::from_secs(20))
        .pio_device("forbidden-call", 0x99, 1, Arc::new(ForbiddenCall))
        .build()
        .and_then(|vm| vm.run());
    match result {
        Ok(report) => println!("outcome: {}", report.outcome),
        Err(e) => {
            eprintln!("seccomp_probe: {e}");
            std::process::exit(1);
        }
    }
}
