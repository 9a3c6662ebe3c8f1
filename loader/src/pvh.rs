//! PVH kernels: the Xen x86/HVM direct boot ABI (Xen's
//! `docs/misc/pvh.pandoc` and `xen/include/public/arch-x86/hvm/start_info.h`),
//! which Linux (`arch/x86/platform/pvh`), FreeBSD and others implement.
//!
//! A PVH kernel is an ELF executable carrying a `XEN_ELFNOTE_PHYS32_ENTRY`
//! note (type 18, name "Xen") whose descriptor is the physical address of a
//! 32-bit entry point. The loader copies the `PT_LOAD` segments to their
//! physical addresses and enters that address in 32-bit flat protected mode
//! with paging off and EBX holding the physical address of a
//! `struct hvm_start_info` (version 1) that points to the memory map, the
//! command line and the module list.
//!
//! Where things go (all below 4 GiB, as Xen places them; [`crate::boot_info`]
//! places them, as for Multiboot):
//! - `hvm_start_info` at [`START_INFO_ADDR`] (`BOOT_INFO_START`), then (8-byte aligned) the
//!   memory map, the module list and the modules' NUL-terminated strings,
//!   all inside `[BOOT_INFO_START, BOOT_INFO_END)`;
//! - the command line, NUL-terminated, at `CMDLINE_START`;
//! - the modules' data page-aligned in RAM above the kernel, skipping the
//!   VMM's boot structures and anything the memory map does not call RAM.
//!
//! Module 0 is the initrd when there is one (Linux takes module 0 as its
//! initrd); the `--module` files follow in order.

pub mod test_image;

use goblin::elf::Elf as GoblinElf;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info, XEN_HVM_MEMMAP_TYPE_RAM,
    XEN_HVM_MEMMAP_TYPE_RESERVED,
};
use vm_memory::{GuestAddress, GuestMemoryBackend};
use vmm_memory::layout::{MapEntry, MapKind, MMIO_HOLE_END};
use vmm_memory::MemoryLayout;

use crate::boot_info::{self, BootInfo, BootInfoError, Protocol};
use crate::boot_spec::{BootMode, BootSpec, Entry, Handoff};
use crate::detect::XEN_ELFNOTE_PHYS32_ENTRY;
use crate::elf::{parse_elf, write_segments, ElfError, ElfImage};
use crate::request::LoadRequest;

pub use linux_loader::loader::elf::start_info::XEN_HVM_START_MAGIC_VALUE;

/// The `hvm_start_info` version written: 1, the first with a memory map.
pub const START_INFO_VERSION: u32 = 1;
/// Where `hvm_start_info` goes; EBX holds this address at entry.
pub const START_INFO_ADDR: GuestAddress = boot_info::STRUCTURE_ADDR;
/// Modules are page-aligned.
pub const MODULE_ALIGN: u64 = boot_info::MODULE_ALIGN;
/// The name of Xen's ELF notes.
pub const XEN_NOTE_NAME: &str = "Xen";

const START_INFO_SIZE: u64 = std::mem::size_of::<hvm_start_info>() as u64;
const MEMMAP_ENTRY_SIZE: u64 = std::mem::size_of::<hvm_memmap_table_entry>() as u64;
const MODLIST_ENTRY_SIZE: u64 = std::mem::size_of::<hvm_modlist_entry>() as u64;

/// Errors loading a PVH kernel.
#[derive(Debug, thiserror::Error)]
pub enum PvhError {
    /// The ELF itself is invalid (headers, segments, RAM placement).
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// No `XEN_ELFNOTE_PHYS32_ENTRY` note.
    #[error("ELF has no Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY, type 18, name \"Xen\"){}", .malformed.as_ref().map(|m| format!("; a note could not be parsed: {m}")).unwrap_or_default())]
    MissingEntryNote {
        /// The first note parse error met while looking, if any.
        malformed: Option<String>,
    },
    /// The note's descriptor is neither a 4- nor an 8-byte number.
    #[error("Xen PVH entry note descriptor is {0} bytes; Xen numeric notes are 4 or 8 bytes")]
    EntryNoteSize(usize),
    /// An 8-byte descriptor whose value is not a 32-bit address.
    #[error("Xen PVH entry point {0:#x} does not fit in 32 bits (it is entered with paging off)")]
    EntryNot32Bit(u64),
    /// Two PHYS32_ENTRY notes with different addresses.
    #[error("ELF has conflicting Xen PVH entry notes: {first:#x} and {second:#x}")]
    ConflictingEntryNotes {
        /// The first note's address.
        first: u64,
        /// A later note's, different, address.
        second: u64,
    },
    /// The entry point is not guest RAM.
    #[error("Xen PVH entry point {0:#x} is outside guest RAM")]
    EntryOutsideRam(u64),
    /// The entry point is RAM but not inside any loaded segment.
    #[error("Xen PVH entry point {entry:#x} is not inside any loaded segment of the kernel (which spans [{start:#x}, {end:#x}))")]
    EntryOutsideImage {
        /// The entry point.
        entry: u64,
        /// Lowest loaded address.
        start: u64,
        /// One past the highest loaded address.
        end: u64,
    },
    /// The command line, a string, the boot information or a module does
    /// not fit or is malformed.
    #[error(transparent)]
    BootInfo(#[from] BootInfoError),
    /// linux-loader's PVH configurator refused the boot parameters.
    #[error("writing the PVH start_info/memory map/module list failed: {0}")]
    Configurator(linux_loader::configurator::Error),
    /// Writing to guest memory failed.
    #[error("writing PVH boot data to guest memory failed: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
}

/// Reads the `XEN_ELFNOTE_PHYS32_ENTRY` address from the image's `PT_NOTE`
/// segments (the same notes [`crate::detect::detect`] looks at).
pub fn find_phys32_entry(image: &[u8]) -> Result<u64, PvhError> {
    let elf = GoblinElf::parse(image).map_err(|e| ElfError::Parse(e.to_string()))?;
    let mut found: Option<u64> = None;
    let mut malformed = None;
    for note in elf.iter_note_headers(image).into_iter().flatten() {
        let note = match note {
            Ok(n) => n,
            Err(e) => {
                malformed.get_or_insert_with(|| e.to_string());
                continue;
            }
        };
        if note.n_type != XEN_ELFNOTE_PHYS32_ENTRY
            || note.name.trim_end_matches('\0') != XEN_NOTE_NAME
        {
            continue;
        }
        // Xen's elfnote.h: "Numeric types are either 4 or 8 bytes depending
        // on the content of the desc field", little-endian on x86.
        let value = match *note.desc {
            [a, b, c, d] => u64::from(u32::from_le_bytes([a, b, c, d])),
            [a, b, c, d, e, f, g, h] => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
            _ => return Err(PvhError::EntryNoteSize(note.desc.len())),
        };
        if value > u64::from(u32::MAX) {
            return Err(PvhError::EntryNot32Bit(value));
        }
        match found {
            Some(first) if first != value => {
                return Err(PvhError::ConflictingEntryNotes {
                    first,
                    second: value,
                })
            }
            _ => found = Some(value),
        }
    }
    found.ok_or(PvhError::MissingEntryNote { malformed })
}

/// Checks that `entry` is RAM inside one of the kernel's loaded segments.
fn check_entry(entry: u64, elf: &ElfImage, layout: &MemoryLayout) -> Result<(), PvhError> {
    if !layout.is_ram(GuestAddress(entry)) {
        return Err(PvhError::EntryOutsideRam(entry));
    }
    let inside = elf
        .segments
        .iter()
        .any(|s| entry >= s.paddr && entry - s.paddr < s.memsz);
    if !inside {
        return Err(PvhError::EntryOutsideImage {
            entry,
            start: elf.start,
            end: elf.end,
        });
    }
    Ok(())
}

/// The PVH memory map: [`MemoryLayout::firmware_map`], entry for entry.
pub fn memmap(layout: &MemoryLayout) -> Vec<hvm_memmap_table_entry> {
    layout
        .firmware_map()
        .iter()
        .map(|e| hvm_memmap_table_entry {
            addr: e.start,
            size: e.len,
            type_: match e.kind {
                MapKind::Ram => XEN_HVM_MEMMAP_TYPE_RAM,
                MapKind::Reserved => XEN_HVM_MEMMAP_TYPE_RESERVED,
            },
            reserved: 0,
        })
        .collect()
}

/// The lowest [`MODULE_ALIGN`]-aligned address at or above `from` where
/// `len` bytes lie inside one RAM entry of `map` below 4 GiB and clear of
/// the VMM's boot structures.
pub fn place_module(map: &[MapEntry], from: u64, len: u64) -> Option<u64> {
    crate::placement::place_in_ram(map, from, len, MODULE_ALIGN, MMIO_HOLE_END)
}

/// Where everything but the kernel goes, decided before anything is written.
#[derive(Debug)]
struct Plan<'a> {
    /// Command line, module strings and data.
    boot_info: BootInfo<'a>,
    cmdline_addr: u64,
    memmap: Vec<hvm_memmap_table_entry>,
    memmap_addr: u64,
    modlist: Vec<hvm_modlist_entry>,
    modlist_addr: u64,
}

fn plan<'a>(
    layout: &MemoryLayout,
    elf: &ElfImage,
    req: &'a LoadRequest,
) -> Result<Plan<'a>, PvhError> {
    let mut boot_info = BootInfo::new(Protocol::Pvh, START_INFO_SIZE);
    let cmdline = req.cmdline.as_deref().unwrap_or("");
    boot_info.check_no_nul(|| "the command line".to_string(), cmdline)?;
    let cmdline_addr = boot_info.command_line(cmdline)?;
    let modules = boot_info.modules(req)?;

    let memmap = memmap(layout);
    let memmap_addr = boot_info.memory_map(memmap.len(), MEMMAP_ENTRY_SIZE);
    let modlist_addr = boot_info.table(MODLIST_ENTRY_SIZE.saturating_mul(modules.len() as u64));
    let placed = boot_info.place_modules(layout, &modules, elf.end, MMIO_HOLE_END)?;
    let modlist = placed
        .iter()
        .map(|m| hvm_modlist_entry {
            paddr: m.addr,
            size: m.size,
            cmdline_paddr: m.string,
            reserved: 0,
        })
        .collect();
    Ok(Plan {
        boot_info,
        cmdline_addr,
        memmap,
        memmap_addr,
        modlist,
        modlist_addr,
    })
}

/// Loads a PVH kernel: segments, modules, command line, `hvm_start_info`
/// with its memory map and module list; returns 32-bit protected-mode entry
/// at the PHYS32_ENTRY address with EBX = the start_info address.
///
/// Everything is checked before guest memory is written.
pub fn load_pvh<M: GuestMemoryBackend>(
    mem: &M,
    layout: &MemoryLayout,
    image: &[u8],
    req: &LoadRequest,
) -> Result<BootSpec, PvhError> {
    let elf = parse_elf(image, layout)?;
    let entry = find_phys32_entry(image)?;
    check_entry(entry, &elf, layout)?;
    let plan = plan(layout, &elf, req)?;

    write_segments(mem, image, &elf)?;
    plan.boot_info.write(mem)?;

    let start_info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: START_INFO_VERSION,
        flags: 0,
        nr_modules: plan.modlist.len() as u32,
        // Zero means "not present" in every address field.
        modlist_paddr: if plan.modlist.is_empty() {
            0
        } else {
            plan.modlist_addr
        },
        cmdline_paddr: plan.cmdline_addr,
        rsdp_paddr: req.acpi_rsdp.unwrap_or(0),
        memmap_paddr: plan.memmap_addr,
        memmap_entries: plan.memmap.len() as u32,
        reserved: 0,
    };
    let mut params = BootParams::new(&start_info, START_INFO_ADDR);
    params.set_sections(&plan.memmap, GuestAddress(plan.memmap_addr));
    if !plan.modlist.is_empty() {
        params.set_modules(&plan.modlist, GuestAddress(plan.modlist_addr));
    }
    PvhBootConfigurator::write_bootparams(&params, mem).map_err(PvhError::Configurator)?;

    Ok(BootSpec {
        mode: BootMode::Protected,
        entry: Entry::Linear(GuestAddress(entry)),
        image: (GuestAddress(elf.start), elf.end - elf.start),
        segments: elf.extents(),
        handoff: Handoff::PvhStartInfo(START_INFO_ADDR),
    })
}

#[cfg(test)]
mod tests {
    use super::test_image::{build, build_pvh};
    use super::*;
    use crate::request::ModuleImage;
    use vm_memory::{Bytes, GuestMemoryMmap};
    use vmm_memory::layout::{CMDLINE_MAX_SIZE, CMDLINE_START};

    const MIB16: u64 = 16 << 20;

    fn setup() -> (MemoryLayout, GuestMemoryMmap) {
        let layout = MemoryLayout::with_phys_bits(16, 40).unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MIB16 as usize)]).unwrap();
        (layout, mem)
    }

    fn module(name: &str, data: Vec<u8>) -> ModuleImage {
        ModuleImage {
            name: name.to_string(),
            data,
        }
    }

    fn read_string(mem: &GuestMemoryMmap, addr: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for a in addr.. {
            let b: u8 = mem.read_obj(GuestAddress(a)).unwrap();
            if b == 0 {
                break;
            }
            out.push(b);
        }
        out
    }

    /// A kernel whose code (0xf4 bytes) is at 1 MiB, 0x1800 bytes of which
    /// 0x800 are BSS, entered at 1 MiB + 0x10.
    fn kernel(is_64: bool) -> Vec<u8> {
        build_pvh(
            is_64,
            0x10_0010,
            &[(0x10_0000, 0x10_0000, &[0xf4; 0x1000], 0x1800)],
        )
    }

    fn full_request() -> LoadRequest {
        LoadRequest {
            kernel_path: "vmlinux".into(),
            cmdline: Some("console=ttyS0 quiet".into()),
            initrd: Some(module(
                "/boot/initrd.img",
                (0..5000u32).map(|i| i as u8).collect(),
            )),
            modules: vec![module("second module", vec![0x5a; 77])],
            bzimage_own_entry: false,
            acpi_rsdp: Some(0xe0000),
            kernel_cache: Default::default(),
        }
    }

    fn check_full_load(is_64: bool) {
        let (layout, mem) = setup();
        // Dirty the BSS so zeroing is proven, not inherited.
        mem.write_slice(&[0xaa; 0x800], GuestAddress(0x10_1000))
            .unwrap();
        let req = full_request();
        let spec = load_pvh(&mem, &layout, &kernel(is_64), &req).unwrap();
        assert_eq!(spec.mode, BootMode::Protected);
        assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x10_0010)));
        assert_eq!(spec.handoff, Handoff::PvhStartInfo(GuestAddress(0x1_0000)));
        assert_eq!(spec.image, (GuestAddress(0x10_0000), 0x1800));

        let mut code = vec![0u8; 0x1800];
        mem.read_slice(&mut code, GuestAddress(0x10_0000)).unwrap();
        assert!(code[..0x1000].iter().all(|&b| b == 0xf4));
        assert!(code[0x1000..].iter().all(|&b| b == 0), "BSS not zeroed");

        let si: hvm_start_info = mem.read_obj(START_INFO_ADDR).unwrap();
        assert_eq!(si.magic, 0x336e_c578);
        assert_eq!(si.version, 1);
        assert_eq!(si.flags, 0);
        assert_eq!(si.nr_modules, 2);
        assert_eq!(si.cmdline_paddr, 0x2_0000);
        assert_eq!(si.rsdp_paddr, 0xe0000, "the RSDP the VMM passes");
        assert_eq!(si.reserved, 0);
        for a in [si.memmap_paddr, si.modlist_paddr] {
            assert!(
                (0x1_0000 + 56..0x2_0000).contains(&a) && a % 8 == 0,
                "{a:#x}"
            );
        }

        // The memory map is the layout's firmware map, entry for entry.
        let fw = layout.firmware_map();
        assert_eq!(si.memmap_entries as usize, fw.len());
        for (i, e) in fw.iter().enumerate() {
            let m: hvm_memmap_table_entry = mem
                .read_obj(GuestAddress(si.memmap_paddr + 24 * i as u64))
                .unwrap();
            let kind = match e.kind {
                MapKind::Ram => 1,
                MapKind::Reserved => 2,
            };
            assert_eq!(
                (m.addr, m.size, m.type_, m.reserved),
                (e.start, e.len, kind, 0)
            );
        }

        assert_eq!(read_string(&mem, si.cmdline_paddr), b"console=ttyS0 quiet");

        let expected = [req.initrd.clone().unwrap(), req.modules[0].clone()];
        let mut prev_end = 0x10_1800;
        for (i, m) in expected.iter().enumerate() {
            let e: hvm_modlist_entry = mem
                .read_obj(GuestAddress(si.modlist_paddr + 32 * i as u64))
                .unwrap();
            assert!(
                e.paddr.is_multiple_of(0x1000),
                "module {i} at {:#x}",
                e.paddr
            );
            assert!(e.paddr >= prev_end, "module {i} at {:#x}", e.paddr);
            assert_eq!(e.size, m.data.len() as u64);
            assert_eq!(e.reserved, 0);
            assert!(vmm_memory::layout::overlapping_boot_structure(e.paddr, e.size).is_none());
            let mut data = vec![0u8; m.data.len()];
            mem.read_slice(&mut data, GuestAddress(e.paddr)).unwrap();
            assert_eq!(data, m.data);
            assert_eq!(read_string(&mem, e.cmdline_paddr), m.name.as_bytes());
            prev_end = e.paddr + e.size;
        }
    }

    #[test]
    fn test_pvh_elf64_start_info_memmap_modules() {
        check_full_load(true);
    }

    #[test]
    fn test_pvh_elf32_start_info_memmap_modules() {
        check_full_load(false);
    }

    #[test]
    fn test_pvh_elf64_entry_below_1mib_uses_generic_loader() {
        // PVH does not use e_entry: one below 1 MiB (which linux-loader's
        // ELF loader would refuse) loads.
        let (layout, mem) = setup();
        mem.write_slice(&[0xaa; 16], GuestAddress(0x8_0004))
            .unwrap();
        let desc = 0x8_0000u32.to_le_bytes();
        let img = build(
            true,
            0x8_0000,
            &[(0x8_0000, 0x8_0000, &[0xf4; 4], 0x20)],
            &[("Xen", XEN_ELFNOTE_PHYS32_ENTRY, &desc)],
        );
        let spec = load_pvh(&mem, &layout, &img, &LoadRequest::default()).unwrap();
        assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x8_0000)));
        let mut b = [0u8; 8];
        mem.read_slice(&mut b, GuestAddress(0x8_0000)).unwrap();
        assert_eq!(b, [0xf4, 0xf4, 0xf4, 0xf4, 0, 0, 0, 0]);
    }

    #[test]
    fn test_pvh_defaults_without_cmdline_or_modules() {
        let (layout, mem) = setup();
        mem.write_slice(b"stale", CMDLINE_START).unwrap();
        load_pvh(&mem, &layout, &kernel(true), &LoadRequest::default()).unwrap();
        let si: hvm_start_info = mem.read_obj(START_INFO_ADDR).unwrap();
        assert_eq!((si.nr_modules, si.modlist_paddr), (0, 0));
        assert_eq!(si.cmdline_paddr, CMDLINE_START.0);
        assert_eq!(read_string(&mem, si.cmdline_paddr), b"");
    }

    #[test]
    fn test_pvh_note_descriptor_sizes() {
        let (layout, _) = setup();
        let seg: &[test_image::Seg<'_>] = &[(0x10_0000, 0x10_0000, &[0xf4; 16], 16)];
        let with_desc = |desc: &[u8]| {
            build(
                true,
                0x10_0000,
                seg,
                &[("Xen", XEN_ELFNOTE_PHYS32_ENTRY, desc)],
            )
        };
        // 8-byte descriptors are how older Linux wrote it (_ASM_PTR).
        assert_eq!(
            find_phys32_entry(&with_desc(&0x10_0004u64.to_le_bytes())).unwrap(),
            0x10_0004
        );
        assert!(matches!(
            find_phys32_entry(&with_desc(&[0, 0])),
            Err(PvhError::EntryNoteSize(2))
        ));
        let e = find_phys32_entry(&with_desc(&0x1_0010_0000u64.to_le_bytes())).unwrap_err();
        assert!(matches!(e, PvhError::EntryNot32Bit(0x1_0010_0000)), "{e}");
        assert!(e.to_string().contains("0x100100000"), "{e}");
        // Another owner's type-18 note is not Xen's.
        let other = build(true, 0x10_0000, seg, &[("GNU", 18, &[0; 4])]);
        assert!(matches!(
            load_pvh(&setup().1, &layout, &other, &LoadRequest::default()),
            Err(PvhError::MissingEntryNote { .. })
        ));
        let none = build(true, 0x10_0000, seg, &[]);
        let e = find_phys32_entry(&none).unwrap_err();
        assert!(e.to_string().contains("XEN_ELFNOTE_PHYS32_ENTRY"), "{e}");
    }

    #[test]
    fn test_pvh_duplicate_notes_must_agree() {
        let seg: &[test_image::Seg<'_>] = &[(0x10_0000, 0x10_0000, &[0xf4; 16], 16)];
        let (a, b) = (0x10_0000u32.to_le_bytes(), 0x10_0008u32.to_le_bytes());
        let same = build(
            true,
            0x10_0000,
            seg,
            &[
                ("Xen", XEN_ELFNOTE_PHYS32_ENTRY, &a),
                ("Xen", XEN_ELFNOTE_PHYS32_ENTRY, &a),
            ],
        );
        assert_eq!(find_phys32_entry(&same).unwrap(), 0x10_0000);
        let differ = build(
            true,
            0x10_0000,
            seg,
            &[
                ("Xen", 5, b"4.0\0"),
                ("Xen", XEN_ELFNOTE_PHYS32_ENTRY, &a),
                ("Xen", XEN_ELFNOTE_PHYS32_ENTRY, &b),
            ],
        );
        assert!(matches!(
            find_phys32_entry(&differ),
            Err(PvhError::ConflictingEntryNotes {
                first: 0x10_0000,
                second: 0x10_0008
            })
        ));
    }

    #[test]
    fn test_pvh_entry_outside_ram_or_image() {
        let (layout, mem) = setup();
        let seg: &[test_image::Seg<'_>] = &[(0x10_0000, 0x10_0000, &[0xf4; 16], 0x20)];
        let desc = 0x4000_0000u32.to_le_bytes();
        let img = build(
            true,
            0x10_0000,
            seg,
            &[("Xen", XEN_ELFNOTE_PHYS32_ENTRY, &desc)],
        );
        let e = load_pvh(&mem, &layout, &img, &LoadRequest::default()).unwrap_err();
        assert!(matches!(e, PvhError::EntryOutsideRam(0x4000_0000)), "{e}");
        assert!(e.to_string().contains("0x40000000"), "{e}");
        // In RAM, just past the segment's memory size.
        let desc = 0x10_0020u32.to_le_bytes();
        let img = build(
            true,
            0x10_0000,
            seg,
            &[("Xen", XEN_ELFNOTE_PHYS32_ENTRY, &desc)],
        );
        let e = load_pvh(&mem, &layout, &img, &LoadRequest::default()).unwrap_err();
        assert!(
            matches!(
                e,
                PvhError::EntryOutsideImage {
                    entry: 0x10_0020,
                    start: 0x10_0000,
                    end: 0x10_0020
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn test_pvh_cmdline_limits() {
        let (layout, mem) = setup();
        let longest = "x".repeat(CMDLINE_MAX_SIZE as usize - 1);
        let req = LoadRequest {
            cmdline: Some(longest.clone()),
            ..Default::default()
        };
        load_pvh(&mem, &layout, &kernel(true), &req).unwrap();
        assert_eq!(read_string(&mem, CMDLINE_START.0).len(), longest.len());

        let (layout, mem) = setup();
        let req = LoadRequest {
            cmdline: Some(longest + "y"),
            ..Default::default()
        };
        let e = load_pvh(&mem, &layout, &kernel(true), &req).unwrap_err();
        assert!(
            matches!(
                e,
                PvhError::BootInfo(BootInfoError::CmdlineTooLong { len: 0x1_0000, .. })
            ),
            "{e}"
        );
        assert!(e.to_string().contains("65536 bytes"), "{e}");
        // Nothing was written: the check comes before any copy.
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x10_0000)).unwrap(), 0);

        let req = LoadRequest {
            cmdline: Some("a\0b".into()),
            ..Default::default()
        };
        let e = load_pvh(&mem, &layout, &kernel(true), &req).unwrap_err();
        assert!(
            matches!(
                e,
                PvhError::BootInfo(BootInfoError::NulInString { offset: 1, .. })
            ),
            "{e}"
        );
    }

    #[test]
    fn test_pvh_module_too_large() {
        let (layout, mem) = setup();
        // 16 MiB of RAM, kernel ends at 1 MiB + 6 KiB: 15 MiB - 8 KiB are free.
        let free = MIB16 - 0x10_2000;
        let fits = LoadRequest {
            initrd: Some(module("fits", vec![1; free as usize])),
            ..Default::default()
        };
        load_pvh(&mem, &layout, &kernel(true), &fits).unwrap();
        let si: hvm_start_info = mem.read_obj(START_INFO_ADDR).unwrap();
        let e: hvm_modlist_entry = mem.read_obj(GuestAddress(si.modlist_paddr)).unwrap();
        assert_eq!((e.paddr, e.size), (0x10_2000, free));

        let req = LoadRequest {
            initrd: Some(module("small", vec![1; 10])),
            modules: vec![module("big.img", vec![2; free as usize])],
            ..Default::default()
        };
        let e = load_pvh(&mem, &layout, &kernel(true), &req).unwrap_err();
        assert!(
            matches!(&e, PvhError::BootInfo(BootInfoError::ModuleTooLarge { index: 1, size, from: 0x10_3000, .. }) if *size == free),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&free.to_string()) && msg.contains("big.img"),
            "{msg}"
        );
    }

    #[test]
    fn test_pvh_boot_info_area_overflow() {
        let (layout, mem) = setup();
        let long_name = "n".repeat(40_000);
        let req = LoadRequest {
            initrd: Some(module(&long_name, vec![1])),
            modules: vec![module(&long_name, vec![2])],
            ..Default::default()
        };
        let e = load_pvh(&mem, &layout, &kernel(true), &req).unwrap_err();
        assert!(
            matches!(
                e,
                PvhError::BootInfo(BootInfoError::BootInfoTooLarge { modules: 2, .. })
            ),
            "{e}"
        );
    }

    #[test]
    fn test_place_module_skips_boot_structures_and_legacy_hole() {
        let layout = MemoryLayout::with_phys_bits(16, 40).unwrap();
        let map = layout.firmware_map();
        // From 0x2000: the zero page, page tables, boot info and command line
        // are all in the way; the first clear page is 0x30000.
        assert_eq!(place_module(&map, 0x2000, 0x6000), Some(0x3_0000));
        assert_eq!(place_module(&map, 0x2000, 0x1000), Some(0x2000));
        // Unaligned starts round up to a page.
        assert_eq!(place_module(&map, 0x3_0001, 1), Some(0x3_1000));
        // Would cross into the reserved legacy hole: goes to 1 MiB.
        assert_eq!(place_module(&map, 0x9_f000, 0x2000), Some(0x10_0000));
        assert_eq!(place_module(&map, 0x9_f000, 0x1000), Some(0x9_f000));
        // Nothing fits past the end of RAM.
        assert_eq!(place_module(&map, MIB16 - 0x1000, 0x1001), None);
        assert_eq!(place_module(&map, MIB16, 0), None);
        assert_eq!(place_module(&map, u64::MAX - 10, 1), None);
    }

    #[test]
    fn test_pvh_module_after_low_kernel_avoids_boot_structures() {
        let (layout, mem) = setup();
        let img = build_pvh(false, 0x1000, &[(0x1000, 0x1000, &[0xf4; 0x100], 0x100)]);
        let req = LoadRequest {
            initrd: Some(module("i", vec![7; 0x7000])),
            ..Default::default()
        };
        load_pvh(&mem, &layout, &img, &req).unwrap();
        let si: hvm_start_info = mem.read_obj(START_INFO_ADDR).unwrap();
        let e: hvm_modlist_entry = mem.read_obj(GuestAddress(si.modlist_paddr)).unwrap();
        assert_eq!(e.paddr, 0x3_0000);
        // The start_info survived the module copy.
        assert_eq!(si.magic, XEN_HVM_START_MAGIC_VALUE);
    }

    #[test]
    fn test_pvh_bad_segments_are_elf_errors() {
        let (layout, mem) = setup();
        let img = build_pvh(true, 0x9000, &[(0x9000, 0x9000, &[0xf4], 1)]);
        let e = load_pvh(&mem, &layout, &img, &LoadRequest::default()).unwrap_err();
        assert!(
            matches!(
                e,
                PvhError::Elf(ElfError::OverlapsBootStructures { paddr: 0x9000, .. })
            ),
            "{e}"
        );
    }
}
