//! [`VmBuilder`]: the library entry point. Describe the VM, then
//! `build()?.run()?`.
//!
//! `build` checks all user input (memory size, image, addresses, entry)
//! before it opens `/dev/kvm`, so bad input is reported as such even on a
//! host without KVM, and nothing is left behind when it fails.

use std::os::unix::io::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vm_device::bus::{MmioAddress, PioAddress};
use vm_device::{DeviceMmio, DevicePio};
use vm_memory::GuestAddress;
use vmm_cpu::cpuid::{self, Topology};
use vmm_cpu::{firmware_state, setup_boot_state, validate_start, Reg, StartState, Vcpu};
use vmm_devices::legacy::{acpi_pm, cmos};
use vmm_devices::Console;
use vmm_loader::input::{read_input, InputKind};
use vmm_loader::linux::cache::{read_kernel, VmlinuxCache};
use vmm_loader::raw::{RawOptions, DEFAULT_LOAD_ADDR};
use vmm_loader::{BootMode, BootSpec, Entry, Format, KernelCacheUse, LoadRequest, ModuleImage};
use vmm_memory::layout::{ACPI_TABLES_START, MPTABLE_END};
use vmm_memory::{register_memory_slots, GuestRam, MemoryLayout, ThpHint};

use crate::control::VmControl;
use crate::error::{RawOption, VmmError};
use crate::firmware::{write_firmware_tables, PlatformInfo};
use crate::kvm::open_kvm;
use crate::platform::{create_irqchip, Platform};
use crate::vm::{RunOptions, Vm};
use vmm_devices::pc::build_devices;

/// Most vCPUs a VM may have: APIC IDs are 8 bits in the MP table and
/// xAPIC mode, and 0xff is the broadcast ID.
pub const MAX_CPUS: u64 = 254;

/// Guest RAM when none is asked for, in MiB (QEMU's default).
pub const DEFAULT_MEMORY_MIB: u64 = 128;

/// Where the kernel image comes from.
#[derive(Debug, Clone)]
pub enum KernelImage {
    /// A file.
    Path(PathBuf),
    /// Bytes already in memory (tests, embedding).
    Bytes(Vec<u8>),
}

struct ExtraPio {
    name: String,
    base: u16,
    len: u16,
    device: Arc<dyn DevicePio + Send + Sync>,
}

struct ExtraMmio {
    name: String,
    base: u64,
    len: u64,
    device: Arc<dyn DeviceMmio + Send + Sync>,
}

/// The part of the image that overlaps the firmware tables, and their
/// range, if any.
fn spec_overlaps_firmware(spec: &BootSpec) -> Option<((u64, u64), (u64, u64))> {
    let tables = (ACPI_TABLES_START.0, MPTABLE_END.0);
    spec.overlap(tables.0, tables.1).map(|seg| (seg, tables))
}

/// Describes a VM; [`VmBuilder::build`] creates it.
///
/// ```no_run
/// use vmm_core::{VmBuilder, VmOutcome};
/// use vmm_core::devices::Console;
///
/// let console = Console::memory();
/// let report = VmBuilder::new()
///     .memory_mib(16)
///     .kernel_bytes(vec![0xb0, b'A', 0xe6, 0xe9, 0xf4]) // mov al,'A'; out 0xe9,al; hlt
///     .console(console.clone())
///     .build()
///     .unwrap()
///     .run()
///     .unwrap();
/// assert_eq!(report.outcome, VmOutcome::Halted { vcpu: 0 });
/// assert_eq!(console.captured(), b"A");
/// ```
pub struct VmBuilder {
    memory_mib: u64,
    kernel: Option<KernelImage>,
    format: Option<Format>,
    cmdline: Option<String>,
    initrd: Option<PathBuf>,
    modules: Vec<(PathBuf, Option<String>)>,
    bzimage_own_entry: bool,
    mode: Option<BootMode>,
    load_addr: Option<GuestAddress>,
    entry: Option<Entry>,
    regs: Vec<(Reg, u64)>,
    console: Option<Console>,
    trace_io: bool,
    print_post_codes: bool,
    max_exits: Option<u64>,
    timeout: Option<Duration>,
    thp: ThpHint,
    kernel_cache: Option<VmlinuxCache>,
    kvm_path: PathBuf,
    metrics: Option<(Duration, crate::vm::MetricsSink)>,
    seccomp: bool,
    console_input: Option<RawFd>,
    started_at: Option<std::time::Instant>,
    cpus: u64,
    platform: Platform,
    hypercall_pv: bool,
    extra_pio: Vec<ExtraPio>,
    extra_mmio: Vec<ExtraMmio>,
}

impl Default for VmBuilder {
    fn default() -> Self {
        VmBuilder {
            memory_mib: DEFAULT_MEMORY_MIB,
            kernel: None,
            format: None,
            cmdline: None,
            initrd: None,
            modules: Vec::new(),
            bzimage_own_entry: false,
            mode: None,
            load_addr: None,
            entry: None,
            regs: Vec::new(),
            console: None,
            trace_io: false,
            print_post_codes: false,
            max_exits: None,
            timeout: None,
            thp: ThpHint::Off,
            kernel_cache: None,
            kvm_path: PathBuf::from("/dev/kvm"),
            metrics: None,
            seccomp: true,
            console_input: None,
            started_at: None,
            cpus: 1,
            platform: Platform::Auto,
            hypercall_pv: false,
            extra_pio: Vec::new(),
            extra_mmio: Vec::new(),
        }
    }
}

impl VmBuilder {
    /// A builder with the defaults: 128 MiB, real mode, load at 0x1000,
    /// console on stdout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Guest RAM in MiB.
    pub fn memory_mib(mut self, mib: u64) -> Self {
        self.memory_mib = mib;
        self
    }

    /// The kernel image file.
    pub fn kernel_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.kernel = Some(KernelImage::Path(path.into()));
        self
    }

    /// A kernel image held in memory.
    pub fn kernel_bytes(mut self, bytes: Vec<u8>) -> Self {
        self.kernel = Some(KernelImage::Bytes(bytes));
        self
    }

    /// The image format, instead of detecting it.
    pub fn format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }

    /// The kernel command line.
    pub fn cmdline(mut self, cmdline: impl Into<String>) -> Self {
        self.cmdline = Some(cmdline.into());
        self
    }

    /// The initrd (Linux), or module 0 (Multiboot, PVH).
    pub fn initrd_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.initrd = Some(path.into());
        self
    }

    /// A further Multiboot/PVH module, with its string (default: the path).
    pub fn module(mut self, path: impl Into<PathBuf>, string: Option<String>) -> Self {
        self.modules.push((path.into(), string));
        self
    }

    /// Run a bzImage's own 64-bit entry (its decompressor runs in the guest)
    /// instead of decompressing it on the host.
    pub fn bzimage_own_entry(mut self, on: bool) -> Self {
        self.bzimage_own_entry = on;
        self
    }

    /// Keep decompressed bzImage payloads in `dir` and map them into guest
    /// RAM on later starts of the same file (see
    /// [`vmm_loader::linux::cache`]); `None` (the default) decompresses on
    /// every start.
    pub fn kernel_cache(mut self, dir: Option<PathBuf>) -> Self {
        self.kernel_cache = dir.map(VmlinuxCache::new);
        self
    }

    /// CPU mode for raw images (default real mode).
    pub fn mode(mut self, mode: BootMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Load address for raw images (default 0x1000).
    pub fn load_addr(mut self, addr: u64) -> Self {
        self.load_addr = Some(GuestAddress(addr));
        self
    }

    /// Entry point for raw images (default: the load address).
    pub fn entry(mut self, entry: Entry) -> Self {
        self.entry = Some(entry);
        self
    }

    /// Sets a register at entry, after everything else (repeatable; later
    /// values win).
    pub fn reg(mut self, reg: Reg, value: u64) -> Self {
        self.regs.push((reg, value));
        self
    }

    /// Where UART and debug-console output goes (default: stdout).
    pub fn console(mut self, console: Console) -> Self {
        self.console = Some(console);
        self
    }

    /// Feed bytes read from `fd` (normally stdin, 0) to the UART's receive
    /// side. The descriptor must stay open while the VM runs.
    pub fn console_input(mut self, fd: RawFd) -> Self {
        self.console_input = Some(fd);
        self
    }

    /// Print one line per port/MMIO access to stderr.
    pub fn trace_io(mut self, on: bool) -> Self {
        self.trace_io = on;
        self
    }

    /// Print POST codes to stderr as they arrive.
    pub fn print_post_codes(mut self, on: bool) -> Self {
        self.print_post_codes = on;
        self
    }

    /// Stop after this many port/MMIO exits.
    pub fn max_exits(mut self, n: u64) -> Self {
        self.max_exits = Some(n);
        self
    }

    /// Stop after this much wall time.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Ask for transparent huge pages behind guest RAM.
    pub fn thp(mut self, on: bool) -> Self {
        self.thp = if on { ThpHint::On } else { ThpHint::Off };
        self
    }

    /// The KVM device (default `/dev/kvm`).
    pub fn kvm_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.kvm_path = path.into();
        self
    }

    /// Calls `sink` with the statistics every `every` while the VM runs, and
    /// once more at the end.
    pub fn metrics_sink(mut self, every: Duration, sink: crate::vm::MetricsSink) -> Self {
        self.metrics = Some((every, sink));
        self
    }

    /// When the VMM started (normally the first thing `main` records): the
    /// run reports how long it took from there to the guest's first
    /// instruction (`--stats`, `-v`).
    pub fn started_at(mut self, t: std::time::Instant) -> Self {
        self.started_at = Some(t);
        self
    }

    /// Number of vCPUs (1 to the KVM maximum; more than one needs the PC
    /// platform).
    pub fn cpus(mut self, n: u64) -> Self {
        self.cpus = n;
        self
    }

    /// The machine: PC platform or minimal (default: PC for kernels,
    /// minimal for raw binaries).
    pub fn platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// Advertise KVM's hypercall-based paravirtual features (PV unhalt, PV
    /// TLB flush, PV IPIs...). Off by default: where `vmcall` never exits
    /// (nested KVM), a guest using them hangs.
    pub fn hypercall_pv_features(mut self, on: bool) -> Self {
        self.hypercall_pv = on;
        self
    }

    /// Confine every VMM thread with seccomp while running (default on).
    /// `run()` confines the calling thread too, for good; turn this off to
    /// embed the VMM in a process that must keep its full system-call set.
    pub fn seccomp(mut self, on: bool) -> Self {
        self.seccomp = on;
        self
    }

    /// Adds a port-I/O device at `[base, base + len)`.
    pub fn pio_device(
        mut self,
        name: &str,
        base: u16,
        len: u16,
        device: Arc<dyn DevicePio + Send + Sync>,
    ) -> Self {
        self.extra_pio.push(ExtraPio {
            name: name.to_string(),
            base,
            len,
            device,
        });
        self
    }

    /// Adds an MMIO device at `[base, base + len)`.
    pub fn mmio_device(
        mut self,
        name: &str,
        base: u64,
        len: u64,
        device: Arc<dyn DeviceMmio + Send + Sync>,
    ) -> Self {
        self.extra_mmio.push(ExtraMmio {
            name: name.to_string(),
            base,
            len,
            device,
        });
        self
    }

    /// Whether the guest gets the PC platform for an image of `format`.
    fn is_pc(&self, format: Format) -> bool {
        match self.platform {
            Platform::Pc => true,
            Platform::Minimal => false,
            Platform::Auto => matches!(format, Format::Multiboot | Format::Linux | Format::Pvh),
        }
    }

    /// The entry the user asked for, or the load address; in real mode a
    /// load address above 64 KiB becomes the equivalent SEG:0 form.
    fn effective_entry(&self, mode: BootMode, load_addr: GuestAddress) -> Option<Entry> {
        if self.entry.is_some() || mode != BootMode::Real {
            return self.entry;
        }
        let a = load_addr.0;
        if a > 0xffff && a < 0x10_0000 {
            return Some(Entry::Segmented {
                segment: (a >> 4) as u16,
                offset: (a & 0xf) as u16,
            });
        }
        None
    }

    fn load(&self, ram: &GuestRam) -> Result<(Format, BootSpec, StartState), VmmError> {
        let t0 = std::time::Instant::now();
        let limit = ram.layout().size();
        // The cache serves only the host-decompressed bzImage path.
        let cache = self.kernel_cache.as_ref().filter(|_| {
            !self.bzimage_own_entry && matches!(self.format, None | Some(Format::Linux))
        });
        let (name, image, kernel_cache) = match &self.kernel {
            None => return Err(VmmError::NoKernel),
            Some(KernelImage::Bytes(b)) => ("<memory>".to_string(), b.clone(), KernelCacheUse::Off),
            Some(KernelImage::Path(p)) => {
                let max_vmlinux = vmm_loader::linux::max_vmlinux_len(ram.layout());
                let (image, use_cache) = read_kernel(p, limit, max_vmlinux, cache)?;
                (p.display().to_string(), image, use_cache)
            }
        };
        // The platform follows from the format, and the loader needs to know
        // whether ACPI tables will exist (for the RSDP pointer it passes on).
        let format = self
            .format
            .unwrap_or_else(|| vmm_loader::detect(&image).format);
        let mut req = LoadRequest {
            kernel_path: name.clone(),
            cmdline: self.cmdline.clone(),
            initrd: None,
            modules: Vec::new(),
            bzimage_own_entry: self.bzimage_own_entry,
            acpi_rsdp: self.is_pc(format).then_some(ACPI_TABLES_START.0),
            kernel_cache,
        };
        if let Some(p) = &self.initrd {
            req.initrd = Some(ModuleImage {
                name: p.display().to_string(),
                data: read_input(p, limit, InputKind::Module)?,
            });
        }
        for (p, string) in &self.modules {
            req.modules.push(ModuleImage {
                name: string.clone().unwrap_or_else(|| p.display().to_string()),
                data: read_input(p, limit, InputKind::Module)?,
            });
        }
        let mode = self.mode.unwrap_or(BootMode::Real);
        let load_addr = self.load_addr.unwrap_or(DEFAULT_LOAD_ADDR);
        let raw_opts = RawOptions {
            load_addr,
            mode,
            entry: self.effective_entry(mode, load_addr),
        };
        let (detection, spec) = vmm_loader::load(
            ram.memory(),
            ram.layout(),
            &image,
            self.format,
            &req,
            raw_opts,
        )
        .map_err(|source| VmmError::Load {
            path: name.clone(),
            source,
        })?;
        log::info!(
            "{name}: loading as {} ({})",
            detection.format,
            detection.reason
        );
        log::info!(
            "{name}: loaded in {:.1} ms",
            t0.elapsed().as_secs_f64() * 1e3
        );
        if detection.format != vmm_loader::Format::Raw {
            let raw_only = [
                (self.mode.is_some(), RawOption::Mode),
                (self.load_addr.is_some(), RawOption::LoadAddr),
                (self.entry.is_some(), RawOption::Entry),
            ];
            if let Some(&(_, option)) = raw_only.iter().find(|(set, _)| *set) {
                return Err(VmmError::RawOnlyOption {
                    option,
                    format: detection.format,
                });
            }
        }
        let start = crate::start::start_state(&spec, &self.regs);
        validate_start(&start, &spec.occupied())?;
        Ok((detection.format, spec, start))
    }

    fn create_parts(self) -> Result<Created, VmmError> {
        // Input first, KVM last: bad input is reported even without KVM.
        if self.cpus == 0 {
            return Err(VmmError::CpuCount {
                requested: 0,
                max: MAX_CPUS,
            });
        }
        let layout = MemoryLayout::new(self.memory_mib)?;
        let ram = GuestRam::new(&layout, self.thp)?;
        let (format, spec, start) = self.load(&ram)?;
        let pc = self.is_pc(format);
        if !pc && self.cpus > 1 {
            return Err(VmmError::SmpNeedsPc { cpus: self.cpus });
        }

        let kvm = open_kvm(&self.kvm_path)?;
        let max = (kvm.get_max_vcpus() as u64).min(MAX_CPUS);
        if self.cpus > max {
            return Err(VmmError::CpuCount {
                requested: self.cpus,
                max,
            });
        }
        let vm_fd = kvm.create_vm().map_err(VmmError::CreateVm)?;
        // SAFETY: `ram` is moved into the returned `Vm`, which drops its VM
        // fd before its RAM (see `Vm`'s field order).
        unsafe { register_memory_slots(&vm_fd, &ram, kvm.get_nr_memslots()) }?;
        if pc {
            create_irqchip(&vm_fd)?;
        }

        let supported = cpuid::supported_cpuid(&kvm)?;
        let topo = Topology {
            cpus: self.cpus as u8,
            hypercall_pv_features: self.hypercall_pv,
        };
        let mut vcpus = Vec::new();
        for index in 0..self.cpus {
            let vcpu = Vcpu::new(&vm_fd, index)?;
            cpuid::set_vcpu_cpuid(vcpu.fd(), &supported, index as u8, topo)?;
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
            if let Some(((start, end), tables)) = spec_overlaps_firmware(&spec) {
                return Err(VmmError::OverlapsFirmwareTables {
                    image: (start, end),
                    tables,
                });
            }
            let info = PlatformInfo {
                pm_timer_32bit: acpi_pm::PM_TMR_VAL_EXT,
                rtc_century_index: cmos::CMOS_CENTURY,
                ..PlatformInfo::pc(self.cpus as u8, acpi_pm::S5_SLP_TYP)
            };
            let tables = write_firmware_tables(ram.memory(), &info)?;
            log::info!(
                "firmware tables: ACPI RSDP at {:#x}, MP floating pointer at {:#x}",
                tables.rsdp.0,
                tables.mp_floating_pointer.0
            );
        }

        let control = Arc::new(VmControl::new(self.max_exits));
        let options = RunOptions {
            timeout: self.timeout,
            metrics: self.metrics,
            seccomp: self.seccomp,
            trace_io: self.trace_io,
            print_post_codes: self.print_post_codes,
            console_input: self.console_input,
            started_at: self.started_at,
        };
        let vm = Vm::new(vcpus, vm_fd, kvm, ram, pc, control, options)?;
        Ok(Created {
            vm,
            console: self.console,
            extra_pio: self.extra_pio,
            extra_mmio: self.extra_mmio,
        })
    }

    /// Creates the VM (see [`Self::create`]) and attaches the platform's
    /// devices from [`vmm_devices::pc`], plus any added with
    /// [`Self::pio_device`]/[`Self::mmio_device`]: the same steps vmm-bin
    /// takes.
    pub fn build(self) -> Result<Vm, VmmError> {
        let Created {
            mut vm,
            console,
            extra_pio,
            extra_mmio,
        } = self.create_parts()?;
        let console = console.unwrap_or_else(|| Console::writer(Box::new(std::io::stdout())));
        let mut devices = build_devices(vm.device_options(console), &mut vm.interrupt_lines())?;
        for d in extra_pio {
            devices
                .bus
                .register_pio(&d.name, PioAddress(d.base), d.len, d.device)?;
        }
        for d in extra_mmio {
            devices
                .bus
                .register_mmio(&d.name, MmioAddress(d.base), d.len, d.device)?;
        }
        vm.attach_devices(devices);
        Ok(vm)
    }

    /// Creates the VM without devices: guest RAM with the image loaded, the
    /// KVM VM, its vCPUs in their start state and, on the PC platform, the
    /// irqchip and firmware tables. Attach devices with
    /// [`Vm::attach_devices`] before [`Vm::run`].
    pub fn create(self) -> Result<Vm, VmmError> {
        Ok(self.create_parts()?.vm)
    }
}

/// A created VM and what [`VmBuilder::build`] still needs to attach.
struct Created {
    vm: Vm,
    console: Option<Console>,
    extra_pio: Vec<ExtraPio>,
    extra_mmio: Vec<ExtraMmio>,
}
