//! `struct virtio_blk_config` (virtio 1.2 section 5.2.4), up to
//! `write_zeroes_may_unmap` and its padding: the fields after it belong to
//! features this device never offers (secure erase, zoned).

/// Offsets of the fields the device fills.
mod offset {
    pub const CAPACITY: usize = 0;
    pub const SEG_MAX: usize = 12;
    pub const BLK_SIZE: usize = 20;
    pub const MAX_DISCARD_SECTORS: usize = 36;
    pub const MAX_DISCARD_SEG: usize = 40;
    pub const DISCARD_SECTOR_ALIGNMENT: usize = 44;
    pub const MAX_WRITE_ZEROES_SECTORS: usize = 48;
    pub const MAX_WRITE_ZEROES_SEG: usize = 52;
    pub const WRITE_ZEROES_MAY_UNMAP: usize = 56;
}

/// Bytes of the configuration space (through `unused1`).
pub const CONFIG_LEN: usize = 60;

/// The values a block device reports. Fields of features the device does
/// not offer are 0, as are `size_max`, `geometry`, `topology`,
/// `writeback` and `num_queues`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfigSpace {
    /// Size in 512-byte sectors.
    pub capacity: u64,
    /// Most data segments in one request.
    pub seg_max: u32,
    /// The block size the driver should use (bytes).
    pub blk_size: u32,
    /// Most sectors in one discard segment.
    pub max_discard_sectors: u32,
    /// Most segments in one discard request.
    pub max_discard_seg: u32,
    /// How the driver should align discards (sectors).
    pub discard_sector_alignment: u32,
    /// Most sectors in one write-zeroes segment.
    pub max_write_zeroes_sectors: u32,
    /// Most segments in one write-zeroes request.
    pub max_write_zeroes_seg: u32,
    /// Whether write-zeroes with the unmap flag may deallocate.
    pub write_zeroes_may_unmap: bool,
}

impl ConfigSpace {
    /// The little-endian bytes the driver reads.
    pub fn to_bytes(&self) -> [u8; CONFIG_LEN] {
        let mut b = [0u8; CONFIG_LEN];
        let mut put = |at: usize, bytes: &[u8]| {
            if let Some(dst) = b.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        };
        put(offset::CAPACITY, &self.capacity.to_le_bytes());
        put(offset::SEG_MAX, &self.seg_max.to_le_bytes());
        put(offset::BLK_SIZE, &self.blk_size.to_le_bytes());
        put(
            offset::MAX_DISCARD_SECTORS,
            &self.max_discard_sectors.to_le_bytes(),
        );
        put(offset::MAX_DISCARD_SEG, &self.max_discard_seg.to_le_bytes());
        put(
            offset::DISCARD_SECTOR_ALIGNMENT,
            &self.discard_sector_alignment.to_le_bytes(),
        );
        put(
            offset::MAX_WRITE_ZEROES_SECTORS,
            &self.max_write_zeroes_sectors.to_le_bytes(),
        );
        put(
            offset::MAX_WRITE_ZEROES_SEG,
            &self.max_write_zeroes_seg.to_le_bytes(),
        );
        put(
            offset::WRITE_ZEROES_MAY_UNMAP,
            &[u8::from(self.write_zeroes_may_unmap)],
        );
        b
    }
}
