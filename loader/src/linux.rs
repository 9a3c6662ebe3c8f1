//! Linux bzImage and vmlinux, started through the x86 64-bit boot protocol
//! (Documentation/arch/x86/boot.rst).
//!
//! Two ways to start a bzImage:
//! - By default the compressed kernel inside it (`payload_offset`/
//!   `payload_length`, an ELF vmlinux compressed with gzip, bzip2, lzma, xz,
//!   lz4 or zstd) is decompressed on the host ([`payload`]) and loaded at its
//!   ELF physical addresses piece by piece as it decompresses, so the whole
//!   vmlinux is never held in memory; the vCPU enters `startup_64` (the ELF
//!   entry) directly. This skips the kernel's own decompressor, which is slow
//!   here because CPL0 guest code is emulated. With a kernel cache
//!   ([`LoadRequest::kernel_cache`], the `cache` module) the payload is instead
//!   decompressed once into a cache file and its pages are mapped
//!   copy-on-write into guest RAM, then and on every later start of the same
//!   file, which reads only the bzImage's setup part.
//! - With [`LoadRequest::bzimage_own_entry`] the protected-mode part is
//!   loaded at `pref_address` (or `code32_start`), `code32_start` is set to
//!   it, and the vCPU enters its 64-bit entry at load address + 0x200, so the
//!   kernel's own decompressor runs.
//!
//! Host decompression and the cache need the crate's default-on
//! `bzimage-payloads` feature; without it a compressed payload is an error
//! naming its codec and the feature ([`payload::PayloadError::NotBuilt`]),
//! and a bzImage can still start through its own entry.
//!
//! An ELF64 vmlinux is loaded like the decompressed payload, with a setup
//! header filled in by this loader ([`vmlinux_header`]).
//!
//! Either way the zero page (`struct boot_params`) goes at
//! [`ZERO_PAGE_START`] with the image's setup header copied in (from 0x1f1 to
//! 0x202 + the byte at 0x201), `type_of_loader` 0xff, the command line at
//! [`CMDLINE_START`] (`cmd_line_ptr`), the initrd placed page-aligned as high
//! as the header's `initrd_addr_max`, the end of RAM below 4 GiB and any
//! `mem=` option allow (`ramdisk_image`/`ramdisk_size`), and the E820 map
//! taken verbatim from [`MemoryLayout::firmware_map`]. The vCPU starts in
//! long mode (the VMM's GDT has `__BOOT_CS` 0x10 and `__BOOT_DS` 0x18 and
//! its page tables identity-map the first 4 GiB) with RSI = the zero page.
//!
//! Without `--cmdline` the kernel gets [`DEFAULT_CMDLINE`]. linux-loader's
//! `Cmdline` writes it, so surrounding whitespace is trimmed and only
//! printable ASCII is accepted.

mod boot_params;
#[cfg(feature = "bzimage-payloads")]
pub mod cache;
pub mod payload;
mod setup_header;
mod vmlinux;
#[cfg(feature = "bzimage-payloads")]
mod vmlinux_file;

use std::io::Cursor;
use std::time::Instant;

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_params as BootParamsRaw, LOADED_HIGH, XLF_KERNEL_64};
use linux_loader::loader::{load_cmdline, BzImage, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_memory::layout::{CMDLINE_START, HIGH_MEMORY_START, ZERO_PAGE_START};
use vmm_memory::MemoryLayout;

use crate::boot_spec::{BootMode, BootSpec, Entry, Handoff};
use crate::detect::is_bzimage;
use crate::elf::{parse_elf, ElfError};
use crate::request::{KernelCacheUse, LoadRequest};
#[cfg(feature = "bzimage-payloads")]
use cache::{CachedVmlinux, ImageKey, VmlinuxCache};
use payload::{first_bytes, Codec, PayloadError, MAX_DECOMPRESSED};
use setup_header::{version_str, BzImageHeader, BOOT_FLAG, HDRS, PROTO_XLOADFLAGS};
use vmlinux::{Placing, VmlinuxLoader};

/// The command line a kernel gets when none is given: the serial console
/// on COM1 (the VMM's UART), reboot by keyboard controller (the quickest
/// way out of a guest without ACPI) and reboot one second after a panic
/// instead of hanging.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=1";

/// `type_of_loader` for a boot loader without an assigned ID.
pub const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// The 64-bit entry point's offset from the protected-mode kernel's start.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// The protocol version written into the header made up for a vmlinux.
pub const VMLINUX_PROTOCOL: u16 = 0x020f;
/// The command line limit for a vmlinux, which has no header to say: x86's
/// COMMAND_LINE_SIZE (2048) less the NUL. The kernel would silently
/// truncate a longer line.
pub const VMLINUX_CMDLINE_MAX: u32 = 2047;
/// The highest initrd byte for a vmlinux: x86-64's default
/// `initrd_addr_max`.
pub const VMLINUX_INITRD_ADDR_MAX: u32 = 0x7fff_ffff;

/// Errors loading a Linux kernel.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// Neither a bzImage nor an ELF.
    #[error("not a Linux kernel: neither a bzImage (\"HdrS\" at 0x202) nor an ELF vmlinux; it starts with {0}")]
    NotLinux(String),
    /// The image ends before something it must contain.
    #[error("the {len}-byte image is too short for {what} (needs {needed} bytes)")]
    Truncated {
        /// What is cut off.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// The image's size.
        len: usize,
    },
    /// The header's length byte (0x201) is a backwards jump.
    #[error("setup header length byte {0:#04x} at 0x201 is negative: corrupt bzImage header")]
    BadHeaderLength(u8),
    /// Not a bzImage this loader can start.
    #[error("not a loadable bzImage: {0}")]
    NotBzImage(String),
    /// The boot protocol is older than a feature needs.
    #[error("bzImage boot protocol {} is too old: this needs {} or later ({why})", version_str(*.version), version_str(*.required))]
    ProtocolTooOld {
        /// The header's version.
        version: u16,
        /// The version needed.
        required: u16,
        /// What the newer version provides.
        why: &'static str,
    },
    /// xloadflags says this is no 64-bit kernel.
    #[error("bzImage xloadflags {0:#06x} lack XLF_KERNEL_64: not a 64-bit kernel, and only the 64-bit boot protocol is supported")]
    Not64Bit(u16),
    /// payload_offset or payload_length is zero.
    #[error("bzImage has no payload to decompress (payload_offset {offset:#x}, payload_length {length:#x}); use --bzimage-entry")]
    NoPayload {
        /// payload_offset.
        offset: u32,
        /// payload_length.
        length: u32,
    },
    /// The payload does not lie inside the file.
    #[error("bzImage payload (payload_offset {offset:#x} + payload_length {length:#x} after the protected-mode start at {pm_start:#x}) lies outside the {file_len}-byte file")]
    PayloadOutsideFile {
        /// payload_offset.
        offset: u32,
        /// payload_length.
        length: u32,
        /// Start of the protected-mode code in the file.
        pm_start: usize,
        /// The file's size.
        file_len: usize,
    },
    /// Decompression failed.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The (decompressed) kernel is not an ELF.
    #[error("the {what} is not an ELF vmlinux: it starts with {first}")]
    NotElf {
        /// What was examined.
        what: String,
        /// Its first bytes.
        first: String,
    },
    /// The vmlinux ELF is invalid.
    #[error("vmlinux: {0}")]
    Vmlinux(#[from] ElfError),
    /// The vmlinux is not ELF64 x86-64.
    #[error("vmlinux is ELF{class} for machine {machine}: the 64-bit boot protocol needs an ELF64 x86-64 (EM_X86_64 = 62) kernel")]
    NotX86_64 {
        /// 32 or 64.
        class: u32,
        /// e_machine.
        machine: u16,
    },
    /// linux-loader failed to copy the kernel.
    #[error("loading the kernel into guest memory failed: {0}")]
    KernelLoad(#[source] linux_loader::loader::Error),
    /// Copying the kernel into guest memory failed.
    #[error("writing the kernel into guest memory failed: {0}")]
    KernelWrite(#[source] vm_memory::GuestMemoryError),
    /// The vmlinux entry point is below 1 MiB.
    #[error("vmlinux entry point {0:#x} is below 1 MiB, in the real-mode area: the 64-bit boot protocol starts the protected-mode kernel at 1 MiB or above")]
    EntryBelowHighMemory(u64),
    /// The kernel (with the room it needs to start) is not in RAM below
    /// 4 GiB.
    #[error("the kernel needs [{start:#x}, {end:#x}) (its image, and init_size from its runtime address for --bzimage-entry), which is not all guest RAM below {ram_end:#x}")]
    KernelOutsideRam {
        /// Load address.
        start: u64,
        /// End of the room it needs.
        end: u64,
        /// End of RAM below 4 GiB.
        ram_end: u64,
    },
    /// The command line exceeds the kernel's limit.
    #[error("kernel command line is {len} bytes but this kernel accepts at most {max} (its setup header's cmdline_size, bounded by the VMM's 64 KiB area)")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: u64,
    },
    /// linux-loader rejected the command line.
    #[error("invalid kernel command line: {0}")]
    Cmdline(String),
    /// Writing the command line failed.
    #[error("writing the kernel command line to guest memory failed: {0}")]
    CmdlineWrite(#[source] linux_loader::loader::Error),
    /// The initrd does not fit.
    #[error("initrd of {size} bytes does not fit in guest RAM between the kernel's end {kernel_end:#x} and {top:#x} (the lowest of initrd_addr_max + 1, the end of RAM below 4 GiB and mem=)")]
    InitrdTooLarge {
        /// Its size.
        size: u64,
        /// End of the kernel.
        kernel_end: u64,
        /// The highest end allowed.
        top: u64,
    },
    /// More map entries than the zero page holds.
    #[error("the memory map has {0} entries but the zero page holds at most 128")]
    TooManyE820Entries(usize),
    /// Writing the initrd failed.
    #[error("writing the initrd to guest memory failed: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
    /// `--module` was given: the Linux protocol has only the initrd.
    #[error("the Linux boot protocol takes no modules, but {0} --module file(s) were given (pass one initrd with --initrd)")]
    ModulesUnsupported(usize),
    /// Reading a vmlinux file (a kernel cache entry) failed.
    #[error("reading the {what} failed: {source}")]
    FileRead {
        /// What was read.
        what: String,
        /// The host's error.
        source: std::io::Error,
    },
    /// Writing boot_params failed.
    #[error("writing the zero page failed: {0}")]
    BootParams(#[source] linux_loader::configurator::Error),
}

/// Where the kernel went and how to enter it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LoadedKernel {
    /// The ranges it occupies, `(start, length)`.
    segments: Vec<(GuestAddress, u64)>,
    /// Entry point (physical).
    entry: u64,
    /// Lowest address of the image.
    start: u64,
    /// End of the image.
    end: u64,
    /// End of everything the kernel uses before it reads the memory map;
    /// the initrd goes above it.
    footprint_end: u64,
}

/// The setup header this loader makes up for a vmlinux, which has none:
/// what a bzImage's header would promise, for a kernel loaded high.
pub fn vmlinux_header() -> BootParamsRaw {
    let mut p = BootParamsRaw::default();
    p.hdr.boot_flag = BOOT_FLAG;
    p.hdr.header = HDRS;
    p.hdr.version = VMLINUX_PROTOCOL;
    p.hdr.loadflags = LOADED_HIGH;
    p.hdr.vid_mode = 0xffff; // "normal"
    p.hdr.code32_start = HIGH_MEMORY_START.0 as u32;
    p.hdr.initrd_addr_max = VMLINUX_INITRD_ADDR_MAX;
    p.hdr.kernel_alignment = 0x20_0000;
    p.hdr.relocatable_kernel = 0;
    p.hdr.xloadflags = XLF_KERNEL_64;
    p.hdr.cmdline_size = VMLINUX_CMDLINE_MAX;
    p
}

/// Loads a Linux bzImage or ELF64 vmlinux and writes its zero page, command
/// line and initrd (see the module documentation).
pub fn load_linux<M: GuestMemoryBackend + 'static>(
    mem: &M,
    layout: &MemoryLayout,
    image: &[u8],
    req: &LoadRequest,
) -> Result<BootSpec, LinuxError> {
    if !req.modules.is_empty() {
        return Err(LinuxError::ModulesUnsupported(req.modules.len()));
    }
    let line = req.cmdline.as_deref().unwrap_or(DEFAULT_CMDLINE);
    // Everything about the header is checked before any decompression or
    // copying, so bad input fails fast.
    let (mut params, kernel) = if is_bzimage(image) {
        let bz = BzImageHeader::parse(image)?;
        if let Some(x) = bz.xloadflags() {
            if x & XLF_KERNEL_64 == 0 {
                return Err(LinuxError::Not64Bit(x));
            }
        }
        let cmdline = boot_params::build_cmdline(line, bz.cmdline_max())?;
        let kernel = if req.bzimage_own_entry {
            load_own_entry(mem, layout, image, &bz)?
        } else {
            match &req.kernel_cache {
                #[cfg(feature = "bzimage-payloads")]
                KernelCacheUse::Hit(entry) => load_cached(mem, layout, entry)?,
                #[cfg(feature = "bzimage-payloads")]
                KernelCacheUse::Fill { cache, key } => {
                    let range = bz.payload_range(image.len())?;
                    fill_cache(mem, layout, &image[range], cache, key)?
                }
                KernelCacheUse::Off => {
                    let range = bz.payload_range(image.len())?;
                    load_payload(mem, layout, &image[range])?
                }
            }
        };
        let mut params = bz.params;
        if req.bzimage_own_entry {
            // boot.rst: a relocating loader sets code32_start to where it
            // loaded the protected-mode code. Below 4 GiB: checked.
            params.hdr.code32_start = kernel.start as u32;
        }
        load_cmdline(mem, CMDLINE_START, &cmdline).map_err(LinuxError::CmdlineWrite)?;
        (params, kernel)
    } else if image.starts_with(b"\x7fELF") {
        let cmdline = boot_params::build_cmdline(line, VMLINUX_CMDLINE_MAX)?;
        let kernel = load_vmlinux(mem, layout, image)?;
        load_cmdline(mem, CMDLINE_START, &cmdline).map_err(LinuxError::CmdlineWrite)?;
        (vmlinux_header(), kernel)
    } else {
        return Err(LinuxError::NotLinux(first_bytes(image)));
    };

    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    params.hdr.cmd_line_ptr = CMDLINE_START.0 as u32;

    if let Some(empty) = req.initrd.as_ref().filter(|m| m.data.is_empty()) {
        // ramdisk_size 0 is how the protocol says "no initrd".
        log::warn!("initrd {} is empty: booting without one", empty.name);
    }
    if let Some(initrd) = req.initrd.as_ref().filter(|m| !m.data.is_empty()) {
        let size = initrd.data.len() as u64;
        let addr = boot_params::place_initrd(
            layout,
            size,
            kernel.footprint_end,
            params.hdr.initrd_addr_max,
            boot_params::mem_option(line),
        )?;
        mem.write_slice(&initrd.data, GuestAddress(addr))?;
        // Both fit in 32 bits: the initrd lies in RAM below 4 GiB.
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
        log::info!("initrd: {size} bytes at {addr:#x}");
    }

    boot_params::set_e820(&mut params, layout)?;
    // Protocol 2.14+ kernels take the RSDP from here; older ones scan the
    // BIOS area, where the VMM puts it too.
    params.acpi_rsdp_addr = req.acpi_rsdp.unwrap_or(0);
    LinuxBootConfigurator::write_bootparams(&BootParams::new(&params, ZERO_PAGE_START), mem)
        .map_err(LinuxError::BootParams)?;

    Ok(BootSpec {
        mode: BootMode::Long,
        entry: Entry::Linear(GuestAddress(kernel.entry)),
        image: (GuestAddress(kernel.start), kernel.end - kernel.start),
        segments: kernel.segments,
        handoff: Handoff::LinuxZeroPage(ZERO_PAGE_START),
    })
}

/// Decompresses a bzImage's payload, a vmlinux, straight into guest memory
/// ([`vmlinux`]), never holding the whole decompressed kernel.
fn load_payload<M: GuestMemoryBackend>(
    mem: &M,
    layout: &MemoryLayout,
    data: &[u8],
) -> Result<LoadedKernel, LinuxError> {
    let t = Instant::now();
    let mut loader = VmlinuxLoader::new(mem, layout, payload_what(data), Placing::Copy);
    let limit = max_vmlinux_len(layout);
    let (codec, size) = payload::decompress_with(data, limit, |piece| loader.feed(piece))?;
    let (kernel, writing) = loader.finish()?;
    let total = t.elapsed();
    log::info!("bzImage payload: {codec}, {size} bytes decompressed on the host");
    log::debug!(
        "bzImage payload: decompressed and loaded in {:.1} ms ({:.1} ms decompressing, {:.1} ms writing guest memory)",
        total.as_secs_f64() * 1e3,
        total.saturating_sub(writing).as_secs_f64() * 1e3,
        writing.as_secs_f64() * 1e3
    );
    Ok(kernel)
}

/// The most a bzImage's payload may decompress to in guest RAM laid out as
/// `layout`: the VMM's cap, and never more than the RAM.
pub fn max_vmlinux_len(layout: &MemoryLayout) -> u64 {
    MAX_DECOMPRESSED.min(layout.size())
}

/// Loads a kernel cache entry, mapping its pages into guest memory.
#[cfg(feature = "bzimage-payloads")]
fn load_cached<M: GuestMemoryBackend + 'static>(
    mem: &M,
    layout: &MemoryLayout,
    entry: &CachedVmlinux,
) -> Result<LoadedKernel, LinuxError> {
    let t = Instant::now();
    let what = format!("cached vmlinux {}", entry.path().display());
    let (kernel, done) =
        vmlinux_file::load_from_file(mem, layout, entry.file(), entry.len(), &what)?;
    log::info!(
        "bzImage payload: from the kernel cache ({}), {} bytes mapped, {} copied, in {:.2} ms",
        entry.path().display(),
        done.mapped,
        done.copied,
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(kernel)
}

/// Decompresses a bzImage's payload into a new kernel cache entry while
/// validating it as a vmlinux, then loads from the entry. If the entry
/// cannot be written, decompresses straight into guest memory instead.
#[cfg(feature = "bzimage-payloads")]
fn fill_cache<M: GuestMemoryBackend + 'static>(
    mem: &M,
    layout: &MemoryLayout,
    data: &[u8],
    cache: &VmlinuxCache,
    key: &ImageKey,
) -> Result<LoadedKernel, LinuxError> {
    let t = Instant::now();
    let cache_failed = |e: std::io::Error| {
        log::warn!(
            "kernel cache: cannot write to {}: {e}; decompressing without it",
            cache.dir().display()
        );
    };
    let mut writer = match cache.begin(key) {
        Ok(w) => w,
        Err(e) => {
            cache_failed(e);
            return load_payload(mem, layout, data);
        }
    };
    let mut check = VmlinuxLoader::new(mem, layout, payload_what(data), Placing::ValidateOnly);
    let mut write_failed = None;
    let limit = max_vmlinux_len(layout);
    let (codec, size) = payload::decompress_with(data, limit, |piece| {
        check.feed(piece)?;
        if write_failed.is_none() {
            write_failed = writer.write(piece).err();
        }
        Ok::<(), LinuxError>(())
    })?;
    check.finish()?;
    let entry = match write_failed.map_or_else(|| writer.commit(), Err) {
        Ok(entry) => entry,
        Err(e) => {
            cache_failed(e);
            return load_payload(mem, layout, data);
        }
    };
    log::info!(
        "bzImage payload: {codec}, {size} bytes decompressed on the host into the kernel cache ({}) in {:.1} ms",
        entry.path().display(),
        t.elapsed().as_secs_f64() * 1e3
    );
    load_cached(mem, layout, &entry)
}

/// How errors name a bzImage's payload.
fn payload_what(data: &[u8]) -> String {
    match Codec::detect(data) {
        Some(c) => format!("{c}-decompressed bzImage payload"),
        None => "bzImage payload".to_string(),
    }
}

/// Validates an ELF64 x86-64 vmlinux against the layout, then copies its
/// segments to their physical addresses.
fn load_vmlinux<M: GuestMemoryBackend>(
    mem: &M,
    layout: &MemoryLayout,
    vmlinux: &[u8],
) -> Result<LoadedKernel, LinuxError> {
    // goblin's parse of the whole file first, as for any ELF; the loader
    // then checks what the Linux protocol adds.
    parse_elf(vmlinux, layout)?;
    let mut loader = VmlinuxLoader::new(mem, layout, "image".to_string(), Placing::Copy);
    loader.feed(vmlinux)?;
    Ok(loader.finish()?.0)
}

/// Loads a bzImage's protected-mode part for its own 64-bit entry.
fn load_own_entry<M: GuestMemoryBackend>(
    mem: &M,
    layout: &MemoryLayout,
    image: &[u8],
    bz: &BzImageHeader,
) -> Result<LoadedKernel, LinuxError> {
    let version = bz.version();
    if bz.xloadflags().is_none() {
        return Err(LinuxError::ProtocolTooOld {
            version,
            required: PROTO_XLOADFLAGS,
            why: "only xloadflags' XLF_KERNEL_64 says a kernel has the 64-bit entry point at 0x200",
        });
    }
    let hdr = bz.hdr;
    let pref = if version >= setup_header::PROTO_PREF_ADDRESS {
        hdr.pref_address
    } else {
        0
    };
    let load = if pref != 0 {
        pref
    } else {
        u64::from(hdr.code32_start)
    };
    let pm_len = (image.len() - bz.setup_size) as u64;
    let align = u64::from(hdr.kernel_alignment);
    // boot.rst, init_size: where the kernel runs while it decompresses.
    let runtime_start = if hdr.relocatable_kernel != 0 && align.is_power_of_two() {
        load.checked_add(align - 1).map(|a| a & !(align - 1))
    } else if pref != 0 {
        Some(pref)
    } else {
        Some(load)
    };
    let ram_end = layout.low_ram_end();
    let outside = |end| LinuxError::KernelOutsideRam {
        start: load,
        end,
        ram_end,
    };
    let end = runtime_start
        .and_then(|r| r.checked_add(bz.init_size()))
        .zip(load.checked_add(pm_len))
        .map(|(a, b)| a.max(b))
        .ok_or_else(|| outside(u64::MAX))?;
    if load < HIGH_MEMORY_START.0
        || end > ram_end
        || !layout.contains_range(GuestAddress(load), end - load)
    {
        return Err(outside(end));
    }
    BzImage::load(
        mem,
        Some(GuestAddress(load)),
        &mut Cursor::new(image),
        Some(HIGH_MEMORY_START),
    )
    .map_err(LinuxError::KernelLoad)?;
    Ok(LoadedKernel {
        segments: vec![(GuestAddress(load), pm_len)],
        entry: load + ENTRY_64_OFFSET,
        start: load,
        end: load + pm_len,
        footprint_end: end,
    })
}

/// Builders of synthetic bzImages for tests (this crate's and the
/// integration tests).
pub mod test_image {
    #[cfg(feature = "bzimage-payloads")]
    pub use super::payload::test_support::compress;
    pub use super::payload::Codec;

    /// Setup header values of a synthetic bzImage.
    #[derive(Debug, Clone)]
    pub struct BzImageSpec {
        /// setup_sects (0 means 4).
        pub setup_sects: u8,
        /// Boot protocol version.
        pub version: u16,
        /// loadflags.
        pub loadflags: u8,
        /// xloadflags.
        pub xloadflags: u16,
        /// cmdline_size.
        pub cmdline_size: u32,
        /// initrd_addr_max.
        pub initrd_addr_max: u32,
        /// code32_start.
        pub code32_start: u32,
        /// kernel_alignment.
        pub kernel_alignment: u32,
        /// relocatable_kernel.
        pub relocatable: u8,
        /// pref_address.
        pub pref_address: u64,
        /// init_size.
        pub init_size: u32,
        /// Bytes of the protected-mode part before the payload (its 64-bit
        /// entry is at offset 0x200 of them).
        pub pm_code: Vec<u8>,
    }

    impl Default for BzImageSpec {
        fn default() -> Self {
            BzImageSpec {
                setup_sects: 3,
                version: 0x020f,
                loadflags: super::LOADED_HIGH,
                xloadflags: super::XLF_KERNEL_64,
                cmdline_size: 2047,
                initrd_addr_max: 0x7fff_ffff,
                code32_start: 0x10_0000,
                kernel_alignment: 0x20_0000,
                relocatable: 1,
                pref_address: 0x10_0000,
                init_size: 0x10_0000,
                pm_code: vec![0xf4; 0x40],
            }
        }
    }

    /// A bzImage: a `(setup_sects + 1) * 512`-byte real-mode part whose
    /// setup header follows `spec` (boot_flag, "HdrS", a jump over the
    /// header to 0x26c), then the protected-mode part: `spec.pm_code`
    /// followed by `payload` (`payload_offset`/`payload_length` point at
    /// it).
    pub fn bzimage(spec: &BzImageSpec, payload: &[u8]) -> Vec<u8> {
        let sects = if spec.setup_sects == 0 {
            4
        } else {
            usize::from(spec.setup_sects)
        };
        let mut img = vec![0u8; (sects + 1) * 512];
        let mut put = |at: usize, bytes: &[u8]| img[at..at + bytes.len()].copy_from_slice(bytes);
        put(0x1f1, &[spec.setup_sects]);
        put(0x1fe, &0xaa55u16.to_le_bytes());
        put(0x200, &[0xeb, 0x6a]);
        put(0x202, b"HdrS");
        put(0x206, &spec.version.to_le_bytes());
        put(0x211, &[spec.loadflags]);
        put(0x214, &spec.code32_start.to_le_bytes());
        put(0x22c, &spec.initrd_addr_max.to_le_bytes());
        put(0x230, &spec.kernel_alignment.to_le_bytes());
        put(0x234, &[spec.relocatable]);
        put(0x236, &spec.xloadflags.to_le_bytes());
        put(0x238, &spec.cmdline_size.to_le_bytes());
        put(0x248, &(spec.pm_code.len() as u32).to_le_bytes());
        put(0x24c, &(payload.len() as u32).to_le_bytes());
        put(0x258, &spec.pref_address.to_le_bytes());
        put(0x260, &spec.init_size.to_le_bytes());
        img.extend_from_slice(&spec.pm_code);
        img.extend_from_slice(payload);
        img
    }
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "bzimage-payloads")]
    use super::test_image::compress;
    use super::test_image::{bzimage, BzImageSpec};
    use super::*;
    use crate::elf::test_image::build;
    use crate::request::ModuleImage;
    use linux_loader::loader::bootparam::boot_params;
    #[cfg(feature = "bzimage-payloads")]
    use std::os::unix::fs::FileExt;
    #[cfg(feature = "bzimage-payloads")]
    use vm_memory::ByteValued;
    use vm_memory::GuestMemoryMmap;
    use vmm_memory::layout::MIB;

    const MEM_MIB: u64 = 64;

    fn setup() -> (MemoryLayout, GuestMemoryMmap) {
        let layout = MemoryLayout::with_phys_bits(MEM_MIB, 40).unwrap();
        let mem =
            GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), (MEM_MIB * MIB) as usize)])
                .unwrap();
        (layout, mem)
    }

    /// A tiny vmlinux: code at 1 MiB, 64 KiB of memory in all.
    fn vmlinux() -> Vec<u8> {
        build(
            true,
            0x10_0010,
            &[(0x10_0000, 0x10_0000, &[0xf4; 0x40], 0x1_0000)],
        )
    }

    fn zero_page(mem: &GuestMemoryMmap) -> boot_params {
        mem.read_obj(ZERO_PAGE_START).unwrap()
    }

    fn cmdline_at(mem: &GuestMemoryMmap, p: &boot_params) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        mem.read_slice(&mut buf, GuestAddress(u64::from(p.hdr.cmd_line_ptr)))
            .unwrap();
        let nul = buf.iter().position(|&b| b == 0).unwrap();
        buf.truncate(nul);
        buf
    }

    fn req(cmdline: Option<&str>, initrd: Option<Vec<u8>>) -> LoadRequest {
        LoadRequest {
            kernel_path: "vmlinux".into(),
            cmdline: cmdline.map(str::to_string),
            initrd: initrd.map(|data| ModuleImage {
                name: "initrd".into(),
                data,
            }),
            ..Default::default()
        }
    }

    fn check_e820(p: &boot_params, layout: &MemoryLayout) {
        let map = layout.firmware_map();
        assert_eq!(usize::from(p.e820_entries), map.len());
        for (t, e) in p.e820_table.iter().zip(&map) {
            assert_eq!(
                ({ t.addr }, { t.size }, { t.r#type }),
                (e.start, e.len, e.kind.e820_type())
            );
        }
    }

    #[test]
    fn test_linux_vmlinux_boot_params() {
        let (layout, mem) = setup();
        let rd: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let spec = load_linux(
            &mem,
            &layout,
            &vmlinux(),
            &req(Some("console=ttyS0 root=/dev/ram0"), Some(rd.clone())),
        )
        .unwrap();
        assert_eq!(spec.mode, BootMode::Long);
        assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x10_0010)));
        assert_eq!(spec.handoff, Handoff::LinuxZeroPage(ZERO_PAGE_START));
        assert_eq!(spec.image, (GuestAddress(0x10_0000), 0x1_0000));
        let mut code = [0u8; 4];
        mem.read_slice(&mut code, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(code, [0xf4; 4]);

        let p = zero_page(&mem);
        assert_eq!({ p.hdr.boot_flag }, 0xaa55);
        assert_eq!({ p.hdr.header }, HDRS);
        assert_eq!({ p.hdr.type_of_loader }, 0xff);
        assert_eq!({ p.hdr.cmd_line_ptr }, CMDLINE_START.0 as u32);
        assert_eq!(cmdline_at(&mem, &p), b"console=ttyS0 root=/dev/ram0");
        check_e820(&p, &layout);
        let (addr, size) = (u64::from(p.hdr.ramdisk_image), p.hdr.ramdisk_size);
        assert_eq!(size as usize, rd.len());
        assert_eq!(addr % 4096, 0);
        assert_eq!(addr, (MEM_MIB * MIB - rd.len() as u64) & !0xfff);
        let mut back = vec![0u8; rd.len()];
        mem.read_slice(&mut back, GuestAddress(addr)).unwrap();
        assert_eq!(back, rd);
    }

    #[test]
    fn test_linux_default_cmdline_and_no_initrd() {
        let (layout, mem) = setup();
        load_linux(&mem, &layout, &vmlinux(), &req(None, None)).unwrap();
        let p = zero_page(&mem);
        assert_eq!(cmdline_at(&mem, &p), DEFAULT_CMDLINE.as_bytes());
        assert!(DEFAULT_CMDLINE.contains("console=ttyS0"));
        assert_eq!(({ p.hdr.ramdisk_image }, { p.hdr.ramdisk_size }), (0, 0));
    }

    #[cfg(feature = "bzimage-payloads")]
    #[test]
    fn test_linux_bzimage_every_codec_host_decompressed() {
        let elf = vmlinux();
        for codec in Codec::ALL {
            let Some(payload) = compress(codec, &elf) else {
                continue;
            };
            let (layout, mem) = setup();
            let img = bzimage(&BzImageSpec::default(), &payload);
            let spec = load_linux(&mem, &layout, &img, &req(Some("quiet"), Some(vec![1; 10])))
                .unwrap_or_else(|e| panic!("{codec}: {e}"));
            assert_eq!(
                spec.entry,
                Entry::Linear(GuestAddress(0x10_0010)),
                "{codec}"
            );
            let p = zero_page(&mem);
            // The header is the image's, with the loader's fields written.
            let hdr_end = 0x26c;
            let mut expect = img[0x1f1..hdr_end].to_vec();
            expect[0x210 - 0x1f1] = 0xff;
            expect[0x218 - 0x1f1..0x21c - 0x1f1]
                .copy_from_slice(&{ p.hdr.ramdisk_image }.to_le_bytes());
            expect[0x21c - 0x1f1..0x220 - 0x1f1].copy_from_slice(&10u32.to_le_bytes());
            expect[0x228 - 0x1f1..0x22c - 0x1f1]
                .copy_from_slice(&(CMDLINE_START.0 as u32).to_le_bytes());
            assert_eq!(&p.as_slice()[0x1f1..hdr_end], &expect[..], "{codec}");
            assert_eq!(cmdline_at(&mem, &p), b"quiet");
            check_e820(&p, &layout);
        }
    }

    #[cfg(feature = "bzimage-payloads")]
    /// A vmlinux whose segments sit at page-congruent file offsets, as a
    /// real one's do: one with ragged ends and BSS, one starting mid-page.
    fn paged_vmlinux() -> Vec<u8> {
        let fill = |from: u64, len: u64| -> Vec<u8> {
            (from..from + len)
                .map(|b| (b * 13 + b / 4096) as u8 | 1)
                .collect()
        };
        let (a, b) = (fill(0, 0x5123), fill(7, 0x3000));
        crate::elf::test_image::build_paged(
            true,
            0x20_0000,
            &[
                (0x20_0000, 0x20_0000, &a, 0x8000),
                (0x30_0800, 0x30_0800, &b, 0x3000),
            ],
        )
    }

    #[cfg(feature = "bzimage-payloads")]
    fn temp_cache(tag: &str) -> VmlinuxCache {
        let dir = std::env::temp_dir().join(format!(
            "vmm-loader-linux-cache-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        VmlinuxCache::new(dir)
    }

    #[cfg(feature = "bzimage-payloads")]
    fn all_of(mem: &GuestMemoryMmap) -> Vec<u8> {
        let mut buf = vec![0u8; (MEM_MIB * MIB) as usize];
        mem.read_slice(&mut buf, GuestAddress(0)).unwrap();
        buf
    }

    #[cfg(feature = "bzimage-payloads")]
    #[test]
    fn test_linux_kernel_cache_fill_and_hit_load_what_decompression_loads() {
        let elf = paged_vmlinux();
        let key = ImageKey::of(&std::fs::metadata(std::env::current_exe().unwrap()).unwrap());
        for codec in Codec::ALL {
            let Some(payload) = compress(codec, &elf) else {
                continue;
            };
            let cache = temp_cache(codec.name());
            let img = bzimage(&BzImageSpec::default(), &payload);
            let setup_len = (usize::from(img[0x1f1]) + 1) * 512;
            let mut r = req(Some("quiet"), Some(vec![3; 5000]));
            let (layout, direct) = setup();
            let want = load_linux(&direct, &layout, &img, &r).unwrap();

            r.kernel_cache = KernelCacheUse::Fill {
                cache: cache.clone(),
                key,
            };
            let (_, filled) = setup();
            assert_eq!(load_linux(&filled, &layout, &img, &r).unwrap(), want);
            assert!(all_of(&filled) == all_of(&direct), "{codec}: fill");

            let hit = cache.lookup(&key).expect("the fill wrote an entry");
            let mut on_disk = vec![0u8; elf.len()];
            hit.file().read_exact_at(&mut on_disk, 0).unwrap();
            assert_eq!(on_disk, elf, "{codec}: the entry is the vmlinux");
            r.kernel_cache = KernelCacheUse::Hit(hit.clone());
            let (_, from_cache) = setup();
            // Only the setup part: the payload is never read on a hit.
            let spec = load_linux(&from_cache, &layout, &img[..setup_len], &r).unwrap();
            assert_eq!(spec, want);
            assert!(all_of(&from_cache) == all_of(&direct), "{codec}: hit");

            // The guest's writes to mapped pages stay in its memory.
            from_cache
                .write_slice(&[0u8; 0x3000], GuestAddress(0x20_1000))
                .unwrap();
            hit.file().read_exact_at(&mut on_disk, 0).unwrap();
            assert_eq!(on_disk, elf, "{codec}: guest writes reached the entry");
            std::fs::remove_dir_all(cache.dir()).unwrap();
        }
    }

    #[cfg(feature = "bzimage-payloads")]
    #[test]
    fn test_linux_cached_vmlinux_maps_aligned_pages_and_copies_the_rest() {
        let elf = paged_vmlinux();
        let cache = temp_cache("map");
        let key = ImageKey::of(&std::fs::metadata(std::env::current_exe().unwrap()).unwrap());
        let mut w = cache.begin(&key).unwrap();
        w.write(&elf).unwrap();
        let entry = w.commit().unwrap();
        let (layout, mem) = setup();
        let (kernel, done) =
            vmlinux_file::load_from_file(&mem, &layout, entry.file(), entry.len(), "entry")
                .unwrap();
        assert_eq!(kernel.entry, 0x20_0000);
        // Segment 0: pages 0x200000..0x205000 mapped, 0x123 copied; segment
        // 1: 0x800 copied up to its first page, 0x2000 mapped, 0x800 copied.
        assert_eq!(done.mapped, 0x5000 + 0x2000);
        assert_eq!(done.copied, 0x123 + 0x800 + 0x800);
        let mut seg = vec![0u8; 0x8000];
        mem.read_slice(&mut seg, GuestAddress(0x20_0000)).unwrap();
        assert_eq!(
            &seg[..0x5123],
            &elf[0x1000..0x6123],
            "segment 0 at offset 0x1000"
        );
        assert!(seg[0x5123..].iter().all(|&b| b == 0), "BSS is zero");
        let mut seg = vec![0u8; 0x3000];
        mem.read_slice(&mut seg, GuestAddress(0x30_0800)).unwrap();
        assert_eq!(&seg[..], &elf[0x6800..0x9800], "segment 1 at offset 0x6800");

        // Validated against this layout, like any vmlinux: 2 MiB of RAM
        // cannot hold it.
        let small = MemoryLayout::with_phys_bits(2, 40).unwrap();
        let err = vmlinux_file::load_from_file(&mem, &small, entry.file(), entry.len(), "entry")
            .unwrap_err();
        assert!(
            matches!(
                err,
                LinuxError::Vmlinux(ElfError::SegmentOutsideRam { .. })
                    | LinuxError::KernelOutsideRam { .. }
            ),
            "{err}"
        );
        // An entry that is not a vmlinux is named in the error.
        let mut w = cache.begin(&key).unwrap();
        w.write(b"MZ not an elf").unwrap();
        let junk = w.commit().unwrap();
        let err = vmlinux_file::load_from_file(
            &mem,
            &layout,
            junk.file(),
            junk.len(),
            "cached vmlinux x",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("cached vmlinux x is not an ELF vmlinux"),
            "{err}"
        );
        std::fs::remove_dir_all(cache.dir()).unwrap();
    }

    #[test]
    fn test_linux_bzimage_own_entry() {
        let (layout, mem) = setup();
        let mut pm = vec![0x90u8; 0x200];
        pm.extend_from_slice(&[0xf4, 0xeb, 0xfe]);
        let spec_hdr = BzImageSpec {
            pm_code: pm.clone(),
            pref_address: 0x20_0000,
            init_size: 0x40_0000,
            ..Default::default()
        };
        let img = bzimage(&spec_hdr, b"not even compressed");
        let r = LoadRequest {
            bzimage_own_entry: true,
            ..req(None, Some(vec![7; 100]))
        };
        let spec = load_linux(&mem, &layout, &img, &r).unwrap();
        assert_eq!(spec.mode, BootMode::Long);
        assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x20_0200)));
        let mut back = vec![0u8; pm.len()];
        mem.read_slice(&mut back, GuestAddress(0x20_0000)).unwrap();
        assert_eq!(back, pm);
        let p = zero_page(&mem);
        assert_eq!({ p.hdr.code32_start }, 0x20_0000);
        // The initrd stays clear of init_size above the kernel.
        assert!(u64::from(p.hdr.ramdisk_image) >= 0x60_0000);

        // init_size beyond RAM is refused.
        let huge = bzimage(
            &BzImageSpec {
                init_size: 0x1000_0000,
                ..spec_hdr.clone()
            },
            b"x",
        );
        let e = load_linux(&mem, &layout, &huge, &r).unwrap_err();
        assert!(matches!(e, LinuxError::KernelOutsideRam { .. }), "{e}");
        // Before 2.12 there is no XLF_KERNEL_64 to trust.
        let old = bzimage(
            &BzImageSpec {
                version: 0x020b,
                ..spec_hdr
            },
            b"x",
        );
        let e = load_linux(&mem, &layout, &old, &r).unwrap_err();
        assert!(
            e.to_string().contains("2.11") && e.to_string().contains("2.12"),
            "{e}"
        );
    }

    #[cfg(feature = "bzimage-payloads")]
    #[test]
    fn test_linux_bad_inputs_are_errors() {
        let (layout, mem) = setup();
        let elf = vmlinux();
        let gz = compress(Codec::Gzip, &elf).unwrap();
        let spec = BzImageSpec::default();
        let load = |img: &[u8], r: &LoadRequest| load_linux(&mem, &layout, img, r);

        // Protocol 2.05.
        let old = bzimage(
            &BzImageSpec {
                version: 0x0205,
                ..spec.clone()
            },
            &gz,
        );
        let e = load(&old, &req(None, None)).unwrap_err();
        assert!(
            matches!(
                e,
                LinuxError::ProtocolTooOld {
                    version: 0x0205,
                    ..
                }
            ),
            "{e}"
        );

        // Not 64-bit.
        let k32 = bzimage(
            &BzImageSpec {
                xloadflags: 0,
                ..spec.clone()
            },
            &gz,
        );
        assert!(matches!(
            load(&k32, &req(None, None)),
            Err(LinuxError::Not64Bit(0))
        ));

        // Unknown codec.
        let e = load(&bzimage(&spec, b"\x01\x02\x03\x04junk"), &req(None, None)).unwrap_err();
        assert!(e.to_string().contains("01 02 03 04"), "{e}");

        // Corrupt gzip.
        let mut bad = gz.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        let e = load(&bzimage(&spec, &bad), &req(None, None)).unwrap_err();
        assert!(e.to_string().contains("gzip"), "{e}");

        // Payload past the end of the file.
        let mut cut = bzimage(&spec, &gz);
        cut.truncate(cut.len() - 1);
        assert!(matches!(
            load(&cut, &req(None, None)),
            Err(LinuxError::PayloadOutsideFile { .. })
        ));

        // A payload that is not an ELF.
        let e = load(
            &bzimage(&spec, &compress(Codec::Zstd, b"MZ not an elf").unwrap()),
            &req(None, None),
        )
        .unwrap_err();
        assert!(e.to_string().contains("zstd-decompressed"), "{e}");

        // Truncated vmlinux, bare and inside a bzImage.
        let e = load(&elf[..elf.len() - 8], &req(None, None)).unwrap_err();
        assert!(matches!(e, LinuxError::Vmlinux(_)), "{e}");
        let short = compress(Codec::Gzip, &elf[..100]).unwrap();
        let e = load(&bzimage(&spec, &short), &req(None, None)).unwrap_err();
        assert!(matches!(e, LinuxError::Vmlinux(_)), "{e}");

        // ELF32 vmlinux.
        let e32 = build(false, 0x10_0000, &[(0x10_0000, 0x10_0000, &[0xf4], 1)]);
        assert!(matches!(
            load(&e32, &req(None, None)),
            Err(LinuxError::NotX86_64 { class: 32, .. })
        ));

        // Command line longer than cmdline_size.
        let small = bzimage(
            &BzImageSpec {
                cmdline_size: 16,
                ..spec.clone()
            },
            &gz,
        );
        let e = load(&small, &req(Some(&"x".repeat(17)), None)).unwrap_err();
        assert!(
            matches!(e, LinuxError::CmdlineTooLong { len: 17, max: 16 }),
            "{e}"
        );
        assert!(load(&small, &req(Some(&"x".repeat(16)), None)).is_ok());

        // An initrd larger than the room above the kernel.
        let e = load(&elf, &req(None, Some(vec![0; (MEM_MIB * MIB) as usize]))).unwrap_err();
        assert!(e.to_string().contains(&(MEM_MIB * MIB).to_string()), "{e}");

        // Modules are not part of the Linux protocol.
        let with_module = LoadRequest {
            modules: vec![ModuleImage {
                name: "m".into(),
                data: vec![1],
            }],
            ..req(None, None)
        };
        assert!(matches!(
            load(&elf, &with_module),
            Err(LinuxError::ModulesUnsupported(1))
        ));

        // Neither bzImage nor ELF.
        assert!(matches!(
            load(b"\xf4\xf4", &req(None, None)),
            Err(LinuxError::NotLinux(_))
        ));
    }

    #[test]
    fn test_linux_vmlinux_above_4g_is_refused() {
        // The identity map covers only 4 GiB: a kernel in the RAM above the
        // hole could not run.
        let layout = MemoryLayout::with_phys_bits(3072 + 64, 40).unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0), 3 << 30),
            (GuestAddress(4 << 30), 64 << 20),
        ])
        .unwrap();
        let high = build(
            true,
            0x1_0000_0000,
            &[(0x1_0000_0000, 0x1_0000_0000, &[0xf4], 1)],
        );
        let e = load_linux(&mem, &layout, &high, &LoadRequest::default()).unwrap_err();
        assert!(
            matches!(e, LinuxError::KernelOutsideRam { start: 0x1_0000_0000, ram_end, .. } if ram_end == 3 << 30),
            "{e}"
        );
    }

    #[cfg(feature = "bzimage-payloads")]
    #[test]
    fn test_linux_decompression_limit_is_guest_ram() {
        let layout = MemoryLayout::with_phys_bits(2, 40).unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let big = vec![0u8; 3 << 20];
        let img = bzimage(
            &BzImageSpec::default(),
            &compress(Codec::Gzip, &big).unwrap(),
        );
        let e = load_linux(&mem, &layout, &img, &LoadRequest::default()).unwrap_err();
        assert!(
            matches!(e, LinuxError::Payload(PayloadError::TooLarge { limit, .. }) if limit == 2 << 20),
            "{e}"
        );
    }

    #[cfg(feature = "bzimage-payloads")]
    #[test]
    fn test_linux_initrd_respects_initrd_addr_max_and_mem() {
        let (layout, mem) = setup();
        let img = bzimage(
            &BzImageSpec {
                initrd_addr_max: (16 * MIB - 1) as u32,
                ..Default::default()
            },
            &compress(Codec::Gzip, &vmlinux()).unwrap(),
        );
        load_linux(&mem, &layout, &img, &req(None, Some(vec![3; 4096]))).unwrap();
        assert_eq!(
            u64::from(zero_page(&mem).hdr.ramdisk_image),
            16 * MIB - 4096
        );
        load_linux(
            &mem,
            &layout,
            &img,
            &req(Some("mem=8M"), Some(vec![3; 4096])),
        )
        .unwrap();
        assert_eq!(u64::from(zero_page(&mem).hdr.ramdisk_image), 8 * MIB - 4096);
    }
}
