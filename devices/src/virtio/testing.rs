//! Unit-test support: guest memory, and a driver that walks a transport
//! through the initialisation sequence of virtio 1.2 section 3.1.1 with
//! `virtio-queue`'s mock split queues.

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK,
};
use virtio_bindings::virtio_mmio::*;
use virtio_bindings::virtio_ring::VRING_DESC_F_NEXT;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::mmio::MmioTransport;

/// 1 MiB of guest RAM at 0.
pub fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
}

/// Reads a 32-bit register.
pub fn read32(t: &mut MmioTransport, reg: u32) -> u32 {
    let mut b = [0u8; 4];
    t.read(u64::from(reg), &mut b);
    u32::from_le_bytes(b)
}

/// Writes a 32-bit register.
pub fn write32(t: &mut MmioTransport, reg: u32, v: u32) {
    t.write(u64::from(reg), &v.to_le_bytes());
}

/// The device's offered features.
pub fn device_features(t: &mut MmioTransport) -> u64 {
    write32(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    let lo = read32(t, VIRTIO_MMIO_DEVICE_FEATURES);
    write32(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    let hi = read32(t, VIRTIO_MMIO_DEVICE_FEATURES);
    u64::from(lo) | (u64::from(hi) << 32)
}

/// ACKNOWLEDGE, DRIVER, the driver's features, FEATURES_OK; returns
/// whether the device kept FEATURES_OK.
pub fn negotiate(t: &mut MmioTransport, features: u64) -> bool {
    write32(t, VIRTIO_MMIO_STATUS, 0);
    write32(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    let s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    write32(t, VIRTIO_MMIO_STATUS, s);
    write32(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    write32(t, VIRTIO_MMIO_DRIVER_FEATURES, features as u32);
    write32(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    write32(t, VIRTIO_MMIO_DRIVER_FEATURES, (features >> 32) as u32);
    write32(t, VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_FEATURES_OK);
    read32(t, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK != 0
}

/// Points queue `index` at `mock`'s rings with `size` entries and marks it
/// ready.
pub fn setup_queue(
    t: &mut MmioTransport,
    index: u32,
    mock: &MockSplitQueue<GuestMemoryMmap>,
    size: u32,
) {
    write32(t, VIRTIO_MMIO_QUEUE_SEL, index);
    write32(t, VIRTIO_MMIO_QUEUE_NUM, size);
    let regs = [
        (VIRTIO_MMIO_QUEUE_DESC_LOW, mock.desc_table_addr()),
        (VIRTIO_MMIO_QUEUE_AVAIL_LOW, mock.avail_addr()),
        (VIRTIO_MMIO_QUEUE_USED_LOW, mock.used_addr()),
    ];
    for (low, addr) in regs {
        write32(t, low, addr.0 as u32);
        write32(t, low + 4, (addr.0 >> 32) as u32);
    }
    write32(t, VIRTIO_MMIO_QUEUE_READY, 1);
}

/// Sets DRIVER_OK; returns the status the device then reports.
pub fn driver_ok(t: &mut MmioTransport) -> u32 {
    let s = read32(t, VIRTIO_MMIO_STATUS);
    write32(t, VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_DRIVER_OK);
    read32(t, VIRTIO_MMIO_STATUS)
}

/// Negotiates `features` and readies one mock queue per entry of `mocks`
/// (queue `i` = `mocks[i]`), then DRIVER_OK; panics unless the device is
/// active.
pub fn activate(
    t: &mut MmioTransport,
    features: u64,
    mocks: &[&MockSplitQueue<GuestMemoryMmap>],
    size: u32,
) {
    assert!(negotiate(t, features), "FEATURES_OK refused");
    for (i, m) in mocks.iter().enumerate() {
        setup_queue(t, i as u32, m, size);
    }
    let status = driver_ok(t);
    assert!(t.is_active(), "not active, status {status:#x}");
}

/// A split virtqueue laid out by the test itself, for queues of any size:
/// the descriptor table at `base`, the available ring right after it, the
/// used ring at the next 4 KiB boundary after that. (virtio-queue 0.18's
/// `MockSplitQueue::create` places its used ring `len` bytes after the
/// available ring, which overlaps the ring's entries for `len / 2` and up.)
pub struct TestRing<'a> {
    mem: &'a GuestMemoryMmap,
    /// Entries.
    pub size: u16,
    /// The descriptor table.
    pub desc: GuestAddress,
    /// The available ring.
    pub avail: GuestAddress,
    /// The used ring.
    pub used: GuestAddress,
    next_desc: u16,
    avail_idx: u16,
}

impl<'a> TestRing<'a> {
    /// Lays out (and zeroes) a queue of `size` at `base` in `mem`.
    pub fn new(mem: &'a GuestMemoryMmap, base: GuestAddress, size: u16) -> Self {
        let desc = base;
        let avail = GuestAddress(base.0 + 16 * u64::from(size));
        let used_at = avail.0 + 6 + 2 * u64::from(size);
        let used = GuestAddress(used_at.div_ceil(4096) * 4096);
        let end = used.0 + 6 + 8 * u64::from(size);
        mem.write_slice(&vec![0u8; (end - base.0) as usize], base)
            .unwrap();
        TestRing {
            mem,
            size,
            desc,
            avail,
            used,
            next_desc: 0,
            avail_idx: 0,
        }
    }

    /// Writes descriptor `i`.
    pub fn write_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(self.desc.0 + 16 * u64::from(i));
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.mem.write_slice(&d, at).unwrap();
    }

    /// Puts `head` in the next available entry and publishes it.
    pub fn publish(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        self.mem
            .write_obj(head, GuestAddress(self.avail.0 + 4 + 2 * slot))
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.set_avail_idx(self.avail_idx);
    }

    /// Writes the available ring's index (hostile tests set any value).
    pub fn set_avail_idx(&mut self, idx: u16) {
        self.avail_idx = idx;
        self.mem
            .write_obj(idx, GuestAddress(self.avail.0 + 2))
            .unwrap();
    }

    /// Adds and publishes a chain of `(addr, len, flags)` buffers (NEXT is
    /// added), taking the next free descriptors; returns its head.
    pub fn add_chain(&mut self, bufs: &[(u64, u32, u16)]) -> u16 {
        let head = self.next_desc;
        for (k, &(addr, len, flags)) in bufs.iter().enumerate() {
            let i = self.next_desc;
            let next = (i + 1) % self.size;
            let more = k + 1 < bufs.len();
            let flags = flags | if more { VRING_DESC_F_NEXT as u16 } else { 0 };
            self.write_desc(i, addr, len, flags, if more { next } else { 0 });
            self.next_desc = next;
        }
        self.publish(head);
        head
    }

    /// The used ring's index.
    pub fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(self.used.0 + 2)).unwrap()
    }

    /// Writes the available ring's `used_event` (VIRTIO_RING_F_EVENT_IDX:
    /// interrupt once the used index passes it).
    pub fn set_used_event(&self, idx: u16) {
        let at = self.avail.0 + 4 + 2 * u64::from(self.size);
        self.mem.write_obj(idx, GuestAddress(at)).unwrap();
    }

    /// The used ring's `avail_event` (VIRTIO_RING_F_EVENT_IDX: the device
    /// wants a notification once the available index passes it).
    pub fn avail_event(&self) -> u16 {
        let at = self.used.0 + 4 + 8 * u64::from(self.size);
        self.mem.read_obj(GuestAddress(at)).unwrap()
    }

    /// Used entry `i`: (id, len).
    pub fn used_entry(&self, i: u16) -> (u32, u32) {
        let at = self.used.0 + 4 + 8 * u64::from(i % self.size);
        let id = self.mem.read_obj(GuestAddress(at)).unwrap();
        let len = self.mem.read_obj(GuestAddress(at + 4)).unwrap();
        (id, len)
    }
}

/// Points queue `index` at `ring`'s addresses with its size and marks it
/// ready.
pub fn setup_queue_at(t: &mut MmioTransport, index: u32, ring: &TestRing<'_>) {
    write32(t, VIRTIO_MMIO_QUEUE_SEL, index);
    write32(t, VIRTIO_MMIO_QUEUE_NUM, u32::from(ring.size));
    let regs = [
        (VIRTIO_MMIO_QUEUE_DESC_LOW, ring.desc),
        (VIRTIO_MMIO_QUEUE_AVAIL_LOW, ring.avail),
        (VIRTIO_MMIO_QUEUE_USED_LOW, ring.used),
    ];
    for (low, addr) in regs {
        write32(t, low, addr.0 as u32);
        write32(t, low + 4, (addr.0 >> 32) as u32);
    }
    write32(t, VIRTIO_MMIO_QUEUE_READY, 1);
}
