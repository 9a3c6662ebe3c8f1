//! Lays out, maps and (where KVM is available) registers guest RAM with
//! vmm-memory alone:
//!
//! ```sh
//! cargo run -p vmm-memory --example map_ram            # 4608 MiB
//! cargo run -p vmm-memory --example map_ram -- 512     # any size in MiB
//! ```
//!
//! It prints the RAM ranges (RAM that does not fit below the 32-bit MMIO
//! hole at 3 GiB continues at 4 GiB) and the firmware memory map every boot
//! protocol reports, writes and reads back a byte at the start of each range,
//! then, if `/dev/kvm` can be opened, creates a VM and registers one KVM
//! memory slot per range. Without KVM it says so and skips that part. The
//! mapping is anonymous and lazily backed: only the pages touched cost host
//! memory.

use std::error::Error;
use std::process::ExitCode;

use kvm_ioctls::Kvm;
use vm_memory::{Bytes, GuestAddress};
use vmm_memory::layout::{MIB, MMIO_HOLE_END, MMIO_HOLE_START};
use vmm_memory::{register_memory_slots, GuestRam, MapKind, MemoryLayout, ThpHint};

/// RAM when no size is given: 4.5 GiB, so the layout shows the hole split.
const DEFAULT_MIB: u64 = 4608;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("map_ram: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let mib = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse::<u64>()
            .map_err(|e| format!("size {arg:?} is not a number of MiB: {e}"))?,
        None => DEFAULT_MIB,
    };

    let layout = MemoryLayout::new(mib)?;
    println!(
        "{mib} MiB of guest RAM; MMIO hole [{MMIO_HOLE_START:#x}, {MMIO_HOLE_END:#x}) kept free"
    );
    println!("RAM ranges:");
    for r in layout.ram_ranges() {
        println!(
            "  [{:#012x}, {:#012x})  {:>5} MiB",
            r.start.0,
            r.end(),
            r.len / MIB
        );
    }
    println!("firmware memory map (E820):");
    for e in layout.firmware_map() {
        let kind = match e.kind {
            MapKind::Ram => "RAM",
            MapKind::Reserved => "reserved",
        };
        println!(
            "  [{:#012x}, {:#012x})  type {} {kind}",
            e.start,
            e.start + e.len,
            e.kind.e820_type()
        );
    }

    let ram = GuestRam::new(&layout, ThpHint::Off)?;
    for (i, r) in (0u8..).zip(layout.ram_ranges()) {
        let value = 0xf4 ^ i;
        ram.memory().write_obj(value, r.start)?;
        let back: u8 = ram.memory().read_obj(r.start)?;
        println!(
            "wrote {value:#04x} at {:#x}, read back {back:#04x}",
            r.start.0
        );
        if back != value {
            return Err(format!("read {back:#04x} at {:#x}, wrote {value:#04x}", r.start.0).into());
        }
    }
    // The hole is not RAM: accesses there fail instead of reaching memory.
    if ram
        .memory()
        .read_obj::<u8>(GuestAddress(MMIO_HOLE_START))
        .is_ok()
    {
        return Err("the MMIO hole is mapped as RAM".into());
    }
    println!("a read at {MMIO_HOLE_START:#x} (MMIO hole) is refused, as it should be");

    let kvm = match Kvm::new() {
        Ok(kvm) => kvm,
        Err(e) => {
            println!("KVM is not available ({e}): skipping the memory slots");
            return Ok(());
        }
    };
    let vm = kvm.create_vm()?;
    let max_slots = kvm.get_nr_memslots();
    // SAFETY: `ram` is declared before `vm`, so it is dropped after it (and
    // `vm` is dropped explicitly below, before `ram` goes out of scope):
    // the host mappings KVM is given stay valid for as long as the VM that
    // uses them exists, which is what `register_memory_slots` requires.
    unsafe { register_memory_slots(&vm, &ram, max_slots) }?;
    println!(
        "KVM memory slots: {} registered (KVM offers {max_slots})",
        layout.ram_ranges().len()
    );
    drop(vm);
    Ok(())
}
