//! virtio-blk, the block device (virtio 1.2 section 5.2), on a raw image:
//! a regular file or a host block device.
//!
//! One request queue. Requests served: IN, OUT, FLUSH (`fdatasync`), GET_ID
//! (the serial), and DISCARD / WRITE_ZEROES (`fallocate` PUNCH_HOLE /
//! ZERO_RANGE) when [`probe`] finds the image supports them. Every other
//! type gets VIRTIO_BLK_S_UNSUPP.
//!
//! Features offered: `SEG_MAX`, `BLK_SIZE` (512), `FLUSH`, `RO` for a
//! read-only disk, and `DISCARD` / `WRITE_ZEROES` for a writable one whose
//! probe succeeded, with `max_discard_sectors`, `max_discard_seg`,
//! `discard_sector_alignment` (the filesystem block), `max_write_zeroes_*`
//! and `write_zeroes_may_unmap` filled in and enforced. Without
//! `VIRTIO_BLK_F_FLUSH` accepted the device is write-through: each write is
//! `fdatasync`ed before it completes (section 5.2.6.3).
//!
//! The image ([`disk`]): opened read-only for a read-only disk (never
//! writable), locked with `flock` (exclusive when writable, shared when
//! read-only) so that two VMs cannot have it open writable at once; its
//! capacity is its size in whole 512-byte sectors, rounded down (a block
//! device's size from `BLKGETSIZE64`: its `st_size` is 0; a read-only block
//! device is refused unless the disk is read-only). Writes
//! acknowledged to the guest are made durable by [`VirtioBlock::shutdown`]
//! (`fdatasync`), which the VMM's device thread calls when the VM ends.
//!
//! What the guest controls, and how it is checked ([`request`], `exec.rs`):
//! - The chain must end within the queue size (a loop or a `next` outside
//!   the table is DEVICE_NEEDS_RESET). The status is the last byte of the
//!   last device-writable descriptor; a chain without one, or with it
//!   outside guest RAM, is returned with used length 0 and counted.
//! - Everything else wrong gets VIRTIO_BLK_S_IOERR before the image or any
//!   guest buffer is touched: a header shorter than 16 bytes, a readable
//!   buffer after a writable one, a buffer outside RAM, data that is not
//!   whole sectors or over [`REQUEST_DATA_MAX`], a range beyond the
//!   capacity, a write to a read-only disk, data in the wrong direction.
//! - The used length is the bytes written into guest buffers, status byte
//!   included (a read's data + 1, GET_ID's + 1, otherwise 1).
//!
//! Fairness: the device thread serves every virtio device. Each turn
//! serves requests until [`TURN_BYTE_BUDGET`] bytes have moved (always at
//! least one request; a flush, discard or write-zeroes ends the turn); if
//! more are available, the device writes its own eventfd (a host fd the
//! device thread watches) and serves them on the next turn, after the
//! other devices' events.
//!
//! Interrupts: every turn that returned buffers signals the used ring,
//! also one that re-arms. The guest can then reap and repost the first
//! part of a batch while the device serves the rest (its InterruptStatus
//! read and ACK do not wait for the turn: [`super::window::MmioWindow`]).
//! Deferring the signal to the turn that drains the queue was measured
//! (`integration-tests/scripts/bench-block.sh`): one interrupt fewer per
//! batch, but the guest's work and the device's no longer overlap, and it
//! was slower. VIRTIO_RING_F_EVENT_IDX is offered: with it, the driver's
//! `used_event` decides whether a signal interrupts (a driver busy reaping
//! asks for none), and a draining turn publishes `avail_event` (and serves
//! what raced in before it was visible).

mod config_space;
mod counters;
pub mod disk;
mod exec;
mod io;
pub mod probe;
pub mod request;

use std::num::Wrapping;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::QueueT;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use super::device::{DeviceError, QueueContext, VirtioDevice};
use super::identity::BackendIdentity;
use super::VIRTIO_RING_F_EVENT_IDX;
pub use config_space::{ConfigSpace, CONFIG_LEN};
pub use counters::BlockCounters;
use counters::Counter;
pub use disk::{BlockConfig, BlockError, Disk, SECTOR_SIZE, SERIAL_MAX};
use request::Unanswerable;

/// The request queue's maximum size.
pub const QUEUE_SIZE: u16 = 256;
/// The most data bytes one IN or OUT request may carry (16 MiB; Linux
/// sends at most `max_sectors_kb`, 1280 KiB unless raised).
pub const REQUEST_DATA_MAX: u64 = 16 << 20;
/// Bytes served per event-loop turn before yielding (see the module docs).
pub const TURN_BYTE_BUDGET: u64 = 256 << 10;
/// `max_discard_seg` and `max_write_zeroes_seg`.
pub const RANGE_SEGMENTS_MAX: usize = 8;
/// `max_discard_sectors` and `max_write_zeroes_sectors` (1 GiB), or the
/// host device's limit if lower.
pub const RANGE_SECTORS_MAX: u32 = 1 << 21;
/// The request queue.
const REQUESTQ: usize = 0;

/// A feature bit's mask.
const fn bit(b: u32) -> u64 {
    1 << b
}

/// The virtio block device.
pub struct VirtioBlock {
    disk: Disk,
    serial: Vec<u8>,
    config: ConfigSpace,
    offered: u64,
    /// The features the driver accepted (set at DRIVER_OK).
    accepted: u64,
    counters: Arc<BlockCounters>,
    /// Written when requests are left at the end of a turn; watched by the
    /// device thread as a host fd.
    pending: EventFd,
}

impl std::fmt::Debug for VirtioBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioBlock")
            .field("disk", &self.disk)
            .field("offered", &self.offered)
            .finish()
    }
}

impl VirtioBlock {
    fn new(disk: Disk, serial: Vec<u8>) -> std::io::Result<Self> {
        let ranges = disk.ranges();
        let writable = !disk.read_only();
        let discard = writable && ranges.punch_hole;
        let write_zeroes = writable && ranges.zero_range;
        let host_sectors = u32::try_from(ranges.max_bytes / SECTOR_SIZE).unwrap_or(u32::MAX);
        let range_sectors = match host_sectors {
            0 => RANGE_SECTORS_MAX,
            n => n.min(RANGE_SECTORS_MAX),
        };
        let alignment = u32::try_from(ranges.granularity / SECTOR_SIZE)
            .unwrap_or(1)
            .max(1);
        let segs = RANGE_SEGMENTS_MAX as u32;
        let config = ConfigSpace {
            capacity: disk.capacity(),
            // Header and status take a descriptor each at most.
            seg_max: u32::from(QUEUE_SIZE) - 2,
            blk_size: SECTOR_SIZE as u32,
            max_discard_sectors: if discard { range_sectors } else { 0 },
            max_discard_seg: if discard { segs } else { 0 },
            discard_sector_alignment: if discard { alignment } else { 0 },
            max_write_zeroes_sectors: if write_zeroes { range_sectors } else { 0 },
            max_write_zeroes_seg: if write_zeroes { segs } else { 0 },
            write_zeroes_may_unmap: write_zeroes && ranges.punch_hole,
        };
        let mut offered = bit(VIRTIO_BLK_F_SEG_MAX)
            | bit(VIRTIO_BLK_F_BLK_SIZE)
            | bit(VIRTIO_BLK_F_FLUSH)
            | VIRTIO_RING_F_EVENT_IDX;
        if disk.read_only() {
            offered |= bit(VIRTIO_BLK_F_RO);
        }
        if discard {
            offered |= bit(VIRTIO_BLK_F_DISCARD);
        }
        if write_zeroes {
            offered |= bit(VIRTIO_BLK_F_WRITE_ZEROES);
        }
        Ok(VirtioBlock {
            disk,
            serial,
            config,
            offered,
            accepted: 0,
            counters: Arc::default(),
            pending: EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?,
        })
    }

    /// The capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.disk.capacity()
    }

    /// Whether the disk is read-only.
    pub fn read_only(&self) -> bool {
        self.disk.read_only()
    }

    /// The configuration space values.
    pub fn config(&self) -> ConfigSpace {
        self.config
    }

    /// Makes every completed write durable now (`fdatasync`, if anything
    /// was written since the last one).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.sync().map(|_| ())
    }

    /// [`Self::flush`]; returns whether `fdatasync` was called.
    fn sync(&mut self) -> std::io::Result<bool> {
        let synced = self.disk.flush()?;
        if synced {
            self.counters.add(Counter::Syncs, 1);
        }
        Ok(synced)
    }

    /// The device's counters (keep a clone before handing the device to
    /// its transport).
    pub fn counters(&self) -> Arc<BlockCounters> {
        self.counters.clone()
    }

    /// Serves one chain; returns the used length and its cost.
    fn serve_chain(
        &mut self,
        chain: virtio_queue::DescriptorChain<&GuestMemoryMmap>,
        mem: &GuestMemoryMmap,
    ) -> Result<(u32, u64), DeviceError> {
        let req = match request::parse(chain, mem, usize::from(QUEUE_SIZE)) {
            Ok(r) => r,
            Err(Unanswerable::Broken(why)) => return Err(DeviceError::NeedsReset(why)),
            Err(e) => {
                log::debug!("virtio-blk: a request without a status byte: {e:?}");
                self.counters.add(Counter::InvalidChains, 1);
                return Ok((0, 512));
            }
        };
        let outcome = match &req.body {
            Ok(body) => self.execute(body, mem),
            Err(why) => {
                log::debug!("virtio-blk: malformed request: {why}: IOERR");
                self.counters.add(Counter::IoErrors, 1);
                exec::Outcome {
                    status: VIRTIO_BLK_S_IOERR as u8,
                    written: 0,
                    cost: 512,
                }
            }
        };
        if !Self::put_status(mem, req.status, outcome.status) {
            // Checked to be in RAM when parsed: cannot happen.
            self.counters.add(Counter::InvalidChains, 1);
            return Ok((outcome.written, outcome.cost));
        }
        Ok((outcome.written.saturating_add(1), outcome.cost))
    }

    /// One turn: serves requests until the budget is spent, signals the
    /// used ring, and re-arms itself if more are available.
    fn serve_turn(&mut self, ctx: &mut QueueContext<'_>) -> Result<(), DeviceError> {
        // The re-arm eventfd fires whatever the driver set up: without a
        // ready queue there is nothing to serve (and nothing to re-arm for).
        if !ctx.queues.get(REQUESTQ).is_some_and(|q| q.ready()) {
            return Ok(());
        }
        let mut spent = 0u64;
        let mut served = false;
        while spent < TURN_BYTE_BUDGET {
            let Some(chain) = ctx.pop(REQUESTQ) else {
                break;
            };
            let head = chain.head_index();
            let (len, cost) = self.serve_chain(chain, ctx.mem)?;
            ctx.add_used(REQUESTQ, head, len)?;
            spent = spent.saturating_add(cost);
            served = true;
        }
        let mut more = self.more_available(ctx)?;
        if !more && ctx.features & VIRTIO_RING_F_EVENT_IDX != 0 {
            // Stopping: ask for a notification for the next chain, and
            // serve any that became available before the driver could see
            // that request (it will not notify for them).
            more = ctx.enable_notification(REQUESTQ)?;
        }
        if served && ctx.signal_used(REQUESTQ)? {
            self.counters.add(Counter::Interrupts, 1);
        }
        if more {
            self.counters.add(Counter::Rearms, 1);
            if let Err(e) = self.pending.write(1) {
                log::warn!("virtio-blk: re-arming the device: {e}");
            }
        }
        Ok(())
    }

    /// Whether the driver has made chains available that were not served.
    /// An available index more than a queue size ahead is a broken driver
    /// (and `pop` refuses it, so re-arming would spin): NEEDS_RESET.
    fn more_available(&self, ctx: &mut QueueContext<'_>) -> Result<bool, DeviceError> {
        let Some(q) = ctx.queues.get(REQUESTQ) else {
            return Ok(false);
        };
        let avail = q
            .avail_idx(ctx.mem, Ordering::Acquire)
            .map_err(|e| DeviceError::NeedsReset(format!("reading the available index: {e}")))?;
        let ahead = (avail - Wrapping(q.next_avail())).0;
        if ahead > q.size() {
            return Err(DeviceError::NeedsReset(format!(
                "the available index is {ahead} entries ahead of a queue of {}",
                q.size()
            )));
        }
        Ok(ahead > 0)
    }
}

impl VirtioDevice for VirtioBlock {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        self.offered
    }

    fn config_space(&self) -> Vec<u8> {
        self.config.to_bytes().to_vec()
    }

    fn activate(&mut self, features: u64) -> Result<(), DeviceError> {
        self.accepted = features;
        Ok(())
    }

    fn process_queue(
        &mut self,
        index: usize,
        ctx: &mut QueueContext<'_>,
    ) -> Result<(), DeviceError> {
        if index != REQUESTQ {
            return Ok(());
        }
        self.serve_turn(ctx)
    }

    /// The re-arm eventfd.
    fn host_fds(&self) -> Vec<RawFd> {
        vec![self.pending.as_raw_fd()]
    }

    fn process_host_fd(
        &mut self,
        fd: RawFd,
        ctx: &mut QueueContext<'_>,
    ) -> Result<(), DeviceError> {
        if fd != self.pending.as_raw_fd() {
            return Ok(());
        }
        // Clear the count (EAGAIN: a spurious wake-up, nothing to clear).
        let _ = self.pending.read();
        self.serve_turn(ctx)
    }

    fn reset(&mut self) {
        // No request is ever held between calls: nothing in flight.
        self.accepted = 0;
    }

    /// `fdatasync`: every write acknowledged to the guest is on disk before
    /// the VMM exits.
    fn shutdown(&mut self) {
        let synced = self.sync();
        let path = self.disk.path().display();
        match synced {
            Ok(true) => log::info!("virtio-blk {path}: writes synced at shutdown"),
            Ok(false) => log::debug!("virtio-blk {path}: nothing to sync at shutdown"),
            Err(e) => log::error!("virtio-blk {path}: fdatasync at shutdown failed: {e}"),
        }
    }

    /// The image, its size in whole sectors, its mode and serial. No
    /// request is held between calls (each is answered in the turn that
    /// took it), so nothing is in flight once the VM is paused: requests
    /// the driver made available and the device has not taken stay in the
    /// ring, and the restored device serves them (the VMM signals every
    /// queue once when a restored VM first runs).
    fn snapshot_identity(&self) -> BackendIdentity {
        BackendIdentity::Disk {
            path: self.disk.path().to_path_buf(),
            size: self.disk.capacity() * SECTOR_SIZE,
            read_only: self.disk.read_only(),
            // Checked to be UTF-8 when the disk was opened (a `String`).
            serial: (!self.serial.is_empty())
                .then(|| String::from_utf8_lossy(&self.serial).into_owned()),
        }
    }
}

#[cfg(test)]
mod tests;
