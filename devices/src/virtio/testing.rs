//! Unit-test support: guest memory, and a driver that walks a transport
//! through the initialisation sequence of virtio 1.2 section 3.1.1 with
//! `virtio-queue`'s mock split queues.

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK,
};
use virtio_bindings::virtio_mmio::*;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{GuestAddress, GuestMemoryMmap};

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
