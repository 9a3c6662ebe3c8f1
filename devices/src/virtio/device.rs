//! What a virtio device backend implements, and what it is handed when the
//! driver has set it up.

use std::os::unix::io::RawFd;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::dirty::DirtyPages;
use super::identity::BackendIdentity;
use super::interrupt::VirtioInterrupt;

/// Errors a backend reports to its transport.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The driver broke the device's contract (a malformed chain the device
    /// cannot answer, a queue in guest memory the device cannot reach): the
    /// transport sets DEVICE_NEEDS_RESET and stops serving the device until
    /// the driver resets it.
    #[error("the driver broke the device's contract: {0}")]
    NeedsReset(String),
    /// A host resource failed (a tap, a socket); the device keeps running.
    #[error("host I/O failed: {0}")]
    Host(#[from] std::io::Error),
}

/// The live queues of an activated device, for one call.
///
/// Devices take chains with [`Self::pop`] (not from `queues` directly):
/// with dirty-page tracking on (diff snapshots), it records the buffers a
/// device may write.
pub struct QueueContext<'a> {
    /// Guest memory.
    pub mem: &'a GuestMemoryMmap,
    /// The device's queues, in queue-index order.
    pub queues: &'a mut [Queue],
    /// The device's interrupt.
    pub interrupt: &'a VirtioInterrupt,
    /// The features the driver accepted.
    pub features: u64,
    /// Where the pages of device-writable buffers are recorded, when the
    /// VMM tracks dirty pages.
    pub dirty: Option<&'a DirtyPages>,
}

impl<'a> QueueContext<'a> {
    /// Tells the driver queue `index` has new used buffers, unless it asked
    /// not to be told (`used_event` with VIRTIO_RING_F_EVENT_IDX, counting
    /// every buffer added since the last call); returns whether the
    /// interrupt was raised.
    pub fn signal_used(&mut self, index: usize) -> Result<bool, DeviceError> {
        let Some(queue) = self.queues.get_mut(index) else {
            return Ok(false);
        };
        let notify = queue
            .needs_notification(self.mem)
            .map_err(|e| DeviceError::NeedsReset(format!("queue {index}: {e}")))?;
        if notify {
            self.interrupt.signal_used_queue();
        }
        Ok(notify)
    }

    /// The device is about to stop serving queue `index`: asks the driver
    /// to notify for what it makes available next (with
    /// VIRTIO_RING_F_EVENT_IDX, `avail_event` := the next index to serve).
    /// Returns whether chains are available already, having raced in
    /// before the request was visible (the device must serve them, as no
    /// notification will come for them).
    pub fn enable_notification(&mut self, index: usize) -> Result<bool, DeviceError> {
        let Some(queue) = self.queues.get_mut(index) else {
            return Ok(false);
        };
        queue
            .enable_notification(self.mem)
            .map_err(|e| DeviceError::NeedsReset(format!("queue {index}: {e}")))
    }

    /// Pops the next available chain of queue `index`, if any.
    pub fn pop(
        &mut self,
        index: usize,
    ) -> Option<virtio_queue::DescriptorChain<&'a GuestMemoryMmap>> {
        let mem: &'a GuestMemoryMmap = self.mem;
        let chain = self.queues.get_mut(index)?.pop_descriptor_chain(mem)?;
        if let Some(dirty) = self.dirty {
            // Walks a copy: the device gets the chain untouched. The walk
            // is bounded by the queue size, as the device's own is.
            for desc in chain.clone().writable() {
                dirty.mark(desc.addr(), u64::from(desc.len()));
            }
        }
        Some(chain)
    }

    /// Returns chain `head` to queue `index` with `len` bytes written.
    pub fn add_used(&mut self, index: usize, head: u16, len: u32) -> Result<(), DeviceError> {
        let Some(queue) = self.queues.get_mut(index) else {
            return Err(DeviceError::NeedsReset(format!("no queue {index}")));
        };
        queue
            .add_used(self.mem, head, len)
            .map_err(|e| DeviceError::NeedsReset(format!("queue {index}: {e}")))
    }
}

/// A virtio device backend: block, network, entropy, console, vsock...
///
/// The transport owns the queues and the negotiation; the backend says
/// what it offers and serves requests when a queue is notified.
///
/// Threads: [`Self::config_space`], [`Self::write_config`],
/// [`Self::activate`] and [`Self::reset`] run inside a guest's register
/// access, on a vCPU thread, whose seccomp list in a KVM VMM allows little
/// more than `write(2)`: no reads, file or socket calls there. Request work
/// ([`Self::process_queue`], [`Self::process_host_fd`], [`Self::shutdown`])
/// runs on the VMM's device thread.
pub trait VirtioDevice: Send {
    /// The virtio device ID (`virtio_bindings::virtio_ids`).
    fn device_type(&self) -> u32;

    /// The largest size of each queue; their number is the device's queue
    /// count.
    fn queue_max_sizes(&self) -> &[u16];

    /// The feature bits the device offers (`VIRTIO_F_VERSION_1` is added
    /// by the transport).
    fn features(&self) -> u64;

    /// The device-specific configuration space, as the driver reads it.
    fn config_space(&self) -> Vec<u8> {
        Vec::new()
    }

    /// A driver write to the configuration space (ignored unless the
    /// device has writable fields).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    /// The driver set DRIVER_OK having accepted `features`.
    fn activate(&mut self, _features: u64) -> Result<(), DeviceError> {
        Ok(())
    }

    /// Queue `index` was notified: serve what is available.
    fn process_queue(
        &mut self,
        index: usize,
        ctx: &mut QueueContext<'_>,
    ) -> Result<(), DeviceError>;

    /// Host descriptors the device wants watched while active (a tap, a
    /// socket, stdin).
    fn host_fds(&self) -> Vec<RawFd> {
        Vec::new()
    }

    /// `fd` (one of [`Self::host_fds`]) is readable or writable.
    fn process_host_fd(
        &mut self,
        _fd: RawFd,
        _ctx: &mut QueueContext<'_>,
    ) -> Result<(), DeviceError> {
        Ok(())
    }

    /// The driver reset the device: drop every in-flight request.
    fn reset(&mut self) {}

    /// The VM is ending: make everything acknowledged to the guest durable
    /// (a disk's fdatasync), release host resources.
    fn shutdown(&mut self) {}

    /// What a snapshot records about this backend (runs on the VMM's main
    /// thread while the VM is paused). The default, the device type alone,
    /// suits backends with no host resource or in-flight state (entropy,
    /// console); a disk, tap or socket backend must return its resource
    /// ([`BackendIdentity::Disk`], ...) or the VMM refuses the snapshot,
    /// and one holding requests it cannot finish or save returns
    /// [`BackendIdentity::Unsupported`] with the reason.
    fn snapshot_identity(&self) -> BackendIdentity {
        BackendIdentity::DeviceType(self.device_type())
    }

    /// The device was just restored from a snapshot: activated with the
    /// saved features, its queues where the snapshot left them, the host
    /// state the snapshot could not carry gone (runs on the VMM's main
    /// thread, before the guest runs: no system calls). The default does
    /// nothing; vsock tells the driver its connections are gone.
    fn restored(&mut self) {}
}
