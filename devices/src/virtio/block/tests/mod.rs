//! virtio-blk unit tests: opening images, parsing chains, serving requests
//! through the MMIO transport on test-laid-out rings, and what a hostile
//! driver gets.

mod hostile;
mod open;
mod parse;
mod requests;
mod signal;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::virtio::testing::*;
use crate::virtio::{MmioTransport, VIRTIO_F_VERSION_1};
use crate::IrqLine;

/// Device-writable.
pub const W: u16 = VRING_DESC_F_WRITE as u16;
/// Where the tests put the header, the status byte and the data.
pub const HDR: u64 = 0x2_0000;
pub const STATUS: u64 = 0x2_1000;
pub const DATA: u64 = 0x4_0000;
/// The rings.
pub const RING: u64 = 0x1_0000;

/// An image file in the temporary directory, deleted on drop.
pub struct TempImage(PathBuf);

impl TempImage {
    pub fn new(bytes: &[u8]) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "vmm-blk-unit-{}-{}.img",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, bytes).unwrap();
        TempImage(path)
    }

    /// `sectors` sectors, sector `i` filled with byte `i + 1`.
    pub fn patterned(sectors: u64) -> Self {
        let bytes: Vec<u8> = (0..sectors)
            .flat_map(|i| std::iter::repeat_n((i + 1) as u8, 512))
            .collect();
        Self::new(&bytes)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn contents(&self) -> Vec<u8> {
        std::fs::read(&self.0).unwrap()
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An active block transport on queue size `size`.
pub struct Rig<'a> {
    pub t: MmioTransport,
    pub ring: TestRing<'a>,
    pub mem: &'a GuestMemoryMmap,
    pub counters: Arc<BlockCounters>,
    pub config: ConfigSpace,
}

impl<'a> Rig<'a> {
    /// Opens `cfg`, negotiates what the device offers (or `features` if
    /// given) and readies the queue.
    pub fn new(
        mem: &'a GuestMemoryMmap,
        cfg: &BlockConfig,
        features: Option<u64>,
        size: u16,
    ) -> Self {
        let dev = cfg.open().unwrap();
        let (counters, config) = (dev.counters(), dev.config());
        let line = IrqLine::eventfd().unwrap();
        let mut t = MmioTransport::new(Box::new(dev), mem.clone(), line).unwrap();
        let features = features.unwrap_or_else(|| device_features(&mut t));
        assert!(negotiate(&mut t, features), "FEATURES_OK refused");
        let ring = TestRing::new(mem, GuestAddress(RING), size);
        setup_queue_at(&mut t, 0, &ring);
        driver_ok(&mut t);
        assert!(t.is_active(), "status {:#x}", t.status());
        Rig {
            t,
            ring,
            mem,
            counters,
            config,
        }
    }

    /// Writes a header for `request_type` at `sector`.
    pub fn header(&self, request_type: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&request_type.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&h, GuestAddress(HDR)).unwrap();
        self.mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
    }

    /// Submits header + `data` (none if `None`) + status, serves the
    /// queue; returns (status, used length).
    pub fn request(
        &mut self,
        request_type: u32,
        sector: u64,
        data: Option<(u32, u16)>,
    ) -> (u8, u32) {
        self.header(request_type, sector);
        let mut bufs = vec![(HDR, 16, 0)];
        if let Some((len, flags)) = data {
            bufs.push((DATA, len, flags));
        }
        bufs.push((STATUS, 1, W));
        self.submit(&bufs)
    }

    /// Submits one chain and serves the queue; returns (status, used len).
    pub fn submit(&mut self, bufs: &[(u64, u32, u16)]) -> (u8, u32) {
        let before = self.ring.used_idx();
        self.ring.add_chain(bufs);
        self.t.process_queue(0);
        assert_eq!(
            self.ring.used_idx(),
            before.wrapping_add(1),
            "the request was not returned"
        );
        (self.status(), self.ring.used_entry(before).1)
    }

    pub fn status(&self) -> u8 {
        self.mem.read_obj(GuestAddress(STATUS)).unwrap()
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    pub fn fill(&self, addr: u64, byte: u8, len: usize) {
        self.mem
            .write_slice(&vec![byte; len], GuestAddress(addr))
            .unwrap();
    }

    /// Interrupts raised since the last call (the line's eventfd count).
    pub fn interrupts(&self) -> u64 {
        let line = self.t.interrupt().line().as_eventfd().unwrap();
        match line.read() {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => panic!("reading the interrupt eventfd: {e}"),
        }
    }

    /// The re-arm eventfd fired: what the device thread then does.
    pub fn host_event(&mut self) {
        let fds = self.t.host_fds();
        assert_eq!(fds.len(), 1);
        self.t.process_host_fd(fds[0]);
    }
}

/// Feature masks.
pub fn f(bit: u32) -> u64 {
    1 << bit
}

/// The status values as bytes.
pub const OK: u8 = VIRTIO_BLK_S_OK as u8;
pub const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
pub const UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

/// `VERSION_1` plus `bits`.
pub fn v1(bits: u64) -> u64 {
    VIRTIO_F_VERSION_1 | bits
}
