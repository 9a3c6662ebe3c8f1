//! Checks that a decoded snapshot body is one this VMM could have written,
//! before anything is built from it: sizes and counts agree with each
//! other and with the VM's description.

use vmm_devices::pc::DeviceSet;
use vmm_devices::virtio::BackendIdentity;
use vmm_memory::MemoryLayout;

use super::body::{MemoryRegion, MemoryState, SnapshotBody};
use super::error::SnapshotError;
use super::vm_state::{chip_ids, CHIP_IDS};
use crate::create::MAX_CPUS;
use crate::virtio::{virtio_layout, VirtioKind};

/// The memory file layout of `layout`'s RAM.
pub(crate) fn layout_memory_state(layout: &MemoryLayout) -> MemoryState {
    let mut regions = Vec::new();
    let mut offset = 0;
    for r in layout.ram_ranges() {
        regions.push(MemoryRegion {
            guest_addr: r.start.0,
            len: r.len,
            file_offset: offset,
        });
        offset += r.len;
    }
    MemoryState {
        regions,
        size: offset,
    }
}

/// Whether `identity` describes a `kind` backend well enough for a
/// restore to check it got the same one back.
pub(crate) fn identity_fits(kind: VirtioKind, identity: &BackendIdentity) -> Result<(), String> {
    match (kind, identity) {
        (_, BackendIdentity::Unsupported(why)) => Err(why.clone()),
        (VirtioKind::Rng | VirtioKind::Console, BackendIdentity::DeviceType(t))
            if *t == kind.device_type() =>
        {
            Ok(())
        }
        (VirtioKind::Block, BackendIdentity::Disk { .. })
        | (VirtioKind::Net, BackendIdentity::Net { .. })
        | (VirtioKind::Vsock, BackendIdentity::Vsock { .. }) => Ok(()),
        (
            VirtioKind::Block | VirtioKind::Net | VirtioKind::Vsock,
            BackendIdentity::DeviceType(_),
        ) => Err(format!(
            "its backend describes itself by device type only; a {kind:?} backend must \
                 name its host resource (VirtioDevice::snapshot_identity) so a restore can \
                 check it gets the same one"
        )),
        (_, other) => Err(format!("its backend describes itself as {other:?}")),
    }
}

/// Checks `body` (see the module docs).
pub fn validate(body: &SnapshotBody) -> Result<(), SnapshotError> {
    let config = &body.config;
    let layout = MemoryLayout::new(config.memory_mib).map_err(|e| {
        SnapshotError::inconsistent("config.memory_mib", "a size this host can lay out", e)
    })?;
    let memory = layout_memory_state(&layout);
    if body.memory != memory {
        return Err(SnapshotError::inconsistent(
            "memory",
            format!("{memory:?} (the layout of {} MiB)", config.memory_mib),
            format!("{:?}", body.memory),
        ));
    }
    let n = body.vcpus.len() as u64;
    if n != config.vcpus || n == 0 || n > MAX_CPUS {
        return Err(SnapshotError::inconsistent(
            "the number of saved vCPUs",
            format!("config.vcpus = {} (1 to {MAX_CPUS})", config.vcpus),
            n,
        ));
    }
    let pc = body.vm.irqchip.is_some();
    if body.vm.pit.is_some() != pc {
        return Err(SnapshotError::inconsistent(
            "vm.pit",
            if pc {
                "present (irqchip saved)"
            } else {
                "absent (no irqchip)"
            },
            if pc { "absent" } else { "present" },
        ));
    }
    if let Some(chips) = &body.vm.irqchip {
        let ids = chip_ids(chips);
        if ids != CHIP_IDS {
            return Err(SnapshotError::inconsistent(
                "vm.irqchip chip IDs",
                format!("{CHIP_IDS:?}"),
                format!("{ids:?}"),
            ));
        }
    }
    if !pc && n > 1 {
        return Err(SnapshotError::inconsistent(
            "the number of saved vCPUs",
            "1 (more need the PC platform's irqchip)",
            n,
        ));
    }
    let set = if pc {
        DeviceSet::Pc
    } else {
        DeviceSet::Minimal
    };
    if body.devices.set != set {
        return Err(SnapshotError::inconsistent(
            "devices.set",
            format!("{set:?}"),
            format!("{:?}", body.devices.set),
        ));
    }
    for (i, v) in body.vcpus.iter().enumerate() {
        if v.index != i as u64 {
            return Err(SnapshotError::inconsistent(
                format!("vcpus[{i}].index"),
                i,
                v.index,
            ));
        }
        if v.lapic.is_some() != pc {
            return Err(SnapshotError::inconsistent(
                format!("vcpus[{i}].lapic"),
                if pc { "present" } else { "absent" },
                if pc { "absent" } else { "present" },
            ));
        }
        let words = v.xsave.0.len();
        if words != vmm_cpu::snapshot::XSAVE_WORDS {
            return Err(SnapshotError::inconsistent(
                format!("vcpus[{i}].xsave length"),
                vmm_cpu::snapshot::XSAVE_WORDS,
                words,
            ));
        }
    }
    let slots = virtio_layout(&config.devices)
        .map_err(|e| SnapshotError::inconsistent("config.devices", "a valid device set", e))?;
    if slots.len() != body.virtio.len() {
        return Err(SnapshotError::inconsistent(
            "the number of saved virtio devices",
            slots.len(),
            body.virtio.len(),
        ));
    }
    for (i, (slot, saved)) in slots.iter().zip(&body.virtio).enumerate() {
        if *slot != saved.slot {
            return Err(SnapshotError::inconsistent(
                format!("virtio[{i}].slot"),
                format!("{slot:?}"),
                format!("{:?}", saved.slot),
            ));
        }
        if saved.transport.device_type != slot.kind.device_type() {
            return Err(SnapshotError::inconsistent(
                format!("virtio[{i}].transport.device_type"),
                slot.kind.device_type(),
                saved.transport.device_type,
            ));
        }
        identity_fits(slot.kind, &saved.identity).map_err(|why| {
            SnapshotError::inconsistent(
                format!("virtio[{i}].identity"),
                format!("a description of a {:?} backend", slot.kind),
                why,
            )
        })?;
    }
    Ok(())
}
