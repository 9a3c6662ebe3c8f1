//! Guest image loaders: put a kernel or program into guest memory and say how
//! to start it.
//!
//! A loader reads an image, checks that every byte of it lands in guest RAM,
//! copies it there through vm-memory, places the boot structures its entry
//! mode, protocol and platform need in RAM the image does not use
//! ([`structures`], on vmm-memory's planner), writes whatever information
//! structure its boot protocol defines, and returns a [`BootSpec`]: the CPU
//! mode to start in, the entry point, the ranges the image occupies, where
//! each boot structure goes ([`BootSpec::plan`]) and what the protocol
//! hands the kernel ([`Handoff`]: the zero page in RSI, Multiboot's magic
//! and information structure in EAX/EBX, ...). It does not touch KVM or any vCPU
//! type, so it can be reused by any VMM (or tested) without `/dev/kvm`.
//!
//! Formats, each in its own module: [`raw`] flat binaries, [`elf`] static
//! ELF32/ELF64, [`multiboot`] Multiboot v1, [`linux`] bzImage and vmlinux,
//! [`pvh`] PVH. [`mod@detect`] recognises them; [`load`] dispatches.
//! Shared by the protocols: [`boot_info`] (Multiboot's and PVH's structure,
//! command line, strings and modules), [`placement`] (finding room in RAM
//! for modules) and [`structures`] (what each boot needs placed). [`input`] reads the kernel, initrd and module files from the host,
//! and `linux::cache::read_kernel` does so through the kernel cache.
//!
//! The crate needs vm-memory and vmm-memory (the guest memory map), goblin
//! and linux-loader. Its default-on `bzimage-payloads` feature adds the
//! bzImage payload decoders (gzip, bzip2, lzma, xz, lz4, zstd) and the
//! kernel cache; without it a VMM that loads only ELF, Multiboot, PVH,
//! vmlinux or raw images builds no codec, and a compressed bzImage fails
//! with an error naming its codec and the feature.
//!
//! `examples/boot_spec.rs` uses the crate alone: it maps RAM with
//! vmm-memory, loads the image named on its command line and prints the
//! detected format and the [`BootSpec`]
//! (`cargo run -p vmm-loader --example boot_spec -- IMAGE`).
//!
//! # One ELF reader: goblin
//!
//! Every ELF the crate reads goes through goblin: plain programs and
//! Multiboot kernels ([`elf::parse_elf`]), PVH kernels (the same, plus
//! goblin's note iterator for the Xen entry note), format detection, and a
//! bzImage's vmlinux, whose ELF and program headers are parsed by goblin
//! from the first bytes of the decompressed stream before the rest exists.
//! goblin reads ELF32 and ELF64 and parses headers from a byte slice, which
//! that streaming validation needs; linux-loader's ELF loader reads ELF64
//! only and loads a whole file from a `Read + Seek`, so it serves none of
//! these. Every segment is checked by one function
//! ([`elf::check_segment`]) and copied by this crate. linux-loader stays for
//! what it is good for: the `boot_params`/setup header and `hvm_start_info`
//! structures and their writers, the kernel command line, and loading a
//! bzImage's protected-mode part for its own entry.
//!
//! # Example
//!
//! ```
//! use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
//! use vmm_loader::{raw::{load_raw, RawOptions}, BootMode, Entry};
//!
//! let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
//! let image = [0xf4u8]; // hlt
//! let spec = load_raw(&mem, &mut &image[..], image.len() as u64, RawOptions::default()).unwrap();
//! assert_eq!(spec.mode, BootMode::Real);
//! assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x1000)));
//! assert_eq!(mem.read_obj::<u8>(GuestAddress(0x1000)).unwrap(), 0xf4);
//!
//! // Format detection needs only the bytes.
//! assert_eq!(vmm_loader::detect::detect(&image).format, vmm_loader::Format::Raw);
//! ```

pub mod boot_info;
pub mod boot_spec;
pub mod detect;
pub mod elf;
pub mod input;
pub mod linux;
pub mod multiboot;
pub mod placement;
pub mod pvh;
pub mod raw;
pub mod request;
pub mod structures;

pub use boot_spec::{BootMode, BootSpec, Entry, Handoff};
pub use detect::{detect, Detection, Format};
pub use request::{KernelCacheUse, LoadRequest, ModuleImage};

use vm_memory::GuestMemoryBackend;
use vmm_memory::{MemoryLayout, PlanError};

use structures::ProtocolNeeds;

/// Errors from any loader.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `--format` names a format the image is not.
    #[error("the forced format {asked} contradicts the image: {why}")]
    FormatMismatch {
        /// The format asked for.
        asked: Format,
        /// What is missing.
        why: String,
    },
    /// Raw loader error.
    #[error(transparent)]
    Raw(#[from] raw::RawLoadError),
    /// ELF loader error.
    #[error(transparent)]
    Elf(#[from] elf::ElfError),
    /// Multiboot loader error.
    #[error(transparent)]
    Multiboot(#[from] multiboot::MultibootError),
    /// Linux loader error.
    #[error(transparent)]
    Linux(#[from] linux::LinuxError),
    /// PVH loader error.
    #[error(transparent)]
    Pvh(#[from] pvh::PvhError),
    /// A boot structure of a raw image or plain ELF program has no room.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// Checks that `image` can be what `asked` says.
fn check_format(image: &[u8], asked: Format) -> Result<(), LoadError> {
    let is_elf = image.starts_with(b"\x7fELF");
    let why = match asked {
        Format::Raw => None,
        Format::Elf if !is_elf => Some("no ELF magic (7f 45 4c 46) at offset 0".to_string()),
        Format::Multiboot if detect::find_multiboot_header(image).is_none() => Some(
            "no Multiboot v1 header (magic 0x1BADB002 with a valid checksum) in the first 8 KiB"
                .to_string(),
        ),
        Format::Linux if !detect::is_bzimage(image) && !is_elf => {
            Some("neither a bzImage (\"HdrS\" at 0x202) nor an ELF vmlinux".to_string())
        }
        Format::Pvh if detect::detect(image).format != Format::Pvh => {
            Some("no Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY) in an ELF image".to_string())
        }
        _ => None,
    };
    match why {
        Some(why) => Err(LoadError::FormatMismatch { asked, why }),
        None => Ok(()),
    }
}

/// Detects (or, with `forced`, checks) the format of `image` and loads it.
/// `raw` describes how to place and start a raw binary.
pub fn load<M: GuestMemoryBackend + 'static>(
    mem: &M,
    layout: &MemoryLayout,
    image: &[u8],
    forced: Option<Format>,
    req: &LoadRequest,
    raw_opts: raw::RawOptions,
) -> Result<(Detection, BootSpec), LoadError> {
    let detection = match forced {
        Some(asked) => {
            check_format(image, asked)?;
            Detection {
                format: asked,
                reason: format!("format forced to {asked}"),
            }
        }
        None => detect(image),
    };
    // Formats without a boot protocol get only what their mode and the
    // platform need, placed around their segments.
    let bare = |mut spec: BootSpec| -> Result<BootSpec, LoadError> {
        let image = structures::occupied("the image", &spec.segments);
        spec.plan = structures::plan(layout, spec.mode, &image, req, ProtocolNeeds::default())?;
        Ok(spec)
    };
    let spec = match detection.format {
        Format::Raw => bare(raw::load_raw(
            mem,
            &mut &image[..],
            image.len() as u64,
            raw_opts,
        )?)?,
        Format::Elf => bare(elf::load_elf(mem, layout, image)?)?,
        Format::Multiboot => multiboot::load_multiboot(mem, layout, image, req)?,
        Format::Linux => linux::load_linux(mem, layout, image, req)?,
        Format::Pvh => pvh::load_pvh(mem, layout, image, req)?,
    };
    Ok((detection, spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_forced_format_must_match_image() {
        for (f, needle) in [
            (Format::Elf, "ELF magic"),
            (Format::Multiboot, "Multiboot"),
            (Format::Linux, "bzImage"),
            (Format::Pvh, "PVH"),
        ] {
            let e = check_format(&[0xf4; 64], f).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
            assert!(e.to_string().contains(f.name()), "{e}");
        }
        assert!(check_format(&[0xf4], Format::Raw).is_ok());
    }

    #[cfg(not(feature = "bzimage-payloads"))]
    #[test]
    fn test_compressed_bzimage_without_the_feature_names_codec_and_feature() {
        use linux::test_image::{bzimage, BzImageSpec};
        use vm_memory::{GuestAddress, GuestMemoryMmap};

        let layout = MemoryLayout::with_phys_bits(16, 40).unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        // A gzip member header: detection goes by the magic.
        let img = bzimage(
            &BzImageSpec::default(),
            &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3],
        );
        let load =
            |req: &LoadRequest| load(&mem, &layout, &img, None, req, raw::RawOptions::default());
        let e = load(&LoadRequest::default()).unwrap_err();
        assert!(
            matches!(
                e,
                LoadError::Linux(linux::LinuxError::Payload(
                    linux::payload::PayloadError::NotBuilt {
                        codec: linux::payload::Codec::Gzip
                    }
                ))
            ),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("gzip") && msg.contains("`bzimage-payloads` feature"),
            "{msg}"
        );
        // The bzImage's own entry needs no host decoder.
        let own = LoadRequest {
            bzimage_own_entry: true,
            ..Default::default()
        };
        let (d, _) = load(&own).unwrap();
        assert_eq!(d.format, Format::Linux);
    }
}
