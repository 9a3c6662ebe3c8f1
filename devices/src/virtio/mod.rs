//! virtio devices on the virtio-mmio transport (virtio 1.2, section 4.2,
//! version 2 only), with split virtqueues from rust-vmm's `virtio-queue`.
//!
//! - [`device::VirtioDevice`]: what a device backend implements (its type,
//!   features, config space, queue handling). Backends never see the
//!   transport's registers.
//! - [`mmio::MmioTransport`]: the register window (`vm_device::DeviceMmio`),
//!   the device-status state machine, feature negotiation, queue set-up,
//!   reset, and the interrupt status.
//! - [`interrupt::VirtioInterrupt`]: InterruptStatus bits plus the line
//!   (a KVM irqfd in a VMM) behind vm-superio's `Trigger`.
//! - Devices: [`block::VirtioBlock`] (a raw image file or block device,
//!   opened by [`block::BlockConfig`]), [`rng::VirtioRng`] (entropy from
//!   `getrandom(2)`), [`console::VirtioConsole`] (one port; output to a
//!   [`crate::Console`], host input through a bounded
//!   [`console::ConsoleInput`]), [`net::VirtioNet`] (a host tap behind
//!   [`net::TapIo`]) and [`vsock::VirtioVsock`] (stream sockets to host Unix
//!   sockets, Firecracker's convention).
//!
//! Snapshots: [`mmio::MmioTransport::state`] captures the transport and
//! its queues ([`TransportState`]), [`mmio::MmioTransport::restore`] puts
//! them back on a transport for the same backend; the backend describes
//! itself with [`VirtioDevice::snapshot_identity`]; [`DirtyPages`] tracks
//! the guest pages devices write, for diff snapshots.
//!
//! Threading: the guest's register accesses arrive on vCPU threads; queue
//! notifications arrive as eventfds ([`mmio::MmioTransport::queue_events`],
//! registered by a KVM VMM as ioeventfds so a notify never exits to
//! userspace) on whatever thread the VMM runs device work on, which calls
//! [`mmio::MmioTransport::process_queue`]. Both go through one mutex per
//! device, except InterruptStatus reads and InterruptACK writes, which
//! [`window::MmioWindow`] serves from the interrupt's atomics so that an
//! interrupt handler never waits for a device's turn of request work.
//!
//! Nothing here knows KVM: the unit tests drive a transport with the
//! register sequence a driver writes and `virtio-queue`'s mock queues.

pub mod block;
pub mod console;
pub mod device;
pub mod dirty;
pub mod identity;
pub mod interrupt;
pub mod mmio;
pub mod net;
pub mod rng;
#[cfg(test)]
pub(crate) mod testing;
pub mod vsock;
pub mod window;

pub use block::{BlockConfig, BlockError, VirtioBlock};
pub use console::{ConsoleInput, VirtioConsole};
pub use device::{DeviceError, QueueContext, VirtioDevice};
pub use dirty::DirtyPages;
pub use identity::BackendIdentity;
pub use interrupt::VirtioInterrupt;
pub use mmio::{MmioTransport, QueueSnapshot, TransportState, VIRTIO_MMIO_WINDOW};
pub use net::VirtioNet;
pub use rng::VirtioRng;
pub use vsock::VirtioVsock;
pub use window::MmioWindow;

/// `VIRTIO_F_VERSION_1`: the device follows virtio 1.x (required: this
/// transport has no legacy interface).
pub const VIRTIO_F_VERSION_1: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
/// `VIRTIO_RING_F_EVENT_IDX`.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
