//! The Multiboot header (specification section 3.1) and the a.out kludge
//! address fields (3.1.3).
//!
//! Layout, all little-endian u32: `magic`, `flags`, `checksum` at 0-8;
//! `header_addr`, `load_addr`, `load_end_addr`, `bss_end_addr`,
//! `entry_addr` at 12-28 (valid if flags bit 16); `mode_type`, `width`,
//! `height`, `depth` at 32-44 (valid if flags bit 2). The whole header must
//! lie within the file's first 8192 bytes.

use crate::detect::{find_multiboot_header, MULTIBOOT_SEARCH_LEN};

use super::{MultibootError, FOUR_GIB};

/// Header flag bit 0: boot modules must be page (4 KiB) aligned.
pub const HEADER_PAGE_ALIGN: u32 = 1 << 0;
/// Header flag bit 1: `mem_*` (and, when available, `mmap_*`) information
/// must be passed.
pub const HEADER_MEMORY_INFO: u32 = 1 << 1;
/// Header flag bit 2: the video mode fields are valid (a request only).
pub const HEADER_VIDEO_MODE: u32 = 1 << 2;
/// Header flag bit 16: the address fields (a.out kludge) are valid.
pub const HEADER_AOUT_KLUDGE: u32 = 1 << 16;
/// Bits 0-15 are requirements: a boot loader that does not understand one
/// must refuse the image.
pub const HEADER_REQUIRED_MASK: u32 = 0xffff;
/// The required bits this loader fulfils. Bit 2 counts as fulfilled: the
/// specification lets the boot loader pick another mode (or none) and say
/// so in the information structure, which leaves bits 11 and 12 clear.
pub const HEADER_SUPPORTED_REQUIRED: u32 =
    HEADER_PAGE_ALIGN | HEADER_MEMORY_INFO | HEADER_VIDEO_MODE;

/// Bytes of `magic`, `flags`, `checksum`.
const BASE_LEN: usize = 12;
/// Bytes up to the end of the address fields.
const ADDRESS_LEN: usize = 32;
/// Bytes up to the end of the graphics fields.
const VIDEO_LEN: usize = 48;

/// The address fields enabled by flag bit 16, all physical addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AoutAddresses {
    /// Where the header's magic is supposed to be loaded.
    pub header_addr: u32,
    /// Where loading starts (the text segment).
    pub load_addr: u32,
    /// End of the data segment; 0 means "the rest of the file".
    pub load_end_addr: u32,
    /// End of the BSS; 0 means "no BSS".
    pub bss_end_addr: u32,
    /// Where to jump.
    pub entry_addr: u32,
}

/// The graphics fields enabled by flag bit 2 (a preference, never
/// fulfilled here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoMode {
    /// 0 linear graphics, 1 EGA text.
    pub mode_type: u32,
    /// Pixels or characters; 0 means no preference.
    pub width: u32,
    /// Pixels or characters; 0 means no preference.
    pub height: u32,
    /// Bits per pixel; 0 means no preference.
    pub depth: u32,
}

/// A parsed, validated Multiboot header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultibootHeader {
    /// File offset of the magic.
    pub offset: usize,
    /// The flags word.
    pub flags: u32,
    /// The address fields, if flag bit 16 is set.
    pub addresses: Option<AoutAddresses>,
    /// The graphics fields, if flag bit 2 is set.
    pub video: Option<VideoMode>,
}

fn u32_at(image: &[u8], off: usize) -> u32 {
    // Callers check `off + 4 <= image.len()` first (the header length
    // check); a short read yields 0 rather than a panic all the same.
    image
        .get(off..off.saturating_add(4))
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0)
}

/// Finds and validates the Multiboot header of `image`.
pub fn parse_header(image: &[u8]) -> Result<MultibootHeader, MultibootError> {
    let offset = find_multiboot_header(image).ok_or(MultibootError::NoHeader)?;
    let flags = u32_at(image, offset + 4);
    let unknown = flags & HEADER_REQUIRED_MASK & !HEADER_SUPPORTED_REQUIRED;
    if unknown != 0 {
        return Err(MultibootError::UnsupportedRequiredFlag {
            bit: unknown.trailing_zeros(),
            unknown,
            flags,
        });
    }
    let optional_unknown = flags & !HEADER_REQUIRED_MASK & !HEADER_AOUT_KLUDGE;
    if optional_unknown != 0 {
        log::warn!(
            "Multiboot header sets optional flag bits {optional_unknown:#010x} this loader does not know; ignoring them as the specification allows"
        );
    }
    // The fields sit at fixed offsets: the graphics fields come after the
    // address fields even when bit 16 is clear.
    let len = if flags & HEADER_VIDEO_MODE != 0 {
        VIDEO_LEN
    } else if flags & HEADER_AOUT_KLUDGE != 0 {
        ADDRESS_LEN
    } else {
        BASE_LEN
    };
    let limit = image.len().min(MULTIBOOT_SEARCH_LEN);
    if offset + len > limit {
        return Err(MultibootError::HeaderTruncated {
            offset,
            flags,
            len,
            limit,
        });
    }
    let field = |i: usize| u32_at(image, offset + 4 * i);
    let addresses = (flags & HEADER_AOUT_KLUDGE != 0).then(|| AoutAddresses {
        header_addr: field(3),
        load_addr: field(4),
        load_end_addr: field(5),
        bss_end_addr: field(6),
        entry_addr: field(7),
    });
    let video = (flags & HEADER_VIDEO_MODE != 0).then(|| VideoMode {
        mode_type: field(8),
        width: field(9),
        height: field(10),
        depth: field(11),
    });
    Ok(MultibootHeader {
        offset,
        flags,
        addresses,
        video,
    })
}

/// Where an a.out-kludge kernel goes, validated against the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AoutImage {
    /// Physical address of the first loaded byte (`load_addr`).
    pub load_addr: u64,
    /// File offset of the first loaded byte.
    pub file_offset: usize,
    /// Bytes copied from the file.
    pub load_len: usize,
    /// One past the last byte the kernel occupies, BSS included.
    pub mem_end: u64,
    /// The entry point (`entry_addr`).
    pub entry: u64,
}

/// Applies the specification's rules for the address fields to a file of
/// `file_len` bytes whose header is at `header_offset`:
/// the load starts at file offset `header_offset - (header_addr -
/// load_addr)` with `load_addr <= header_addr`; `load_end_addr - load_addr`
/// bytes are loaded, or the rest of the file if `load_end_addr` is 0; the
/// BSS runs to `bss_end_addr`, or there is none if it is 0. The entry point
/// must lie in the loaded kernel.
pub fn plan_aout(
    a: &AoutAddresses,
    header_offset: usize,
    file_len: usize,
) -> Result<AoutImage, MultibootError> {
    if a.load_addr > a.header_addr {
        return Err(MultibootError::LoadAddrAboveHeaderAddr {
            load_addr: a.load_addr,
            header_addr: a.header_addr,
        });
    }
    let before_header = (a.header_addr - a.load_addr) as usize;
    let file_offset =
        header_offset
            .checked_sub(before_header)
            .ok_or(MultibootError::LoadStartsBeforeFile {
                header_offset,
                header_addr: a.header_addr,
                load_addr: a.load_addr,
            })?;
    let available = file_len.saturating_sub(file_offset);
    let load_len = if a.load_end_addr == 0 {
        available
    } else {
        if a.load_end_addr < a.load_addr {
            return Err(MultibootError::LoadEndBeforeLoadAddr {
                load_end_addr: a.load_end_addr,
                load_addr: a.load_addr,
            });
        }
        let len = (a.load_end_addr - a.load_addr) as usize;
        if len > available {
            return Err(MultibootError::LoadEndPastFile {
                load_addr: a.load_addr,
                load_end_addr: a.load_end_addr,
                len: len as u64,
                file_offset,
                file_len,
            });
        }
        len
    };
    if load_len == 0 {
        return Err(MultibootError::NothingToLoad {
            load_addr: a.load_addr,
            load_end_addr: a.load_end_addr,
            file_offset,
            file_len,
        });
    }
    let load_addr = u64::from(a.load_addr);
    let load_end = load_addr + load_len as u64;
    if load_end > FOUR_GIB {
        return Err(MultibootError::AboveFourGib {
            start: load_addr,
            end: load_end,
        });
    }
    let mem_end = if a.bss_end_addr == 0 {
        load_end
    } else if u64::from(a.bss_end_addr) < load_end {
        return Err(MultibootError::BssEndBeforeLoadEnd {
            bss_end_addr: a.bss_end_addr,
            load_end,
        });
    } else {
        u64::from(a.bss_end_addr)
    };
    let entry = u64::from(a.entry_addr);
    if entry < load_addr || entry >= mem_end {
        return Err(MultibootError::EntryOutsideImage {
            entry,
            start: load_addr,
            end: mem_end,
        });
    }
    Ok(AoutImage {
        load_addr,
        file_offset,
        load_len,
        mem_end,
        entry,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_image::header;
    use super::*;

    fn at(offset: usize, mut hdr: Vec<u8>, tail: usize) -> Vec<u8> {
        let mut img = vec![0u8; offset];
        img.append(&mut hdr);
        img.extend(std::iter::repeat_n(0xf4, tail));
        img
    }

    #[test]
    fn test_parse_plain_and_with_fields() {
        let h = parse_header(&at(0x40, header(0x3, &[]), 0)).unwrap();
        assert_eq!(
            h,
            MultibootHeader {
                offset: 0x40,
                flags: 0x3,
                addresses: None,
                video: None
            }
        );
        let h = parse_header(&at(
            8,
            header(
                HEADER_AOUT_KLUDGE | HEADER_VIDEO_MODE,
                &[1, 2, 3, 4, 5, 1, 80, 25, 0],
            ),
            0,
        ))
        .unwrap();
        assert_eq!(
            h.addresses,
            Some(AoutAddresses {
                header_addr: 1,
                load_addr: 2,
                load_end_addr: 3,
                bss_end_addr: 4,
                entry_addr: 5
            })
        );
        assert_eq!(
            h.video,
            Some(VideoMode {
                mode_type: 1,
                width: 80,
                height: 25,
                depth: 0
            })
        );
    }

    #[test]
    fn test_video_without_addresses_reads_fixed_offsets() {
        let h = parse_header(&header(
            HEADER_VIDEO_MODE,
            &[9, 9, 9, 9, 9, 0, 1024, 768, 32],
        ))
        .unwrap();
        assert_eq!(h.addresses, None);
        assert_eq!(
            h.video.map(|v| (v.width, v.height, v.depth)),
            Some((1024, 768, 32))
        );
    }

    #[test]
    fn test_unknown_required_bits_fail_optional_bits_do_not() {
        for bit in 3..16 {
            let e = parse_header(&header(0x3 | 1 << bit, &[])).unwrap_err();
            assert!(
                matches!(e, MultibootError::UnsupportedRequiredFlag { bit: b, .. } if b == bit),
                "{e}"
            );
            assert!(
                e.to_string().contains(&format!("required bit {bit},")),
                "{e}"
            );
        }
        let e = parse_header(&header(1 << 7 | 1 << 12, &[])).unwrap_err();
        assert!(
            matches!(
                e,
                MultibootError::UnsupportedRequiredFlag {
                    bit: 7,
                    unknown: 0x1080,
                    ..
                }
            ),
            "{e}"
        );
        // Bits 17-31 are optional: ignored.
        let h = parse_header(&header(0x3 | 1 << 17 | 1 << 31, &[])).unwrap();
        assert_eq!(h.flags, 0x8002_0003);
        assert_eq!(h.addresses, None);
    }

    #[test]
    fn test_header_fields_must_be_in_file_and_first_8k() {
        // Bit 16 set but the file ends after the checksum.
        let e = parse_header(&header(HEADER_AOUT_KLUDGE, &[])).unwrap_err();
        assert!(
            matches!(
                e,
                MultibootError::HeaderTruncated {
                    offset: 0,
                    len: 32,
                    limit: 12,
                    ..
                }
            ),
            "{e}"
        );
        // Bit 2 needs 48 bytes, 32 given.
        let e = parse_header(&header(HEADER_VIDEO_MODE | HEADER_AOUT_KLUDGE, &[0; 5])).unwrap_err();
        assert!(
            matches!(e, MultibootError::HeaderTruncated { len: 48, .. }),
            "{e}"
        );
        // Found at 8176: the magic fields fit, the address fields would end
        // past 8 KiB even though the file goes on.
        let img = at(8176, header(HEADER_AOUT_KLUDGE, &[0; 5]), 64);
        let e = parse_header(&img).unwrap_err();
        assert!(
            matches!(
                e,
                MultibootError::HeaderTruncated {
                    offset: 8176,
                    limit: 8192,
                    ..
                }
            ),
            "{e}"
        );
        assert!(parse_header(&at(8176, header(0, &[]), 64)).is_ok());
    }

    #[test]
    fn test_checksum_and_alignment_are_required() {
        let mut img = at(0x20, header(0x3, &[]), 16);
        img[0x28] ^= 1;
        assert!(matches!(parse_header(&img), Err(MultibootError::NoHeader)));
        let img = at(0x22, header(0x3, &[]), 16);
        assert!(matches!(parse_header(&img), Err(MultibootError::NoHeader)));
    }

    fn addrs(h: u32, l: u32, le: u32, b: u32, e: u32) -> AoutAddresses {
        AoutAddresses {
            header_addr: h,
            load_addr: l,
            load_end_addr: le,
            bss_end_addr: b,
            entry_addr: e,
        }
    }

    #[test]
    fn test_plan_aout_offsets_and_sizes() {
        // Header at file offset 0x60, 0x20 bytes after load_addr: loading
        // starts at file offset 0x40; load_end_addr 0: to the end of file.
        let p = plan_aout(&addrs(0x10_0020, 0x10_0000, 0, 0, 0x10_0040), 0x60, 0x1000).unwrap();
        assert_eq!(
            p,
            AoutImage {
                load_addr: 0x10_0000,
                file_offset: 0x40,
                load_len: 0x1000 - 0x40,
                mem_end: 0x10_0000 + 0x1000 - 0x40,
                entry: 0x10_0040
            }
        );
        // Explicit load_end_addr and BSS.
        let p = plan_aout(
            &addrs(0x10_0020, 0x10_0000, 0x10_0800, 0x10_2000, 0x10_1fff),
            0x60,
            0x1000,
        )
        .unwrap();
        assert_eq!((p.load_len, p.mem_end), (0x800, 0x10_2000));
        // bss_end_addr equal to the load end: no BSS, valid.
        let p = plan_aout(&addrs(0x20, 0, 0x100, 0x100, 0), 0x20, 0x100).unwrap();
        assert_eq!((p.file_offset, p.mem_end), (0, 0x100));
        // load_end_addr exactly at the file's end.
        assert!(plan_aout(&addrs(0x20, 0, 0x100, 0, 0), 0x20, 0x100).is_ok());
    }

    #[test]
    fn test_plan_aout_rejects_inconsistent_fields() {
        let e = plan_aout(&addrs(0x1000, 0x1001, 0, 0, 0x1001), 0, 0x100).unwrap_err();
        assert!(
            matches!(e, MultibootError::LoadAddrAboveHeaderAddr { .. }),
            "{e}"
        );
        let e = plan_aout(&addrs(0x1040, 0x1000, 0, 0, 0x1000), 0x20, 0x100).unwrap_err();
        assert!(
            matches!(
                e,
                MultibootError::LoadStartsBeforeFile {
                    header_offset: 0x20,
                    ..
                }
            ),
            "{e}"
        );
        let e = plan_aout(&addrs(0x1000, 0x1000, 0xfff, 0, 0x1000), 0, 0x100).unwrap_err();
        assert!(
            matches!(e, MultibootError::LoadEndBeforeLoadAddr { .. }),
            "{e}"
        );
        let e = plan_aout(&addrs(0x1000, 0x1000, 0x1101, 0, 0x1000), 0, 0x100).unwrap_err();
        assert!(
            matches!(
                e,
                MultibootError::LoadEndPastFile {
                    len: 0x101,
                    file_len: 0x100,
                    ..
                }
            ),
            "{e}"
        );
        let e = plan_aout(&addrs(0x1000, 0x1000, 0x1000, 0, 0x1000), 0, 0x100).unwrap_err();
        assert!(matches!(e, MultibootError::NothingToLoad { .. }), "{e}");
        let e = plan_aout(&addrs(0x1000, 0x1000, 0, 0x10ff, 0x1000), 0, 0x100).unwrap_err();
        assert!(
            matches!(
                e,
                MultibootError::BssEndBeforeLoadEnd {
                    load_end: 0x1100,
                    ..
                }
            ),
            "{e}"
        );
        for entry in [0xfff, 0x1100, 0x1200] {
            let e = plan_aout(&addrs(0x1000, 0x1000, 0, 0x1100, entry), 0, 0x100).unwrap_err();
            assert!(matches!(e, MultibootError::EntryOutsideImage { .. }), "{e}");
        }
        // The last byte of the BSS is a (strange but) valid entry point.
        assert!(plan_aout(&addrs(0x1000, 0x1000, 0, 0x1100, 0x10ff), 0, 0x100).is_ok());
        // A whole-file load running past 4 GiB.
        let e = plan_aout(
            &addrs(0xffff_ff00, 0xffff_ff00, 0, 0, 0xffff_ff00),
            0,
            0x200,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                MultibootError::AboveFourGib {
                    end: 0x1_0000_0100,
                    ..
                }
            ),
            "{e}"
        );
    }
}
