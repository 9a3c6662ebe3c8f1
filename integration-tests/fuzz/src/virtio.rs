//! A virtio driver the fuzzer steers: a device behind the real
//! `MmioTransport`, split queues written byte by byte into guest RAM (not
//! virtio-queue's mock, so descriptors may be anything a guest can write:
//! loops, chains longer than the queue, buffers past the end of RAM, bad
//! flags), and the generic checks every device must pass:
//!
//! - the used ring's index moves by at most the number of chains the driver
//!   made available since the last look (a device cannot complete what was
//!   never offered), and only forward;
//! - every new used element names a descriptor inside the queue, with a
//!   length no larger than guest RAM;
//! - the status register only ever gains NEEDS_RESET on its own;
//! - nothing panics, and each operation returns (libFuzzer's timeout
//!   catches a hang).
//!
//! (The used-ring checks stop once a descriptor is marked INDIRECT: an
//! indirect table can aim a device's writes at the rings themselves.)
//!
//! Device targets add their own checks on the used elements
//! ([`Harness::completed`]) and on the guest buffers.

use arbitrary::Arbitrary;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_bindings::virtio_mmio::*;
use virtio_bindings::virtio_ring::VRING_DESC_F_INDIRECT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_devices::virtio::{MmioTransport, VirtioDevice};
use vmm_devices::IrqLine;

/// Guest RAM: 1 MiB at 0.
pub const RAM: u64 = 1 << 20;
/// Queue `q`'s rings: descriptors at `QUEUES + q * QUEUE_STRIDE`, the
/// available ring 4 KiB later, the used ring 8 KiB later (room for 256
/// entries each).
pub const QUEUES: u64 = 0x1_0000;
/// Bytes between two queues' ring areas.
pub const QUEUE_STRIDE: u64 = 0x4000;
/// Where buffers the fuzzer points descriptors at live.
pub const DATA: u64 = 0x4_0000;
/// The most operations one input runs.
pub const MAX_OPS: usize = 256;

/// Where a descriptor points.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Addr {
    /// Into the data area (offset wrapped into it).
    Data(u32),
    /// Anywhere: a ring, the end of RAM, beyond it.
    Raw(u64),
}

impl Addr {
    /// The guest address of a `len`-byte buffer. A raw buffer that would
    /// overlap the rings moves into the data area: a device writing into
    /// a ring would make the harness's own view of the rings meaningless
    /// (legal for a guest, but then nothing here could be checked).
    fn resolve(self, len: u32) -> u64 {
        let data = |off: u64| DATA + off % (RAM - DATA);
        match self {
            Addr::Data(off) => data(u64::from(off)),
            Addr::Raw(a) => {
                let end = a.saturating_add(u64::from(len));
                if a < DATA && end > QUEUES {
                    data(a)
                } else {
                    a
                }
            }
        }
    }
}

/// One driver step.
#[derive(Arbitrary, Debug)]
pub enum Op {
    /// Writes descriptor `slot` (wrapped into the queue) of queue `queue`.
    Desc {
        /// Queue index (wrapped).
        queue: u8,
        /// Descriptor index (wrapped).
        slot: u16,
        /// Buffer address.
        addr: Addr,
        /// Buffer length.
        len: u32,
        /// NEXT (1), WRITE (2), INDIRECT (4) and anything else.
        flags: u16,
        /// The next descriptor (not wrapped: may point outside the table).
        next: u16,
    },
    /// Publishes `head` in queue `queue`'s available ring.
    Avail {
        /// Queue index (wrapped).
        queue: u8,
        /// Head descriptor index (not wrapped).
        head: u16,
    },
    /// QueueNotify for `queue` (not wrapped: may name no queue).
    Notify {
        /// The queue index.
        queue: u8,
    },
    /// Writes bytes into the data area (request headers, payloads).
    Poke {
        /// Offset into the data area (wrapped).
        at: u32,
        /// At most 64 bytes are written.
        bytes: Vec<u8>,
    },
    /// A register access of the driver's choosing.
    Register {
        /// Offset in the window (0-0x1ff).
        offset: u16,
        /// Value written, or ignored for a read.
        value: u32,
        /// Write rather than read.
        write: bool,
    },
    /// Host descriptors became readable.
    Host,
    /// Status 0, then the initialisation sequence again.
    Reset,
}

/// A device under test, initialised as a driver does (virtio 1.2 section
/// 3.1.1).
pub struct Harness {
    /// The transport, as the bus sees it.
    pub transport: MmioTransport,
    /// Guest RAM.
    pub mem: GuestMemoryMmap,
    sizes: Vec<u16>,
    avail_idx: Vec<u16>,
    used_seen: Vec<u16>,
    /// Chains made available and not yet seen used, per queue.
    offered: Vec<u32>,
    /// Set once a descriptor is marked INDIRECT (see [`Op::Desc`]).
    unchecked: bool,
}

impl Harness {
    /// `device` on a fresh transport, with `features` (masked to what the
    /// device offers) negotiated and every queue set up at its largest
    /// size, then DRIVER_OK.
    pub fn new(device: Box<dyn VirtioDevice>, features: u64) -> Harness {
        let sizes = device.queue_max_sizes().to_vec();
        assert!(sizes.iter().all(|&s| s <= 256), "harness rings hold 256");
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)])
            .expect("guest RAM");
        let transport = MmioTransport::new(device, mem.clone(), IrqLine::None).expect("transport");
        let n = sizes.len();
        let mut h = Harness {
            transport,
            mem,
            sizes,
            avail_idx: vec![0; n],
            used_seen: vec![0; n],
            offered: vec![0; n],
            unchecked: false,
        };
        h.init(features);
        h
    }

    fn read32(&mut self, reg: u32) -> u32 {
        let mut b = [0u8; 4];
        self.transport.read(u64::from(reg), &mut b);
        u32::from_le_bytes(b)
    }

    fn write32(&mut self, reg: u32, v: u32) {
        self.transport.write(u64::from(reg), &v.to_le_bytes());
    }

    fn init(&mut self, features: u64) {
        self.write32(VIRTIO_MMIO_STATUS, 0);
        let mut s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
        self.write32(VIRTIO_MMIO_STATUS, s);
        self.write32(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        let lo = self.read32(VIRTIO_MMIO_DEVICE_FEATURES);
        self.write32(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        let hi = self.read32(VIRTIO_MMIO_DEVICE_FEATURES);
        let accepted = features & (u64::from(lo) | (u64::from(hi) << 32));
        self.write32(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        self.write32(VIRTIO_MMIO_DRIVER_FEATURES, accepted as u32);
        self.write32(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        self.write32(VIRTIO_MMIO_DRIVER_FEATURES, (accepted >> 32) as u32);
        s |= VIRTIO_CONFIG_S_FEATURES_OK;
        self.write32(VIRTIO_MMIO_STATUS, s);
        for q in 0..self.sizes.len() {
            let base = QUEUES + q as u64 * QUEUE_STRIDE;
            // Fresh rings: zeroed indexes, no stale descriptors.
            let zero = vec![0u8; QUEUE_STRIDE as usize];
            self.mem
                .write_slice(&zero, GuestAddress(base))
                .expect("rings in RAM");
            self.write32(VIRTIO_MMIO_QUEUE_SEL, q as u32);
            self.write32(VIRTIO_MMIO_QUEUE_NUM, u32::from(self.sizes[q]));
            for (low, addr) in [
                (VIRTIO_MMIO_QUEUE_DESC_LOW, base),
                (VIRTIO_MMIO_QUEUE_AVAIL_LOW, base + 0x1000),
                (VIRTIO_MMIO_QUEUE_USED_LOW, base + 0x2000),
            ] {
                self.write32(low, addr as u32);
                self.write32(low + 4, (addr >> 32) as u32);
            }
            self.write32(VIRTIO_MMIO_QUEUE_READY, 1);
            self.avail_idx[q] = 0;
            self.used_seen[q] = 0;
            self.offered[q] = 0;
        }
        self.write32(VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_DRIVER_OK);
    }

    /// Whether the used-ring checks stopped (an INDIRECT descriptor).
    pub fn unchecked(&self) -> bool {
        self.unchecked
    }

    /// Descriptor `index` of queue `queue` as the driver last wrote it:
    /// (address, length, flags).
    pub fn descriptor(&self, queue: usize, index: u16) -> (u64, u32, u16) {
        let at = QUEUES + queue as u64 * QUEUE_STRIDE + u64::from(index) * 16;
        let addr: u64 = self.mem.read_obj(GuestAddress(at)).expect("ring");
        let len: u32 = self.mem.read_obj(GuestAddress(at + 8)).expect("ring");
        let flags: u16 = self.mem.read_obj(GuestAddress(at + 12)).expect("ring");
        (addr, len, flags)
    }

    /// Number of queues.
    pub fn queues(&self) -> usize {
        self.sizes.len()
    }

    fn queue(&self, q: u8) -> usize {
        usize::from(q) % self.sizes.len().max(1)
    }

    /// Runs `op`; returns the used elements (queue, id, len) it produced,
    /// after the generic checks.
    pub fn run(&mut self, op: &Op, features: u64) -> Vec<(usize, u16, u32)> {
        let status_before = self.transport.status();
        match *op {
            Op::Desc {
                queue,
                slot,
                addr,
                len,
                flags,
                next,
            } => {
                let q = self.queue(queue);
                let slot = u64::from(slot % self.sizes[q]);
                let at = QUEUES + q as u64 * QUEUE_STRIDE + slot * 16;
                let mut d = [0u8; 16];
                d[..8].copy_from_slice(&addr.resolve(len).to_le_bytes());
                // An indirect table comes from the data area, whose
                // addresses nothing here vets: after one, the used ring
                // may be a buffer and is no longer checked.
                self.unchecked |= u32::from(flags) & VRING_DESC_F_INDIRECT != 0;
                d[8..12].copy_from_slice(&len.to_le_bytes());
                d[12..14].copy_from_slice(&flags.to_le_bytes());
                d[14..].copy_from_slice(&next.to_le_bytes());
                self.mem.write_slice(&d, GuestAddress(at)).expect("ring");
            }
            Op::Avail { queue, head } => {
                let q = self.queue(queue);
                let avail = QUEUES + q as u64 * QUEUE_STRIDE + 0x1000;
                let i = self.avail_idx[q];
                let entry = avail + 4 + u64::from(i % self.sizes[q]) * 2;
                self.mem.write_obj(head, GuestAddress(entry)).expect("ring");
                self.avail_idx[q] = i.wrapping_add(1);
                self.mem
                    .write_obj(self.avail_idx[q], GuestAddress(avail + 2))
                    .expect("ring");
                self.offered[q] += 1;
            }
            Op::Notify { queue } => self.transport.process_queue(usize::from(queue)),
            Op::Poke { at, ref bytes } => {
                let start = DATA + u64::from(at) % (RAM - DATA);
                let n = bytes.len().min(64).min((RAM - start) as usize);
                self.mem
                    .write_slice(&bytes[..n], GuestAddress(start))
                    .expect("data area");
            }
            Op::Register {
                offset,
                value,
                write,
            } => {
                let offset = u64::from(offset % 0x200);
                if write {
                    self.transport.write(offset, &value.to_le_bytes());
                } else {
                    let mut b = [0u8; 4];
                    self.transport.read(offset, &mut b);
                }
            }
            Op::Host => {
                for fd in self.transport.host_fds() {
                    self.transport.process_host_fd(fd);
                }
            }
            Op::Reset => self.init(features),
        }
        if !matches!(op, Op::Register { write: true, .. } | Op::Reset) {
            let gained = self.transport.status() & !status_before;
            assert_eq!(
                gained & !VIRTIO_CONFIG_S_NEEDS_RESET,
                0,
                "status gained {gained:#x} without a driver write"
            );
        }
        self.completed()
    }

    /// New used elements since the last call, checked against what was
    /// offered.
    pub fn completed(&mut self) -> Vec<(usize, u16, u32)> {
        let mut done = Vec::new();
        for q in 0..self.sizes.len() {
            let used = QUEUES + q as u64 * QUEUE_STRIDE + 0x2000;
            let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).expect("ring");
            let new = idx.wrapping_sub(self.used_seen[q]);
            if self.unchecked {
                self.used_seen[q] = idx;
                continue;
            }
            assert!(
                u32::from(new) <= self.offered[q],
                "queue {q}: {new} chains used, {} offered",
                self.offered[q]
            );
            for k in 0..new {
                let i = self.used_seen[q].wrapping_add(k);
                let elem = used + 4 + u64::from(i % self.sizes[q]) * 8;
                let id: u32 = self.mem.read_obj(GuestAddress(elem)).expect("ring");
                let len: u32 = self.mem.read_obj(GuestAddress(elem + 4)).expect("ring");
                assert!(
                    id < u32::from(self.sizes[q]),
                    "queue {q}: used id {id} outside the queue"
                );
                assert!(u64::from(len) <= RAM, "queue {q}: used len {len}");
                done.push((q, id as u16, len));
            }
            self.used_seen[q] = idx;
            self.offered[q] -= u32::from(new);
        }
        done
    }
}
