//! The bzImage real-mode header (boot.rst, "The Real-Mode Kernel Header"):
//! finding it, copying it into a zeroed `boot_params` as the 32/64-bit boot
//! protocols prescribe, and checking what this loader relies on.

use linux_loader::loader::bootparam::{boot_params, setup_header, LOADED_HIGH};
use vm_memory::ByteValued;

use super::LinuxError;

/// Offset of the setup header in the image and in `boot_params`.
pub const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// Offset of the `jump` field's displacement byte, whose value plus 0x202 is
/// the end of the header.
const HEADER_LEN_BYTE: usize = 0x201;
/// Where the "hole" in `boot_params` that holds the header ends
/// (`edd_mbr_sig_buffer` starts here).
const HEADER_HOLE_END: usize = 0x290;
/// `boot_flag`'s value.
pub const BOOT_FLAG: u16 = 0xaa55;
/// "HdrS".
pub const HDRS: u32 = 0x5372_6448;
/// Sector size the header counts in.
const SECTOR: usize = 512;

/// Protocol 2.06: `cmdline_size`. The oldest this loader accepts.
pub const PROTO_CMDLINE_SIZE: u16 = 0x0206;
/// Protocol 2.08: `payload_offset`/`payload_length`.
pub const PROTO_PAYLOAD: u16 = 0x0208;
/// Protocol 2.10: `pref_address`, `init_size`.
pub const PROTO_PREF_ADDRESS: u16 = 0x020a;
/// Protocol 2.12: `xloadflags`.
pub const PROTO_XLOADFLAGS: u16 = 0x020c;
/// The command line limit before protocol 2.06.
pub const OLD_CMDLINE_MAX: u32 = 255;

/// Formats a protocol version as boot.rst writes it (2.06).
pub fn version_str(v: u16) -> String {
    format!("{}.{:02} ({v:#06x})", v >> 8, v & 0xff)
}

/// A bzImage whose header passed the checks.
#[derive(Debug, Clone)]
pub struct BzImageHeader {
    /// A zeroed `boot_params` with the image's setup header copied in.
    pub params: boot_params,
    /// The header as read (fields past the header's end read as zero).
    pub hdr: setup_header,
    /// Size of the real-mode part: `(setup_sects + 1) * 512`, with 0 sectors
    /// meaning 4. The protected-mode kernel starts here in the file.
    pub setup_size: usize,
}

impl BzImageHeader {
    /// Parses and checks the header of `image`.
    pub fn parse(image: &[u8]) -> Result<Self, LinuxError> {
        let truncated = |needed: usize, what: &'static str| LinuxError::Truncated {
            what,
            needed,
            len: image.len(),
        };
        let len_byte = *image
            .get(HEADER_LEN_BYTE)
            .ok_or_else(|| truncated(HEADER_LEN_BYTE + 1, "the setup header's jump field"))?;
        // The displacement is signed; a backwards jump cannot end a header.
        if len_byte >= 0x80 {
            return Err(LinuxError::BadHeaderLength(len_byte));
        }
        let header_end = 0x202 + usize::from(len_byte);
        debug_assert!(header_end <= HEADER_HOLE_END);
        if image.len() < header_end {
            return Err(truncated(header_end, "the setup header"));
        }
        let mut params = boot_params::default();
        params.as_mut_slice()[SETUP_HEADER_OFFSET..header_end]
            .copy_from_slice(&image[SETUP_HEADER_OFFSET..header_end]);
        let hdr = params.hdr;
        let (flag, magic, version, loadflags) =
            (hdr.boot_flag, hdr.header, hdr.version, hdr.loadflags);
        if magic != HDRS {
            return Err(LinuxError::NotBzImage(format!(
                "setup header magic {magic:#010x} is not \"HdrS\" ({HDRS:#010x})"
            )));
        }
        if flag != BOOT_FLAG {
            return Err(LinuxError::NotBzImage(format!(
                "boot_flag {flag:#06x} is not {BOOT_FLAG:#06x}"
            )));
        }
        if version < PROTO_CMDLINE_SIZE {
            return Err(LinuxError::ProtocolTooOld {
                version,
                required: PROTO_CMDLINE_SIZE,
                why: "older kernels lack cmdline_size",
            });
        }
        if loadflags & LOADED_HIGH == 0 {
            return Err(LinuxError::NotBzImage(format!(
                "loadflags {loadflags:#04x} lacks LOADED_HIGH: a zImage, which loads below 1 MiB and is not supported"
            )));
        }
        let sects = match hdr.setup_sects {
            0 => 4,
            n => usize::from(n),
        };
        let setup_size = (sects + 1) * SECTOR;
        if image.len() < setup_size {
            return Err(truncated(setup_size, "the real-mode setup code"));
        }
        Ok(BzImageHeader {
            params,
            hdr,
            setup_size,
        })
    }

    /// The boot protocol version.
    pub fn version(&self) -> u16 {
        self.hdr.version
    }

    /// The longest command line the kernel takes, without the NUL.
    pub fn cmdline_max(&self) -> u32 {
        if self.version() >= PROTO_CMDLINE_SIZE {
            self.hdr.cmdline_size
        } else {
            OLD_CMDLINE_MAX
        }
    }

    /// `xloadflags`, or `None` before protocol 2.12.
    pub fn xloadflags(&self) -> Option<u16> {
        (self.version() >= PROTO_XLOADFLAGS).then_some(self.hdr.xloadflags)
    }

    /// `init_size`, or 0 before protocol 2.10.
    pub fn init_size(&self) -> u64 {
        if self.version() >= PROTO_PREF_ADDRESS {
            u64::from(self.hdr.init_size)
        } else {
            0
        }
    }

    /// The payload's range in the file: `payload_offset` is relative to the
    /// start of the protected-mode code.
    pub fn payload_range(&self, file_len: usize) -> Result<std::ops::Range<usize>, LinuxError> {
        let version = self.version();
        if version < PROTO_PAYLOAD {
            return Err(LinuxError::ProtocolTooOld {
                version,
                required: PROTO_PAYLOAD,
                why: "older kernels have no payload_offset/payload_length to decompress on the host (start the bzImage through its own entry instead)",
            });
        }
        let (offset, length) = (self.hdr.payload_offset, self.hdr.payload_length);
        let outside = || LinuxError::PayloadOutsideFile {
            offset,
            length,
            pm_start: self.setup_size,
            file_len,
        };
        if offset == 0 || length == 0 {
            return Err(LinuxError::NoPayload { offset, length });
        }
        let start = self
            .setup_size
            .checked_add(offset as usize)
            .ok_or_else(outside)?;
        let end = start.checked_add(length as usize).ok_or_else(outside)?;
        if end > file_len {
            return Err(outside());
        }
        Ok(start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_image::{bzimage, BzImageSpec};
    use super::*;

    #[test]
    fn test_setup_header_copied_up_to_its_end_only() {
        let mut img = bzimage(&BzImageSpec::default(), b"payload!");
        // A byte just past the header (0x26c) must not reach boot_params.
        img[0x26c] = 0xcc;
        // Nor the sentinel before it.
        img[0x1ef] = 0xcc;
        let h = BzImageHeader::parse(&img).unwrap();
        let bytes = h.params.as_slice();
        assert_eq!(&bytes[0x1f1..0x26c], &img[0x1f1..0x26c]);
        assert_eq!(bytes[0x26c], 0);
        assert_eq!(bytes[0x1ef], 0);
        assert!(bytes[..0x1f1].iter().all(|&b| b == 0));
        assert!(bytes[0x26c..].iter().all(|&b| b == 0));
        assert_eq!({ h.hdr.version }, 0x020f);
        assert_eq!(
            h.setup_size,
            (BzImageSpec::default().setup_sects as usize + 1) * 512
        );
        assert_eq!(h.cmdline_max(), BzImageSpec::default().cmdline_size);
        assert_eq!(h.xloadflags(), Some(BzImageSpec::default().xloadflags));
    }

    #[test]
    fn test_setup_header_short_jump_hides_later_fields() {
        let mut img = bzimage(&BzImageSpec::default(), b"payload!");
        // A header that ends right after cmdline_size (0x23c).
        img[0x201] = (0x23c - 0x202) as u8;
        let h = BzImageHeader::parse(&img).unwrap();
        assert_eq!({ h.hdr.payload_offset }, 0);
        assert_eq!({ h.hdr.cmdline_size }, BzImageSpec::default().cmdline_size);
        assert!(matches!(
            h.payload_range(img.len()),
            Err(LinuxError::NoPayload { .. })
        ));
    }

    #[test]
    fn test_setup_header_zero_setup_sects_means_four() {
        let spec = BzImageSpec {
            setup_sects: 0,
            ..Default::default()
        };
        let img = bzimage(&spec, b"payload!");
        let h = BzImageHeader::parse(&img).unwrap();
        assert_eq!(h.setup_size, 5 * 512);
        let r = h.payload_range(img.len()).unwrap();
        assert_eq!(&img[r], b"payload!");
    }

    #[test]
    fn test_setup_header_rejects_bad_images() {
        let good = bzimage(&BzImageSpec::default(), b"payload!");
        let e = BzImageHeader::parse(&good[..0x200]).unwrap_err();
        assert!(e.to_string().contains("512-byte"), "{e}");
        let e = BzImageHeader::parse(&good[..0x250]).unwrap_err();
        assert!(
            matches!(e, LinuxError::Truncated { needed: 0x26c, .. }),
            "{e}"
        );
        let e = BzImageHeader::parse(&good[..0x300]).unwrap_err();
        assert!(e.to_string().contains("real-mode setup"), "{e}");

        let mut old = good.clone();
        old[0x206..0x208].copy_from_slice(&0x0205u16.to_le_bytes());
        let e = BzImageHeader::parse(&old).unwrap_err();
        assert!(e.to_string().contains("2.05"), "{e}");
        assert!(e.to_string().contains("2.06"), "{e}");

        let mut flag = good.clone();
        flag[0x1fe] = 0;
        let e = BzImageHeader::parse(&flag).unwrap_err();
        assert!(e.to_string().contains("boot_flag"), "{e}");

        let mut low = good.clone();
        low[0x211] &= !LOADED_HIGH;
        let e = BzImageHeader::parse(&low).unwrap_err();
        assert!(e.to_string().contains("zImage"), "{e}");

        let mut back = good.clone();
        back[0x201] = 0x90;
        assert!(matches!(
            BzImageHeader::parse(&back),
            Err(LinuxError::BadHeaderLength(0x90))
        ));

        let mut magic = good;
        magic[0x202] = b'X';
        let e = BzImageHeader::parse(&magic).unwrap_err();
        assert!(e.to_string().contains("HdrS"), "{e}");
    }

    #[test]
    fn test_setup_header_payload_bounds_are_checked() {
        let img = bzimage(&BzImageSpec::default(), b"payload!");
        let h = BzImageHeader::parse(&img).unwrap();
        assert_eq!(&img[h.payload_range(img.len()).unwrap()], b"payload!");
        let mut hdr = h.clone();
        hdr.hdr.payload_length = u32::MAX;
        let e = hdr.payload_range(img.len()).unwrap_err();
        assert!(e.to_string().contains(&format!("{:#x}", u32::MAX)), "{e}");
        let mut hdr = h.clone();
        hdr.hdr.payload_offset = img.len() as u32;
        assert!(matches!(
            hdr.payload_range(img.len()),
            Err(LinuxError::PayloadOutsideFile { .. })
        ));
        let mut v207 = h;
        v207.hdr.version = 0x0207;
        let e = v207.payload_range(img.len()).unwrap_err();
        assert!(e.to_string().contains("2.07"), "{e}");
    }
}
