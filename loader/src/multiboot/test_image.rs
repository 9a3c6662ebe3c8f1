//! Builds Multiboot headers for tests (this crate's and others'). A test
//! kernel is a header followed by code, either in a flat file loaded by
//! the a.out kludge fields or inside an ELF's first `PT_LOAD` segment (see
//! [`crate::elf::test_image::build`]).

use crate::detect::MULTIBOOT_HEADER_MAGIC;

pub use super::header::{
    HEADER_AOUT_KLUDGE as AOUT_KLUDGE, HEADER_MEMORY_INFO as MEMORY_INFO,
    HEADER_PAGE_ALIGN as PAGE_ALIGN, HEADER_VIDEO_MODE as VIDEO_MODE,
};

/// A Multiboot header: magic, `flags`, the checksum that makes the three
/// sum to zero, then `fields` as they follow at offset 12 (`header_addr`,
/// `load_addr`, `load_end_addr`, `bss_end_addr`, `entry_addr`, then
/// `mode_type`, `width`, `height`, `depth`).
pub fn header(flags: u32, fields: &[u32]) -> Vec<u8> {
    let checksum = 0u32.wrapping_sub(MULTIBOOT_HEADER_MAGIC.wrapping_add(flags));
    [MULTIBOOT_HEADER_MAGIC, flags, checksum]
        .iter()
        .chain(fields)
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_header_checksums_to_zero() {
        let h = header(0x1_0003, &[1, 2]);
        assert_eq!(h.len(), 20);
        let w: Vec<u32> = h
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(w[0].wrapping_add(w[1]).wrapping_add(w[2]), 0);
        assert_eq!(&w[3..], &[1, 2]);
    }
}
