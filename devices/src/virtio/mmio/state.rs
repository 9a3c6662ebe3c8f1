//! The virtio-mmio transport's snapshot state: the registers the driver
//! set (status, feature selectors and features, queue selector, config
//! generation), InterruptStatus, and every queue's set-up and ring
//! positions (virtio-queue's `QueueState`, mirrored with serde). The
//! backend is not part of it: a VMM rebuilds the backend from the VM's
//! configuration, checks its [`super::VirtioDevice::snapshot_identity`],
//! and hands the transport this state.

use serde::{Deserialize, Serialize};
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
use virtio_queue::{Queue, QueueState, QueueT};
use vm_memory::GuestAddress;

use super::{MmioTransport, QueueFaults};
use crate::state::StateError;
use crate::virtio::BackendIdentity;

const DEVICE: &str = "virtio-mmio";

/// Every status bit the spec defines (section 2.1).
const STATUS_BITS: u32 = VIRTIO_CONFIG_S_ACKNOWLEDGE
    | VIRTIO_CONFIG_S_DRIVER
    | VIRTIO_CONFIG_S_DRIVER_OK
    | VIRTIO_CONFIG_S_FEATURES_OK
    | VIRTIO_CONFIG_S_NEEDS_RESET
    | VIRTIO_CONFIG_S_FAILED;

/// One queue's set-up and positions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSnapshot {
    /// QueueNumMax (the backend's).
    pub max_size: u16,
    /// QueueNum (the driver's).
    pub size: u16,
    /// QueueReady.
    pub ready: bool,
    /// Descriptor table address.
    pub desc_table: u64,
    /// Available ring address.
    pub avail_ring: u64,
    /// Used ring address.
    pub used_ring: u64,
    /// The next available-ring entry the device will take.
    pub next_avail: u16,
    /// The next used-ring entry the device will fill.
    pub next_used: u16,
    /// VIRTIO_F_EVENT_IDX is in use.
    pub event_idx: bool,
    /// The driver wrote an invalid QueueNum (refused at DRIVER_OK).
    pub bad_size: bool,
    /// The driver wrote a misaligned ring address (refused at DRIVER_OK).
    pub misaligned: bool,
}

/// The transport's registers and queues.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportState {
    /// The backend's device type (checked on restore).
    pub device_type: u32,
    /// Status.
    pub status: u32,
    /// DeviceFeaturesSel.
    pub device_features_sel: u32,
    /// DriverFeaturesSel.
    pub driver_features_sel: u32,
    /// The features the driver wrote.
    pub driver_features: u64,
    /// QueueSel.
    pub queue_sel: u32,
    /// ConfigGeneration.
    pub config_generation: u32,
    /// DRIVER_OK was accepted and the backend activated.
    pub active: bool,
    /// InterruptStatus.
    pub interrupt_status: u32,
    /// The queues, in index order.
    pub queues: Vec<QueueSnapshot>,
}

fn invalid(field: &'static str, value: u64, why: &'static str) -> StateError {
    StateError::Invalid {
        device: DEVICE,
        field,
        value,
        why,
    }
}

impl MmioTransport {
    /// The registers and queues now. Take it while no request is being
    /// served (the VM paused).
    pub fn state(&self) -> TransportState {
        TransportState {
            device_type: self.device.device_type(),
            status: self.status,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            config_generation: self.config_generation,
            active: self.active,
            interrupt_status: self.interrupt.status(),
            queues: self
                .queues
                .iter()
                .zip(&self.faults)
                .map(|(q, f)| {
                    let s = q.state();
                    QueueSnapshot {
                        max_size: s.max_size,
                        size: s.size,
                        ready: s.ready,
                        desc_table: s.desc_table,
                        avail_ring: s.avail_ring,
                        used_ring: s.used_ring,
                        next_avail: s.next_avail,
                        next_used: s.next_used,
                        event_idx: s.event_idx_enabled,
                        bad_size: f.size,
                        misaligned: f.alignment,
                    }
                })
                .collect(),
        }
    }

    /// What the backend says about itself for a snapshot
    /// ([`super::VirtioDevice::snapshot_identity`]).
    pub fn backend_identity(&self) -> BackendIdentity {
        self.device.snapshot_identity()
    }

    /// The guest memory the transport itself writes for each ready queue
    /// (its used ring, with `avail_event` after it), as `(start, len)`:
    /// what a diff snapshot adds to the pages the backend wrote.
    pub fn device_written_rings(&self) -> Vec<(GuestAddress, u64)> {
        self.queues
            .iter()
            .filter(|q| q.ready())
            .map(|q| (GuestAddress(q.used_ring()), 6 + 8 * u64::from(q.size())))
            .collect()
    }

    /// Puts `state` on this transport, which must be new (never driven)
    /// and for the same backend. Every value is checked as if the driver
    /// had written it, and the rings of an active device must lie in
    /// guest RAM; an active device's backend is activated with the saved
    /// features and told it was restored
    /// ([`super::VirtioDevice::restored`]). Nothing is changed when the
    /// state is refused.
    pub fn restore(&mut self, state: &TransportState) -> Result<(), StateError> {
        let device_type = self.device.device_type();
        if state.device_type != device_type {
            return Err(invalid(
                "device_type",
                state.device_type.into(),
                "the backend rebuilt for this slot is another device type",
            ));
        }
        if state.queues.len() != self.queues.len() {
            return Err(invalid(
                "queues",
                state.queues.len() as u64,
                "not the backend's queue count",
            ));
        }
        if state.status & !STATUS_BITS != 0 {
            return Err(invalid(
                "status",
                state.status.into(),
                "undefined status bits",
            ));
        }
        let features_ok = state.status & VIRTIO_CONFIG_S_FEATURES_OK != 0;
        if features_ok && state.driver_features & !self.offered_features() != 0 {
            return Err(invalid(
                "driver_features",
                state.driver_features,
                "features the backend does not offer",
            ));
        }
        if state.active && state.status & VIRTIO_CONFIG_S_DRIVER_OK == 0 {
            return Err(invalid("active", 1, "an active device without DRIVER_OK"));
        }
        if state.interrupt_status & !(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG) != 0 {
            return Err(invalid(
                "interrupt_status",
                state.interrupt_status.into(),
                "undefined interrupt bits",
            ));
        }
        let mut queues = Vec::with_capacity(state.queues.len());
        for (index, (s, q)) in state.queues.iter().zip(&self.queues).enumerate() {
            let queue_err = |why: String| StateError::Queue {
                device: DEVICE,
                index,
                why,
            };
            if s.max_size != q.max_size() {
                return Err(queue_err(format!(
                    "saved QueueNumMax {} is not the backend's {}",
                    s.max_size,
                    q.max_size()
                )));
            }
            let rebuilt = Queue::try_from(QueueState {
                max_size: s.max_size,
                next_avail: s.next_avail,
                next_used: s.next_used,
                event_idx_enabled: s.event_idx,
                size: s.size,
                ready: s.ready,
                desc_table: s.desc_table,
                avail_ring: s.avail_ring,
                used_ring: s.used_ring,
            })
            .map_err(|e| queue_err(format!("{e:?}")))?;
            if state.active && rebuilt.ready() && !rebuilt.is_valid(&self.mem) {
                return Err(queue_err("its rings are not in guest RAM".into()));
            }
            queues.push(rebuilt);
        }
        if state.active {
            self.device
                .activate(state.driver_features)
                .map_err(|e| StateError::Backend {
                    device: DEVICE,
                    why: e.to_string(),
                })?;
        }
        self.faults = state
            .queues
            .iter()
            .map(|s| QueueFaults {
                size: s.bad_size,
                alignment: s.misaligned,
            })
            .collect();
        self.queues = queues;
        self.status = state.status;
        self.device_features_sel = state.device_features_sel;
        self.driver_features_sel = state.driver_features_sel;
        self.driver_features = state.driver_features;
        self.queue_sel = state.queue_sel;
        self.config_generation = state.config_generation;
        self.active = state.active;
        self.interrupt.restore_status(state.interrupt_status);
        if self.active {
            self.device.restored();
        }
        Ok(())
    }
}
