//! [`Vm::create`]: from a [`VmConfig`] to a VM ready for its devices.
//!
//! All user input (memory size, image, addresses, entry, vCPU count) is
//! checked before `/dev/kvm` is opened, so bad input is reported as such
//! even on a host without KVM, and nothing is left behind when it fails.

use std::sync::Arc;

use kvm_ioctls::Cap;
use vmm_cpu::cpuid::{self, Topology};
use vmm_cpu::{firmware_state, setup_boot_state, Vcpu};
use vmm_devices::legacy::{acpi_pm, cmos};
use vmm_loader::linux::cache::VmlinuxCache;
use vmm_loader::BootSpec;
use vmm_memory::layout::{ACPI_TABLES_START, MPTABLE_END};
use vmm_memory::{register_memory_slots_with, GuestRam, MemoryLayout, SlotOptions, ThpHint};

use crate::boot::{is_pc, load_image, Loaded};
use crate::config::{BootConfig, HostOptions, VmConfig};
use crate::control::VmControl;
use crate::error::VmmError;
use crate::firmware::{write_firmware_tables, PlatformInfo, VirtioMmio};
use crate::kvm::open_kvm;
use crate::platform::create_irqchip;
use crate::platform::Platform;
use crate::reboot::NextBoot;
use crate::snapshot::create::SnapshotContext;
use crate::snapshot::SnapshotError;
use crate::virtio::virtio_layout;
use crate::vm::{RunOptions, Vm, VmParts};

/// Most vCPUs a VM may have: APIC IDs are 8 bits in the MP table and
/// xAPIC mode, and 0xff is the broadcast ID.
pub const MAX_CPUS: u64 = 254;

/// The part of the image that overlaps the firmware tables, and their
/// range, if any.
fn spec_overlaps_firmware(spec: &BootSpec) -> Option<((u64, u64), (u64, u64))> {
    let tables = (ACPI_TABLES_START.0, MPTABLE_END.0);
    spec.overlap(tables.0, tables.1).map(|seg| (seg, tables))
}

impl Vm {
    /// Creates the VM `config` describes, run as `host` says: guest RAM
    /// with the image loaded, the KVM VM, its vCPUs in their start state
    /// and, on the PC platform, the irqchip and firmware tables. It has no
    /// devices yet: build them with [`vmm_devices::pc::build_devices`] from
    /// [`Vm::device_options`] and [`Vm::interrupt_lines`], then
    /// [`Vm::attach_devices`] (or use [`crate::VmBuilder::build`], which
    /// does exactly that).
    pub fn create(config: &VmConfig, host: HostOptions) -> Result<Vm, VmmError> {
        Self::create_with(config, host, None)
    }

    /// [`Self::create`] for the next boot of a rebooting VM (see
    /// [`crate::reboot::run_rebooting`]): the new VM takes over the handles
    /// of the one before (the same [`crate::VmHandle`]s keep working), its
    /// exit budget and the deadline of its timeout, and, if `host` has no
    /// metrics sink, the one before's.
    pub fn create_next(
        config: &VmConfig,
        host: HostOptions,
        next: NextBoot,
    ) -> Result<Vm, VmmError> {
        Self::create_with(config, host, Some(next))
    }

    fn create_with(
        config: &VmConfig,
        mut host: HostOptions,
        next: Option<NextBoot>,
    ) -> Result<Vm, VmmError> {
        // Input first, KVM last: bad input is reported even without KVM.
        let cpus = config.vcpus;
        if cpus == 0 {
            return Err(VmmError::CpuCount {
                requested: 0,
                max: MAX_CPUS,
            });
        }
        let virtio_slots = virtio_layout(&config.devices)?;
        let layout = MemoryLayout::new(config.memory_mib)?;
        let thp = if host.thp { ThpHint::On } else { ThpHint::Off };
        let ram = GuestRam::new(&layout, thp)?;
        let cache = host.kernel_cache.clone().map(VmlinuxCache::new);
        let Loaded {
            format,
            spec,
            start,
        } = load_image(config, cache.as_ref(), &ram, &virtio_slots)?;
        let pc = is_pc(config, format);
        if !pc && cpus > 1 {
            return Err(VmmError::SmpNeedsPc { cpus });
        }
        if pc {
            if let Some((image, tables)) = spec_overlaps_firmware(&spec) {
                return Err(VmmError::OverlapsFirmwareTables { image, tables });
            }
        }

        let kvm = open_kvm(&host.kvm_path)?;
        let max = (kvm.get_max_vcpus() as u64).min(MAX_CPUS);
        if cpus > max {
            return Err(VmmError::CpuCount {
                requested: cpus,
                max,
            });
        }
        let vm_fd = kvm.create_vm().map_err(VmmError::CreateVm)?;
        let slots = SlotOptions {
            log_dirty_pages: host.track_dirty_pages,
        };
        // SAFETY: `ram` is moved into the returned `Vm`, which drops its VM
        // fd before its RAM (see `Vm`'s field order).
        unsafe { register_memory_slots_with(&vm_fd, &ram, kvm.get_nr_memslots(), slots) }?;
        if pc {
            create_irqchip(&vm_fd)?;
        }

        let supported = cpuid::supported_cpuid(&kvm)?;
        let topo = Topology {
            cpus: cpus as u8,
            hypercall_pv_features: config.hypercall_pv_features,
        };
        // What a snapshot of this VM will need: the MSR list comes from
        // /dev/kvm, which vCPU threads may not use once confined, narrowed
        // to what a restore can write back (probed on vCPU 0).
        let msr_list = vmm_cpu::snapshot::msrs_to_save(&kvm).map_err(|source| {
            VmmError::from(SnapshotError::Kvm {
                op: "KVM_GET_MSR_INDEX_LIST",
                source,
            })
        })?;
        let mut msrs = Vec::new();
        let mut vcpus = Vec::new();
        for index in 0..cpus {
            let mut vcpu = Vcpu::new(&vm_fd, index)?;
            let own = cpuid::vcpu_cpuid(&supported, index as u8, topo);
            vcpu.set_cpuid2(&own)
                .map_err(vmm_cpu::cpuid::CpuidError::SetCpuid)?;
            if index == 0 {
                // Before anything else is set: the probe writes back the
                // values it reads.
                let (usable, _) = vmm_cpu::snapshot::probe_msrs(vcpu.fd(), 0, &msr_list)
                    .map_err(SnapshotError::from)?;
                msrs = usable;
            }
            if pc {
                firmware_state::setup_lapic(vcpu.fd())?;
                firmware_state::setup_msrs(vcpu.fd())?;
                firmware_state::setup_fpu(vcpu.fd())?;
            }
            // Only the BSP starts at the image's entry; with the irqchip,
            // APs wait for INIT/SIPI like real hardware.
            if index == 0 {
                setup_boot_state(vcpu.fd(), ram.memory(), &start)?;
            }
            vcpus.push(vcpu);
        }

        if pc {
            let info = PlatformInfo {
                pm_timer_32bit: acpi_pm::PM_TMR_VAL_EXT,
                rtc_century_index: cmos::CMOS_CENTURY,
                virtio_mmio: virtio_slots
                    .iter()
                    .map(|slot| VirtioMmio {
                        base: slot.base,
                        gsi: slot.gsi as u8,
                    })
                    .collect(),
                ..PlatformInfo::pc(cpus as u8, acpi_pm::S5_SLP_TYP)
            };
            let tables = write_firmware_tables(ram.memory(), &info)?;
            log::info!(
                "firmware tables: ACPI RSDP at {:#x}, MP floating pointer at {:#x}",
                tables.rsdp.0,
                tables.mp_floating_pointer.0
            );
        }

        let snapshot = SnapshotContext {
            config: VmConfig {
                boot: BootConfig::default(),
                platform: if pc { Platform::Pc } else { Platform::Minimal },
                ..config.clone()
            },
            msrs: Arc::new(msrs),
            xsave2_size: usize::try_from(vm_fd.check_extension_int(Cap::Xsave2)).unwrap_or(0),
            dirty: None,
            devices: None,
            unsnapshottable: Vec::new(),
            restored_clock: None,
            restored: false,
            has_memory_base: false,
        };
        let (control, wake, deadline, cmos) = match next {
            Some(next) => {
                if host.metrics.is_none() {
                    host.metrics = next.metrics;
                }
                (next.control, Some(next.wake), next.deadline, next.cmos)
            }
            None => (Arc::new(VmControl::new(host.max_exits)), None, None, None),
        };
        let options = RunOptions {
            timeout: host.timeout,
            metrics: host.metrics,
            seccomp: host.seccomp,
            trace_io: host.trace_io,
            print_post_codes: host.print_post_codes,
            console_input: host.console_input,
            started_at: host.started_at,
            deadline,
        };
        let mut vm = Vm::new(VmParts {
            vcpus,
            vm_fd,
            kvm,
            ram,
            irqchip: pc,
            control,
            options,
            virtio_slots,
            snapshot,
            track_dirty_pages: host.track_dirty_pages,
            wake,
        })?;
        vm.cmos_kept = cmos;
        Ok(vm)
    }
}
