//! Builders of synthetic bzImages for tests (this crate's and the
//! integration tests).

#[cfg(feature = "bzimage-payloads")]
pub use super::payload::test_support::compress;
pub use super::payload::Codec;

use linux_loader::loader::bootparam::{LOADED_HIGH, XLF_KERNEL_64};

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
            loadflags: LOADED_HIGH,
            xloadflags: XLF_KERNEL_64,
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
