//! Guest image loaders: put a kernel or program into guest memory and say how
//! to start it.
//!
//! A loader reads an image, checks that every byte of it lands in guest RAM,
//! copies it there through vm-memory, and returns a [`BootSpec`]: the CPU mode
//! to start in, the entry point and any register values the image's boot
//! protocol requires. It does not touch KVM, so it can be reused by any VMM
//! (or tested) without `/dev/kvm`.
//!
//! Formats: [`raw`] flat binaries today.
//!
//! # Example
//!
//! ```
//! use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
//! use vmm_loader::{raw::{load_raw, RawOptions}, BootMode, Entry};
//!
//! let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
//! let image = [0xf4u8]; // hlt
//! let spec = load_raw(&mem, &mut &image[..], image.len() as u64, RawOptions::default()).unwrap();
//! assert_eq!(spec.mode, BootMode::Real);
//! assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x1000)));
//! assert_eq!(mem.read_obj::<u8>(GuestAddress(0x1000)).unwrap(), 0xf4);
//! ```

pub mod boot_spec;
pub mod raw;

pub use boot_spec::{BootMode, BootSpec, Entry, Reg, UnknownReg};
