//! [`Vm::restore`]: a VM built from a snapshot instead of a [`VmConfig`].
//!
//! [`VmConfig`]: crate::VmConfig

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use kvm_bindings::CpuId;
use kvm_ioctls::Cap;
use vmm_cpu::cpuid;
use vmm_cpu::snapshot::{check_cpuid_compatible, check_xsave_size};
use vmm_cpu::{EmulationFallback, GuestFeatures, Vcpu};
use vmm_devices::pc::build_devices_from_state;
use vmm_devices::virtio::BackendIdentity;
use vmm_devices::Console;
use vmm_memory::{register_memory_slots_with, GuestRam, MemoryLayout, SlotOptions};

use super::body::SnapshotBody;
use super::create::SnapshotContext;
use super::error::SnapshotError;
use super::format::{decode, HEADER_LEN, MAX_BODY_LEN};
use super::validate::validate;
use super::vm_state::restore_vm_state;
use crate::config::HostOptions;
use crate::control::{RunState, VmControl};
use crate::create::MAX_CPUS;
use crate::error::VmmError;
use crate::explain::Explainer;
use crate::firmware::acpi::facs::find_facs;
use crate::firmware::acpi::search::find_rsdp;
use crate::kvm::open_kvm;
use crate::platform::create_irqchip;
use crate::timeline::ExitTimeline;
use crate::virtio::build_backends;
use crate::vm::{RunOptions, Vm, VmParts};

/// TSC rates within this many parts per million count as equal (QEMU's
/// and Firecracker's tolerance for calibration differences).
const TSC_TOLERANCE_PPM: u64 = 250;

/// Reads and checks a snapshot file: format, checksum, consistency.
pub fn read_snapshot(path: &Path) -> Result<SnapshotBody, SnapshotError> {
    let err = |source| SnapshotError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(err)?;
    let len = file.metadata().map_err(err)?.len();
    let max = HEADER_LEN as u64 + MAX_BODY_LEN;
    if len > max {
        return Err(SnapshotError::TooLarge { len, max });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max + 1).read_to_end(&mut bytes).map_err(err)?;
    let body = decode(&bytes)?;
    validate(&body)?;
    Ok(body)
}

/// Gives each network interface the MAC its snapshot recorded: one the
/// configuration left out was random, and the guest's driver has it.
fn with_saved_macs(body: &mut SnapshotBody) {
    let saved = body.virtio.iter().filter_map(|v| match &v.identity {
        BackendIdentity::Net { mac, .. } => Some(*mac),
        _ => None,
    });
    for (net, mac) in body.config.devices.nets.iter_mut().zip(saved) {
        net.mac = Some(mac);
    }
}

/// Opens the memory file and checks it is exactly the snapshot's RAM.
fn open_memory_file(path: &Path, expected: u64) -> Result<File, SnapshotError> {
    let err = |source| SnapshotError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Read-only is enough: the mapping is private.
    let file = File::open(path).map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() || meta.len() != expected {
        return Err(SnapshotError::MemoryFileSize {
            path: path.to_path_buf(),
            expected,
            found: meta.len(),
        });
    }
    Ok(file)
}

fn warn_if_tsc_differs(vcpu: &Vcpu, saved: Option<u32>) {
    let (Some(saved), Ok(here)) = (saved, vcpu.fd().get_tsc_khz()) else {
        return;
    };
    let diff = u64::from(saved.abs_diff(here));
    if diff * 1_000_000 > u64::from(saved) * TSC_TOLERANCE_PPM {
        log::warn!(
            "restore: the snapshot's TSC ran at {saved} kHz, this host's at {here} kHz, and \
             KVM here cannot scale it: the guest's TSC-based clocks run at the host's rate"
        );
    }
}

impl Vm {
    /// Builds the VM a snapshot describes: `snapshot_path` from
    /// [`crate::VmHandle::snapshot`], `mem_file_path` its memory file.
    /// Run as `host` says (its `track_dirty_pages` decides whether this VM
    /// can take diff snapshots in turn). Guest output goes where the
    /// snapshot's VM sent it (see [`Self::restore_with_console`]).
    ///
    /// Everything is checked before KVM is touched; a failed restore
    /// leaves nothing behind. The VM starts paused: [`Vm::run`] runs no
    /// guest instruction until [`crate::VmHandle::resume`], unless
    /// [`Self::resume_on_start`] was called.
    pub fn restore(
        snapshot_path: &Path,
        mem_file_path: &Path,
        host: HostOptions,
    ) -> Result<Vm, VmmError> {
        Self::restore_with_console(snapshot_path, mem_file_path, host, None)
    }

    /// [`Self::restore`], with UART and debug-console output to `console`
    /// instead of the snapshot VM's serial setting.
    pub fn restore_with_console(
        snapshot_path: &Path,
        mem_file_path: &Path,
        host: HostOptions,
        console: Option<Console>,
    ) -> Result<Vm, VmmError> {
        let t0 = std::time::Instant::now();
        let mut body = read_snapshot(snapshot_path)?;
        let mem_file = open_memory_file(mem_file_path, body.memory.size)?;
        with_saved_macs(&mut body);
        let config = &body.config;
        let layout = MemoryLayout::new(config.memory_mib)?;
        let console = match console {
            Some(c) => c,
            None => config.devices.serial.open()?,
        };
        // Host resources next (bad input before KVM), checked against what
        // the snapshot recorded.
        let backends = build_backends(&config.devices)?;
        for (i, (dev, saved)) in backends.devices.iter().zip(&body.virtio).enumerate() {
            let rebuilt = dev.snapshot_identity();
            if rebuilt != saved.identity {
                return Err(SnapshotError::BackendChanged {
                    slot: i,
                    kind: format!("{:?}", saved.slot.kind),
                    saved: format!("{:?}", saved.identity),
                    rebuilt: format!("{rebuilt:?}"),
                }
                .into());
            }
        }

        let kvm = open_kvm(&host.kvm_path)?;
        let max = (kvm.get_max_vcpus() as u64).min(MAX_CPUS);
        let cpus = body.vcpus.len() as u64;
        if cpus > max {
            return Err(VmmError::CpuCount {
                requested: cpus,
                max,
            });
        }
        let mut supported = cpuid::supported_cpuid(&kvm)?;
        // What `Vm::create` offers with the emulation fallback (RDTSCP,
        // which it completes): a snapshot taken with it is compatible
        // with a host that has it too.
        if host.emulation_fallback {
            cpuid::advertise_rdtscp(&mut supported);
        }
        for v in &body.vcpus {
            check_cpuid_compatible(supported.as_slice(), &v.cpuid).map_err(|mismatch| {
                SnapshotError::Cpuid {
                    vcpu: v.index,
                    mismatch,
                }
            })?;
        }

        let ram = GuestRam::from_file(&layout, &mem_file)?;
        // The fallback decides #UD from what the guest was told: the
        // snapshot's CPUID (vCPU 0's; all vCPUs share the feature bits).
        let fallback = host.emulation_fallback.then(|| {
            let told =
                CpuId::from_entries(&body.vcpus[0].cpuid).unwrap_or_else(|_| supported.clone());
            Arc::new(EmulationFallback::new(
                ram.memory().clone(),
                GuestFeatures::from_cpuid(&told),
            ))
        });
        let vm_fd = kvm.create_vm().map_err(VmmError::CreateVm)?;
        let xsave2_size = usize::try_from(vm_fd.check_extension_int(Cap::Xsave2)).unwrap_or(0);
        check_xsave_size(0, xsave2_size).map_err(SnapshotError::from)?;
        let slots = SlotOptions {
            log_dirty_pages: host.track_dirty_pages,
        };
        // SAFETY: `ram` is moved into the returned `Vm`, which drops its VM
        // fd before its RAM (see `Vm`'s field order).
        unsafe { register_memory_slots_with(&vm_fd, &ram, kvm.get_nr_memslots(), slots) }?;
        let pc = body.vm.irqchip.is_some();
        if pc {
            create_irqchip(&vm_fd)?;
        }
        restore_vm_state(&vm_fd, &body.vm)?;
        let mut vcpus = Vec::new();
        for v in &body.vcpus {
            let mut vcpu = Vcpu::new(&vm_fd, v.index)?;
            if let Some(fb) = &fallback {
                vcpu.set_emulation_fallback(fb.clone());
            }
            vmm_cpu::snapshot::restore(&mut vcpu, v).map_err(SnapshotError::from)?;
            warn_if_tsc_differs(&vcpu, v.tsc_khz);
            vcpus.push(vcpu);
        }

        // Paused from the start: the vCPU threads park before their first
        // KVM_RUN, and the clock is set when they are released.
        let control = Arc::new(VmControl::new(host.max_exits));
        control.want_pause(true);
        control.set_run_state(RunState::Paused);
        // The MSRs the snapshot saved were all written back above: they
        // are the list this VM's own snapshots save.
        let msrs = body.vcpus[0].msrs.iter().map(|e| e.index).collect();
        let snapshot = SnapshotContext {
            config: body.config.clone(),
            msrs: Arc::new(msrs),
            xsave2_size,
            dirty: None,
            devices: None,
            unsnapshottable: Vec::new(),
            restored_clock: body.vm.clock,
            restored: true,
            has_memory_base: true,
        };
        let options = RunOptions {
            timeout: host.timeout,
            metrics: host.metrics,
            seccomp: host.seccomp,
            trace_io: host.trace_io,
            print_post_codes: host.print_post_codes,
            console_input: host.console_input,
            started_at: host.started_at,
            deadline: None,
            startup: crate::startup::StartupMarks::new(host.started_at),
            main_filter: None,
            // A restored VM's exits are explained and plotted; the steps
            // that built it are the restore's, not the ones --explain
            // teaches, so they are not told.
            explain: host
                .explain
                .clone()
                .map(|sink| Arc::new(Explainer::new(sink, cpus))),
            timeline: host.exit_timeline.then(|| {
                Arc::new(ExitTimeline::new(
                    host.started_at.unwrap_or_else(std::time::Instant::now),
                ))
            }),
        };
        let virtio_slots = body.virtio.iter().map(|v| v.slot).collect();
        // The FACS the guest was told of, for its waking vector at an S3
        // wake: through the RSDP, found where the guest finds it (the boot
        // plan may have moved it from its preferred 0xe0000).
        let facs = pc
            .then(|| find_rsdp(ram.memory()).and_then(|rsdp| find_facs(ram.memory(), rsdp)))
            .flatten();
        let mut vm = Vm::new(VmParts {
            vcpus,
            threads: None,
            vm_fd,
            kvm: Arc::new(kvm),
            ram,
            irqchip: pc,
            control,
            options,
            virtio_slots,
            snapshot,
            track_dirty_pages: host.track_dirty_pages,
            wake: None,
            facs,
            fallback,
        })?;
        let devices = build_devices_from_state(
            vm.device_options(console),
            &mut vm.interrupt_lines(),
            &body.devices,
        )
        .map_err(|e| match e {
            vmm_devices::pc::DeviceSetError::State(source) => {
                VmmError::from(SnapshotError::DeviceState {
                    what: "the platform devices".into(),
                    source,
                })
            }
            other => VmmError::from(other),
        })?;
        vm.attach_devices(devices);
        for (i, (backend, saved)) in backends.devices.into_iter().zip(&body.virtio).enumerate() {
            vm.attach_virtio(backend)?;
            vm.restore_virtio_transport(i, &saved.transport)
                .map_err(|source| SnapshotError::DeviceState {
                    what: format!("virtio slot {i} ({:?})", saved.slot.kind),
                    source,
                })?;
        }
        if let Some(link) = backends.console_input {
            vm.connect_console_input(link);
        }
        log::info!(
            "restored {} ({} MiB, {} vCPUs) in {:.2} ms; guest RAM maps {}",
            snapshot_path.display(),
            config.memory_mib,
            cpus,
            t0.elapsed().as_secs_f64() * 1e3,
            mem_file_path.display()
        );
        Ok(vm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetConfig;
    use crate::snapshot::body::VirtioState;
    use crate::virtio::{virtio_layout, VirtioKind};

    #[test]
    fn test_restore_gives_each_interface_its_saved_mac() {
        let mut body = crate::snapshot::tests::sample_body();
        let nets = &mut body.config.devices.nets;
        // The first had a random MAC (none configured), the second its own.
        nets.push(NetConfig {
            tap: "tap0".into(),
            mac: None,
        });
        nets.push(NetConfig {
            tap: "tap1".into(),
            mac: Some([2, 0, 0, 0, 0, 9]),
        });
        body.config.devices.rng = true;
        let slots = virtio_layout(&body.config.devices).unwrap();
        let identity = |kind: VirtioKind, i: u8| match kind {
            VirtioKind::Net => BackendIdentity::Net {
                tap: format!("tap{i}"),
                mac: [2, 0, 0, 0, 0, 0x10 + i],
            },
            other => BackendIdentity::DeviceType(other.device_type()),
        };
        body.virtio = slots
            .iter()
            .zip(0u8..)
            .map(|(slot, i)| VirtioState {
                slot: *slot,
                identity: identity(slot.kind, i),
                transport: Default::default(),
            })
            .collect();
        with_saved_macs(&mut body);
        let macs: Vec<_> = body.config.devices.nets.iter().map(|n| n.mac).collect();
        assert_eq!(
            macs,
            [Some([2, 0, 0, 0, 0, 0x10]), Some([2, 0, 0, 0, 0, 0x11])]
        );
    }
}
