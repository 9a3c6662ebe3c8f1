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
//! lays them out, as for Multiboot, and the boot plan places the area and
//! the command line around the kernel's segments):
//! - `hvm_start_info` at the start of the boot information area
//!   (preferably [`START_INFO_ADDR`], `BOOT_INFO_START`), then (8-byte
//!   aligned) the memory map, the module list and the modules'
//!   NUL-terminated strings;
//! - the command line, NUL-terminated, where the plan puts it (preferably
//!   `CMDLINE_START`);
//! - the modules' data page-aligned in RAM above the kernel, skipping the
//!   VMM's boot structures and anything else the memory map does not call
//!   RAM.
//!
//! Module 0 is the initrd when there is one (Linux takes module 0 as its
//! initrd); the `--module` files follow in order.

pub mod test_image;
#[cfg(test)]
mod tests;

use goblin::elf::Elf as GoblinElf;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info, XEN_HVM_MEMMAP_TYPE_RAM,
    XEN_HVM_MEMMAP_TYPE_RESERVED,
};
use vm_memory::{GuestAddress, GuestMemoryBackend};
use vmm_memory::boot_plan::max_map_entries;
use vmm_memory::layout::{MapEntry, MapKind, BOOT_INFO_START, MMIO_HOLE_END};
use vmm_memory::{BootPlan, MemoryLayout, PlanError, Structure};

use crate::boot_info::{self, BootInfo, BootInfoError, Protocol};
use crate::boot_spec::{BootMode, BootSpec, Entry, Handoff};
use crate::detect::XEN_ELFNOTE_PHYS32_ENTRY;
use crate::elf::{parse_elf, write_segments, ElfError, ElfImage};
use crate::request::{LoadRequest, ModuleImage};
use crate::structures::{self, ProtocolNeeds};

pub use linux_loader::loader::elf::start_info::XEN_HVM_START_MAGIC_VALUE;

/// The `hvm_start_info` version written: 1, the first with a memory map.
pub const START_INFO_VERSION: u32 = 1;
/// Where `hvm_start_info` goes when the kernel leaves room; EBX holds its
/// address at entry.
pub const START_INFO_ADDR: GuestAddress = BOOT_INFO_START;
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
    /// A boot structure has no room around the kernel.
    #[error(transparent)]
    Plan(#[from] PlanError),
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

/// The PVH memory map: `map` (the boot plan's, which reserves the boot
/// structures), entry for entry.
pub fn memmap(map: &[MapEntry]) -> Vec<hvm_memmap_table_entry> {
    map.iter()
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
/// `len` bytes lie inside one RAM entry of `map` (which reserves the VMM's
/// boot structures) below 4 GiB.
pub fn place_module(map: &[MapEntry], from: u64, len: u64) -> Option<u64> {
    crate::placement::place_in_ram(map, from, len, MODULE_ALIGN, MMIO_HOLE_END)
}

/// Where everything but the kernel goes, decided before anything is written.
#[derive(Debug)]
struct Plan<'a> {
    /// Where every boot structure goes.
    boot: BootPlan,
    /// Where `hvm_start_info` is (EBX).
    addr: u64,
    /// Command line, module strings and data.
    boot_info: BootInfo<'a>,
    cmdline_addr: u64,
    memmap: Vec<hvm_memmap_table_entry>,
    memmap_addr: u64,
    modlist: Vec<hvm_modlist_entry>,
    modlist_addr: u64,
}

/// Lays out the area after `hvm_start_info`: the memory map
/// (`map_entries` entries), the module list, the modules' strings; returns
/// their addresses.
fn lay_out(
    info: &mut BootInfo<'_>,
    map_entries: usize,
    modules: &[&ModuleImage],
) -> (u64, u64, Vec<u64>) {
    let memmap = info.memory_map(map_entries, MEMMAP_ENTRY_SIZE);
    let modlist = info.table(MODLIST_ENTRY_SIZE.saturating_mul(modules.len() as u64));
    (memmap, modlist, info.module_strings(modules))
}

fn plan<'a>(
    layout: &MemoryLayout,
    elf: &ElfImage,
    req: &'a LoadRequest,
) -> Result<Plan<'a>, PvhError> {
    // Measured first, as for Multiboot: the area's size goes into the boot
    // plan, whose memory map then fills it.
    let mut dry = BootInfo::new(Protocol::Pvh, 0, START_INFO_SIZE);
    let cmdline = req.cmdline.as_deref().unwrap_or("");
    dry.check_no_nul(|| "the command line".to_string(), cmdline)?;
    let cmdline_len = dry.command_line_len(cmdline)?;
    let modules = dry.modules(req)?;
    lay_out(&mut dry, max_map_entries(layout), &modules);
    dry.check_size(modules.len())?;
    let boot = structures::plan(
        layout,
        BootMode::Protected,
        &structures::occupied("the PVH kernel", &elf.extents()),
        req,
        ProtocolNeeds {
            boot_info: Some(dry.len()),
            cmdline: Some(cmdline_len),
            ..ProtocolNeeds::default()
        },
    )?;
    // The planner places what it is asked for or fails.
    let addr = boot
        .addr(Structure::BootInfo)
        .map_or(START_INFO_ADDR.0, |a| a.0);
    let cmdline_addr = boot.addr(Structure::Cmdline).map_or(0, |a| a.0);

    let map = boot.memory_map(layout);
    let mut boot_info = BootInfo::new(Protocol::Pvh, addr, START_INFO_SIZE);
    boot_info.command_line(cmdline, cmdline_addr);
    let memmap = memmap(&map);
    let (memmap_addr, modlist_addr, strings) = lay_out(&mut boot_info, memmap.len(), &modules);
    let placed =
        boot_info.place_modules(layout, &map, &modules, &strings, elf.end, MMIO_HOLE_END)?;
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
        boot,
        addr,
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
        rsdp_paddr: plan.boot.addr(Structure::AcpiRsdp).map_or(0, |a| a.0),
        memmap_paddr: plan.memmap_addr,
        memmap_entries: plan.memmap.len() as u32,
        reserved: 0,
    };
    let mut params = BootParams::new(&start_info, GuestAddress(plan.addr));
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
        handoff: Handoff::PvhStartInfo(GuestAddress(plan.addr)),
        plan: plan.boot,
    })
}
