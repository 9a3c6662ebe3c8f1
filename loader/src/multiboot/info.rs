//! The Multiboot information structure (specification section 3.3) and
//! what it points to: memory map, module list, strings, modules.
//!
//! Where things go ([`crate::boot_info`] lays them out, as for PVH, and the
//! boot plan places the area and the command line around the kernel):
//! - the structure itself at the start of the boot information area
//!   (preferably [`INFO_ADDR`], `BOOT_INFO_START`), then, 8-byte aligned,
//!   the memory map, the module list, the boot loader name and the modules'
//!   strings;
//! - the command line where the plan puts it (preferably `CMDLINE_START`;
//!   at most `CMDLINE_MAX_SIZE` bytes);
//! - each module's data page-aligned in usable RAM below 4 GiB after the
//!   kernel's end (BSS included) and the previous module, skipping the
//!   VMM's boot structures (which the memory map reserves).

use std::borrow::Cow;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_memory::boot_plan::max_map_entries;
use vmm_memory::layout::{
    MapEntry, MapKind, BOOT_INFO_START, HIGH_MEMORY_START, LEGACY_HOLE_START,
};
use vmm_memory::{BootPlan, MemoryLayout, Structure};

use super::{MultibootError, FOUR_GIB};
use crate::boot_info::{self, BootInfo, Protocol};
use crate::boot_spec::BootMode;
use crate::request::{LoadRequest, ModuleImage};
use crate::structures::{self, ProtocolNeeds};

/// Where the information structure goes when the kernel leaves room; EBX
/// holds its address at entry.
pub const INFO_ADDR: GuestAddress = BOOT_INFO_START;
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
/// `len` bytes lie inside one usable entry of `map` (which reserves the
/// VMM's boot structures), below 4 GiB.
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
    /// Where every boot structure goes.
    pub boot: BootPlan,
    /// Where the information structure is (EBX).
    pub addr: u64,
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

/// Where the area's tables and strings went.
struct Laid {
    mmap: u64,
    mods: u64,
    name: u64,
    strings: Vec<u64>,
}

/// Lays out the area after the structure: the memory map (`map_entries`
/// entries), the module list, the boot loader name, the modules' strings.
fn lay_out(info: &mut BootInfo<'_>, map_entries: usize, modules: &[&ModuleImage]) -> Laid {
    let mmap = info.memory_map(map_entries, MMAP_ENTRY_SIZE);
    let mods = info.table(MODULE_ENTRY_SIZE.saturating_mul(modules.len() as u64));
    let name = info.string(BOOT_LOADER_NAME);
    let strings = info.module_strings(modules);
    Laid {
        mmap,
        mods,
        name,
        strings,
    }
}

/// Lays out the boot information and the modules for a kernel occupying
/// `kernel` (`(start, length)` ranges) that ends (BSS included) at
/// `kernel_end`, and places every boot structure around it.
pub fn plan<'a>(
    layout: &MemoryLayout,
    kernel: &[(GuestAddress, u64)],
    kernel_end: u64,
    req: &'a LoadRequest,
) -> Result<Plan<'a>, MultibootError> {
    // Measured first: the area's size goes into the boot plan, whose memory
    // map then fills it (with at most the entries measured for).
    let mut dry = BootInfo::new(Protocol::Multiboot, 0, INFO_SIZE);
    dry.check_no_nul(|| "the kernel path".into(), &req.kernel_path)?;
    if let Some(c) = &req.cmdline {
        dry.check_no_nul(|| "the command line".into(), c)?;
    }
    let line = command_line(req);
    let cmdline_len = dry.command_line_len(&line)?;
    let modules = dry.modules(req)?;
    lay_out(&mut dry, max_map_entries(layout), &modules);
    dry.check_size(modules.len())?;
    let boot = structures::plan(
        layout,
        BootMode::Protected,
        &structures::occupied("the Multiboot kernel", kernel),
        req,
        ProtocolNeeds {
            boot_info: Some(dry.len()),
            cmdline: Some(cmdline_len),
            ..ProtocolNeeds::default()
        },
    )?;
    // The planner places what it is asked for or fails.
    let addr = boot.addr(Structure::BootInfo).map_or(INFO_ADDR.0, |a| a.0);
    let cmdline = boot.addr(Structure::Cmdline).map_or(0, |a| a.0);

    let map = boot.memory_map(layout);
    let mut boot_info = BootInfo::new(Protocol::Multiboot, addr, INFO_SIZE);
    boot_info.command_line(&line, cmdline);
    let laid = lay_out(&mut boot_info, map.len(), &modules);
    boot_info.put(laid.mmap, Cow::Owned(mmap_bytes(&map)));
    let placed = boot_info.place_modules(
        layout,
        &map,
        &modules,
        &laid.strings,
        kernel_end,
        MODULE_LIMIT,
    )?;
    let mut mod_list = Vec::with_capacity(placed.len() * MODULE_ENTRY_SIZE as usize);
    for m in &placed {
        // The modules end below 4 GiB and their strings are in the boot
        // information area below 4 GiB: all fit in 32 bits.
        for v in [m.addr, m.addr + m.size, m.string, 0] {
            mod_list.extend_from_slice(&(v as u32).to_le_bytes());
        }
    }
    boot_info.put(laid.mods, Cow::Owned(mod_list));

    let mut flags = INFO_MEMORY | INFO_CMDLINE | INFO_MEM_MAP | INFO_BOOT_LOADER_NAME;
    // As GRUB: bit 3 only when there are modules (the specification allows
    // either for none).
    if !modules.is_empty() {
        flags |= INFO_MODS;
    }
    // How much memory there is, as a BIOS's INT 12h and E801h say it: from
    // the RAM (the small reserved structures in it do not shrink it), lower
    // memory ending at the EBDA as the BDA reports.
    let physical = layout.firmware_map();
    let mem_lower = mem_lower_kib(&physical).min(u32::from(boot.base_memory_kib()));
    let mut info = [0u8; INFO_SIZE as usize];
    let mut put = |at: usize, v: u32| info[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put(off::FLAGS, flags);
    put(off::MEM_LOWER, mem_lower);
    put(off::MEM_UPPER, mem_upper_kib(&physical));
    put(off::CMDLINE, cmdline as u32);
    if !modules.is_empty() {
        put(off::MODS_COUNT, modules.len() as u32);
        put(off::MODS_ADDR, laid.mods as u32);
    }
    put(
        off::MMAP_LENGTH,
        (map.len() as u64 * MMAP_ENTRY_SIZE) as u32,
    );
    put(off::MMAP_ADDR, laid.mmap as u32);
    put(off::BOOT_LOADER_NAME, laid.name as u32);
    Ok(Plan {
        boot,
        addr,
        info,
        boot_info,
    })
}

/// Writes what [`plan`] laid out.
pub fn write<M: GuestMemoryBackend>(mem: &M, plan: &Plan<'_>) -> Result<(), MultibootError> {
    plan.boot_info.write(mem)?;
    mem.write_slice(&plan.info, GuestAddress(plan.addr))?;
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
    fn test_place_module_skips_reserved_memory_and_hole() {
        let m = map(16);
        // After a kernel in low memory: skips what the map reserves.
        let plan = vmm_memory::boot_plan::plan(
            &MemoryLayout::with_phys_bits(16, 40).unwrap(),
            &[],
            &vmm_memory::Needs {
                boot_info: Some(0x1_0000),
                cmdline: Some(0x1_0000),
                ..Default::default()
            },
        )
        .unwrap();
        let reserving = plan.memory_map(&MemoryLayout::with_phys_bits(16, 40).unwrap());
        assert_eq!(place_module(&reserving, 0xf800, 0x100), Some(0x3_0000));
        assert_eq!(place_module(&m, 0xf800, 0x100), Some(0x1_0000));
        // Too big for the rest of low RAM: moves on to 1 MiB.
        assert_eq!(place_module(&reserving, 0x3_0000, 0x80000), Some(0x10_0000));
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
        let kernel = [(GuestAddress(0x10_0000), 0x1000)];
        // "/k " + args + NUL = exactly the room.
        assert!(plan(&layout, &kernel, 0x10_1000, &req).is_ok());
        req.cmdline = Some("x".repeat(CMDLINE_MAX_SIZE as usize - 3));
        let e = plan(&layout, &kernel, 0x10_1000, &req).unwrap_err();
        assert!(
            matches!(e, MultibootError::BootInfo(BootInfoError::CmdlineTooLong { len, .. }) if len as u64 == CMDLINE_MAX_SIZE),
            "{e}"
        );
        req.cmdline = Some("a\0b".into());
        let e = plan(&layout, &kernel, 0x10_1000, &req).unwrap_err();
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
        let e = plan(&layout, &kernel, 0x10_1000, &req).unwrap_err();
        assert!(e.to_string().contains("module 0"), "{e}");

        // Module strings that overflow the boot information area.
        req.modules = (0..40)
            .map(|_| ModuleImage {
                name: "s".repeat(2000),
                data: vec![],
            })
            .collect();
        let e = plan(&layout, &kernel, 0x10_1000, &req).unwrap_err();
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
        let p = plan(
            &layout,
            &[(GuestAddress(0x10_0000), 0x800)],
            0x10_0800,
            &req,
        )
        .unwrap();
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
