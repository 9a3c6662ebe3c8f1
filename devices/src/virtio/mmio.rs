//! The virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2): one
//! 4 KiB register window per device.
//!
//! Register names and offsets are the spec's (`virtio_bindings::virtio_mmio`).
//! Every value the driver writes is checked: a queue size that is not a
//! power of two or exceeds QueueNumMax, a misaligned ring, a ready queue
//! outside guest RAM or features the device did not offer never reach a
//! backend; the device refuses FEATURES_OK or goes to DEVICE_NEEDS_RESET, as
//! the spec lets it.

use std::os::unix::io::RawFd;
use std::sync::Arc;

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FAILED,
    VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_bindings::virtio_mmio::*;
use virtio_queue::{Queue, QueueT};
use vm_device::bus::{MmioAddress, MmioAddressOffset};
use vm_device::MutDeviceMmio;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use super::device::{DeviceError, QueueContext, VirtioDevice};
use super::dirty::DirtyPages;
use super::interrupt::VirtioInterrupt;
use super::{VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX};
use crate::IrqLine;

/// Size of one device's register window.
pub const VIRTIO_MMIO_WINDOW: u64 = 0x1000;
/// MagicValue: "virt".
pub const MMIO_MAGIC_VALUE: u32 = 0x7472_6976;
/// Version: 2 (the virtio 1.x register layout; no legacy interface).
pub const MMIO_VERSION: u32 = 2;
/// VendorID ("RVMM").
pub const MMIO_VENDOR_ID: u32 = u32::from_le_bytes(*b"RVMM");

/// Errors creating a transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A backend declared a queue size the split ring cannot have.
    #[error("virtio device type {device_type}: queue {index} has an invalid maximum size {size} (a power of two up to 32768)")]
    QueueSize {
        /// Device ID.
        device_type: u32,
        /// Queue index.
        index: usize,
        /// Its declared maximum.
        size: u16,
    },
    /// An eventfd could not be created.
    #[error("creating a queue eventfd failed: {0}")]
    EventFd(std::io::Error),
}

/// What the driver set that the queue cannot use: checked at DRIVER_OK.
#[derive(Debug, Default, Clone, Copy)]
struct QueueFaults {
    size: bool,
    alignment: bool,
}

/// One virtio-mmio device: its registers, negotiation state and queues.
/// Register it on an MMIO bus inside a `Mutex` (vm-device's blanket impl
/// turns `MutDeviceMmio` into `DeviceMmio`).
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    interrupt: Arc<VirtioInterrupt>,
    queues: Vec<Queue>,
    faults: Vec<QueueFaults>,
    queue_events: Vec<EventFd>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    config_generation: u32,
    active: bool,
    /// Accesses the spec does not define (bad width, unknown offset, writes
    /// in the wrong state), for diagnostics.
    ignored: u64,
    /// Where device-writable buffers are recorded (diff snapshots).
    dirty: Option<Arc<DirtyPages>>,
}

mod state;
pub use state::{QueueSnapshot, TransportState};

impl std::fmt::Debug for MmioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTransport")
            .field("device_type", &self.device.device_type())
            .field("status", &self.status)
            .field("active", &self.active)
            .finish()
    }
}

/// A register offset as the spec's u32 constants.
fn reg(offset: MmioAddressOffset) -> Option<u32> {
    u32::try_from(offset).ok()
}

impl MmioTransport {
    /// A transport for `device` over guest memory `mem`, interrupting on
    /// `line`.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        line: IrqLine,
    ) -> Result<Self, TransportError> {
        let mut queues = Vec::new();
        let mut queue_events = Vec::new();
        for (index, &size) in device.queue_max_sizes().iter().enumerate() {
            queues.push(Queue::new(size).map_err(|_| TransportError::QueueSize {
                device_type: device.device_type(),
                index,
                size,
            })?);
            queue_events
                .push(EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(TransportError::EventFd)?);
        }
        Ok(MmioTransport {
            faults: vec![QueueFaults::default(); queues.len()],
            device,
            mem,
            interrupt: Arc::new(VirtioInterrupt::new(line)),
            queues,
            queue_events,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            config_generation: 0,
            active: false,
            ignored: 0,
            dirty: None,
        })
    }

    /// The eventfd each queue's notification writes, in queue order. A KVM
    /// VMM registers `[i]` as an ioeventfd on `base + QueueNotify` with
    /// datamatch `i`; without that, a QueueNotify write that reaches the
    /// transport writes it instead. Either way the VMM's device thread
    /// waits on these and calls [`Self::process_queue`].
    pub fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    /// The device's interrupt (its line's eventfd is the irqfd).
    pub fn interrupt(&self) -> &Arc<VirtioInterrupt> {
        &self.interrupt
    }

    /// The virtio device ID.
    pub fn device_type(&self) -> u32 {
        self.device.device_type()
    }

    /// Whether the driver has set DRIVER_OK and the device serves requests.
    pub fn is_active(&self) -> bool {
        self.active && self.status & VIRTIO_CONFIG_S_NEEDS_RESET == 0
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// Accesses the spec leaves undefined that were ignored so far.
    pub fn ignored_accesses(&self) -> u64 {
        self.ignored
    }

    /// Records every device-writable buffer the backend takes in `dirty`
    /// from now on (for diff snapshots).
    pub fn track_dirty_pages(&mut self, dirty: Arc<DirtyPages>) {
        self.dirty = Some(dirty);
    }

    /// Host descriptors the backend wants watched.
    pub fn host_fds(&self) -> Vec<RawFd> {
        self.device.host_fds()
    }

    /// Serves queue `index` after its notification. Does nothing unless the
    /// device is active and the queue ready (a notify of an unready queue
    /// is dropped).
    pub fn process_queue(&mut self, index: usize) {
        if !self.is_active() || !self.queues.get(index).is_some_and(|q| q.ready()) {
            self.ignored += 1;
            return;
        }
        self.serve(|device, ctx| device.process_queue(index, ctx));
    }

    /// Serves a host descriptor event for the backend.
    pub fn process_host_fd(&mut self, fd: RawFd) {
        if !self.is_active() {
            return;
        }
        self.serve(|device, ctx| device.process_host_fd(fd, ctx));
    }

    /// Runs `work` on the backend with the live queues, then applies its
    /// verdict (NEEDS_RESET on a broken contract).
    fn serve(
        &mut self,
        work: impl FnOnce(&mut dyn VirtioDevice, &mut QueueContext<'_>) -> Result<(), DeviceError>,
    ) {
        let mut ctx = QueueContext {
            mem: &self.mem,
            queues: &mut self.queues,
            interrupt: &self.interrupt,
            features: self.driver_features,
            dirty: self.dirty.as_deref(),
        };
        let result = work(self.device.as_mut(), &mut ctx);
        self.after(result);
    }

    fn after(&mut self, result: Result<(), DeviceError>) {
        match result {
            Ok(()) => {}
            Err(DeviceError::NeedsReset(why)) => {
                log::warn!(
                    "virtio device type {}: {why}; DEVICE_NEEDS_RESET",
                    self.device.device_type()
                );
                self.needs_reset();
            }
            Err(DeviceError::Host(e)) => {
                log::warn!("virtio device type {}: {e}", self.device.device_type());
            }
        }
    }

    fn needs_reset(&mut self) {
        self.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
        self.interrupt.signal_config_change();
    }

    fn offered_features(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1
    }

    fn selected_queue(&mut self) -> Option<(&mut Queue, &mut QueueFaults)> {
        let i = usize::try_from(self.queue_sel).ok()?;
        match (self.queues.get_mut(i), self.faults.get_mut(i)) {
            (Some(q), Some(f)) => Some((q, f)),
            _ => None,
        }
    }

    /// Queue registers may be written only between FEATURES_OK and
    /// DRIVER_OK (section 4.2.3.2).
    fn queue_setup_allowed(&self) -> bool {
        self.status & (VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK)
            == VIRTIO_CONFIG_S_FEATURES_OK
            && self.status & VIRTIO_CONFIG_S_FAILED == 0
    }

    fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.faults.fill(QueueFaults::default());
        // A notification still in flight finds the device inactive and is
        // dropped by `process_queue`; it is not drained here because resets
        // run on vCPU threads, whose seccomp list has no read(2).
        self.interrupt.clear();
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.active = false;
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        // Only a reset clears bits (section 2.1.2).
        if value & old != old {
            self.ignored += 1;
            return;
        }
        let mut new = value;
        let added = value & !old;
        if added & VIRTIO_CONFIG_S_FEATURES_OK != 0 {
            let unknown = self.driver_features & !self.offered_features();
            let ok = old & VIRTIO_CONFIG_S_DRIVER != 0
                && unknown == 0
                && self.driver_features & VIRTIO_F_VERSION_1 != 0;
            if !ok {
                // The driver re-reads Status and sees FEATURES_OK unset.
                new &= !VIRTIO_CONFIG_S_FEATURES_OK;
            }
        }
        if added & VIRTIO_CONFIG_S_DRIVER_OK != 0 {
            if new & VIRTIO_CONFIG_S_FEATURES_OK == 0 {
                new &= !VIRTIO_CONFIG_S_DRIVER_OK;
                self.ignored += 1;
            } else if let Err(why) = self.activate() {
                log::warn!(
                    "virtio device type {}: {why}; DEVICE_NEEDS_RESET",
                    self.device.device_type()
                );
                self.status = new | VIRTIO_CONFIG_S_NEEDS_RESET;
                self.interrupt.signal_config_change();
                return;
            }
        }
        self.status = new;
    }

    fn activate(&mut self) -> Result<(), String> {
        let event_idx = self.driver_features & VIRTIO_RING_F_EVENT_IDX != 0;
        for (i, (q, f)) in self.queues.iter_mut().zip(&self.faults).enumerate() {
            if !q.ready() {
                continue;
            }
            if f.size {
                return Err(format!("queue {i}: the driver wrote an invalid size"));
            }
            if f.alignment {
                return Err(format!("queue {i}: a ring address is misaligned"));
            }
            if !q.is_valid(&self.mem) {
                return Err(format!("queue {i}: its rings are not in guest RAM"));
            }
            q.set_event_idx(event_idx);
        }
        self.device
            .activate(self.driver_features)
            .map_err(|e| e.to_string())?;
        self.active = true;
        Ok(())
    }

    fn read_register(&mut self, r: u32) -> u32 {
        match r {
            VIRTIO_MMIO_MAGIC_VALUE => MMIO_MAGIC_VALUE,
            VIRTIO_MMIO_VERSION => MMIO_VERSION,
            VIRTIO_MMIO_DEVICE_ID => self.device.device_type(),
            VIRTIO_MMIO_VENDOR_ID => MMIO_VENDOR_ID,
            VIRTIO_MMIO_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered_features() as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            VIRTIO_MMIO_QUEUE_NUM_MAX => self
                .selected_queue()
                .map_or(0, |(q, _)| q.max_size().into()),
            VIRTIO_MMIO_QUEUE_READY => self.selected_queue().map_or(0, |(q, _)| q.ready().into()),
            VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt.status(),
            VIRTIO_MMIO_STATUS => self.status,
            // No shared memory regions: ShmLen reads as -1.
            VIRTIO_MMIO_SHM_LEN_LOW | VIRTIO_MMIO_SHM_LEN_HIGH => u32::MAX,
            VIRTIO_MMIO_CONFIG_GENERATION => self.config_generation,
            _ => {
                self.ignored += 1;
                0
            }
        }
    }

    fn write_register(&mut self, r: u32, v: u32) {
        match r {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_sel = v,
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            VIRTIO_MMIO_DRIVER_FEATURES => {
                let negotiating = self.status & VIRTIO_CONFIG_S_DRIVER != 0
                    && self.status & VIRTIO_CONFIG_S_FEATURES_OK == 0;
                match (negotiating, self.driver_features_sel) {
                    (true, 0) => {
                        self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v)
                    }
                    (true, 1) => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32)
                    }
                    _ => self.ignored += 1,
                }
            }
            VIRTIO_MMIO_QUEUE_SEL => self.queue_sel = v,
            VIRTIO_MMIO_QUEUE_NOTIFY => {
                // Reaches here only without an ioeventfd for it.
                match usize::try_from(v)
                    .ok()
                    .and_then(|i| self.queue_events.get(i))
                {
                    Some(e) => {
                        if let Err(e) = e.write(1) {
                            log::warn!("virtio: queue notify eventfd: {e}");
                        }
                    }
                    None => self.ignored += 1,
                }
            }
            VIRTIO_MMIO_INTERRUPT_ACK => self.interrupt.ack(v),
            VIRTIO_MMIO_STATUS => self.set_status(v),
            VIRTIO_MMIO_QUEUE_NUM
            | VIRTIO_MMIO_QUEUE_READY
            | VIRTIO_MMIO_QUEUE_DESC_LOW
            | VIRTIO_MMIO_QUEUE_DESC_HIGH
            | VIRTIO_MMIO_QUEUE_AVAIL_LOW
            | VIRTIO_MMIO_QUEUE_AVAIL_HIGH
            | VIRTIO_MMIO_QUEUE_USED_LOW
            | VIRTIO_MMIO_QUEUE_USED_HIGH => self.write_queue_register(r, v),
            _ => self.ignored += 1,
        }
    }

    fn write_queue_register(&mut self, r: u32, v: u32) {
        if !self.queue_setup_allowed() {
            self.ignored += 1;
            return;
        }
        let Some((q, f)) = self.selected_queue() else {
            self.ignored += 1;
            return;
        };
        let (desc, avail, used) = (q.desc_table(), q.avail_ring(), q.used_ring());
        let low = |a: u64| GuestAddress((a & !0xffff_ffff) | u64::from(v));
        let high = |a: u64| GuestAddress((a & 0xffff_ffff) | (u64::from(v) << 32));
        let aligned = match r {
            VIRTIO_MMIO_QUEUE_NUM => {
                // Not a power of two, zero or above QueueNumMax: the
                // queue cannot be used (checked at DRIVER_OK).
                f.size = u16::try_from(v).map_or(true, |n| q.try_set_size(n).is_err());
                true
            }
            VIRTIO_MMIO_QUEUE_READY => {
                q.set_ready(v == 1);
                true
            }
            VIRTIO_MMIO_QUEUE_DESC_LOW => q.try_set_desc_table_address(low(desc)).is_ok(),
            VIRTIO_MMIO_QUEUE_DESC_HIGH => q.try_set_desc_table_address(high(desc)).is_ok(),
            VIRTIO_MMIO_QUEUE_AVAIL_LOW => q.try_set_avail_ring_address(low(avail)).is_ok(),
            VIRTIO_MMIO_QUEUE_AVAIL_HIGH => q.try_set_avail_ring_address(high(avail)).is_ok(),
            VIRTIO_MMIO_QUEUE_USED_LOW => q.try_set_used_ring_address(low(used)).is_ok(),
            VIRTIO_MMIO_QUEUE_USED_HIGH => q.try_set_used_ring_address(high(used)).is_ok(),
            _ => true,
        };
        if !aligned {
            f.alignment = true;
        }
    }

    /// A driver read of `data.len()` bytes at `offset` in the window.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset >= u64::from(VIRTIO_MMIO_CONFIG) {
            let config = self.device.config_space();
            let start = offset - u64::from(VIRTIO_MMIO_CONFIG);
            for (i, b) in data.iter_mut().enumerate() {
                let at = usize::try_from(start).ok().and_then(|s| s.checked_add(i));
                *b = at.and_then(|a| config.get(a).copied()).unwrap_or(0);
            }
            return;
        }
        // Registers are 32 bits wide and naturally aligned (4.2.2.2).
        match (data.len(), offset % 4, reg(offset)) {
            (4, 0, Some(r)) => {
                let v = self.read_register(r);
                data.copy_from_slice(&v.to_le_bytes());
            }
            _ => self.ignored += 1,
        }
    }

    /// A driver write of `data` at `offset` in the window.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= u64::from(VIRTIO_MMIO_CONFIG) {
            // Writes change the config only through the device's rules.
            self.device
                .write_config(offset - u64::from(VIRTIO_MMIO_CONFIG), data);
            return;
        }
        match (<[u8; 4]>::try_from(data), offset % 4, reg(offset)) {
            (Ok(bytes), 0, Some(r)) => self.write_register(r, u32::from_le_bytes(bytes)),
            _ => self.ignored += 1,
        }
    }

    /// The VM is ending: see [`VirtioDevice::shutdown`].
    pub fn shutdown(&mut self) {
        self.device.shutdown();
    }

    /// Announces a device-side config change (a resized disk, a link
    /// state): the driver re-reads the config space.
    pub fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        self.interrupt.signal_config_change();
    }
}

impl MutDeviceMmio for MmioTransport {
    fn mmio_read(&mut self, _base: MmioAddress, offset: MmioAddressOffset, data: &mut [u8]) {
        self.read(offset, data);
    }

    fn mmio_write(&mut self, _base: MmioAddress, offset: MmioAddressOffset, data: &[u8]) {
        self.write(offset, data);
    }
}

#[cfg(test)]
mod tests;
