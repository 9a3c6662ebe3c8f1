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
//! - places the modules (`--initrd` is module 0, each `--module` follows)
//!   page-aligned in usable RAM after the kernel, and writes the Multiboot
//!   information structure, its memory map, module list and strings
//!   ([`info`]);
//! - enters the kernel in 32-bit flat protected mode with paging off,
//!   EAX = [`BOOTLOADER_MAGIC`] and EBX = the information structure's
//!   physical address ([`INFO_ADDR`]).
//!
//! Every value the image controls is checked against the file, guest RAM
//! and the VMM's boot structures before a byte of guest memory is written.

pub mod header;
pub mod info;
pub mod test_image;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_memory::layout::{overlapping_boot_structure, MapKind};
use vmm_memory::MemoryLayout;

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
    /// The kernel would not lie in memory the memory map calls usable.
    #[error("Multiboot kernel range [{start:#x}, {end:#x}) is not inside usable RAM of the memory map the kernel is given (RAM below 640 KiB, from 1 MiB to the end of low RAM, and above 4 GiB; [0xa0000, 0x100000) is reserved)")]
    KernelNotInUsableRam {
        /// First address.
        start: u64,
        /// One past the last.
        end: u64,
    },
    /// The kernel would overwrite the VMM's boot structures.
    #[error("Multiboot kernel range [{start:#x}, {end:#x}) overlaps the boot structures at [{structure_start:#x}, {structure_end:#x})")]
    KernelOverlapsBootStructures {
        /// First address.
        start: u64,
        /// One past the last.
        end: u64,
        /// The structure's start.
        structure_start: u64,
        /// The structure's end.
        structure_end: u64,
    },
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

/// Checks that the kernel's range `[start, end)` is usable RAM (one RAM
/// entry of the memory map the kernel will be given) and clear of the VMM's
/// boot structures.
fn check_kernel_range(layout: &MemoryLayout, start: u64, end: u64) -> Result<(), MultibootError> {
    if end > FOUR_GIB {
        return Err(MultibootError::AboveFourGib { start, end });
    }
    let usable = layout
        .firmware_map()
        .iter()
        .any(|e| e.kind == MapKind::Ram && start >= e.start && end <= e.start + e.len);
    if !usable {
        return Err(MultibootError::KernelNotInUsableRam { start, end });
    }
    if let Some((structure_start, structure_end)) = overlapping_boot_structure(start, end - start) {
        return Err(MultibootError::KernelOverlapsBootStructures {
            start,
            end,
            structure_start,
            structure_end,
        });
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
/// [`INFO_ADDR`].
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
    let plan = info::plan(layout, end, req)?;

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
        segments: match &kernel {
            Kernel::Aout(a) => vec![(GuestAddress(a.load_addr), a.mem_end - a.load_addr)],
            Kernel::Elf(e) => e.extents(),
        },
        handoff: Handoff::Multiboot {
            magic: BOOTLOADER_MAGIC,
            info: INFO_ADDR,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::info::{
        INFO_BOOT_LOADER_NAME, INFO_CMDLINE, INFO_MEMORY, INFO_MEM_MAP, INFO_MODS, MODULE_ALIGN,
    };
    use super::test_image::{header, AOUT_KLUDGE};
    use super::*;
    use crate::elf::test_image::build;
    use crate::request::ModuleImage;
    use vm_memory::GuestMemoryMmap;
    use vmm_memory::layout::{BOOT_INFO_END, BOOT_INFO_START, CMDLINE_START};

    fn setup() -> (MemoryLayout, GuestMemoryMmap) {
        let layout = MemoryLayout::with_phys_bits(16, 40).unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        (layout, mem)
    }

    fn u32_at(mem: &GuestMemoryMmap, addr: u64) -> u32 {
        mem.read_obj(GuestAddress(addr)).unwrap()
    }

    fn u64_at(mem: &GuestMemoryMmap, addr: u64) -> u64 {
        mem.read_obj(GuestAddress(addr)).unwrap()
    }

    fn bytes_at(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    fn cstr_at(mem: &GuestMemoryMmap, addr: u64) -> String {
        let mut out = Vec::new();
        for a in addr.. {
            let b: u8 = mem.read_obj(GuestAddress(a)).unwrap();
            if b == 0 {
                break;
            }
            out.push(b);
        }
        String::from_utf8(out).unwrap()
    }

    fn module(name: &str, data: Vec<u8>) -> ModuleImage {
        ModuleImage {
            name: name.into(),
            data,
        }
    }

    /// An a.out-kludge kernel: 0x20 bytes of junk the loader must skip,
    /// then the loaded part (a 0x10-byte marker, the header, 0x100 bytes of
    /// 0xf4) loaded at 1 MiB, then 0x10 bytes of junk past load_end_addr;
    /// BSS to load_end + 0x345.
    fn aout_kernel(flags: u32) -> Vec<u8> {
        let load = 0x10_0000u32;
        let loaded_len = 0x10 + 32 + 0x100;
        let load_end = load + loaded_len;
        let mut img = vec![0xee; 0x20];
        img.extend_from_slice(b"loaded-from-here");
        img.extend(header(
            flags | AOUT_KLUDGE,
            &[load + 0x10, load, load_end, load_end + 0x345, load + 0x30],
        ));
        img.extend([0xf4; 0x100]);
        img.extend([0xee; 0x10]);
        img
    }

    fn full_request() -> LoadRequest {
        LoadRequest {
            kernel_path: "/boot/kernel.mb".into(),
            cmdline: Some("console=ttyS0 debug".into()),
            initrd: Some(module(
                "/boot/initrd.img",
                (0..5000u32).map(|i| (i * 7) as u8).collect(),
            )),
            modules: vec![module("second module arg=1", vec![0x5a; 77])],
            bzimage_own_entry: false,
            acpi_rsdp: None,
            kernel_cache: Default::default(),
        }
    }

    #[test]
    fn test_aout_kernel_loads_and_info_is_complete() {
        let (layout, mem) = setup();
        // Dirty what must end up zero, so zeroing is proven, not inherited.
        mem.write_slice(&[0xaa; 0x400], GuestAddress(0x10_0130))
            .unwrap();
        let spec = load_multiboot(&mem, &layout, &aout_kernel(0x3), &full_request()).unwrap();
        assert_eq!(spec.mode, BootMode::Protected);
        assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x10_0030)));
        let kend = 0x10_0130 + 0x345;
        assert_eq!(spec.image, (GuestAddress(0x10_0000), kend - 0x10_0000));
        assert_eq!(
            spec.handoff,
            Handoff::Multiboot {
                magic: 0x2bad_b002,
                info: GuestAddress(BOOT_INFO_START.0)
            }
        );

        // The file bytes from offset 0x20, then zeroes to bss_end_addr.
        assert_eq!(bytes_at(&mem, 0x10_0000, 16), b"loaded-from-here");
        assert_eq!(u32_at(&mem, 0x10_0010), 0x1bad_b002);
        assert_eq!(bytes_at(&mem, 0x10_0030, 0x100), vec![0xf4; 0x100]);
        assert_eq!(bytes_at(&mem, 0x10_0130, 0x345), vec![0; 0x345]);

        let mbi = BOOT_INFO_START.0;
        let flags = u32_at(&mem, mbi);
        assert_eq!(
            flags,
            INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MEM_MAP | INFO_BOOT_LOADER_NAME
        );
        assert_eq!(flags, 0x24d);
        // RAM [0, 640K) and [1M, 16M): 640 and 15 MiB in KiB.
        assert_eq!(u32_at(&mem, mbi + 4), 640);
        assert_eq!(u32_at(&mem, mbi + 8), 15 * 1024);
        assert_eq!(u32_at(&mem, mbi + 12), 0, "boot_device is not provided");
        let cmdline = u32_at(&mem, mbi + 16);
        assert_eq!(u64::from(cmdline), CMDLINE_START.0);
        assert_eq!(
            cstr_at(&mem, cmdline.into()),
            "/boot/kernel.mb console=ttyS0 debug"
        );
        let name = u32_at(&mem, mbi + 64);
        assert_eq!(cstr_at(&mem, name.into()), "vmm");
        assert!((BOOT_INFO_START.0..BOOT_INFO_END.0).contains(&u64::from(name)));
        // Everything after boot_loader_name (APM, VBE, framebuffer) is zero.
        assert_eq!(bytes_at(&mem, mbi + 68, 116 - 68), vec![0; 48]);
        // syms, drives and config table are zero too.
        assert_eq!(bytes_at(&mem, mbi + 28, 16), vec![0; 16]);
        assert_eq!(bytes_at(&mem, mbi + 52, 12), vec![0; 12]);

        // Memory map: the layout's firmware map, 24 bytes an entry, each
        // size field 20 and the next entry at addr + size + 4.
        let map = layout.firmware_map();
        let (mmap_len, mmap_addr) = (u32_at(&mem, mbi + 44), u32_at(&mem, mbi + 48));
        assert_eq!(mmap_len as usize, 24 * map.len());
        let mut at = u64::from(mmap_addr);
        for e in &map {
            let size = u32_at(&mem, at);
            assert_eq!(size, 20);
            assert_eq!(u64_at(&mem, at + 4), e.start);
            assert_eq!(u64_at(&mem, at + 12), e.len);
            assert_eq!(u32_at(&mem, at + 20), e.kind.e820_type());
            at += u64::from(size) + 4;
        }
        assert_eq!(at, u64::from(mmap_addr + mmap_len));

        // Modules: initrd first, page-aligned after the kernel's BSS.
        assert_eq!(u32_at(&mem, mbi + 20), 2);
        let mods = u64::from(u32_at(&mem, mbi + 24));
        let req = full_request();
        let expect = [req.initrd.clone().unwrap(), req.modules[0].clone()];
        let mut prev_end = kend;
        for (i, m) in expect.iter().enumerate() {
            let e = mods + 16 * i as u64;
            let (start, end) = (u32_at(&mem, e), u32_at(&mem, e + 4));
            assert_eq!(u64::from(start) % MODULE_ALIGN, 0);
            assert_eq!(
                u64::from(start),
                prev_end.div_ceil(MODULE_ALIGN) * MODULE_ALIGN,
                "module {i} is not at the first page after the previous end"
            );
            assert_eq!((end - start) as usize, m.data.len());
            assert_eq!(bytes_at(&mem, start.into(), m.data.len()), m.data);
            assert_eq!(cstr_at(&mem, u32_at(&mem, e + 8).into()), m.name);
            assert_eq!(u32_at(&mem, e + 12), 0, "reserved");
            prev_end = end.into();
        }
    }

    #[test]
    fn test_aout_bss_larger_than_a_chunk_is_zeroed() {
        let (layout, mem) = setup();
        let load = 0x20_0000u32;
        let mut img = header(AOUT_KLUDGE, &[load, load, 0, load + 0x2_3457, load + 32]);
        img.extend([0xf4; 16]);
        mem.write_slice(&vec![0xaa; 0x3_0000], GuestAddress(u64::from(load)))
            .unwrap();
        let spec = load_multiboot(&mem, &layout, &img, &LoadRequest::default()).unwrap();
        assert_eq!(spec.image, (GuestAddress(0x20_0000), 0x2_3457));
        let bss = bytes_at(&mem, 0x20_0000 + 48, 0x2_3457 - 48);
        assert!(bss.iter().all(|&b| b == 0), "BSS not zeroed");
        assert_eq!(
            bytes_at(&mem, 0x22_3457, 1),
            vec![0xaa],
            "zeroed past bss_end_addr"
        );
    }

    #[test]
    fn test_elf_kernel_loads_by_program_headers() {
        let (layout, mem) = setup();
        let mut seg = header(0x2, &[]);
        seg.extend([0xf4; 0x40]);
        let img = build(
            false,
            0xc010_000c,
            &[(0x20_0000, 0xc010_0000, &seg, seg.len() as u64 + 0x1000)],
        );
        mem.write_slice(&[0xaa; 0x1000], GuestAddress(0x20_0000 + seg.len() as u64))
            .unwrap();
        let req = LoadRequest {
            kernel_path: "k.elf".into(),
            ..Default::default()
        };
        let spec = load_multiboot(&mem, &layout, &img, &req).unwrap();
        assert_eq!(spec.mode, BootMode::Protected);
        // e_entry translated from the segment's virtual to physical range.
        assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x20_000c)));
        assert_eq!(
            bytes_at(&mem, 0x20_0000, seg.len()),
            seg,
            "segment not at p_paddr"
        );
        assert_eq!(
            bytes_at(&mem, 0x20_0000 + seg.len() as u64, 0x1000),
            vec![0; 0x1000]
        );
        let mbi = BOOT_INFO_START.0;
        // No modules: bit 3 clear, as GRUB does; the command line is the
        // kernel path alone.
        assert_eq!(u32_at(&mem, mbi), 0x245);
        assert_eq!(u32_at(&mem, mbi + 20), 0);
        assert_eq!(cstr_at(&mem, u32_at(&mem, mbi + 16).into()), "k.elf");
    }

    #[test]
    fn test_aout_kludge_wins_over_elf_headers() {
        let (layout, mem) = setup();
        // An ELF whose program header says 2 MiB, but bit 16 says 3 MiB.
        let mut seg = vec![0u8; 0x10];
        let hdr_off = 84 + 0x10; // ELF32 header + one program header
        seg.extend(header(
            AOUT_KLUDGE,
            &[
                0x30_0000 + hdr_off,
                0x30_0000,
                0,
                0,
                0x30_0000 + hdr_off + 32,
            ],
        ));
        seg.extend([0xf4; 4]);
        let img = build(false, 0x20_0000, &[(0x20_0000, 0x20_0000, &seg, 0x100)]);
        let spec = load_multiboot(&mem, &layout, &img, &LoadRequest::default()).unwrap();
        assert_eq!(
            spec.image,
            (GuestAddress(0x30_0000), img.len() as u64),
            "the whole file (load_end_addr 0) from offset 0"
        );
        assert_eq!(bytes_at(&mem, 0x30_0000, img.len()), img);
        assert_eq!(bytes_at(&mem, 0x20_0000, 4), vec![0; 4]);
    }

    #[test]
    fn test_not_elf_without_addresses_is_refused() {
        let (layout, mem) = setup();
        let mut img = header(0x3, &[]);
        img.extend([0xf4; 64]);
        let e = load_multiboot(&mem, &layout, &img, &LoadRequest::default()).unwrap_err();
        assert!(matches!(e, MultibootError::NoLoadAddresses), "{e}");
        assert!(e.to_string().contains("bit 16"), "{e}");
    }

    #[test]
    fn test_no_header_and_unknown_required_flag() {
        let (layout, mem) = setup();
        let e = load_multiboot(&mem, &layout, &[0xf4; 64], &LoadRequest::default()).unwrap_err();
        assert!(matches!(e, MultibootError::NoHeader), "{e}");
        let e =
            load_multiboot(&mem, &layout, &aout_kernel(0x3 | 1 << 9), &full_request()).unwrap_err();
        assert!(e.to_string().contains("required bit 9"), "{e}");
        // Nothing was written before the error.
        assert_eq!(u32_at(&mem, 0x10_0010), 0);
    }

    #[test]
    fn test_kernel_must_avoid_reserved_memory_and_boot_structures() {
        let (layout, mem) = setup();
        let aout = |load: u32| {
            let mut img = header(AOUT_KLUDGE, &[load, load, 0, 0, load + 32]);
            img.extend([0xf4; 16]);
            img
        };
        let e =
            load_multiboot(&mem, &layout, &aout(0xa_0000), &LoadRequest::default()).unwrap_err();
        assert!(
            matches!(
                e,
                MultibootError::KernelNotInUsableRam {
                    start: 0xa_0000,
                    ..
                }
            ),
            "{e}"
        );
        let e =
            load_multiboot(&mem, &layout, &aout(0x1_0100), &LoadRequest::default()).unwrap_err();
        assert!(
            matches!(
                e,
                MultibootError::KernelOverlapsBootStructures {
                    structure_start: 0x1_0000,
                    ..
                }
            ),
            "{e}"
        );
        let e =
            load_multiboot(&mem, &layout, &aout(0x200_0000), &LoadRequest::default()).unwrap_err();
        assert!(
            matches!(e, MultibootError::KernelNotInUsableRam { .. }),
            "{e}"
        );
        // Low RAM clear of the boot structures is fine.
        let spec = load_multiboot(&mem, &layout, &aout(0x4_0000), &LoadRequest::default()).unwrap();
        assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x4_0020)));

        // ELF segments in the legacy hole are refused too.
        let mut seg = header(0, &[]);
        seg.extend([0xf4; 4]);
        let img = build(false, 0xb_0000, &[(0xb_0000, 0xb_0000, &seg, 16)]);
        let e = load_multiboot(&mem, &layout, &img, &LoadRequest::default()).unwrap_err();
        assert!(
            matches!(e, MultibootError::KernelNotInUsableRam { .. }),
            "{e}"
        );
    }

    #[test]
    fn test_elf_entry_outside_segments_and_bad_elf() {
        let (layout, mem) = setup();
        let mut seg = header(0, &[]);
        seg.extend([0xf4; 4]);
        let img = build(false, 0x30_0000, &[(0x20_0000, 0x20_0000, &seg, 16)]);
        let e = load_multiboot(&mem, &layout, &img, &LoadRequest::default()).unwrap_err();
        assert!(
            matches!(
                e,
                MultibootError::EntryOutsideImage {
                    entry: 0x30_0000,
                    ..
                }
            ),
            "{e}"
        );
        let mut bad = build(false, 0x20_0000, &[(0x20_0000, 0x20_0000, &seg, 16)]);
        bad[16] = 1; // ET_REL
        let e = load_multiboot(&mem, &layout, &bad, &LoadRequest::default()).unwrap_err();
        assert!(
            matches!(e, MultibootError::Elf(ElfError::NotExecutable(1))),
            "{e}"
        );
    }

    #[test]
    fn test_elf64_above_4gib_is_refused() {
        let layout = MemoryLayout::with_phys_bits(4096 + 64, 40).unwrap();
        // Only the layout is consulted before the error: a small memory
        // suffices.
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut seg = header(0, &[]);
        seg.extend([0xf4; 4]);
        let img = build(
            true,
            0x1_0000_0000,
            &[(0x1_0000_0000, 0x1_0000_0000, &seg, 16)],
        );
        let e = load_multiboot(&mem, &layout, &img, &LoadRequest::default()).unwrap_err();
        assert!(matches!(e, MultibootError::AboveFourGib { .. }), "{e}");
    }

    #[test]
    fn test_module_too_large_names_its_size() {
        let (layout, mem) = setup();
        let mut req = full_request();
        req.modules.push(module("huge", vec![0; 15 << 20]));
        let e = load_multiboot(&mem, &layout, &aout_kernel(0x3), &req).unwrap_err();
        assert!(
            matches!(&e, MultibootError::BootInfo(BootInfoError::ModuleTooLarge { index: 2, size, .. }) if *size == 15 << 20),
            "{e}"
        );
        assert!(e.to_string().contains("15728640 bytes"), "{e}");
        assert!(e.to_string().contains("huge"), "{e}");
    }
}
