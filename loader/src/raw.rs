//! Raw flat binaries: the file's bytes are copied verbatim to a load address.
//!
//! A raw image carries no header, so the mode and entry point come from the
//! caller (the user, on the command line).

use std::io::Read;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::boot_spec::{BootMode, BootSpec, Entry, Handoff};

/// Where raw images load unless told otherwise (the classic KVM example's
/// address: above the real-mode IVT and BIOS data area).
pub const DEFAULT_LOAD_ADDR: GuestAddress = GuestAddress(0x1000);

/// Errors loading a raw image.
#[derive(Debug, thiserror::Error)]
pub enum RawLoadError {
    /// The image has no bytes.
    #[error("image is empty (0 bytes): nothing to run")]
    Empty,
    /// The image does not fit in RAM at the load address.
    #[error("image of {size} bytes at load address {addr:#x} does not fit in guest RAM (it would end at {end:#x})")]
    DoesNotFit {
        /// Image size.
        size: u64,
        /// Load address.
        addr: u64,
        /// One past the image's last byte (saturated on overflow).
        end: u64,
    },
    /// The entry point is not in RAM.
    #[error("entry point {0:#x} is outside guest RAM")]
    EntryOutsideRam(u64),
    /// Reading the image failed, or it changed size while being read.
    #[error("reading the image failed: {0}")]
    Read(std::io::Error),
    /// Copying into guest memory failed.
    #[error("copying the image to guest memory at {addr:#x} failed: {source}")]
    GuestMemory {
        /// Load address.
        addr: u64,
        /// vm-memory's error.
        source: vm_memory::GuestMemoryError,
    },
}

/// How to place and start a raw image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawOptions {
    /// Guest-physical address of the first byte.
    pub load_addr: GuestAddress,
    /// Mode to start in.
    pub mode: BootMode,
    /// Entry point; `None` means the load address.
    pub entry: Option<Entry>,
}

impl Default for RawOptions {
    fn default() -> Self {
        RawOptions {
            load_addr: DEFAULT_LOAD_ADDR,
            mode: BootMode::Real,
            entry: None,
        }
    }
}

/// Copies the `size`-byte raw image read from `image` to `opts.load_addr`.
///
/// `size` is the length the caller expects (the file's length); it is checked
/// against RAM before anything is read, and a source that yields fewer or more
/// bytes is an error, so a file that changes while loading is caught. On error
/// guest memory may hold part of the image, but nothing else is changed.
pub fn load_raw<M: GuestMemoryBackend, R: Read>(
    mem: &M,
    image: &mut R,
    size: u64,
    opts: RawOptions,
) -> Result<BootSpec, RawLoadError> {
    if size == 0 {
        return Err(RawLoadError::Empty);
    }
    let addr = opts.load_addr;
    let end = addr.0.checked_add(size);
    let fits = end.is_some_and(|end| mem.check_range(addr, (end - addr.0) as usize));
    let len = usize::try_from(size)
        .ok()
        .filter(|_| fits)
        .ok_or(RawLoadError::DoesNotFit {
            size,
            addr: addr.0,
            end: end.unwrap_or(u64::MAX),
        })?;

    let mut bytes = Vec::with_capacity(len);
    // Read one byte more than expected so a file that grew is noticed.
    image
        .take(size + 1)
        .read_to_end(&mut bytes)
        .map_err(RawLoadError::Read)?;
    if bytes.len() != len {
        return Err(RawLoadError::Read(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("expected {size} bytes, read {}", bytes.len()),
        )));
    }

    let entry = opts.entry.unwrap_or(Entry::Linear(addr));
    if !mem.address_in_range(entry.linear()) {
        return Err(RawLoadError::EntryOutsideRam(entry.linear().0));
    }
    mem.write_slice(&bytes, addr)
        .map_err(|source| RawLoadError::GuestMemory {
            addr: addr.0,
            source,
        })?;
    Ok(BootSpec {
        mode: opts.mode,
        entry,
        image: (addr, size),
        segments: vec![(addr, size)],
        handoff: Handoff::None,
        plan: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn mem(size: usize) -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size)]).unwrap()
    }

    #[test]
    fn test_raw_loads_at_address() {
        let m = mem(0x10000);
        let img = [1u8, 2, 3];
        let opts = RawOptions {
            load_addr: GuestAddress(0x2000),
            mode: BootMode::Long,
            entry: None,
        };
        let spec = load_raw(&m, &mut &img[..], 3, opts).unwrap();
        assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x2000)));
        assert_eq!(spec.mode, BootMode::Long);
        let mut back = [0u8; 3];
        m.read_slice(&mut back, GuestAddress(0x2000)).unwrap();
        assert_eq!(back, img);
    }

    #[test]
    fn test_raw_rejects_empty() {
        let m = mem(0x10000);
        assert!(matches!(
            load_raw(&m, &mut &[][..], 0, RawOptions::default()),
            Err(RawLoadError::Empty)
        ));
    }

    #[test]
    fn test_raw_rejects_image_past_end_of_ram() {
        let m = mem(0x2000);
        let img = vec![0u8; 0x1001];
        let e = load_raw(&m, &mut &img[..], 0x1001, RawOptions::default()).unwrap_err();
        assert!(e.to_string().contains("0x1000"), "{e}");
        assert!(matches!(e, RawLoadError::DoesNotFit { size: 0x1001, .. }));
    }

    #[test]
    fn test_raw_rejects_overflowing_load_address() {
        let m = mem(0x2000);
        let opts = RawOptions {
            load_addr: GuestAddress(u64::MAX),
            ..RawOptions::default()
        };
        assert!(matches!(
            load_raw(&m, &mut &[0u8; 2][..], 2, opts),
            Err(RawLoadError::DoesNotFit { .. })
        ));
    }

    #[test]
    fn test_raw_rejects_entry_outside_ram() {
        let m = mem(0x2000);
        let opts = RawOptions {
            entry: Some(Entry::Segmented {
                segment: 0xf000,
                offset: 0xfff0,
            }),
            ..RawOptions::default()
        };
        let e = load_raw(&m, &mut &[0xf4u8][..], 1, opts).unwrap_err();
        assert!(matches!(e, RawLoadError::EntryOutsideRam(0xffff0)), "{e}");
    }

    #[test]
    fn test_raw_detects_size_change() {
        let m = mem(0x10000);
        let img = [0u8; 8];
        assert!(matches!(
            load_raw(&m, &mut &img[..], 4, RawOptions::default()),
            Err(RawLoadError::Read(_))
        ));
        assert!(matches!(
            load_raw(&m, &mut &img[..], 16, RawOptions::default()),
            Err(RawLoadError::Read(_))
        ));
    }
}
