//! The image-loader targets' input: an 8-byte header that sets what the user
//! would pass besides the kernel (format, command line, initrd, modules, raw
//! placement), then the command line's bytes, then the image.
//!
//! | byte | meaning |
//! | --- | --- |
//! | 0 | bits 0-2 format (1 raw, 2 elf, 3 multiboot, 4 linux, 5 pvh, else detect); bit 3 `--bzimage-entry`; bit 4 a command line; bit 5 an initrd; bits 6-7 how many `--module`s |
//! | 1 | command-line length `n` |
//! | 2 | low 4 bits: the command line is repeated `2^k` times (long lines, without long inputs) |
//! | 3 | initrd size code ([`size_from_code`]) |
//! | 4 | module size code |
//! | 5 | bits 0-6 raw mode: 0 real, 1 protected, 2 long (modulo 3); bit 7 the PC platform's firmware (BDA, EBDA, ACPI and MP tables placed with the image, as `--platform pc` does) |
//! | 6-7 | raw load address / 256, little-endian |
//! | 8.. | `n` command-line bytes (lossy UTF-8), then the image |
//!
//! Initrd and module contents are a fixed pattern: loaders copy them without
//! looking, and only their sizes matter to placement.

use std::sync::OnceLock;

use vm_memory::GuestAddress;
use vmm_loader::raw::RawOptions;
use vmm_loader::{BootMode, Entry, Format, LoadRequest, ModuleImage};
use vmm_memory::{FirmwareSizes, GuestRam, MemoryLayout, ThpHint};

/// Header length in bytes.
pub const HEADER_LEN: usize = 8;
/// Guest RAM the targets load into, in MiB: big enough for real small
/// kernels above 1 MiB, small enough that "does not fit" is easy to reach.
pub const GUEST_MIB: u64 = 16;
/// A long command line is capped here, past the 64 KiB the layout reserves.
pub const MAX_CMDLINE: usize = 256 << 10;
/// Path given as the kernel's (Multiboot passes it on the command line).
pub const KERNEL_PATH: &str = "/fuzz/kernel";

/// What the header asks for, before it is applied to an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadHeader {
    /// `--format`, or `None` to detect.
    pub format: Option<Format>,
    /// `--bzimage-entry`.
    pub bzimage_own_entry: bool,
    /// Command-line bytes and the `2^k` repeat exponent, if any.
    pub cmdline: Option<(Vec<u8>, u8)>,
    /// Initrd size code, if any.
    pub initrd: Option<u8>,
    /// Number of extra modules (0-3) and their size code.
    pub modules: (u8, u8),
    /// Raw mode code and load address / 256.
    pub raw: (u8, u16),
    /// An ACPI RSDP is passed to the kernel.
    pub acpi: bool,
}

/// Bytes for a size code: 64-byte steps below 12 KiB for three codes in
/// four, then 256 KiB steps up to 16 MiB (all of guest RAM), so both small
/// and RAM-filling sizes are a byte away while most runs stay cheap.
pub fn size_from_code(code: u8) -> usize {
    if code < 192 {
        usize::from(code) * 64
    } else {
        usize::from(code - 191) << 18
    }
}

fn format_from_bits(bits: u8) -> Option<Format> {
    match bits & 7 {
        1 => Some(Format::Raw),
        2 => Some(Format::Elf),
        3 => Some(Format::Multiboot),
        4 => Some(Format::Linux),
        5 => Some(Format::Pvh),
        _ => None,
    }
}

fn bits_from_format(f: Option<Format>) -> u8 {
    match f {
        None => 0,
        Some(Format::Raw) => 1,
        Some(Format::Elf) => 2,
        Some(Format::Multiboot) => 3,
        Some(Format::Linux) => 4,
        Some(Format::Pvh) => 5,
    }
}

impl LoadHeader {
    /// Splits `data` into a header and the image; `None` if it is shorter
    /// than the header.
    pub fn decode(data: &[u8]) -> Option<(LoadHeader, &[u8])> {
        let (h, rest) = data.split_at_checked(HEADER_LEN)?;
        let n = usize::from(h[1]).min(rest.len());
        let (line, image) = rest.split_at(n);
        let header = LoadHeader {
            format: format_from_bits(h[0]),
            bzimage_own_entry: h[0] & 0x08 != 0,
            cmdline: (h[0] & 0x10 != 0).then(|| (line.to_vec(), h[2] & 0x0f)),
            initrd: (h[0] & 0x20 != 0).then_some(h[3]),
            modules: (h[0] >> 6, h[4]),
            raw: (h[5] & 0x7f, u16::from_le_bytes([h[6], h[7]])),
            acpi: h[5] & 0x80 != 0,
        };
        Some((header, image))
    }

    /// The bytes [`LoadHeader::decode`] turns back into `self` and `image`.
    /// A command line longer than 255 bytes is cut.
    pub fn encode(&self, image: &[u8]) -> Vec<u8> {
        let (line, rep) = match &self.cmdline {
            Some((l, r)) => (&l[..l.len().min(255)], *r),
            None => (&[][..], 0),
        };
        let flags = bits_from_format(self.format)
            | if self.bzimage_own_entry { 0x08 } else { 0 }
            | if self.cmdline.is_some() { 0x10 } else { 0 }
            | if self.initrd.is_some() { 0x20 } else { 0 }
            | (self.modules.0.min(3) << 6);
        let mut out = vec![
            flags,
            line.len() as u8,
            rep,
            self.initrd.unwrap_or(0),
            self.modules.1,
            (self.raw.0 & 0x7f) | if self.acpi { 0x80 } else { 0 },
        ];
        out.extend_from_slice(&self.raw.1.to_le_bytes());
        out.extend_from_slice(line);
        out.extend_from_slice(image);
        out
    }

    /// The [`LoadRequest`] the header describes.
    pub fn request(&self) -> LoadRequest {
        let cmdline = self.cmdline.as_ref().map(|(line, rep)| {
            let text = String::from_utf8_lossy(line);
            let times = (1usize << rep).min(MAX_CMDLINE / text.len().max(1)).max(1);
            text.repeat(times)
        });
        let blob = |len: usize, fill: u8| vec![fill; len];
        let initrd = self.initrd.map(|code| ModuleImage {
            name: "/fuzz/initrd".to_string(),
            data: blob(size_from_code(code), 0x5a),
        });
        let modules = (0..self.modules.0)
            .map(|i| ModuleImage {
                // Module strings share the command line's bytes, so the
                // strings area can be made to overflow too.
                name: format!("/fuzz/mod{i} {}", cmdline.as_deref().unwrap_or_default()),
                data: blob(size_from_code(self.modules.1.wrapping_add(i)), i),
            })
            .collect();
        LoadRequest {
            kernel_path: KERNEL_PATH.to_string(),
            cmdline,
            initrd,
            modules,
            bzimage_own_entry: self.bzimage_own_entry,
            // The sizes of a 2-CPU PC's tables (what vmm-core measures).
            firmware: self.acpi.then_some(FirmwareSizes {
                acpi_tables: 0x600,
                mp_table: 0x140,
            }),
            kernel_cache: Default::default(),
        }
    }

    /// How a raw image would be placed (what `--mode`/`--load-addr` say).
    pub fn raw_options(&self) -> RawOptions {
        let mode = match self.raw.0 % 3 {
            0 => BootMode::Real,
            1 => BootMode::Protected,
            _ => BootMode::Long,
        };
        RawOptions {
            load_addr: GuestAddress(u64::from(self.raw.1) << 8),
            mode,
            entry: None,
        }
    }
}

/// Which format a target asks the loader for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forced {
    /// Whatever the header's format bits say (detect if none).
    FromInput,
    /// Always this one, whatever the header says.
    Always(Format),
}

fn guest() -> &'static GuestRam {
    static RAM: OnceLock<GuestRam> = OnceLock::new();
    RAM.get_or_init(|| {
        let layout = match MemoryLayout::with_phys_bits(GUEST_MIB, 40) {
            Ok(l) => l,
            Err(e) => panic!("fuzz harness: layout of {GUEST_MIB} MiB: {e}"),
        };
        match GuestRam::new(&layout, ThpHint::Off) {
            Ok(r) => r,
            Err(e) => panic!("fuzz harness: guest RAM: {e}"),
        }
    })
}

/// Runs `vmm_loader::load` on the input the way `vmm-bin` would, and checks
/// what a successful load promises. Errors are fine; a panic or a broken
/// promise is a finding.
pub fn fuzz_load(data: &[u8], forced: Forced) {
    // Detection alone must cope with anything, header or not.
    let _ = vmm_loader::detect(data);
    let Some((header, image)) = LoadHeader::decode(data) else {
        return;
    };
    crate::trace(&header);
    let detected = vmm_loader::detect(image);
    let asked = match forced {
        Forced::FromInput => header.format,
        Forced::Always(f) => Some(f),
    };
    let req = header.request();
    // Guest RAM is reused across runs (mapping 16 MiB per run would
    // dominate): loaders only write it, so what an earlier run left there
    // cannot change what this one does.
    let ram = guest();
    let layout = ram.layout();
    let loaded = vmm_loader::load(
        ram.memory(),
        layout,
        image,
        asked,
        &req,
        header.raw_options(),
    );
    crate::trace(&loaded.as_ref().map_err(ToString::to_string));
    let Ok((detection, spec)) = loaded else {
        return;
    };
    // Keep the messages: formatting them runs Display/Debug impls too.
    let what = format!("{detection:?} {spec:?}");
    match asked {
        Some(f) => assert_eq!(detection.format, f, "{what}"),
        None => assert_eq!(detection.format, detected.format, "{what}"),
    }
    // Wherever the image is, the boot structures are not, and the memory
    // map reserves them.
    let occupied = spec.occupied();
    for p in spec.plan.placed() {
        assert!(
            layout.contains_range(GuestAddress(p.start), p.len),
            "{} at [{:#x}, +{:#x}) is not RAM: {what}",
            p.what,
            p.start,
            p.len
        );
        if let Some(&(s, e)) = occupied.iter().find(|&&(s, e)| s < p.end() && e > p.start) {
            panic!(
                "{} at [{:#x}, {:#x}) overlaps the image at [{s:#x}, {e:#x}): {what}",
                p.what,
                p.start,
                p.end()
            );
        }
    }
    let map = spec.plan.memory_map(layout);
    assert_eq!(
        map.iter().map(|e| e.len).sum::<u64>(),
        layout.size(),
        "the memory map does not cover RAM: {what}"
    );
    if detection.format == Format::Raw {
        // The user places raw images; nothing more is promised.
        return;
    }
    for (start, end) in spec.occupied() {
        assert!(
            layout.contains_range(GuestAddress(start), end - start),
            "loaded segment [{start:#x}, {end:#x}) is not all RAM: {what}"
        );
    }
    if let Entry::Linear(entry) = spec.entry {
        assert!(
            layout.is_ram(entry),
            "entry {:#x} is not RAM: {what}",
            entry.0
        );
    }
    // The boot plan put the GDT and page tables clear of every segment, so
    // the vCPU set-up (which checks the segments, not their span) agrees.
    let start = vmm_core::start::start_state(&spec, &[]);
    if let Err(e) = vmm_cpu::validate_start(&start, &spec.occupied()) {
        panic!("the loader accepted an image the vCPU setup rejects ({e}): {what}");
    }
}
