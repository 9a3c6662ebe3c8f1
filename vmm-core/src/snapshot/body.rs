//! What a snapshot file's body holds: the VM's description and the state
//! of everything that is not guest RAM.

use kvm_bindings::{kvm_clock_data, kvm_irqchip, kvm_pit_state2};
use serde::{Deserialize, Serialize};
use vmm_cpu::snapshot::VcpuState;
use vmm_devices::pc::PcDeviceStates;
use vmm_devices::virtio::{BackendIdentity, TransportState};

use crate::config::VmConfig;
use crate::virtio::VirtioSlot;

/// The snapshot body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotBody {
    /// The VMM that wrote it (`vmm-core <version>`), for diagnostics.
    pub vmm: String,
    /// The VM's description, without its boot inputs (the image is in
    /// guest RAM by now): RAM size, vCPUs, platform, devices. A restore
    /// rebuilds the devices' backends from it.
    pub config: VmConfig,
    /// How guest RAM is laid out in the memory file.
    pub memory: MemoryState,
    /// The VM-wide KVM state.
    pub vm: VmState,
    /// Every vCPU, in index order.
    pub vcpus: Vec<VcpuState>,
    /// The platform's devices.
    pub devices: PcDeviceStates,
    /// The virtio devices, in slot order.
    pub virtio: Vec<VirtioState>,
}

/// One RAM region and where its bytes are in the memory file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryRegion {
    /// Guest-physical start.
    pub guest_addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// Offset of its first byte in the memory file.
    pub file_offset: u64,
}

/// Guest RAM as the memory file holds it: the regions back to back in
/// guest-physical order (the layout's hole below 4 GiB is not in the file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryState {
    /// The regions, in guest-physical order.
    pub regions: Vec<MemoryRegion>,
    /// Total RAM: the memory file's exact size.
    pub size: u64,
}

/// One in-kernel interrupt controller's state (KVM_GET_IRQCHIP).
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Irqchip(pub kvm_irqchip);

impl std::fmt::Debug for Irqchip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Irqchip")
            .field("chip_id", &self.0.chip_id)
            .finish_non_exhaustive()
    }
}

/// The PC platform's in-kernel interrupt controllers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IrqchipState {
    /// The master 8259.
    pub pic_master: Irqchip,
    /// The slave 8259.
    pub pic_slave: Irqchip,
    /// The IOAPIC.
    pub ioapic: Irqchip,
}

/// The VM-wide KVM state.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmState {
    /// The PIC pair and the IOAPIC (PC platform only).
    pub irqchip: Option<IrqchipState>,
    /// The PIT (PC platform only).
    pub pit: Option<kvm_pit_state2>,
    /// The KVM clock as the pause saved it (what the guest's kvmclock
    /// reads): restored before the vCPUs run again, so the guest sees no
    /// time pass while the VM was saved.
    pub clock: Option<kvm_clock_data>,
}

/// One virtio device: where it sits, what its backend was, its transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtioState {
    /// Its slot (kind, window, GSI).
    pub slot: VirtioSlot,
    /// What the backend said about itself.
    pub identity: BackendIdentity,
    /// The transport's registers and queues.
    pub transport: TransportState,
}
