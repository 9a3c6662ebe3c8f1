//! [`VmBuilder`]: the library's one-call entry point. Describe the VM,
//! then `build()?.run()?`. It fills a [`VmConfig`] (what the VM is) and
//! [`HostOptions`] (how this host runs it), then takes the same steps as
//! vmm-bin: [`Vm::create`], the platform's device set from
//! [`vmm_devices::pc`], [`Vm::attach_devices`].

use std::os::unix::io::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vm_device::bus::{MmioAddress, PioAddress};
use vm_device::{DeviceMmio, DevicePio};
use vmm_cpu::Reg;
use vmm_devices::pc::build_devices;
use vmm_devices::Console;
use vmm_loader::{BootMode, Entry, Format};

use crate::config::{HostOptions, KernelImage, ModuleConfig, VmConfig};
use crate::error::VmmError;
use crate::platform::Platform;
use crate::reboot::NextBoot;
use crate::virtio::build_backends;
use crate::vm::{MetricsSink, Vm};

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
#[derive(Default)]
pub struct VmBuilder {
    config: VmConfig,
    host: HostOptions,
    /// Overrides `config.devices.serial` (an in-memory console, say).
    console: Option<Console>,
    extra_pio: Vec<ExtraPio>,
    extra_mmio: Vec<ExtraMmio>,
    /// Built as the next boot of a rebooting VM.
    next: Option<NextBoot>,
}

impl VmBuilder {
    /// A builder with the defaults: 128 MiB, real mode, load at 0x1000,
    /// console on stdout.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder for `config`, run as `host` says.
    pub fn from_config(config: VmConfig, host: HostOptions) -> Self {
        VmBuilder {
            config,
            host,
            ..Self::default()
        }
    }

    /// Builds the next boot of a rebooting VM: the VM takes over the
    /// handles, limits and metrics sink of the boot before (see
    /// [`crate::reboot::run_rebooting`] and [`Vm::create_next`]).
    pub fn next_boot(mut self, next: NextBoot) -> Self {
        self.next = Some(next);
        self
    }

    /// The VM description so far.
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// Guest RAM in MiB.
    pub fn memory_mib(mut self, mib: u64) -> Self {
        self.config.memory_mib = mib;
        self
    }

    /// The kernel image file.
    pub fn kernel_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.boot.kernel = Some(KernelImage::Path(path.into()));
        self
    }

    /// A kernel image held in memory.
    pub fn kernel_bytes(mut self, bytes: Vec<u8>) -> Self {
        self.config.boot.kernel = Some(KernelImage::Bytes(bytes));
        self
    }

    /// The image format, instead of detecting it.
    pub fn format(mut self, format: Format) -> Self {
        self.config.boot.format = Some(format);
        self
    }

    /// The kernel command line.
    pub fn cmdline(mut self, cmdline: impl Into<String>) -> Self {
        self.config.boot.cmdline = Some(cmdline.into());
        self
    }

    /// The initrd (Linux), or module 0 (Multiboot, PVH).
    pub fn initrd_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.boot.initrd = Some(path.into());
        self
    }

    /// A further Multiboot/PVH module, with its string (default: the path).
    pub fn module(mut self, path: impl Into<PathBuf>, string: Option<String>) -> Self {
        self.config.boot.modules.push(ModuleConfig {
            path: path.into(),
            string,
        });
        self
    }

    /// Run a bzImage's own 64-bit entry (its decompressor runs in the guest)
    /// instead of decompressing it on the host.
    pub fn bzimage_own_entry(mut self, on: bool) -> Self {
        self.config.boot.bzimage_own_entry = on;
        self
    }

    /// Keep decompressed bzImage payloads in `dir` and map them into guest
    /// RAM on later starts of the same file (see
    /// [`vmm_loader::linux::cache`]); `None` (the default) decompresses on
    /// every start.
    pub fn kernel_cache(mut self, dir: Option<PathBuf>) -> Self {
        self.host.kernel_cache = dir;
        self
    }

    /// CPU mode for raw images (default real mode).
    pub fn mode(mut self, mode: BootMode) -> Self {
        self.config.boot.raw.mode = Some(mode);
        self
    }

    /// Load address for raw images (default 0x1000).
    pub fn load_addr(mut self, addr: u64) -> Self {
        self.config.boot.raw.load_addr = Some(addr);
        self
    }

    /// Entry point for raw images (default: the load address).
    pub fn entry(mut self, entry: Entry) -> Self {
        self.config.boot.raw.entry = Some(entry);
        self
    }

    /// Sets a register at entry, after everything else (repeatable; later
    /// values win).
    pub fn reg(mut self, reg: Reg, value: u64) -> Self {
        self.config.boot.regs.push((reg, value));
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
        self.host.console_input = Some(fd);
        self
    }

    /// Print one line per port/MMIO access to stderr.
    pub fn trace_io(mut self, on: bool) -> Self {
        self.host.trace_io = on;
        self
    }

    /// Print POST codes to stderr as they arrive.
    pub fn print_post_codes(mut self, on: bool) -> Self {
        self.host.print_post_codes = on;
        self
    }

    /// Stop after this many port/MMIO exits.
    pub fn max_exits(mut self, n: u64) -> Self {
        self.host.max_exits = Some(n);
        self
    }

    /// Stop after this much wall time.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.host.timeout = Some(t);
        self
    }

    /// Ask for transparent huge pages behind guest RAM.
    pub fn thp(mut self, on: bool) -> Self {
        self.host.thp = on;
        self
    }

    /// Finish the instructions the host's KVM fails to emulate instead of
    /// stopping (on by default; see [`HostOptions::emulation_fallback`]).
    pub fn emulation_fallback(mut self, on: bool) -> Self {
        self.host.emulation_fallback = on;
        self
    }

    /// The KVM device (default `/dev/kvm`).
    pub fn kvm_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.host.kvm_path = path.into();
        self
    }

    /// Calls `sink` with the statistics every `every` while the VM runs, and
    /// once more at the end.
    pub fn metrics_sink(mut self, every: Duration, sink: MetricsSink) -> Self {
        self.host.metrics = Some((every, sink));
        self
    }

    /// When the VMM started (normally the first thing `main` records): the
    /// run reports how long it took from there to the guest's first
    /// instruction (`--stats`, `-v`).
    pub fn started_at(mut self, t: std::time::Instant) -> Self {
        self.host.started_at = Some(t);
        self
    }

    /// Tell every KVM step and exit to `sink`, one line per call (see
    /// [`crate::explain`]; vmm-bin's `--explain` writes them to stderr).
    pub fn explain(mut self, sink: crate::explain::ExplainSink) -> Self {
        self.host.explain = Some(sink);
        self
    }

    /// Count exits per kind over time; the run's report then has
    /// [`crate::RunReport::timeline`] (vmm-bin's `--exit-plot` draws it).
    pub fn exit_timeline(mut self, on: bool) -> Self {
        self.host.exit_timeline = on;
        self
    }

    /// Number of vCPUs (1 to the KVM maximum; more than one needs the PC
    /// platform).
    pub fn cpus(mut self, n: u64) -> Self {
        self.config.vcpus = n;
        self
    }

    /// The machine: PC platform or minimal (default: PC for kernels,
    /// minimal for raw binaries).
    pub fn platform(mut self, platform: Platform) -> Self {
        self.config.platform = platform;
        self
    }

    /// Advertise KVM's hypercall-based paravirtual features (PV unhalt, PV
    /// TLB flush, PV IPIs...). Off by default: where `vmcall` never exits
    /// (nested KVM), a guest using them hangs.
    pub fn hypercall_pv_features(mut self, on: bool) -> Self {
        self.config.hypercall_pv_features = on;
        self
    }

    /// Track dirty pages so the VM can take diff snapshots
    /// ([`HostOptions::track_dirty_pages`]).
    pub fn track_dirty_pages(mut self, on: bool) -> Self {
        self.host.track_dirty_pages = on;
        self
    }

    /// Confine every VMM thread with seccomp while running (default on).
    /// `run()` confines the calling thread too, for good; turn this off to
    /// embed the VMM in a process that must keep its full system-call set.
    pub fn seccomp(mut self, on: bool) -> Self {
        self.host.seccomp = on;
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

    /// Creates the VM (see [`Self::create`]) and attaches the platform's
    /// devices from [`vmm_devices::pc`], plus any added with
    /// [`Self::pio_device`]/[`Self::mmio_device`]: the same steps vmm-bin
    /// takes.
    pub fn build(self) -> Result<Vm, VmmError> {
        let console = match self.console {
            Some(c) => c,
            None => self.config.devices.serial.open()?,
        };
        let backends = build_backends(&self.config.devices)?;
        let mut vm = match self.next {
            Some(next) => Vm::create_next(&self.config, self.host, next)?,
            None => Vm::create(&self.config, self.host)?,
        };
        let mut devices = build_devices(vm.device_options(console), &mut vm.interrupt_lines())?;
        let mut extra = Vec::new();
        for d in self.extra_pio {
            devices
                .bus
                .register_pio(&d.name, PioAddress(d.base), d.len, d.device)?;
            extra.push(format!("the extra PIO device {}", d.name));
        }
        for d in self.extra_mmio {
            devices
                .bus
                .register_mmio(&d.name, MmioAddress(d.base), d.len, d.device)?;
            extra.push(format!("the extra MMIO device {}", d.name));
        }
        vm.attach_devices(devices);
        for name in extra {
            vm.add_unsnapshottable(name);
        }
        for backend in backends.devices {
            vm.attach_virtio(backend)?;
        }
        if let Some(link) = backends.console_input {
            vm.connect_console_input(link);
        }
        Ok(vm)
    }

    /// Creates the VM without devices: guest RAM with the image loaded, the
    /// KVM VM, its vCPUs in their start state and, on the PC platform, the
    /// irqchip and firmware tables. Attach devices with
    /// [`Vm::attach_devices`] before [`Vm::run`].
    pub fn create(self) -> Result<Vm, VmmError> {
        match self.next {
            Some(next) => Vm::create_next(&self.config, self.host, next),
            None => Vm::create(&self.config, self.host),
        }
    }
}
