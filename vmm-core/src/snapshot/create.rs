//! Taking a snapshot, on the thread running the VM while it is paused.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use kvm_bindings::kvm_clock_data;
use kvm_ioctls::VmFd;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
use vmm_cpu::snapshot::{SaveOptions, VcpuState};
use vmm_cpu::Vcpu;
use vmm_devices::pc::DeviceHandles;
use vmm_devices::virtio::DirtyPages;
use vmm_memory::GuestRam;

use super::body::{SnapshotBody, VirtioState};
use super::error::SnapshotError;
use super::memory::{memory_state, temp_path, write_diff, write_full};
use super::validate::identity_fits;
use super::vm_state::save_vm_state;
use super::{encode, SnapshotInfo, SnapshotKind, SnapshotRequest, VCPU_SAVE_TIMEOUT};
use crate::config::VmConfig;
use crate::control::VmControl;
use crate::dispatch::ExitDispatcher;
use crate::virtio::{SharedTransport, VirtioSlot};

/// What a VM keeps for its snapshots.
pub(crate) struct SnapshotContext {
    /// The VM's description without its boot inputs, platform resolved.
    pub config: VmConfig,
    /// The MSRs every vCPU saves (KVM's lists, read when the VM was made).
    pub msrs: Arc<Vec<u32>>,
    /// KVM_CAP_XSAVE2's size (0 without it): above 4 KiB, snapshots are
    /// refused (the AMX state would be lost).
    pub xsave2_size: usize,
    /// Pages virtio devices wrote, with dirty-page tracking on.
    pub dirty: Option<Arc<DirtyPages>>,
    /// The platform devices, once attached.
    pub devices: Option<DeviceHandles>,
    /// Devices a snapshot cannot hold (extra bus devices of a builder).
    pub unsnapshottable: Vec<String>,
    /// The KVM clock of the snapshot this VM was restored from, set again
    /// just before its vCPUs first run.
    pub restored_clock: Option<kvm_clock_data>,
    /// Built from a snapshot (its guest has spoken already: no hint for a
    /// quiet console).
    pub restored: bool,
    /// A full memory file exists that a diff snapshot can be written
    /// into: a full snapshot was taken, or the VM was restored from one.
    pub has_memory_base: bool,
}

/// What a snapshot reads from the running VM.
pub(crate) struct SnapshotSource<'a> {
    pub vm_fd: &'a VmFd,
    pub ram: &'a GuestRam,
    pub irqchip: bool,
    pub control: &'a VmControl,
    pub virtio: &'a [(VirtioSlot, SharedTransport)],
    /// The clock the pause saved.
    pub clock: Option<kvm_clock_data>,
    /// vCPU threads parked.
    pub vcpus: usize,
}

/// On a parked vCPU thread: completes the instruction the vCPU left
/// KVM_RUN in (so its registers are final) and saves its state.
pub(crate) fn save_vcpu(
    vcpu: &mut Vcpu,
    dispatcher: &ExitDispatcher,
    msrs: &[u32],
    lapic: bool,
) -> Result<VcpuState, SnapshotError> {
    vcpu.complete_pending_io(dispatcher)
        .map_err(SnapshotError::PendingIo)?;
    let opts = SaveOptions {
        index: vcpu.index(),
        msrs,
        lapic,
        cpuid: vcpu.cpuid(),
    };
    Ok(vmm_cpu::snapshot::save(vcpu.fd(), &opts)?)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let tmp = temp_path(path);
    let err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| SnapshotError::Write { path: p, source }
    };
    // Errors name the file asked for, not the temporary one.
    if let Err(e) = std::fs::write(&tmp, bytes).map_err(err(path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(err(path))
}

/// KVM's dirty log of every slot, OR'ed with the pages the devices wrote
/// (the used rings are added first): one bitmap per region.
fn dirty_bitmaps(
    src: &SnapshotSource<'_>,
    dirty: &DirtyPages,
) -> Result<Vec<Vec<u64>>, SnapshotError> {
    for (_, t) in src.virtio {
        for (addr, len) in crate::lock(t).device_written_rings() {
            dirty.mark(addr, len);
        }
    }
    let mut maps = Vec::new();
    for (slot, region) in (0u32..).zip(src.ram.memory().iter()) {
        let len = usize::try_from(region.len()).unwrap_or(usize::MAX);
        let mut kvm = src
            .vm_fd
            .get_dirty_log(slot, len)
            .map_err(|source| SnapshotError::Kvm {
                op: "KVM_GET_DIRTY_LOG",
                source,
            })?;
        let devices = dirty.take(slot as usize);
        for (k, d) in kvm.iter_mut().zip(&devices) {
            *k |= d;
        }
        maps.push(kvm);
    }
    Ok(maps)
}

/// Takes the snapshot `req` asks for (see the module docs of
/// [`crate::snapshot`]).
pub(crate) fn take_snapshot(
    ctx: &mut SnapshotContext,
    src: &SnapshotSource<'_>,
    req: &SnapshotRequest,
) -> Result<SnapshotInfo, SnapshotError> {
    let started = Instant::now();
    if let Some(name) = ctx.unsnapshottable.first() {
        return Err(SnapshotError::Unsupported {
            device: name.clone(),
            why: "devices added to the bus by hand have no snapshot state".into(),
        });
    }
    let max_xsave = vmm_cpu::snapshot::XSAVE_WORDS * 4;
    if ctx.xsave2_size > max_xsave {
        return Err(SnapshotError::Unsupported {
            device: "the vCPUs".into(),
            why: format!(
                "this host's XSAVE state is {} bytes; only {max_xsave} are supported",
                ctx.xsave2_size
            ),
        });
    }
    let Some(devices) = &ctx.devices else {
        return Err(SnapshotError::Unsupported {
            device: "the platform devices".into(),
            why: "none are attached (Vm::attach_devices)".into(),
        });
    };
    if req.kind == SnapshotKind::Diff {
        if ctx.dirty.is_none() {
            return Err(SnapshotError::DiffNotTracked);
        }
        if !ctx.has_memory_base {
            return Err(SnapshotError::DiffWithoutBase);
        }
    }
    let mut virtio = Vec::new();
    for (i, (slot, t)) in src.virtio.iter().enumerate() {
        let t = crate::lock(t);
        let identity = t.backend_identity();
        identity_fits(slot.kind, &identity).map_err(|why| SnapshotError::Unsupported {
            device: format!("virtio slot {i} ({:?})", slot.kind),
            why,
        })?;
        virtio.push(VirtioState {
            slot: *slot,
            identity,
            transport: t.state(),
        });
    }
    let vcpus = src
        .control
        .collect_vcpu_states(src.vcpus, VCPU_SAVE_TIMEOUT)?;
    let vm = save_vm_state(src.vm_fd, src.irqchip, src.clock)?;
    let device_states = devices.state();
    let mem = src.ram.memory();
    let memory = memory_state(mem);
    let written = match (req.kind, &ctx.dirty) {
        (SnapshotKind::Full, dirty) => {
            let written = write_full(mem, &req.mem_file_path)?;
            if let Some(dirty) = dirty {
                // The file now holds every page: the next diff starts
                // from here. The VM is paused, so nothing was written
                // between the copy and this.
                dirty_bitmaps(src, dirty)?;
                dirty.clear();
            }
            written
        }
        (SnapshotKind::Diff, Some(dirty)) => {
            // Reading the logs clears them: if writing fails now, the
            // pages are no longer known, and only a full snapshot is safe.
            ctx.has_memory_base = false;
            let maps = dirty_bitmaps(src, dirty)?;
            write_diff(mem, &req.mem_file_path, &maps)?
        }
        (SnapshotKind::Diff, None) => return Err(SnapshotError::DiffNotTracked),
    };
    let body = SnapshotBody {
        vmm: format!("vmm-core {}", env!("CARGO_PKG_VERSION")),
        config: ctx.config.clone(),
        memory,
        vm,
        vcpus,
        devices: device_states,
        virtio,
    };
    let bytes = encode(&body)?;
    write_file(&req.snapshot_path, &bytes)?;
    ctx.has_memory_base = true;
    let info = SnapshotInfo {
        kind: req.kind,
        snapshot_bytes: bytes.len() as u64,
        memory_bytes: body.memory.size,
        memory_bytes_written: written,
        elapsed: started.elapsed(),
    };
    log::info!(
        "snapshot ({:?}) to {} and {}: {} bytes of state, {} of {} bytes of RAM written, {:.1} ms",
        info.kind,
        req.snapshot_path.display(),
        req.mem_file_path.display(),
        info.snapshot_bytes,
        info.memory_bytes_written,
        info.memory_bytes,
        info.elapsed.as_secs_f64() * 1e3
    );
    Ok(info)
}
