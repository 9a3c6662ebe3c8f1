//! Guest RAM for a KVM virtual machine on x86_64: where it goes, how it is
//! mapped in the VMM, and how KVM learns about it.
//!
//! The crate has five jobs, one module each:
//! - [`layout`]: the guest-physical memory map. RAM starts at 0; below 4 GiB
//!   a 32-bit MMIO hole (`[3 GiB, 4 GiB)`) is kept free for devices, and any
//!   RAM that does not fit below the hole continues at 4 GiB. It also names
//!   where boot structures (GDT, page tables) preferably live.
//! - [`boot_plan`]: places the boot structures a boot needs in RAM the
//!   image does not use, and derives the memory map that reserves them.
//! - [`guest_ram`]: builds a [`vm_memory::GuestMemoryMmap`] from a layout,
//!   anonymous with an optional transparent-huge-page hint, or mapped
//!   private from a snapshot's memory file.
//! - [`file_pages`]: maps a file's pages copy-on-write over guest RAM
//!   instead of copying them (a cached kernel, say).
//! - [`kvm_slots`]: registers every region with KVM as a memory slot,
//!   optionally with dirty-page logging.
//!
//! It depends on nothing of the VMM that uses it, so it can be reused on its
//! own.
//! `examples/map_ram.rs` (`cargo run -p vmm-memory --example map_ram`) lays
//! out, maps and (with `/dev/kvm`) registers 4.5 GiB of RAM.
//!
//! # Example
//!
//! ```
//! use vmm_memory::layout::MemoryLayout;
//! use vmm_memory::guest_ram::{GuestRam, ThpHint};
//! use vm_memory::{Bytes, GuestAddress};
//!
//! // 4 GiB of RAM: 3 GiB below the MMIO hole, 1 GiB above 4 GiB.
//! let layout = MemoryLayout::new(4096).unwrap();
//! assert_eq!(layout.ram_ranges().len(), 2);
//! assert_eq!(layout.ram_ranges()[1].start.0, 1 << 32);
//!
//! // A small guest, mapped in this process (no KVM needed for this part).
//! let layout = MemoryLayout::new(2).unwrap();
//! let ram = GuestRam::new(&layout, ThpHint::Off).unwrap();
//! ram.memory().write_obj(0xf4u8, GuestAddress(0x1000)).unwrap();
//! assert_eq!(ram.memory().read_obj::<u8>(GuestAddress(0x1000)).unwrap(), 0xf4);
//! ```

pub mod boot_plan;
pub mod file_pages;
pub mod guest_ram;
pub mod kvm_slots;
pub mod layout;

pub use boot_plan::{BootPlan, FirmwareSizes, Needs, Occupied, PlanError, Structure};
pub use file_pages::{map_file_pages, FilePagesError};
pub use guest_ram::{GuestRam, GuestRamError, ThpHint};
pub use kvm_slots::{register_memory_slots, register_memory_slots_with, KvmSlotError, SlotOptions};
pub use layout::{LayoutError, MapEntry, MapKind, MemoryLayout, RamRange};
