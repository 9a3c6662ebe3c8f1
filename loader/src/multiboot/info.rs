//! The Multiboot information structure (specification section 3.3) and
//! what it points to: memory map, module list, strings, modules.
//!
//! Where things go ([`crate::boot_info`] places them, as for PVH):
//! - the structure itself at [`INFO_ADDR`] (= `BOOT_INFO_START`), then,
//!   8-byte aligned, the memory map, the module list, the boot loader name
//!   and the modules' strings, all inside `[BOOT_INFO_START, BOOT_INFO_END)`;
//! - the command line at `CMDLINE_START` (room: `CMDLINE_MAX_SIZE`);
//! - each module's data page-aligned in usable RAM below 4 GiB after the
//!   kernel's end (BSS included) and the previous module, skipping the
//!   VMM's boot structures.

use std::borrow::Cow;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_memory::layout::{MapEntry, MapKind, HIGH_MEMORY_START, LEGACY_HOLE_START};
use vmm_memory::MemoryLayout;

use super::{MultibootError, FOUR_GIB};
use crate::boot_info::{self, BootInfo, Protocol};
use crate::request::LoadRequest;

/// Where the information structure goes; EBX holds this address at entry.
pub const INFO_ADDR: GuestAddress = boot_info::STRUCTURE_ADDR;
/// The `boot_loader_name` string.
pub const BOOT_LOADER_NAME: &str = "vmm";
/// Modules are always page-aligned, which satisfies header flag bit 0
/// whether or not the kernel asks.
pub const MODULE_ALIGN: u64 = boot_info::MODULE_ALIGN;

/// Size of the information structure as of specification 0.6.96 (up to
/// and including the framebuffer fields).
pub const INFO_SIZE: u64 = 116;
/// A memory map entry: the `size` field, then 20 bytes (`base_addr`,
/// `length`, `type`).
pub const MMAP_ENTRY_SIZE: u64 = 24;
/// The value of each entry's `size` field: the entry's size not counting
/// the field itself.
pub const MMAP_ENTRY_SIZE_FIELD: u32 = 20;
/// A module list entry: `mod_start`, `mod_end`, `string`, `reserved`.
pub const MODULE_ENTRY_SIZE: u64 = 16;

/// Information flag bit 0: `mem_lower` and `mem_upper` are valid.
pub const INFO_MEMORY: u32 = 1 << 0;
/// Information flag bit 2: `cmdline` is valid.
pub const INFO_CMDLINE: u32 = 1 << 2;
/// Information flag bit 3: `mods_count` and `mods_addr` are valid.
pub const INFO_MODS: u32 = 1 << 3;
/// Information flag bit 6: `mmap_length` and `mmap_addr` are valid.
pub const INFO_MEM_MAP: u32 = 1 << 6;
/// Information flag bit 9: `boot_loader_name` is valid.
pub const INFO_BOOT_LOADER_NAME: u32 = 1 << 9;

/// Byte offsets of the fields this loader fills in.
mod off {
    pub const FLAGS: usize = 0;
    pub const MEM_LOWER: usize = 4;
    pub const MEM_UPPER: usize = 8;
    pub const CMDLINE: usize = 16;
    pub const MODS_COUNT: usize = 20;
    pub const MODS_ADDR: usize = 24;
    pub const MMAP_LENGTH: usize = 44;
    pub const MMAP_ADDR: usize = 48;
    pub const BOOT_LOADER_NAME: usize = 64;
}

/// Lower memory is at most 640 KiB (the specification's maximum).
const LOWER_MEMORY_MAX: u64 = LEGACY_HOLE_START;

/// `mem_lower` in KiB, as GRUB computes it from the memory map: the size of
/// the usable entry starting at address 0, at most 640 KiB.
pub fn mem_lower_kib(map: &[MapEntry]) -> u32 {
    let bytes = map
        .iter()
        .find(|e| e.kind == MapKind::Ram && e.start == 0)
        .map_or(0, |e| e.len.min(LOWER_MEMORY_MAX));
    (bytes / 1024) as u32
}

/// `mem_upper` in KiB, as GRUB computes it from the memory map: from 1 MiB
/// to the end of the usable entry containing 1 MiB, that is to the first
/// hole ("maximally the address of the first upper memory hole minus 1
/// megabyte").
pub fn mem_upper_kib(map: &[MapEntry]) -> u32 {
    let one_mib = HIGH_MEMORY_START.0;
    let bytes = map
        .iter()
        .find(|e| e.kind == MapKind::Ram && e.start <= one_mib && e.start + e.len > one_mib)
        .map_or(0, |e| e.start + e.len - one_mib);
    u32::try_from(bytes / 1024).unwrap_or(u32::MAX)
}

/// The memory map as the kernel reads it: one 24-byte entry per
/// [`MemoryLayout::firmware_map`] entry, RAM as type 1 and reserved as 2.
pub fn mmap_bytes(map: &[MapEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(map.len() * MMAP_ENTRY_SIZE as usize);
    for e in map {
        out.extend_from_slice(&MMAP_ENTRY_SIZE_FIELD.to_le_bytes());
        out.extend_from_slice(&e.start.to_le_bytes());
        out.extend_from_slice(&e.len.to_le_bytes());
        out.extend_from_slice(&e.kind.e820_type().to_le_bytes());
    }
    out
}

/// The lowest [`MODULE_ALIGN`]-aligned address at or above `from` where
/// `len` bytes lie inside one usable entry of `map`, below 4 GiB and clear
/// of the VMM's boot structures.
pub fn place_module(map: &[MapEntry], from: u64, len: u64) -> Option<u64> {
    crate::placement::place_in_ram(map, from, len, MODULE_ALIGN, MODULE_LIMIT)
}

/// Modules end at or below this: `mod_start` and `mod_end` are 32-bit, so
/// `mod_end` (exclusive) must be a u32.
const MODULE_LIMIT: u64 = FOUR_GIB - 1;

/// Everything but the kernel, placed and encoded before anything is
/// written.
#[derive(Debug)]
pub struct Plan<'a> {
    /// The information structure's bytes.
    pub info: [u8; INFO_SIZE as usize],
    /// Memory map, module list, strings, command line and module data.
    pub boot_info: BootInfo<'a>,
}

/// The command line as GRUB and QEMU build it: the kernel's path, then a
/// space and the arguments if there are any.
pub fn command_line(req: &LoadRequest) -> String {
    match req.cmdline.as_deref() {
        Some(args) if !args.is_empty() => format!("{} {args}", req.kernel_path),
        _ => req.kernel_path.clone(),
    }
}

/// Lays out the boot information and the modules for a kernel that ends
/// (BSS included) at `kernel_end`.
pub fn plan<'a>(
    layout: &MemoryLayout,
    kernel_end: u64,
    req: &'a LoadRequest,
) -> Result<Plan<'a>, MultibootError> {
    let mut boot_info = BootInfo::new(Protocol::Multiboot, INFO_SIZE);
    boot_info.check_no_nul(|| "the kernel path".into(), &req.kernel_path)?;
    if let Some(c) = &req.cmdline {
        boot_info.check_no_nul(|| "the command line".into(), c)?;
    }
    let cmdline = boot_info.command_line(&command_line(req))?;
    let modules = boot_info.modules(req)?;

    let map = layout.firmware_map();
    let mmap_addr = boot_info.memory_map(map.len(), MMAP_ENTRY_SIZE);
    boot_info.put(mmap_addr, Cow::Owned(mmap_bytes(&map)));
    let mods_addr = boot_info.table(MODULE_ENTRY_SIZE.saturating_mul(modules.len() as u64));
    let name_addr = boot_info.string(BOOT_LOADER_NAME);
    let placed = boot_info.place_modules(layout, &modules, kernel_end, MODULE_LIMIT)?;
    let mut mod_list = Vec::with_capacity(placed.len() * MODULE_ENTRY_SIZE as usize);
    for m in &placed {
        // The modules end below 4 GiB and their strings are inside the boot
        // information area: all fit in 32 bits.
        for v in [m.addr, m.addr + m.size, m.string, 0] {
            mod_list.extend_from_slice(&(v as u32).to_le_bytes());
        }
    }
    boot_info.put(mods_addr, Cow::Owned(mod_list));

    let mut flags = INFO_MEMORY | INFO_CMDLINE | INFO_MEM_MAP | INFO_BOOT_LOADER_NAME;
    // As GRUB: bit 3 only when there are modules (the specification allows
    // either for none).
    if !modules.is_empty() {
        flags |= INFO_MODS;
    }
    let mut info = [0u8; INFO_SIZE as usize];
    let mut put = |at: usize, v: u32| info[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put(off::FLAGS, flags);
    put(off::MEM_LOWER, mem_lower_kib(&map));
    put(off::MEM_UPPER, mem_upper_kib(&map));
    put(off::CMDLINE, cmdline as u32);
    if !modules.is_empty() {
        put(off::MODS_COUNT, modules.len() as u32);
        put(off::MODS_ADDR, mods_addr as u32);
    }
    put(
        off::MMAP_LENGTH,
        (map.len() as u64 * MMAP_ENTRY_SIZE) as u32,
    );
    put(off::MMAP_ADDR, mmap_addr as u32);
    put(off::BOOT_LOADER_NAME, name_addr as u32);
    Ok(Plan { info, boot_info })
}

/// Writes what [`plan`] laid out.
pub fn write<M: GuestMemoryBackend>(mem: &M, plan: &Plan<'_>) -> Result<(), MultibootError> {
    plan.boot_info.write(mem)?;
    mem.write_slice(&plan.info, INFO_ADDR)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot_info::BootInfoError;
    use crate::request::ModuleImage;
    use vmm_memory::layout::{CMDLINE_MAX_SIZE, MIB, MMIO_HOLE_START};

    fn map(mib: u64) -> Vec<MapEntry> {
        MemoryLayout::with_phys_bits(mib, 40)
            .unwrap()
            .firmware_map()
    }

    #[test]
    fn test_mem_lower_upper_follow_the_map() {
        assert_eq!(mem_lower_kib(&map(64)), 640);
        assert_eq!(mem_upper_kib(&map(64)), 63 * 1024);
        // Above the MMIO hole: upper memory stops at the first hole (3 GiB).
        assert_eq!(
            mem_upper_kib(&map(5 * 1024)),
            ((MMIO_HOLE_START - MIB) / 1024) as u32
        );
        // A 1 MiB guest has no upper memory.
        assert_eq!(mem_upper_kib(&map(1)), 0);
        assert_eq!(mem_lower_kib(&map(1)), 640);
        // An odd map: lower RAM shorter than 640 KiB and no entry at 0.
        let odd = [
            MapEntry {
                start: 0,
                len: 0x9_fc00,
                kind: MapKind::Ram,
            },
            MapEntry {
                start: 0x9_fc00,
                len: 0x400,
                kind: MapKind::Reserved,
            },
        ];
        assert_eq!(mem_lower_kib(&odd), 639);
        assert_eq!(mem_lower_kib(&odd[1..]), 0);
    }

    #[test]
    fn test_mmap_bytes_layout() {
        let m = map(64);
        let b = mmap_bytes(&m);
        assert_eq!(b.len(), 24 * m.len());
        let e1 = &b[24..48];
        assert_eq!(u32::from_le_bytes(e1[0..4].try_into().unwrap()), 20);
        assert_eq!(u64::from_le_bytes(e1[4..12].try_into().unwrap()), 0xa_0000);
        assert_eq!(u64::from_le_bytes(e1[12..20].try_into().unwrap()), 0x6_0000);
        assert_eq!(u32::from_le_bytes(e1[20..24].try_into().unwrap()), 2);
    }

    #[test]
    fn test_place_module_skips_boot_structures_and_hole() {
        let m = map(16);
        // After a kernel in low memory: skips the boot info and cmdline
        // areas.
        assert_eq!(place_module(&m, 0xf800, 0x100), Some(0x3_0000));
        // Too big for the rest of low RAM: moves on to 1 MiB.
        assert_eq!(place_module(&m, 0x3_0000, 0x80000), Some(0x10_0000));
        // Unaligned start rounds up.
        assert_eq!(place_module(&m, 0x10_0001, 1), Some(0x10_1000));
        // Exactly to the end of RAM fits; one more byte does not.
        assert_eq!(place_module(&m, 0xf0_0000, 0x10_0000), Some(0xf0_0000));
        assert_eq!(place_module(&m, 0xf0_0000, 0x10_0001), None);
        assert_eq!(place_module(&m, u64::MAX - 5, 1), None);
    }

    #[test]
    fn test_place_module_stays_below_4gib() {
        let m = map(4096 + 1024);
        assert_eq!(place_module(&m, MMIO_HOLE_START - 0x1000, 0x2000), None);
        assert_eq!(
            place_module(&m, MMIO_HOLE_START - 0x2000, 0x2000),
            Some(MMIO_HOLE_START - 0x2000)
        );
    }

    #[test]
    fn test_command_line_forms() {
        let mut req = LoadRequest {
            kernel_path: "/k".into(),
            ..Default::default()
        };
        assert_eq!(command_line(&req), "/k");
        req.cmdline = Some(String::new());
        assert_eq!(command_line(&req), "/k");
        req.cmdline = Some("a b".into());
        assert_eq!(command_line(&req), "/k a b");
    }

    #[test]
    fn test_plan_errors() {
        let layout = MemoryLayout::with_phys_bits(16, 40).unwrap();
        let mut req = LoadRequest {
            kernel_path: "/k".into(),
            cmdline: Some("x".repeat(CMDLINE_MAX_SIZE as usize - 4)),
            ..Default::default()
        };
        // "/k " + args + NUL = exactly the room.
        assert!(plan(&layout, 0x10_1000, &req).is_ok());
        req.cmdline = Some("x".repeat(CMDLINE_MAX_SIZE as usize - 3));
        let e = plan(&layout, 0x10_1000, &req).unwrap_err();
        assert!(
            matches!(e, MultibootError::BootInfo(BootInfoError::CmdlineTooLong { len, .. }) if len as u64 == CMDLINE_MAX_SIZE),
            "{e}"
        );
        req.cmdline = Some("a\0b".into());
        let e = plan(&layout, 0x10_1000, &req).unwrap_err();
        assert!(
            matches!(
                e,
                MultibootError::BootInfo(BootInfoError::NulInString { offset: 1, .. })
            ),
            "{e}"
        );

        req.cmdline = None;
        req.modules = vec![ModuleImage {
            name: "m\0".into(),
            data: vec![1],
        }];
        let e = plan(&layout, 0x10_1000, &req).unwrap_err();
        assert!(e.to_string().contains("module 0"), "{e}");

        // Module strings that overflow the boot information area.
        req.modules = (0..40)
            .map(|_| ModuleImage {
                name: "s".repeat(2000),
                data: vec![],
            })
            .collect();
        let e = plan(&layout, 0x10_1000, &req).unwrap_err();
        assert!(
            matches!(
                e,
                MultibootError::BootInfo(BootInfoError::BootInfoTooLarge { modules: 40, .. })
            ),
            "{e}"
        );
    }

    #[test]
    fn test_empty_modules_get_distinct_pages() {
        let layout = MemoryLayout::with_phys_bits(16, 40).unwrap();
        let req = LoadRequest {
            kernel_path: "/k".into(),
            initrd: Some(ModuleImage {
                name: "a".into(),
                data: vec![],
            }),
            modules: vec![ModuleImage {
                name: "b".into(),
                data: vec![7],
            }],
            ..Default::default()
        };
        let p = plan(&layout, 0x10_0800, &req).unwrap();
        let mods_addr = u32::from_le_bytes(
            p.info[off::MODS_ADDR..off::MODS_ADDR + 4]
                .try_into()
                .unwrap(),
        );
        let list = p
            .boot_info
            .writes()
            .iter()
            .find(|(a, _)| *a == u64::from(mods_addr))
            .map(|(_, b)| b.to_vec())
            .unwrap();
        let word = |i: usize| u32::from_le_bytes(list[4 * i..4 * i + 4].try_into().unwrap());
        assert_eq!((word(0), word(1)), (0x10_1000, 0x10_1000));
        assert_eq!((word(4), word(5)), (0x10_2000, 0x10_2001));
    }
}
