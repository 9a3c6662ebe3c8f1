//! The boot information a protocol passes besides the kernel, laid out and
//! encoded before anything is written: shared by the Multiboot and PVH
//! loaders, so both place their structure, tables, strings, command line
//! and modules by the same rules and report the same errors.
//!
//! Where things go:
//! - the protocol's structure at the start of the boot information area,
//!   then, each 8-byte aligned, its tables (memory map, module list), then
//!   NUL-terminated strings (boot loader name, module strings). The area is
//!   sized to what it holds (at most `BOOT_INFO_MAX_SIZE` bytes): a protocol
//!   lays it out once from address 0 to learn its size
//!   ([`BootInfo::len`]), the boot plan gives it an address, and the
//!   protocol lays it out again there;
//! - the command line, NUL-terminated, where the boot plan puts it (at most
//!   `CMDLINE_MAX_SIZE` bytes, NUL included);
//! - each module's data [`MODULE_ALIGN`]-aligned in RAM after the kernel
//!   and the previous module, below the protocol's limit, in a RAM entry of
//!   the memory map the kernel gets, which reserves the VMM's boot
//!   structures ([`crate::placement::place_in_ram`]).

use std::borrow::Cow;
use std::fmt;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_memory::layout::{MapEntry, BOOT_INFO_MAX_SIZE, CMDLINE_MAX_SIZE};
use vmm_memory::MemoryLayout;

use crate::placement::{align_up, place_in_ram};
use crate::request::{LoadRequest, ModuleImage};

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
    /// The command line is longer than the VMM passes.
    #[error("{protocol} command line{} of {len} bytes is too long: with its terminating NUL it must fit in {max} bytes", if *.protocol == Protocol::Multiboot { " (the kernel path and its arguments)" } else { "" })]
    CmdlineTooLong {
        /// The protocol.
        protocol: Protocol,
        /// Its length in bytes, without the NUL.
        len: usize,
        /// The most, NUL included.
        max: u64,
    },
    /// The structure, tables and strings exceed what the boot information
    /// may take.
    #[error("{protocol} boot information ({needed} bytes: {}, {memmap} memory map entries, {modules} module entries and their strings) is larger than the {available} bytes it may take", .protocol.structure())]
    BootInfoTooLarge {
        /// The protocol.
        protocol: Protocol,
        /// Bytes needed.
        needed: u64,
        /// Bytes it may take.
        available: u64,
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
    /// Where the area (and the structure at its start) is.
    base: u64,
    /// The next free byte of the area (checked by [`BootInfo::check_size`]).
    cursor: u64,
    memmap_entries: usize,
    writes: Vec<(u64, Cow<'a, [u8]>)>,
}

impl<'a> BootInfo<'a> {
    /// Boot information for `protocol` in an area at `base` whose
    /// structure, `structure_len` bytes, comes first.
    pub fn new(protocol: Protocol, base: u64, structure_len: u64) -> Self {
        BootInfo {
            protocol,
            base,
            cursor: base.saturating_add(structure_len),
            memmap_entries: 0,
            writes: Vec::new(),
        }
    }

    /// Where the area and its structure are.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Bytes laid out so far.
    pub fn len(&self) -> u64 {
        self.cursor - self.base
    }

    /// Whether nothing but an empty structure is laid out.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fails if the area holds more than `BOOT_INFO_MAX_SIZE` bytes;
    /// `modules` is the module count, for the message.
    pub fn check_size(&self, modules: usize) -> Result<(), BootInfoError> {
        if self.len() > BOOT_INFO_MAX_SIZE {
            return Err(BootInfoError::BootInfoTooLarge {
                protocol: self.protocol,
                needed: self.len(),
                available: BOOT_INFO_MAX_SIZE,
                memmap: self.memmap_entries,
                modules,
            });
        }
        Ok(())
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

    /// The bytes the command line takes with its NUL (checked for NULs by
    /// the caller); fails if that is more than `CMDLINE_MAX_SIZE`.
    pub fn command_line_len(&self, line: &str) -> Result<u64, BootInfoError> {
        if line.len() as u64 >= CMDLINE_MAX_SIZE {
            return Err(BootInfoError::CmdlineTooLong {
                protocol: self.protocol,
                len: line.len(),
                max: CMDLINE_MAX_SIZE,
            });
        }
        Ok(line.len() as u64 + 1)
    }

    /// Writes the command line, NUL-terminated, at `addr` (where the boot
    /// plan put it).
    pub fn command_line(&mut self, line: &str, addr: u64) {
        self.put(addr, Cow::Owned(nul_terminated(line)));
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

    /// Reserves each module's string (after everything reserved so far)
    /// and writes it there; returns their addresses.
    pub fn module_strings(&mut self, modules: &[&ModuleImage]) -> Vec<u64> {
        modules.iter().map(|m| self.string(&m.name)).collect()
    }

    /// Places `modules`' data (their strings at `strings`)
    /// [`MODULE_ALIGN`]-aligned in a RAM entry of `map` (the memory map the
    /// kernel gets) from `kernel_end` up, ending at or below `limit`. An
    /// empty module still gets its own page, so no two modules share an
    /// address.
    pub fn place_modules(
        &mut self,
        layout: &MemoryLayout,
        map: &[MapEntry],
        modules: &[&'a ModuleImage],
        strings: &[u64],
        kernel_end: u64,
        limit: u64,
    ) -> Result<Vec<PlacedModule>, BootInfoError> {
        let mut from = kernel_end;
        let mut placed = Vec::with_capacity(modules.len());
        for (index, (m, &string)) in modules.iter().zip(strings).enumerate() {
            let size = m.data.len() as u64;
            let addr = place_in_ram(map, from, size, MODULE_ALIGN, limit).ok_or_else(|| {
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
        let base = 0x1_0000;
        let mut info = BootInfo::new(Protocol::Pvh, base, 56);
        assert_eq!(info.memory_map(3, 24), base + 56);
        assert_eq!(info.table(5), base + 56 + 72);
        let s = info.string("ab");
        assert_eq!(s, base + 56 + 72 + 5, "strings are packed");
        assert_eq!(info.string("c"), s + 3);
        assert_eq!(
            info.table(1),
            (s + 5).next_multiple_of(8),
            "tables are aligned"
        );
        assert_eq!(info.writes()[0], (s, Cow::Owned(b"ab\0".to_vec())));
        assert_eq!(info.len(), (s + 5).next_multiple_of(8) + 1 - base);
        // The same layout from 0 measures the same size.
        let mut dry = BootInfo::new(Protocol::Pvh, 0, 56);
        dry.memory_map(3, 24);
        dry.table(5);
        dry.string("ab");
        dry.string("c");
        dry.table(1);
        assert_eq!(dry.len(), info.len());
    }

    #[test]
    fn test_boot_info_errors_name_the_protocol() {
        let layout = MemoryLayout::with_phys_bits(16, 40).unwrap();
        let info = BootInfo::new(Protocol::Multiboot, 0, 116);
        let e = info
            .check_no_nul(|| "the kernel path".into(), "a\0b")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the kernel path contains a NUL byte at offset 1; Multiboot strings are NUL-terminated"
        );
        let info = BootInfo::new(Protocol::Pvh, 0, 56);
        let long = "x".repeat(CMDLINE_MAX_SIZE as usize);
        let e = info.command_line_len(&long).unwrap_err();
        assert!(
            e.to_string().starts_with("PVH command line of 65536 bytes"),
            "{e}"
        );
        assert_eq!(info.command_line_len(&long[1..]).unwrap(), CMDLINE_MAX_SIZE);

        let mut info = BootInfo::new(Protocol::Pvh, 0, 56);
        let big = module("big", vec![0; 17 << 20]);
        let strings = info.module_strings(&[&big]);
        let e = info
            .place_modules(
                &layout,
                &layout.firmware_map(),
                &[&big],
                &strings,
                0x10_0000,
                1 << 32,
            )
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
        let mut info = BootInfo::new(Protocol::Multiboot, 0, 116);
        info.module_strings(&refs);
        let e = info.check_size(refs.len()).unwrap_err();
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
        let mut info = BootInfo::new(Protocol::Multiboot, 0x1_0000, 116);
        let mods = [&a, &b, &c];
        let strings = info.module_strings(&mods);
        let placed = info
            .place_modules(
                &layout,
                &layout.firmware_map(),
                &mods,
                &strings,
                0x10_0800,
                1 << 32,
            )
            .unwrap();
        let at: Vec<(u64, u64)> = placed.iter().map(|p| (p.addr, p.size)).collect();
        assert_eq!(at, [(0x10_1000, 0), (0x10_2000, 1), (0x10_3000, 0x1001)]);
        info.write(
            &vm_memory::GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap(),
        )
        .unwrap();
    }
}
