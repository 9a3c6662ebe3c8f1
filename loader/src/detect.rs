//! Recognising what an image is, in the order the project documents:
//! Linux bzImage ("HdrS"), ELF with a Xen PVH entry note, Multiboot v1
//! header in the first 8 KiB, ELF with a "Linux" note (vmlinux), any other
//! ELF, otherwise a raw binary.

use std::fmt;
use std::str::FromStr;

use goblin::elf::Elf;

/// Image formats the loader knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Format {
    /// Flat binary, copied verbatim.
    Raw,
    /// Static ELF32/ELF64 program, entered at e_entry.
    Elf,
    /// Multiboot v1 kernel.
    Multiboot,
    /// Linux bzImage or vmlinux (x86 boot protocol, 64-bit entry).
    Linux,
    /// ELF with a Xen PVH entry (hvm_start_info, 32-bit entry).
    Pvh,
}

impl Format {
    /// The name used by `--format`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Elf => "elf",
            Format::Multiboot => "multiboot",
            Format::Linux => "linux",
            Format::Pvh => "pvh",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Format::Raw,
            Format::Elf,
            Format::Multiboot,
            Format::Linux,
            Format::Pvh,
        ]
        .into_iter()
        .find(|f| f.name() == s)
        .ok_or_else(|| format!("unknown format '{s}' (expected raw, elf, multiboot, linux or pvh)"))
    }
}

/// A detection result and the evidence for it, for `-v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The format.
    pub format: Format,
    /// Why, in words.
    pub reason: String,
}

/// Offset of the setup header's "HdrS" magic in a bzImage.
pub const BZIMAGE_MAGIC_OFFSET: usize = 0x202;
/// "HdrS", little-endian.
pub const BZIMAGE_MAGIC: u32 = 0x5372_6448;
/// Multiboot v1 header magic.
pub const MULTIBOOT_HEADER_MAGIC: u32 = 0x1BAD_B002;
/// The Multiboot header must lie, 4-byte aligned, in the first 8 KiB.
pub const MULTIBOOT_SEARCH_LEN: usize = 8192;
/// XEN_ELFNOTE_PHYS32_ENTRY: the PVH 32-bit entry point note.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

fn u32_at(image: &[u8], off: usize) -> Option<u32> {
    let b = image.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Offset of a valid Multiboot v1 header (magic, flags, checksum summing to
/// zero) in the first 8 KiB, if any.
pub fn find_multiboot_header(image: &[u8]) -> Option<usize> {
    let end = image.len().min(MULTIBOOT_SEARCH_LEN);
    (0..end.saturating_sub(11)).step_by(4).find(|&off| {
        matches!(
            (u32_at(image, off), u32_at(image, off + 4), u32_at(image, off + 8)),
            (Some(MULTIBOOT_HEADER_MAGIC), Some(flags), Some(sum))
                if MULTIBOOT_HEADER_MAGIC.wrapping_add(flags).wrapping_add(sum) == 0
        )
    })
}

/// Whether `image` is a bzImage (setup header magic "HdrS" at 0x202).
pub fn is_bzimage(image: &[u8]) -> bool {
    u32_at(image, BZIMAGE_MAGIC_OFFSET) == Some(BZIMAGE_MAGIC)
}

/// ELF notes as (name, type) pairs; empty if the image is not a parsable ELF.
pub fn elf_notes(elf: &Elf<'_>, image: &[u8]) -> Vec<(String, u32)> {
    let mut notes = Vec::new();
    if let Some(iter) = elf.iter_note_headers(image) {
        for note in iter.flatten() {
            notes.push((note.name.trim_end_matches('\0').to_string(), note.n_type));
        }
    }
    notes
}

/// Detects the format of `image`.
pub fn detect(image: &[u8]) -> Detection {
    let d = |format, reason: String| Detection { format, reason };
    if is_bzimage(image) {
        return d(
            Format::Linux,
            format!("setup header magic \"HdrS\" at {BZIMAGE_MAGIC_OFFSET:#x} (bzImage)"),
        );
    }
    let elf = if image.starts_with(b"\x7fELF") {
        Elf::parse(image).ok()
    } else {
        None
    };
    let notes = elf
        .as_ref()
        .map(|e| elf_notes(e, image))
        .unwrap_or_default();
    if notes
        .iter()
        .any(|(n, t)| n == "Xen" && *t == XEN_ELFNOTE_PHYS32_ENTRY)
    {
        return d(
            Format::Pvh,
            "ELF with a Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)".into(),
        );
    }
    if let Some(off) = find_multiboot_header(image) {
        return d(
            Format::Multiboot,
            format!("Multiboot v1 header at offset {off:#x}"),
        );
    }
    if let Some(e) = &elf {
        if e.is_64 && notes.iter().any(|(n, _)| n == "Linux") {
            return d(
                Format::Linux,
                "ELF64 with a \"Linux\" note (vmlinux)".into(),
            );
        }
        let class = if e.is_64 { 64 } else { 32 };
        return d(Format::Elf, format!("ELF{class} executable"));
    }
    if image.starts_with(b"\x7fELF") {
        return d(
            Format::Elf,
            "ELF magic (the headers do not parse; loading will say why)".into(),
        );
    }
    d(
        Format::Raw,
        "no bzImage, ELF or Multiboot header found: raw binary".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multiboot_header(at: usize, flags: u32) -> Vec<u8> {
        let mut img = vec![0u8; at + 12];
        img[at..at + 4].copy_from_slice(&MULTIBOOT_HEADER_MAGIC.to_le_bytes());
        img[at + 4..at + 8].copy_from_slice(&flags.to_le_bytes());
        let sum = 0u32.wrapping_sub(MULTIBOOT_HEADER_MAGIC.wrapping_add(flags));
        img[at + 8..at + 12].copy_from_slice(&sum.to_le_bytes());
        img
    }

    #[test]
    fn test_detect_raw_and_bzimage() {
        assert_eq!(detect(&[0xf4]).format, Format::Raw);
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(detect(&bz).format, Format::Linux);
    }

    #[test]
    fn test_detect_multiboot_only_with_valid_checksum_in_8k() {
        assert_eq!(
            detect(&multiboot_header(0x40, 0x3)).format,
            Format::Multiboot
        );
        let mut bad = multiboot_header(0x40, 0x3);
        bad[0x48] ^= 1;
        assert_eq!(detect(&bad).format, Format::Raw);
        assert_eq!(detect(&multiboot_header(8192, 0x3)).format, Format::Raw);
        assert_eq!(
            detect(&multiboot_header(8180, 0x3)).format,
            Format::Multiboot
        );
        // Unaligned headers do not count.
        assert_eq!(detect(&multiboot_header(0x41, 0x3)).format, Format::Raw);
    }

    #[test]
    fn test_format_names_round_trip() {
        for f in [
            Format::Raw,
            Format::Elf,
            Format::Multiboot,
            Format::Linux,
            Format::Pvh,
        ] {
            assert_eq!(f.name().parse::<Format>(), Ok(f));
        }
        assert!("coff".parse::<Format>().unwrap_err().contains("'coff'"));
    }
}
