//! The boot information a protocol passes besides the kernel, laid out and
//! encoded before anything is written: shared by the Multiboot and PVH
//! loaders, so both place their structure, tables, strings, command line
//! and modules by the same rules and report the same errors.
//!
//! Where things go:
//! - the protocol's structure at [`STRUCTURE_ADDR`] (`BOOT_INFO_START`),
//!   then, each 8-byte aligned, its tables (memory map, module list), then
//!   NUL-terminated strings (boot loader name, module strings), all inside
//!   `[BOOT_INFO_START, BOOT_INFO_END)`;
//! - the command line, NUL-terminated, at `CMDLINE_START` (room:
//!   `CMDLINE_MAX_SIZE`, NUL included);
//! - each module's data [`MODULE_ALIGN`]-aligned in RAM after the kernel
//!   and the previous module, below the protocol's limit and clear of the
//!   VMM's boot structures ([`crate::placement::place_in_ram`]).

use std::borrow::Cow;
use std::fmt;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_memory::layout::{BOOT_INFO_END, BOOT_INFO_START, CMDLINE_MAX_SIZE, CMDLINE_START};
use vmm_memory::MemoryLayout;

use crate::placement::{align_up, place_in_ram};
use crate::request::{LoadRequest, ModuleImage};

/// Where the protocol's structure goes (the kernel gets its address).
pub const STRUCTURE_ADDR: GuestAddress = BOOT_INFO_START;
/// Modules are page-aligned (which satisfies Multiboot header flag bit 0
/// whether or not the kernel asks).
pub const MODULE_ALIGN: u64 = 0x1000;

/// The boot protocol the information is for, as errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Multiboot v1.
    Multiboot,
    /// PVH (`hvm_start_info`).
    Pvh,
}

impl Protocol {
    /// What the protocol calls its structure.
    fn structure(self) -> &'static str {
        match self {
            Protocol::Multiboot => "the information structure",
            Protocol::Pvh => "start_info",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Multiboot => "Multiboot",
            Protocol::Pvh => "PVH",
        })
    }
}

/// Errors laying out boot information.
#[derive(Debug, thiserror::Error)]
pub enum BootInfoError {
    /// A string passed to the kernel contains a NUL byte, which would cut it.
    #[error(
        "{what} contains a NUL byte at offset {offset}; {protocol} strings are NUL-terminated"
    )]
    NulInString {
        /// The protocol.
        protocol: Protocol,
        /// Which string.
        what: String,
        /// Offset of the first NUL.
        offset: usize,
    },
    /// The command line does not fit its area.
    #[error("{protocol} command line{} of {len} bytes does not fit: with its terminating NUL it must fit in {max} bytes at {addr:#x}", if *.protocol == Protocol::Multiboot { " (the kernel path and its arguments)" } else { "" })]
    CmdlineTooLong {
        /// The protocol.
        protocol: Protocol,
        /// Its length in bytes, without the NUL.
        len: usize,
        /// The room, NUL included.
        max: u64,
        /// Where it goes.
        addr: u64,
    },
    /// The structure, tables and strings exceed the boot information area.
    #[error("{protocol} boot information ({needed} bytes: {}, {memmap} memory map entries, {modules} module entries and their strings) does not fit in the {available}-byte area at {start:#x}", .protocol.structure())]
    BootInfoTooLarge {
        /// The protocol.
        protocol: Protocol,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
        /// Start of the area.
        start: u64,
        /// Memory map entries.
        memmap: usize,
        /// Modules.
        modules: usize,
    },
    /// A module does not fit in RAM after the kernel and earlier modules.
    #[error("{protocol} module {index} ({name}, {size} bytes) does not fit in usable RAM below 4 GiB at or above {from:#x} (after the kernel and earlier modules; RAM below 4 GiB ends at {ram_end:#x})")]
    ModuleTooLarge {
        /// The protocol.
        protocol: Protocol,
        /// Module index (0 is the initrd when given).
        index: usize,
        /// Its string.
        name: String,
        /// Its size in bytes.
        size: u64,
        /// The lowest address it could start at.
        from: u64,
        /// End of the RAM below 4 GiB.
        ram_end: u64,
    },
}

/// `s` with a terminating NUL.
pub fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

/// A module placed in guest RAM, with its string in the area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacedModule {
    /// Guest-physical address of its data.
    pub addr: u64,
    /// Its size in bytes.
    pub size: u64,
    /// Guest-physical address of its NUL-terminated string.
    pub string: u64,
}

/// Boot information being laid out: addresses handed out in the area and
/// the writes that fill them, none done until [`BootInfo::write`].
#[derive(Debug)]
pub struct BootInfo<'a> {
    protocol: Protocol,
    /// The next free byte of the area (may pass its end; checked by
    /// [`BootInfo::place_modules`]).
    cursor: u64,
    memmap_entries: usize,
    writes: Vec<(u64, Cow<'a, [u8]>)>,
}

impl<'a> BootInfo<'a> {
    /// Boot information for `protocol` whose structure, `structure_len`
    /// bytes, goes at [`STRUCTURE_ADDR`].
    pub fn new(protocol: Protocol, structure_len: u64) -> Self {
        BootInfo {
            protocol,
            cursor: STRUCTURE_ADDR.0.saturating_add(structure_len),
            memmap_entries: 0,
            writes: Vec::new(),
        }
    }

    /// Fails if `s` contains a NUL byte; `what` names it.
    pub fn check_no_nul(
        &self,
        what: impl FnOnce() -> String,
        s: &str,
    ) -> Result<(), BootInfoError> {
        match s.bytes().position(|b| b == 0) {
            Some(offset) => Err(BootInfoError::NulInString {
                protocol: self.protocol,
                what: what(),
                offset,
            }),
            None => Ok(()),
        }
    }

    /// The command line, checked for NULs by the caller: fails if it does
    /// not fit its area with its NUL; writes it to `CMDLINE_START`.
    pub fn command_line(&mut self, line: &str) -> Result<u64, BootInfoError> {
        if line.len() as u64 >= CMDLINE_MAX_SIZE {
            return Err(BootInfoError::CmdlineTooLong {
                protocol: self.protocol,
                len: line.len(),
                max: CMDLINE_MAX_SIZE,
                addr: CMDLINE_START.0,
            });
        }
        self.put(CMDLINE_START.0, Cow::Owned(nul_terminated(line)));
        Ok(CMDLINE_START.0)
    }

    /// The modules of `req`, the initrd first, each string checked for NULs.
    pub fn modules(&self, req: &'a LoadRequest) -> Result<Vec<&'a ModuleImage>, BootInfoError> {
        let modules: Vec<&ModuleImage> = req.initrd.iter().chain(req.modules.iter()).collect();
        for (i, m) in modules.iter().enumerate() {
            self.check_no_nul(
                || format!("the string of {} module {i} ({:?})", self.protocol, m.name),
                &m.name,
            )?;
        }
        Ok(modules)
    }

    /// Reserves an 8-byte aligned table of `len` bytes in the area; returns
    /// its address.
    pub fn table(&mut self, len: u64) -> u64 {
        let addr = align_up(self.cursor, 8).unwrap_or(u64::MAX);
        self.cursor = addr.saturating_add(len);
        addr
    }

    /// Reserves the memory map table: `entries` entries of `entry_size`
    /// bytes; returns its address.
    pub fn memory_map(&mut self, entries: usize, entry_size: u64) -> u64 {
        self.memmap_entries = entries;
        self.table(entry_size.saturating_mul(entries as u64))
    }

    /// Reserves `s`, NUL-terminated, in the area and writes it there;
    /// returns its address.
    pub fn string(&mut self, s: &str) -> u64 {
        let addr = self.cursor;
        self.cursor = addr.saturating_add(s.len() as u64 + 1);
        self.put(addr, Cow::Owned(nul_terminated(s)));
        addr
    }

    /// Records `bytes` to be written at `addr`.
    pub fn put(&mut self, addr: u64, bytes: Cow<'a, [u8]>) {
        self.writes.push((addr, bytes));
    }

    /// Places `modules`: their strings after everything reserved so far
    /// (then checks that the area holds it all), their data
    /// [`MODULE_ALIGN`]-aligned in RAM from `kernel_end` up, ending at or
    /// below `limit`. An empty module still gets its own page, so no two
    /// modules share an address.
    pub fn place_modules(
        &mut self,
        layout: &MemoryLayout,
        modules: &[&'a ModuleImage],
        kernel_end: u64,
        limit: u64,
    ) -> Result<Vec<PlacedModule>, BootInfoError> {
        let strings: Vec<u64> = modules.iter().map(|m| self.string(&m.name)).collect();
        if self.cursor > BOOT_INFO_END.0 {
            return Err(BootInfoError::BootInfoTooLarge {
                protocol: self.protocol,
                needed: self.cursor - STRUCTURE_ADDR.0,
                available: BOOT_INFO_END.0 - STRUCTURE_ADDR.0,
                start: STRUCTURE_ADDR.0,
                memmap: self.memmap_entries,
                modules: modules.len(),
            });
        }
        let map = layout.firmware_map();
        let mut from = kernel_end;
        let mut placed = Vec::with_capacity(modules.len());
        for (index, (m, &string)) in modules.iter().zip(&strings).enumerate() {
            let size = m.data.len() as u64;
            let addr = place_in_ram(&map, from, size, MODULE_ALIGN, limit).ok_or_else(|| {
                BootInfoError::ModuleTooLarge {
                    protocol: self.protocol,
                    index,
                    name: m.name.clone(),
                    size,
                    from: align_up(from, MODULE_ALIGN).unwrap_or(from),
                    ram_end: layout.low_ram_end(),
                }
            })?;
            self.put(addr, Cow::Borrowed(m.data.as_slice()));
            placed.push(PlacedModule { addr, size, string });
            from = addr + size.max(1);
        }
        Ok(placed)
    }

    /// The writes laid out so far, `(address, bytes)`.
    pub fn writes(&self) -> &[(u64, Cow<'a, [u8]>)] {
        &self.writes
    }

    /// Writes everything laid out (not the structure itself, which the
    /// protocol encodes).
    pub fn write<M: GuestMemoryBackend>(&self, mem: &M) -> Result<(), vm_memory::GuestMemoryError> {
        for (addr, bytes) in &self.writes {
            mem.write_slice(bytes, GuestAddress(*addr))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, data: Vec<u8>) -> ModuleImage {
        ModuleImage {
            name: name.to_string(),
            data,
        }
    }

    #[test]
    fn test_boot_info_tables_are_aligned_and_strings_packed() {
        let mut info = BootInfo::new(Protocol::Pvh, 56);
        assert_eq!(info.memory_map(3, 24), STRUCTURE_ADDR.0 + 56);
        assert_eq!(info.table(5), STRUCTURE_ADDR.0 + 56 + 72);
        let s = info.string("ab");
        assert_eq!(s, STRUCTURE_ADDR.0 + 56 + 72 + 5, "strings are packed");
        assert_eq!(info.string("c"), s + 3);
        assert_eq!(
            info.table(1),
            (s + 5).next_multiple_of(8),
            "tables are aligned"
        );
        assert_eq!(info.writes()[0], (s, Cow::Owned(b"ab\0".to_vec())));
    }

    #[test]
    fn test_boot_info_errors_name_the_protocol() {
        let layout = MemoryLayout::with_phys_bits(16, 40).unwrap();
        let info = BootInfo::new(Protocol::Multiboot, 116);
        let e = info
            .check_no_nul(|| "the kernel path".into(), "a\0b")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the kernel path contains a NUL byte at offset 1; Multiboot strings are NUL-terminated"
        );
        let mut info = BootInfo::new(Protocol::Pvh, 56);
        let long = "x".repeat(CMDLINE_MAX_SIZE as usize);
        let e = info.command_line(&long).unwrap_err();
        assert!(
            e.to_string().starts_with("PVH command line of 65536 bytes"),
            "{e}"
        );
        assert!(info.command_line(&long[1..]).is_ok());

        let big = module("big", vec![0; 17 << 20]);
        let e = info
            .place_modules(&layout, &[&big], 0x10_0000, 1 << 32)
            .unwrap_err();
        assert!(
            matches!(e, BootInfoError::ModuleTooLarge { index: 0, size, .. } if size == 17 << 20),
            "{e}"
        );
        assert!(
            e.to_string().contains("PVH module 0 (big, 17825792 bytes)"),
            "{e}"
        );

        let names: Vec<ModuleImage> = (0..40).map(|_| module(&"s".repeat(2000), vec![])).collect();
        let refs: Vec<&ModuleImage> = names.iter().collect();
        let mut info = BootInfo::new(Protocol::Multiboot, 116);
        let e = info
            .place_modules(&layout, &refs, 0x10_0000, 1 << 32)
            .unwrap_err();
        assert!(
            matches!(e, BootInfoError::BootInfoTooLarge { modules: 40, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("the information structure"), "{e}");
    }

    #[test]
    fn test_boot_info_modules_follow_each_other_page_aligned() {
        let layout = MemoryLayout::with_phys_bits(16, 40).unwrap();
        let (a, b, c) = (
            module("a", vec![]),
            module("b", vec![7]),
            module("c", vec![1; 0x1001]),
        );
        let mut info = BootInfo::new(Protocol::Multiboot, 116);
        let placed = info
            .place_modules(&layout, &[&a, &b, &c], 0x10_0800, 1 << 32)
            .unwrap();
        let at: Vec<(u64, u64)> = placed.iter().map(|p| (p.addr, p.size)).collect();
        assert_eq!(at, [(0x10_1000, 0), (0x10_2000, 1), (0x10_3000, 0x1001)]);
        info.write(
            &vm_memory::GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap(),
        )
        .unwrap();
    }
}
