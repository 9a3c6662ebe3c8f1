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
//! Either way, once the kernel is in place the boot structures are placed
//! around it and the memory it works in (`init_size`): the zero page
//! (`struct boot_params`, preferably at [`ZERO_PAGE_START`]) with the
//! image's setup header copied in (from 0x1f1 to 0x202 + the byte at
//! 0x201), `type_of_loader` 0xff, the command line (preferably at
//! [`CMDLINE_START`], `cmd_line_ptr`), the initrd placed page-aligned as high
//! as the header's `initrd_addr_max`, the end of RAM below 4 GiB and any
//! `mem=` option allow and clear of the boot structures
//! (`ramdisk_image`/`ramdisk_size`), and the E820 map: the boot plan's
//! memory map, which reserves the boot structures. The vCPU starts in long
//! mode (the VMM's GDT has `__BOOT_CS` 0x10 and `__BOOT_DS` 0x18 and its
//! page tables identity-map the first 4 GiB) with RSI = the zero page.
//!
//! Without `--cmdline` the kernel gets [`DEFAULT_CMDLINE`]. linux-loader's
//! `Cmdline` writes it, so surrounding whitespace is trimmed and only
//! printable ASCII is accepted.

mod boot_params;
#[cfg(feature = "bzimage-payloads")]
pub mod cache;
mod error;
mod host_decompress;
mod own_entry;
pub mod payload;
mod setup_header;
pub mod test_image;
#[cfg(test)]
mod tests;
mod vmlinux;
#[cfg(feature = "bzimage-payloads")]
mod vmlinux_file;

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_params as BootParamsRaw, LOADED_HIGH, XLF_KERNEL_64};
use linux_loader::loader::load_cmdline;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_memory::layout::{CMDLINE_START, HIGH_MEMORY_START, ZERO_PAGE_START};
use vmm_memory::{MemoryLayout, Occupied, Structure};

use crate::boot_spec::{BootMode, BootSpec, Entry, Handoff};
use crate::detect::is_bzimage;
use crate::elf::parse_elf;
use crate::request::LoadRequest;
use crate::structures::{self, ProtocolNeeds};
use payload::{first_bytes, MAX_DECOMPRESSED};
use setup_header::{BzImageHeader, BOOT_FLAG, HDRS};
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

pub use error::LinuxError;

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
    let (mut params, kernel, cmdline) = if is_bzimage(image) {
        let bz = BzImageHeader::parse(image)?;
        if let Some(x) = bz.xloadflags() {
            if x & XLF_KERNEL_64 == 0 {
                return Err(LinuxError::Not64Bit(x));
            }
        }
        let cmdline = boot_params::build_cmdline(line, bz.cmdline_max())?;
        let kernel = if req.bzimage_own_entry {
            own_entry::load_own_entry(mem, layout, image, &bz)?
        } else {
            host_decompress::load_host_decompressed(mem, layout, image, &bz, &req.kernel_cache)?
        };
        let mut params = bz.params;
        if req.bzimage_own_entry {
            // boot.rst: a relocating loader sets code32_start to where it
            // loaded the protected-mode code. Below 4 GiB: checked.
            params.hdr.code32_start = kernel.start as u32;
        }
        (params, kernel, cmdline)
    } else if image.starts_with(b"\x7fELF") {
        let cmdline = boot_params::build_cmdline(line, VMLINUX_CMDLINE_MAX)?;
        let kernel = load_vmlinux(mem, layout, image)?;
        (vmlinux_header(), kernel, cmdline)
    } else {
        return Err(LinuxError::NotLinux(first_bytes(image)));
    };

    // The kernel is in place: the boot structures go around it and the
    // memory it works in before it reads the memory map.
    let cmdline_len = cmdline
        .as_cstring()
        .map_err(|e| LinuxError::Cmdline(e.to_string()))?
        .as_bytes_with_nul()
        .len() as u64;
    let mut occupied = structures::occupied("the Linux kernel", &kernel.segments);
    if kernel.footprint_end > kernel.end {
        occupied.push(Occupied {
            what: "the Linux kernel's working memory (init_size)".to_string(),
            start: kernel.start,
            end: kernel.footprint_end,
        });
    }
    let plan = structures::plan(
        layout,
        BootMode::Long,
        &occupied,
        req,
        ProtocolNeeds {
            zero_page: true,
            cmdline: Some(cmdline_len),
            ..ProtocolNeeds::default()
        },
    )?;
    // The planner places what it is asked for or fails.
    let zero_page = plan.addr(Structure::ZeroPage).unwrap_or(ZERO_PAGE_START);
    let cmdline_addr = plan.addr(Structure::Cmdline).unwrap_or(CMDLINE_START);
    load_cmdline(mem, cmdline_addr, &cmdline).map_err(LinuxError::CmdlineWrite)?;

    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    // Below 4 GiB: the planner keeps it there.
    params.hdr.cmd_line_ptr = cmdline_addr.0 as u32;

    if let Some(empty) = req.initrd.as_ref().filter(|m| m.data.is_empty()) {
        // ramdisk_size 0 is how the protocol says "no initrd".
        log::warn!("initrd {} is empty: booting without one", empty.name);
    }
    if let Some(initrd) = req.initrd.as_ref().filter(|m| !m.data.is_empty()) {
        let size = initrd.data.len() as u64;
        let addr = boot_params::place_initrd(
            layout,
            &plan,
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

    boot_params::set_e820(&mut params, &plan.memory_map(layout))?;
    // Protocol 2.14+ kernels take the RSDP from here; older ones scan the
    // BIOS area (or the EBDA), where the plan keeps it.
    params.acpi_rsdp_addr = plan.addr(Structure::AcpiRsdp).map_or(0, |a| a.0);
    LinuxBootConfigurator::write_bootparams(&BootParams::new(&params, zero_page), mem)
        .map_err(LinuxError::BootParams)?;

    Ok(BootSpec {
        mode: BootMode::Long,
        entry: Entry::Linear(GuestAddress(kernel.entry)),
        image: (GuestAddress(kernel.start), kernel.end - kernel.start),
        segments: kernel.segments,
        handoff: Handoff::LinuxZeroPage(zero_page),
        plan,
    })
}

/// The most a bzImage's payload may decompress to in guest RAM laid out as
/// `layout`: the VMM's cap, and never more than the RAM.
pub fn max_vmlinux_len(layout: &MemoryLayout) -> u64 {
    MAX_DECOMPRESSED.min(layout.size())
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
