//! Multiboot v1 kernels (specification 0.6.96,
//! <https://www.gnu.org/software/grub/manual/multiboot/multiboot.html>).
//!
//! A Multiboot kernel carries a header (magic `0x1BADB002`, flags,
//! checksum) 4-byte aligned in its first 8 KiB. The loader:
//!
//! - reads the header ([`header`]): an unknown *required* flag bit (0-15)
//!   fails the load; bit 16 supplies the "a.out kludge" address fields that
//!   say where the file's bytes go, otherwise the image must be an ELF and
//!   loads by its program headers;
//! - places the boot structures around the kernel's segments (the
//!   information area, the command line, the GDT and the platform's
//!   tables; no page tables: the entry is 32-bit), then the modules
//!   (`--initrd` is module 0, each `--module` follows) page-aligned in
//!   usable RAM after the kernel, and writes the Multiboot information
//!   structure, its memory map (which reserves the boot structures), module
//!   list and strings ([`info`]);
//! - enters the kernel in 32-bit flat protected mode with paging off,
//!   EAX = [`BOOTLOADER_MAGIC`] and EBX = the information structure's
//!   physical address (preferably [`INFO_ADDR`]).
//!
//! The kernel may lie anywhere in RAM below 4 GiB, the legacy hole
//! included (a kernel linked with `ld -Ttext 0x100000` has a read-only
//! segment holding its ELF headers at 0xff000), as QEMU allows. Every value
//! the image controls is checked against the file and guest RAM, and every
//! boot structure placed, before a byte of guest memory is written.

pub mod header;
pub mod info;
pub mod test_image;
#[cfg(test)]
mod tests;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_memory::{MemoryLayout, PlanError};

use crate::boot_info::BootInfoError;
use crate::boot_spec::{BootMode, BootSpec, Entry, Handoff};
use crate::elf::{parse_elf, write_segments, ElfError};
use crate::request::LoadRequest;

pub use header::{parse_header, AoutAddresses, AoutImage, MultibootHeader, VideoMode};
pub use info::{BOOT_LOADER_NAME, INFO_ADDR};

/// The value a Multiboot boot loader leaves in EAX.
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;

/// The kernel runs with paging off, so everything it is given lies below
/// 4 GiB.
const FOUR_GIB: u64 = 1 << 32;

/// Errors loading a Multiboot kernel.
#[derive(Debug, thiserror::Error)]
pub enum MultibootError {
    /// No header with magic 0x1BADB002 and a valid checksum.
    #[error("no Multiboot v1 header (magic 0x1BADB002, flags and checksum summing to 0 mod 2^32) 4-byte aligned in the first 8 KiB")]
    NoHeader,
    /// A required flag bit (0-15) this loader does not know.
    #[error("Multiboot header flags {flags:#010x} set required bit {bit}, which this boot loader does not support (unknown required bits {unknown:#06x}; bits 0-15 are requirements: known are 0 page-aligned modules, 1 memory information, 2 video mode)")]
    UnsupportedRequiredFlag {
        /// The lowest unknown required bit.
        bit: u32,
        /// All unknown required bits.
        unknown: u32,
        /// The header's flags.
        flags: u32,
    },
    /// The header's flags call for fields past the end of the file or of the
    /// first 8 KiB.
    #[error("Multiboot header at offset {offset:#x} with flags {flags:#010x} is {len} bytes long, but it must lie within the first {limit} bytes of the file")]
    HeaderTruncated {
        /// Where the header starts.
        offset: usize,
        /// Its flags.
        flags: u32,
        /// The length the flags imply.
        len: usize,
        /// min(file size, 8192).
        limit: usize,
    },
    /// Not ELF, and no address fields to load it by.
    #[error("the image is not an ELF file and its Multiboot header does not set flag bit 16 (a.out kludge address fields): there is nothing saying where to load it")]
    NoLoadAddresses,
    /// header_addr below load_addr.
    #[error("Multiboot header: load_addr {load_addr:#x} is above header_addr {header_addr:#x} (the specification requires load_addr <= header_addr)")]
    LoadAddrAboveHeaderAddr {
        /// load_addr.
        load_addr: u32,
        /// header_addr.
        header_addr: u32,
    },
    /// The file offset the address fields imply is negative.
    #[error("Multiboot header at file offset {header_offset:#x}: header_addr {header_addr:#x} - load_addr {load_addr:#x} is larger than that offset, so loading would start before the beginning of the file")]
    LoadStartsBeforeFile {
        /// Where the header was found.
        header_offset: usize,
        /// header_addr.
        header_addr: u32,
        /// load_addr.
        load_addr: u32,
    },
    /// A nonzero load_end_addr below load_addr.
    #[error(
        "Multiboot header: load_end_addr {load_end_addr:#x} is below load_addr {load_addr:#x}"
    )]
    LoadEndBeforeLoadAddr {
        /// load_end_addr.
        load_end_addr: u32,
        /// load_addr.
        load_addr: u32,
    },
    /// load_end_addr asks for more bytes than the file has.
    #[error("Multiboot header: load_end_addr {load_end_addr:#x} - load_addr {load_addr:#x} = {len:#x} bytes from file offset {file_offset:#x}, but the file is only {file_len:#x} bytes long")]
    LoadEndPastFile {
        /// load_addr.
        load_addr: u32,
        /// load_end_addr.
        load_end_addr: u32,
        /// Bytes asked for.
        len: u64,
        /// Where they would start in the file.
        file_offset: usize,
        /// The file's size.
        file_len: usize,
    },
    /// The address fields select no bytes.
    #[error("Multiboot header: the address fields load no bytes (load_addr {load_addr:#x}, load_end_addr {load_end_addr:#x}, file offset {file_offset:#x} of {file_len:#x})")]
    NothingToLoad {
        /// load_addr.
        load_addr: u32,
        /// load_end_addr.
        load_end_addr: u32,
        /// Where loading starts in the file.
        file_offset: usize,
        /// The file's size.
        file_len: usize,
    },
    /// A nonzero bss_end_addr below the end of the loaded bytes.
    #[error("Multiboot header: bss_end_addr {bss_end_addr:#x} is below the end of the loaded text and data at {load_end:#x}")]
    BssEndBeforeLoadEnd {
        /// bss_end_addr.
        bss_end_addr: u32,
        /// load_addr + bytes loaded.
        load_end: u64,
    },
    /// The kernel would extend past 4 GiB.
    #[error("Multiboot kernel range [{start:#x}, {end:#x}) extends past 4 GiB; a Multiboot kernel is entered in 32-bit mode with paging off")]
    AboveFourGib {
        /// First address.
        start: u64,
        /// One past the last.
        end: u64,
    },
    /// The entry point is not inside the loaded image.
    #[error(
        "Multiboot entry point {entry:#x} is not inside the loaded kernel [{start:#x}, {end:#x})"
    )]
    EntryOutsideImage {
        /// The entry point.
        entry: u64,
        /// Lowest loaded address.
        start: u64,
        /// One past the highest.
        end: u64,
    },
    /// The kernel would not lie in guest RAM.
    #[error("Multiboot kernel range [{start:#x}, {end:#x}) is not inside guest RAM")]
    KernelOutsideRam {
        /// First address.
        start: u64,
        /// One past the last.
        end: u64,
    },
    /// A boot structure has no room around the kernel.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The ELF image is invalid.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// The command line, a string, the boot information or a module does
    /// not fit or is malformed.
    #[error(transparent)]
    BootInfo(#[from] BootInfoError),
    /// Writing guest memory failed.
    #[error("writing the Multiboot kernel or boot information to guest memory failed: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
}

/// Checks that the kernel's range `[start, end)` is guest RAM below 4 GiB.
/// (The boot structures are placed around it afterwards.)
fn check_kernel_range(layout: &MemoryLayout, start: u64, end: u64) -> Result<(), MultibootError> {
    if end > FOUR_GIB {
        return Err(MultibootError::AboveFourGib { start, end });
    }
    if !layout.contains_range(GuestAddress(start), end - start) {
        return Err(MultibootError::KernelOutsideRam { start, end });
    }
    Ok(())
}

/// Zeroes guest memory `[start, end)` a bounded chunk at a time (a BSS can
/// be as large as guest RAM).
fn zero<M: GuestMemoryBackend>(mem: &M, start: u64, end: u64) -> Result<(), MultibootError> {
    const CHUNK: u64 = 1 << 16;
    let zeroes = [0u8; CHUNK as usize];
    let mut at = start;
    while at < end {
        let n = (end - at).min(CHUNK);
        mem.write_slice(&zeroes[..n as usize], GuestAddress(at))?;
        at += n;
    }
    Ok(())
}

/// What the kernel occupies once loaded, and how to copy it.
enum Kernel {
    /// a.out kludge: one range of the file, then zeroed BSS.
    Aout(AoutImage),
    /// ELF program headers.
    Elf(crate::elf::ElfImage),
}

impl Kernel {
    fn range(&self) -> (u64, u64) {
        match self {
            Kernel::Aout(a) => (a.load_addr, a.mem_end),
            Kernel::Elf(e) => (e.start, e.end),
        }
    }

    fn entry(&self) -> u64 {
        match self {
            Kernel::Aout(a) => a.entry,
            Kernel::Elf(e) => e.entry,
        }
    }

    /// The ranges it occupies, `(start, length)`.
    fn segments(&self) -> Vec<(GuestAddress, u64)> {
        match self {
            Kernel::Aout(a) => vec![(GuestAddress(a.load_addr), a.mem_end - a.load_addr)],
            Kernel::Elf(e) => e.extents(),
        }
    }
}

/// Works out where the kernel goes, checking everything first.
fn plan_kernel(
    image: &[u8],
    layout: &MemoryLayout,
    hdr: &MultibootHeader,
) -> Result<Kernel, MultibootError> {
    // The specification: with bit 16 the address fields are used "instead
    // of the fields in the actual executable header", even for an ELF.
    if let Some(addrs) = &hdr.addresses {
        let a = header::plan_aout(addrs, hdr.offset, image.len())?;
        check_kernel_range(layout, a.load_addr, a.mem_end)?;
        return Ok(Kernel::Aout(a));
    }
    if !image.starts_with(b"\x7fELF") {
        return Err(MultibootError::NoLoadAddresses);
    }
    let elf = parse_elf(image, layout)?;
    for s in &elf.segments {
        check_kernel_range(layout, s.paddr, s.paddr + s.memsz)?;
    }
    let inside = elf
        .segments
        .iter()
        .any(|s| elf.entry >= s.paddr && elf.entry - s.paddr < s.memsz);
    if !inside {
        return Err(MultibootError::EntryOutsideImage {
            entry: elf.entry,
            start: elf.start,
            end: elf.end,
        });
    }
    Ok(Kernel::Elf(elf))
}

/// Loads a Multiboot v1 kernel: the kernel (a.out kludge or ELF), its
/// modules, command line and the Multiboot information structure. Returns
/// 32-bit protected-mode entry with EAX = [`BOOTLOADER_MAGIC`] and EBX =
/// the information structure (at [`INFO_ADDR`] unless the kernel is there).
///
/// Everything is checked before guest memory is written.
pub fn load_multiboot<M: GuestMemoryBackend>(
    mem: &M,
    layout: &MemoryLayout,
    image: &[u8],
    req: &LoadRequest,
) -> Result<BootSpec, MultibootError> {
    let hdr = parse_header(image)?;
    if let Some(v) = &hdr.video {
        log::info!(
            "Multiboot kernel asks for video mode type {} {}x{}x{}; this VMM has no framebuffer, so the information structure reports none (flags bits 11 and 12 clear)",
            v.mode_type,
            v.width,
            v.height,
            v.depth
        );
    }
    let kernel = plan_kernel(image, layout, &hdr)?;
    let (start, end) = kernel.range();
    let segments = kernel.segments();
    let plan = info::plan(layout, &segments, end, req)?;

    match &kernel {
        Kernel::Aout(a) => {
            let bytes = image.get(a.file_offset..a.file_offset + a.load_len).ok_or(
                MultibootError::LoadEndPastFile {
                    load_addr: a.load_addr as u32,
                    load_end_addr: (a.load_addr + a.load_len as u64) as u32,
                    len: a.load_len as u64,
                    file_offset: a.file_offset,
                    file_len: image.len(),
                },
            )?;
            mem.write_slice(bytes, GuestAddress(a.load_addr))?;
            zero(mem, a.load_addr + a.load_len as u64, a.mem_end)?;
        }
        Kernel::Elf(e) => write_segments(mem, image, e)?,
    }
    info::write(mem, &plan)?;

    Ok(BootSpec {
        mode: BootMode::Protected,
        entry: Entry::Linear(GuestAddress(kernel.entry())),
        image: (GuestAddress(start), end - start),
        segments,
        handoff: Handoff::Multiboot {
            magic: BOOTLOADER_MAGIC,
            info: GuestAddress(plan.addr),
        },
        plan: plan.boot,
    })
}
