//! The classic "hello KVM" guest on vmm-cpu alone: 16-bit real mode, prints
//! the digit AL + BL (2 + 2) and a newline on COM1's port, then halts.
//!
//! Guest RAM comes from vmm-memory, the VM from kvm-ioctls; vmm-cpu
//! creates the vCPU, sets its start state (`StartState` and
//! `setup_boot_state`) and runs it, handing every port write to the
//! `ExitHandler` below. No device model and no vmm-core.
//!
//! ```sh
//! cargo run -p vmm-cpu --example real_mode    # prints 4; needs /dev/kvm
//! ```

use std::io::Write;
use std::process::ExitCode;

use vm_device::bus::{MmioAddress, PioAddress};
use vm_memory::{Bytes, GuestAddress};
use vmm_cpu::{
    setup_boot_state, validate_start, CpuMode, Entry, ExitHandler, Reg, StartState, Vcpu, VcpuStop,
};
use vmm_memory::{register_memory_slots, GuestRam, MemoryLayout, ThpHint};

/// `mov dx,0x3f8; add al,bl; add al,'0'; out dx,al; mov al,'\n'; out dx,al;
/// hlt` (integration-tests/guests/hello.S).
const HELLO: [u8; 12] = [
    0xba, 0xf8, 0x03, 0x00, 0xd8, 0x04, 0x30, 0xee, 0xb0, 0x0a, 0xee, 0xf4,
];
/// Where the code is loaded and entered (CS=0, IP=0x1000).
const LOAD_ADDR: u64 = 0x1000;
/// COM1's data port.
const COM1: u16 = 0x3f8;

/// Prints what the guest writes to COM1; every other port and all MMIO read
/// as all ones and drop writes, as unclaimed addresses on a PC do.
struct Com1Printer;

impl ExitHandler for Com1Printer {
    fn pio_read(&self, _port: PioAddress, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn pio_write(&self, port: PioAddress, data: &[u8]) {
        if port.0 == COM1 {
            let mut out = std::io::stdout().lock();
            // A closed stdout is no reason to stop the guest.
            let _ = out.write_all(data).and_then(|()| out.flush());
        }
    }

    fn mmio_read(&self, _addr: MmioAddress, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn mmio_write(&self, _addr: MmioAddress, _data: &[u8]) {}
}

fn run() -> Result<VcpuStop, String> {
    let kvm = kvm_ioctls::Kvm::new().map_err(|e| {
        format!("cannot open /dev/kvm: {e} (is KVM available, and may this user read and write /dev/kvm?)")
    })?;
    // RAM first: it must outlive the VM, which is dropped first (variables
    // drop in reverse order).
    let layout = MemoryLayout::new(1).map_err(|e| e.to_string())?;
    let ram = GuestRam::new(&layout, ThpHint::Off).map_err(|e| e.to_string())?;
    ram.memory()
        .write_slice(&HELLO, GuestAddress(LOAD_ADDR))
        .map_err(|e| format!("writing the guest code: {e}"))?;
    let vm = kvm
        .create_vm()
        .map_err(|e| format!("KVM_CREATE_VM failed: {e}"))?;
    // SAFETY: `ram` is declared before `vm`, so it is dropped after it and
    // outlives every use KVM makes of the mappings.
    unsafe { register_memory_slots(&vm, &ram, kvm.get_nr_memslots()) }
        .map_err(|e| e.to_string())?;

    let start = StartState::new(CpuMode::Real, Entry::Linear(GuestAddress(LOAD_ADDR)))
        .with_reg(Reg::Rax, 2)
        .with_reg(Reg::Rbx, 2);
    let code = [(LOAD_ADDR, LOAD_ADDR + HELLO.len() as u64)];
    validate_start(&start, &code).map_err(|e| e.to_string())?;
    let mut vcpu = Vcpu::new(&vm, 0).map_err(|e| e.to_string())?;
    setup_boot_state(vcpu.fd(), ram.memory(), &start).map_err(|e| e.to_string())?;
    vcpu.run(&Com1Printer).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    match run() {
        Ok(VcpuStop::Halted) => ExitCode::SUCCESS,
        Ok(other) => {
            eprintln!("real_mode: the guest stopped without halting: {other}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("real_mode: {e}");
            ExitCode::from(1)
        }
    }
}
