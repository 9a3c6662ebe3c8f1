//! Reading the image and its modules and loading them into guest RAM: a
//! [`VmConfig`]'s boot section becomes the loader's [`BootSpec`] and the
//! first vCPU's [`StartState`].

use vm_memory::GuestAddress;
use vmm_cpu::{validate_start, StartState};
use vmm_loader::input::{read_input, InputKind};
use vmm_loader::linux::cache::{read_kernel, VmlinuxCache};
use vmm_loader::raw::{RawOptions, DEFAULT_LOAD_ADDR};
use vmm_loader::{BootMode, BootSpec, Entry, Format, KernelCacheUse, LoadRequest, ModuleImage};
use vmm_memory::GuestRam;

use crate::config::{KernelImage, VmConfig};
use crate::error::{RawOption, VmmError};
use crate::firmware::{firmware_sizes, PlatformInfo};
use crate::platform::Platform;
use crate::virtio::{cmdline_with_devices, VirtioSlot};

/// What loading produced.
pub(crate) struct Loaded {
    /// The image's format, detected or forced.
    pub format: Format,
    /// What the loader placed where.
    pub spec: BootSpec,
    /// How the first vCPU starts.
    pub start: StartState,
}

/// Whether `config` gets the PC platform for an image of `format`.
pub(crate) fn is_pc(config: &VmConfig, format: Format) -> bool {
    match config.platform {
        Platform::Pc => true,
        Platform::Minimal => false,
        Platform::Auto => matches!(format, Format::Multiboot | Format::Linux | Format::Pvh),
    }
}

/// The entry the user asked for, or the load address; in real mode a load
/// address above 64 KiB becomes the equivalent SEG:0 form.
fn effective_entry(entry: Option<Entry>, mode: BootMode, load_addr: GuestAddress) -> Option<Entry> {
    if entry.is_some() || mode != BootMode::Real {
        return entry;
    }
    let a = load_addr.0;
    if a > 0xffff && a < 0x10_0000 {
        return Some(Entry::Segmented {
            segment: (a >> 4) as u16,
            offset: (a & 0xf) as u16,
        });
    }
    None
}

/// The command line a kernel of `format` gets: the user's (or the
/// protocol's default), plus where each virtio device is for the formats
/// whose kernels read it (Linux's `virtio_mmio.device=`; Multiboot and PVH
/// kernels get the same, as QEMU and Firecracker pass it).
fn cmdline(user: Option<&str>, format: Format, virtio: &[VirtioSlot]) -> Option<String> {
    if virtio.is_empty() || !matches!(format, Format::Linux | Format::Pvh | Format::Multiboot) {
        return user.map(str::to_string);
    }
    let base = match (user, format) {
        (Some(line), _) => line,
        (None, Format::Linux) => vmm_loader::linux::DEFAULT_CMDLINE,
        (None, _) => "",
    };
    Some(cmdline_with_devices(base, virtio))
}

/// The boot inputs a `format` image has no way to receive, named for a
/// warning (a raw binary or plain ELF program has no boot protocol: no
/// command line, initrd or modules reach it).
pub(crate) fn ignored_inputs(config: &VmConfig, format: Format) -> Vec<String> {
    if !matches!(format, Format::Raw | Format::Elf) {
        return Vec::new();
    }
    let boot = &config.boot;
    let mut ignored = Vec::new();
    if boot.cmdline.is_some() {
        ignored.push("the command line".to_string());
    }
    if boot.initrd.is_some() {
        ignored.push("the initrd".to_string());
    }
    match boot.modules.len() {
        0 => {}
        1 => ignored.push("1 module".to_string()),
        n => ignored.push(format!("{n} modules")),
    }
    ignored
}

fn warn_ignored_inputs(config: &VmConfig, format: Format) {
    let ignored = ignored_inputs(config, format);
    if !ignored.is_empty() {
        let what = if format == Format::Elf {
            "an ELF program"
        } else {
            "a raw binary"
        };
        log::warn!(
            "{} ignored: {what} has no boot protocol to receive them",
            ignored.join(", ")
        );
    }
}

/// Reads the kernel (through `cache` for a host-decompressed bzImage),
/// the initrd and modules, and loads them into `ram`; on the PC platform
/// the loader places the firmware tables `platform` describes with the
/// image's other boot structures.
pub(crate) fn load_image(
    config: &VmConfig,
    cache: Option<&VmlinuxCache>,
    ram: &GuestRam,
    virtio: &[VirtioSlot],
    platform: &PlatformInfo,
) -> Result<Loaded, VmmError> {
    let boot = &config.boot;
    let t0 = std::time::Instant::now();
    let limit = ram.layout().size();
    // The cache serves only the host-decompressed bzImage path.
    let cache = cache
        .filter(|_| !boot.bzimage_own_entry && matches!(boot.format, None | Some(Format::Linux)));
    let (name, image, kernel_cache) = match &boot.kernel {
        None => return Err(VmmError::NoKernel),
        Some(KernelImage::Bytes(b)) => ("<memory>".to_string(), b.clone(), KernelCacheUse::Off),
        Some(KernelImage::Path(p)) => {
            let max_vmlinux = vmm_loader::linux::max_vmlinux_len(ram.layout());
            let (image, use_cache) = read_kernel(p, limit, max_vmlinux, cache)?;
            (p.display().to_string(), image, use_cache)
        }
    };
    // The platform follows from the format, and the loader places the
    // platform's firmware tables with the image's boot structures.
    let format = boot
        .format
        .unwrap_or_else(|| vmm_loader::detect(&image).format);
    warn_ignored_inputs(config, format);
    let mut req = LoadRequest {
        kernel_path: name.clone(),
        cmdline: cmdline(boot.cmdline.as_deref(), format, virtio),
        initrd: None,
        modules: Vec::new(),
        bzimage_own_entry: boot.bzimage_own_entry,
        firmware: if is_pc(config, format) {
            Some(firmware_sizes(platform)?)
        } else {
            None
        },
        kernel_cache,
    };
    if let Some(p) = &boot.initrd {
        req.initrd = Some(ModuleImage {
            name: p.display().to_string(),
            data: read_input(p, limit, InputKind::Module)?,
        });
    }
    for m in &boot.modules {
        req.modules.push(ModuleImage {
            name: m
                .string
                .clone()
                .unwrap_or_else(|| m.path.display().to_string()),
            data: read_input(&m.path, limit, InputKind::Module)?,
        });
    }
    let mode = boot.raw.mode.unwrap_or(BootMode::Real);
    let load_addr = boot.raw.load_addr.map_or(DEFAULT_LOAD_ADDR, GuestAddress);
    let raw_opts = RawOptions {
        load_addr,
        mode,
        entry: effective_entry(boot.raw.entry, mode, load_addr),
    };
    let (detection, spec) = vmm_loader::load(
        ram.memory(),
        ram.layout(),
        &image,
        boot.format,
        &req,
        raw_opts,
    )
    .map_err(|source| VmmError::Load {
        path: name.clone(),
        source,
    })?;
    log::info!(
        "{name}: loading as {} ({})",
        detection.format,
        detection.reason
    );
    log::info!(
        "{name}: loaded in {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    if detection.format != Format::Raw {
        let raw_only = [
            (boot.raw.mode.is_some(), RawOption::Mode),
            (boot.raw.load_addr.is_some(), RawOption::LoadAddr),
            (boot.raw.entry.is_some(), RawOption::Entry),
        ];
        if let Some(&(_, option)) = raw_only.iter().find(|(set, _)| *set) {
            return Err(VmmError::RawOnlyOption {
                option,
                format: detection.format,
            });
        }
    }
    let start = crate::start::start_state(&spec, &boot.regs);
    validate_start(&start, &spec.occupied())?;
    Ok(Loaded {
        format: detection.format,
        spec,
        start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_effective_entry_real_mode_above_64k_becomes_segmented() {
        let e = effective_entry(None, BootMode::Real, GuestAddress(0x1_2345));
        assert_eq!(
            e,
            Some(Entry::Segmented {
                segment: 0x1234,
                offset: 5
            })
        );
        assert_eq!(
            effective_entry(None, BootMode::Real, GuestAddress(0x1000)),
            None
        );
        assert_eq!(
            effective_entry(None, BootMode::Long, GuestAddress(0x2_0000)),
            None
        );
    }
}
