//! [`Vm::create`]: from a [`VmConfig`] to a VM ready for its devices.
//!
//! All user input (memory size, image, addresses, entry, vCPU count) is
//! checked before `/dev/kvm` is opened, so bad input is reported as such
//! even on a host without KVM, and nothing is left behind when it fails.

use std::sync::{mpsc, Arc};
use std::time::Instant;

use kvm_ioctls::Cap;
use vm_memory::GuestMemoryBackend;
use vmm_cpu::cpuid::{self, Topology};
use vmm_cpu::{firmware_state, setup_boot_state, CpuMode, EmulationFallback, GuestFeatures, Vcpu};
use vmm_devices::legacy::{acpi_pm, cmos};
use vmm_loader::linux::cache::VmlinuxCache;
use vmm_loader::{BootSpec, Handoff};
use vmm_memory::{register_memory_slots_with, GuestRam, MemoryLayout, SlotOptions, ThpHint};
use vmm_memory::{BootPlan, Structure};

use crate::boot::{is_pc, load_image, Loaded};
use crate::config::{BootConfig, HostOptions, VmConfig};
use crate::control::VmControl;
use crate::error::VmmError;
use crate::explain::{regs_line, say, size_text, sregs_line, Explainer};
use crate::firmware::acpi::facs::find_facs;
use crate::firmware::real_mode::{write_bios_data, write_real_mode_firmware};
use crate::firmware::{write_firmware_tables, PlatformInfo, VirtioMmio};
use crate::kvm::open_kvm;
use crate::platform::{create_irqchip, set_bios_pic_and_pit, Platform};
use crate::reboot::NextBoot;
use crate::seccomp::{self, ThreadRole};
use crate::snapshot::create::SnapshotContext;
use crate::snapshot::SnapshotError;
use crate::startup::{Mark, StartupMarks};
use crate::timeline::ExitTimeline;
use crate::vcpu_threads::{FirstTask, VcpuThreads};
use crate::virtio::virtio_layout;
use crate::vm::vcpu_role;
use crate::vm::{RunOptions, Vm, VmParts};

/// Most vCPUs a VM may have: APIC IDs are 8 bits in the MP table and
/// xAPIC mode, and 0xff is the broadcast ID.
pub const MAX_CPUS: u64 = 254;

/// What the PC platform's firmware tables describe for `config` with
/// `cpus` vCPUs and `virtio_slots`.
fn platform_info(cpus: u64, virtio_slots: &[crate::virtio::VirtioSlot]) -> PlatformInfo {
    PlatformInfo {
        pm_timer_32bit: acpi_pm::PM_TMR_VAL_EXT,
        rtc_century_index: cmos::CMOS_CENTURY,
        virtio_mmio: virtio_slots
            .iter()
            .map(|slot| VirtioMmio {
                base: slot.base,
                gsi: slot.gsi as u8,
            })
            .collect(),
        // More than MAX_CPUS is refused before anything is written; the
        // sizes are measured for at most that many.
        ..PlatformInfo::pc(cpus.min(MAX_CPUS) as u8, acpi_pm::S5_SLP_TYP)
    }
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
        let mut marks = StartupMarks::new(host.started_at);
        marks.mark(Mark::CreateEntered);
        // Input first, KVM last: bad input is reported even without KVM.
        let cpus = config.vcpus;
        if cpus == 0 {
            return Err(VmmError::CpuCount {
                requested: 0,
                max: MAX_CPUS,
            });
        }
        let explain = host
            .explain
            .clone()
            .map(|sink| Arc::new(Explainer::new(sink, cpus)));
        let timeline = host.exit_timeline.then(|| {
            Arc::new(ExitTimeline::new(
                host.started_at.unwrap_or_else(Instant::now),
            ))
        });
        let phase = |name: &str| {
            if let Some(t) = &timeline {
                t.phase(name);
            }
        };
        let virtio_slots = virtio_layout(&config.devices)?;
        let layout = MemoryLayout::new(config.memory_mib)?;
        let thp = if host.thp { ThpHint::On } else { ThpHint::Off };
        let ram = GuestRam::new(&layout, thp)?;
        marks.mark(Mark::Memory);
        say(&explain, || {
            let regions = match ram.memory().num_regions() {
                1 => "one region".to_string(),
                n => format!("{n} regions, around the MMIO hole"),
            };
            format!(
                "guest RAM: {} mapped into this process (mmap), {regions}",
                size_text(layout.size()),
            )
        });
        let cache = host.kernel_cache.clone().map(VmlinuxCache::new);
        let info = platform_info(cpus, &virtio_slots);
        let Loaded {
            format,
            spec,
            start,
        } = load_image(config, cache.as_ref(), &ram, &virtio_slots, &info)?;
        explain_load(&explain, format, &spec);
        phase("image loaded");
        marks.mark(Mark::Load);
        let pc = is_pc(config, format);
        if !pc && cpus > 1 {
            return Err(VmmError::SmpNeedsPc { cpus });
        }
        explain_plan(&explain, &spec.plan);

        let kvm = open_kvm(&host.kvm_path)?;
        say(&explain, || {
            format!(
                "open {}: KVM_GET_API_VERSION = {} (the only version there is)",
                host.kvm_path.display(),
                kvm.get_api_version()
            )
        });
        let max = (kvm.get_max_vcpus() as u64).min(MAX_CPUS);
        if cpus > max {
            return Err(VmmError::CpuCount {
                requested: cpus,
                max,
            });
        }
        // The vCPU threads start now and confine themselves while this
        // thread builds the VM; vCPU 0's first fetches KVM's CPUID and MSR
        // lists and compiles the main thread's seccomp filter (see
        // `crate::vcpu_threads`).
        let kvm = Arc::new(kvm);
        let (from_kvm, kvm_lists) = mpsc::channel();
        let first: FirstTask = {
            let kvm = kvm.clone();
            let seccomp = host.seccomp;
            Box::new(move || {
                let _ = from_kvm.send((
                    cpuid::supported_cpuid(&kvm),
                    vmm_cpu::snapshot::msrs_to_save(&kvm),
                    seccomp.then(|| seccomp::filter_for(ThreadRole::Main)),
                ));
            })
        };
        let threads = VcpuThreads::spawn(
            cpus,
            vcpu_role(host.seccomp, explain.is_some(), false),
            Some(first),
        )
        .map_err(|(index, source)| VmmError::SpawnVcpu { index, source })?;
        let vm_fd = kvm.create_vm().map_err(VmmError::CreateVm)?;
        say(&explain, || {
            "KVM_CREATE_VM: a VM file descriptor, with no memory and no vCPUs yet".to_string()
        });
        let slot_options = SlotOptions {
            log_dirty_pages: host.track_dirty_pages,
        };
        // SAFETY: `ram` is moved into the returned `Vm`, which drops its VM
        // fd before its RAM (see `Vm`'s field order).
        let slots = unsafe {
            register_memory_slots_with(&vm_fd, &ram, kvm.get_nr_memslots(), slot_options)
        }?;
        for r in &slots {
            say(&explain, || {
                format!(
                    "KVM_SET_USER_MEMORY_REGION: slot {}, guest-physical {:#x}, size {:#x} ({}), host address {:#x}",
                    r.slot,
                    r.guest_phys_addr,
                    r.memory_size,
                    size_text(r.memory_size),
                    r.userspace_addr
                )
            });
        }
        // A real-mode program on a PC finds what the BIOS that started it
        // left behind; the minimal platform keeps the bare reset state.
        let bios_real_mode = pc && start.mode == CpuMode::Real;
        if pc {
            create_irqchip(&vm_fd)?;
            say(&explain, || {
                "KVM_CREATE_IRQCHIP: in-kernel PIC, IOAPIC and a LAPIC per vCPU; KVM_SET_GSI_ROUTING: the PC's ISA and IOAPIC routes".to_string()
            });
            say(&explain, || {
                "KVM_CREATE_PIT2: the in-kernel 8254 timer (ports 0x40-0x43, IRQ 0)".to_string()
            });
            if bios_real_mode {
                set_bios_pic_and_pit(&vm_fd)?;
                say(&explain, || {
                    "KVM_SET_IRQCHIP, KVM_SET_PIT2: the 8259s and PIT as a BIOS leaves them for a real-mode program".to_string()
                });
            }
        }
        phase("KVM VM created");

        // Made while vCPU 0's thread asks KVM for its CPUID.
        let mut first_vcpu = Some(Vcpu::new(&vm_fd, 0)?);
        let (supported, msr_list, main_filter) =
            kvm_lists.recv().map_err(|_| VmmError::SpawnVcpu {
                index: 0,
                source: std::io::Error::other("the thread of vCPU 0 ended before KVM's CPUID came"),
            })?;
        let mut supported = supported?;
        let main_filter = main_filter.transpose()?;
        // The fallback completes RDTSCP, so the guest may be told it exists;
        // it decides #UD from the same table the vCPUs get.
        let fallback = host.emulation_fallback.then(|| {
            if !cpuid::advertise_rdtscp(&mut supported) {
                log::warn!("CPUID has no leaf 0x80000001: RDTSCP not advertised");
            }
            Arc::new(EmulationFallback::new(
                ram.memory().clone(),
                GuestFeatures::from_cpuid(&supported),
            ))
        });
        let topo = Topology {
            cpus: cpus as u8,
            hypercall_pv_features: config.hypercall_pv_features,
        };
        // What a snapshot of this VM will need: the MSR list from
        // /dev/kvm, narrowed to what a restore can write back (probed on
        // vCPU 0).
        let msr_list = msr_list.map_err(|source| {
            VmmError::from(SnapshotError::Kvm {
                op: "KVM_GET_MSR_INDEX_LIST",
                source,
            })
        })?;
        let mut msrs = Vec::new();
        let mut vcpus = Vec::new();
        let mmap_size = explain.as_ref().map(|_| kvm.get_vcpu_mmap_size());
        for index in 0..cpus {
            let mut vcpu = match first_vcpu.take() {
                Some(v) => v,
                None => Vcpu::new(&vm_fd, index)?,
            };
            if let Some(fb) = &fallback {
                vcpu.set_emulation_fallback(fb.clone());
            }
            if let Some(size) = mmap_size {
                let run = vcpu.kvm_run_address();
                say(&explain, || {
                    let size =
                        size.map_or_else(|e| format!("unknown ({e})"), |s| format!("{s} bytes"));
                    format!(
                        "KVM_CREATE_VCPU {index}: a vCPU file descriptor; its kvm_run area (KVM_GET_VCPU_MMAP_SIZE = {size}) mapped at host address {run:#x}"
                    )
                });
            }
            let own = cpuid::vcpu_cpuid(&supported, index as u8, topo);
            vcpu.set_cpuid2(&own)
                .map_err(vmm_cpu::cpuid::CpuidError::SetCpuid)?;
            let entries = own.as_slice().len();
            say(&explain, || {
                format!(
                    "KVM_SET_CPUID2: {entries} entries (KVM_GET_SUPPORTED_CPUID, with APIC ID {index} and the topology)"
                )
            });
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
                say(&explain, || {
                    "KVM_SET_LAPIC, KVM_SET_MSRS, KVM_SET_FPU: LAPIC in virtual-wire mode, MSRs and FPU as a BIOS leaves them".to_string()
                });
            }
            // Only the BSP starts at the image's entry; with the irqchip,
            // APs wait for INIT/SIPI like real hardware.
            if index == 0 {
                let loaded = setup_boot_state(vcpu.fd(), ram.memory(), &start)?;
                if let Some((at, len)) = loaded.gdt {
                    say(&explain, || {
                        format!(
                            "boot GDT written at guest-physical {:#x} ({len} bytes)",
                            at.0
                        )
                    });
                }
                if let Some((from, to)) = loaded.page_tables {
                    say(&explain, || {
                        format!(
                            "page tables written at [{:#x}, {:#x}): the first 4 GiB identity-mapped with 2 MiB pages",
                            from.0, to.0
                        )
                    });
                }
                say(&explain, || sregs_line(&loaded.sregs));
                say(&explain, || regs_line(&loaded.regs, &start.regs));
            }
            vcpus.push(vcpu);
        }

        let mut facs = None;
        if pc {
            let tables = write_firmware_tables(ram.memory(), &info, &spec.plan)?;
            let seconds_today = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() % 86_400);
            write_bios_data(ram.memory(), &spec.plan, seconds_today)
                .map_err(VmmError::RealModeFirmware)?;
            if bios_real_mode {
                write_real_mode_firmware(ram.memory(), &spec.plan)
                    .map_err(VmmError::RealModeFirmware)?;
            }
            say(&explain, || {
                let ebda = spec.plan.addr(Structure::Ebda);
                format!(
                    "BIOS data area: COM1 at 0x3f8, {} KiB of base memory, EBDA {}",
                    spec.plan.base_memory_kib(),
                    ebda.map_or("none".to_string(), |a| format!("at {:#x}", a.0))
                )
            });
            say(&explain, || {
                format!(
                    "firmware tables written: ACPI RSDP at {:#x}, MP floating pointer at {:#x}",
                    tables.rsdp.0, tables.mp_floating_pointer.0
                )
            });
            log::info!(
                "firmware tables: ACPI RSDP at {:#x}, MP floating pointer at {:#x}",
                tables.rsdp.0,
                tables.mp_floating_pointer.0
            );
            // Firmware knows where its FACS is: read back once, before the
            // guest can touch the tables.
            facs = find_facs(ram.memory(), tables.rsdp);
        }

        phase("vCPUs set up");
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
        marks.mark(Mark::Created);
        let options = RunOptions {
            timeout: host.timeout,
            metrics: host.metrics,
            seccomp: host.seccomp,
            trace_io: host.trace_io,
            print_post_codes: host.print_post_codes,
            console_input: host.console_input,
            started_at: host.started_at,
            deadline,
            explain,
            timeline,
            startup: marks,
            main_filter,
        };
        let mut vm = Vm::new(VmParts {
            vcpus,
            threads: Some(threads),
            vm_fd,
            kvm,
            ram,
            irqchip: pc,
            control,
            options,
            virtio_slots,
            facs,
            fallback,
            snapshot,
            track_dirty_pages: host.track_dirty_pages,
            wake,
        })?;
        vm.cmos_kept = cmos;
        Ok(vm)
    }
}

/// Tells where the boot structures went, and what was left out and why.
fn explain_plan(explain: &Option<Arc<Explainer>>, plan: &BootPlan) {
    for (what, why) in plan.skipped() {
        log::info!("no {what} written: {why}");
    }
    if explain.is_none() {
        return;
    }
    let placed: Vec<String> = plan
        .placed()
        .iter()
        .map(|p| format!("{} [{:#x}, {:#x})", p.what, p.start, p.end()))
        .collect();
    if !placed.is_empty() {
        say(explain, || {
            format!(
                "boot structures placed around the image (reserved in the memory map but the IVT and BDA): {}",
                placed.join(", ")
            )
        });
    }
}

/// Tells where the loader put the image and what it wrote for the boot
/// protocol.
fn explain_load(explain: &Option<Arc<Explainer>>, format: vmm_loader::Format, spec: &BootSpec) {
    if explain.is_none() {
        return;
    }
    let segments = if spec.segments.is_empty() {
        vec![spec.image]
    } else {
        spec.segments.clone()
    };
    for (at, len) in segments {
        say(explain, || {
            format!(
                "image ({format}): {} copied to guest-physical [{:#x}, {:#x})",
                size_text(len),
                at.0,
                at.0 + len
            )
        });
    }
    match spec.handoff {
        Handoff::None => {}
        Handoff::Multiboot { info, .. } => say(explain, || {
            format!(
                "Multiboot information (memory map, command line, modules) written at {:#x}",
                info.0
            )
        }),
        Handoff::LinuxZeroPage(zero_page) => say(explain, || {
            format!(
                "Linux zero page (boot_params: e820 map, command line pointer) written at {:#x}, command line at {:#x}",
                zero_page.0,
                spec.plan.addr(Structure::Cmdline).map_or(0, |a| a.0)
            )
        }),
        Handoff::PvhStartInfo(start_info) => say(explain, || {
            format!(
                "PVH hvm_start_info (memory map, command line, modules) written at {:#x}",
                start_info.0
            )
        }),
    }
}
