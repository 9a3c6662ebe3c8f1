//! What a VM is ([`VmConfig`], plain data, serialisable) apart from how this
//! host runs it ([`HostOptions`]: KVM device, caches, seccomp, limits,
//! tracing, metrics). A config file, a control API and the command line all
//! fill the same `VmConfig`; the same description run on another host, or
//! restored from a snapshot, is the same VM.

use std::os::unix::io::RawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vmm_cpu::Reg;
use vmm_devices::console::LineBuffered;
use vmm_devices::Console;
use vmm_loader::{BootMode, Entry, Format};

use crate::error::VmmError;
use crate::explain::ExplainSink;
use crate::platform::Platform;
use crate::vm::MetricsSink;

/// Guest RAM when none is asked for, in MiB (QEMU's default).
pub const DEFAULT_MEMORY_MIB: u64 = 128;

/// Where the kernel image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelImage {
    /// A file.
    Path(PathBuf),
    /// Bytes already in memory (tests, embedding).
    Bytes(Vec<u8>),
}

/// A Multiboot or PVH module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleConfig {
    /// The file.
    pub path: PathBuf,
    /// Its string (default: the path).
    #[serde(default)]
    pub string: Option<String>,
}

/// Start state for raw binaries (refused for every other format).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBoot {
    /// CPU mode at entry (default real mode).
    pub mode: Option<BootMode>,
    /// Load address (default 0x1000).
    pub load_addr: Option<u64>,
    /// Entry point (default: the load address).
    pub entry: Option<Entry>,
}

/// The image and what the boot protocol passes to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootConfig {
    /// The kernel image (required to build).
    pub kernel: Option<KernelImage>,
    /// The image format, instead of detecting it.
    pub format: Option<Format>,
    /// The kernel command line.
    pub cmdline: Option<String>,
    /// The initrd (Linux), or module 0 (Multiboot, PVH).
    pub initrd: Option<PathBuf>,
    /// Further Multiboot/PVH modules.
    pub modules: Vec<ModuleConfig>,
    /// Run a bzImage's own 64-bit entry (its decompressor runs in the
    /// guest) instead of decompressing it on the host.
    pub bzimage_own_entry: bool,
    /// Raw-binary start state.
    pub raw: RawBoot,
    /// Register values at entry, applied last in order (later values win).
    pub regs: Vec<(Reg, u64)>,
}

/// Where the guest's serial console (COM1 and the debug console) goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SerialConfig {
    /// The VMM's standard output.
    #[default]
    Stdio,
    /// A file, created or truncated.
    File(PathBuf),
    /// Discarded.
    None,
}

impl SerialConfig {
    /// Opens the console this describes (a file is line-buffered).
    pub fn open(&self) -> Result<Console, VmmError> {
        Ok(match self {
            SerialConfig::Stdio => Console::writer(Box::new(std::io::stdout())),
            SerialConfig::None => Console::discard(),
            SerialConfig::File(path) => {
                let f = std::fs::File::create(path).map_err(|source| VmmError::SerialFile {
                    path: path.clone(),
                    source,
                })?;
                Console::writer(Box::new(LineBuffered::new(f)))
            }
        })
    }
}

/// A virtio block device backed by a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// The image file (or block device).
    pub path: PathBuf,
    /// Open it read-only and refuse the guest's writes.
    #[serde(default)]
    pub read_only: bool,
    /// The ID the guest reads with GET_ID (at most 20 bytes).
    #[serde(default)]
    pub serial: Option<String>,
}

/// A virtio network device on an existing tap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// The tap's interface name.
    pub tap: String,
    /// The guest's MAC address (default: a random locally administered
    /// one, new each run).
    #[serde(default)]
    pub mac: Option<[u8; 6]>,
}

/// A virtio vsock device, on Firecracker's host convention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockConfig {
    /// The guest's context ID (3 or more).
    pub cid: u64,
    /// The host Unix socket: host-initiated connections connect here and
    /// send `CONNECT <port>\n`; guest-initiated ones go to `<socket>_<port>`.
    pub socket: PathBuf,
}

/// The devices a VM has beyond its platform's fixed set. The virtio ones
/// get MMIO windows and GSIs in this order: disks, network interfaces, the
/// entropy device, the console, vsock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceConfig {
    /// The serial console (COM1 and the debug console).
    pub serial: SerialConfig,
    /// virtio-blk disks.
    pub disks: Vec<DiskConfig>,
    /// virtio-net interfaces.
    pub nets: Vec<NetConfig>,
    /// A virtio-rng entropy device.
    pub rng: bool,
    /// A virtio console (hvc0) and where its output goes.
    pub virtio_console: Option<SerialConfig>,
    /// A virtio vsock device.
    pub vsock: Option<VsockConfig>,
}

/// A VM, as plain data: what the guest sees.
///
/// ```
/// use vmm_core::config::{KernelImage, VmConfig};
///
/// let config = VmConfig {
///     boot: vmm_core::config::BootConfig {
///         kernel: Some(KernelImage::Path("guest.bin".into())),
///         ..Default::default()
///     },
///     ..Default::default()
/// };
/// let json = serde_json::to_string(&config).unwrap();
/// assert_eq!(serde_json::from_str::<VmConfig>(&json).unwrap(), config);
/// assert!(serde_json::from_str::<VmConfig>(r#"{"memroy_mib": 64}"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmConfig {
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// Number of vCPUs (more than one needs the PC platform).
    pub vcpus: u64,
    /// The machine.
    pub platform: Platform,
    /// Advertise KVM's hypercall-based paravirtual features (PV unhalt, PV
    /// TLB flush, PV IPIs...). Off by default: where `vmcall` never exits
    /// (nested KVM), a guest using them hangs.
    pub hypercall_pv_features: bool,
    /// The image and its boot protocol's inputs.
    pub boot: BootConfig,
    /// Devices.
    pub devices: DeviceConfig,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            memory_mib: DEFAULT_MEMORY_MIB,
            vcpus: 1,
            platform: Platform::Auto,
            hypercall_pv_features: false,
            boot: BootConfig::default(),
            devices: DeviceConfig::default(),
        }
    }
}

/// How this host runs a VM: nothing here changes what the guest sees,
/// except that the emulation fallback, when on, also advertises RDTSCP
/// (the instruction it completes).
pub struct HostOptions {
    /// The KVM device.
    pub kvm_path: PathBuf,
    /// Directory of the decompressed-bzImage cache; `None` decompresses on
    /// every start.
    pub kernel_cache: Option<PathBuf>,
    /// Ask for transparent huge pages behind guest RAM.
    pub thp: bool,
    /// Confine every VMM thread with seccomp while running; `run()`
    /// confines the calling thread too, for good.
    pub seccomp: bool,
    /// One stderr line per port/MMIO access.
    pub trace_io: bool,
    /// POST codes to stderr as they arrive.
    pub print_post_codes: bool,
    /// Stop after this many port/MMIO exits.
    pub max_exits: Option<u64>,
    /// Stop after this much wall time.
    pub timeout: Option<Duration>,
    /// Called with the statistics every interval while the VM runs, and
    /// once at the end.
    pub metrics: Option<(Duration, MetricsSink)>,
    /// A descriptor (normally stdin) whose bytes feed the UART's receive
    /// side; it must stay open while the VM runs.
    pub console_input: Option<RawFd>,
    /// When the process started, for the start-up time in the report.
    pub started_at: Option<Instant>,
    /// Finish the instructions this host's KVM fails to emulate (see
    /// [`vmm_cpu::fallback`]) instead of stopping the VM; advertises RDTSCP.
    /// A host policy: on KVMs that emulate everything it never runs.
    pub emulation_fallback: bool,
    /// Tell every KVM step and exit, one line each, to this sink
    /// (`--explain`; see [`crate::explain`]).
    pub explain: Option<ExplainSink>,
    /// Count exits per kind over time for [`crate::RunReport::timeline`]
    /// (`--exit-plot`; see [`crate::timeline`]).
    pub exit_timeline: bool,
    /// Have KVM log the pages the guest writes (and the VMM record the
    /// pages its devices write), so diff snapshots can be taken. Costs a
    /// write-protection fault on the first write to each page after every
    /// snapshot.
    pub track_dirty_pages: bool,
}

impl HostOptions {
    /// The same options for the next boot of a rebooting VM
    /// ([`crate::reboot::run_rebooting`]): everything but the metrics sink
    /// (handed on from the boot before) and the start time (the first
    /// boot's).
    pub fn for_next_boot(&self) -> HostOptions {
        HostOptions {
            kvm_path: self.kvm_path.clone(),
            kernel_cache: self.kernel_cache.clone(),
            thp: self.thp,
            seccomp: self.seccomp,
            trace_io: self.trace_io,
            print_post_codes: self.print_post_codes,
            max_exits: self.max_exits,
            timeout: self.timeout,
            metrics: None,
            console_input: self.console_input,
            started_at: None,
            emulation_fallback: self.emulation_fallback,
            // Each boot is explained and counted afresh (the report's
            // timeline is the last boot's).
            explain: self.explain.clone(),
            exit_timeline: self.exit_timeline,
            track_dirty_pages: self.track_dirty_pages,
        }
    }
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            kvm_path: PathBuf::from("/dev/kvm"),
            kernel_cache: None,
            thp: false,
            seccomp: true,
            trace_io: false,
            print_post_codes: false,
            max_exits: None,
            timeout: None,
            metrics: None,
            console_input: None,
            started_at: None,
            emulation_fallback: true,
            explain: None,
            exit_timeline: false,
            track_dirty_pages: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_vm_config_round_trips_through_json() {
        let config = VmConfig {
            memory_mib: 512,
            vcpus: 2,
            platform: Platform::Pc,
            hypercall_pv_features: true,
            boot: BootConfig {
                kernel: Some(KernelImage::Path("/k".into())),
                format: Some(Format::Multiboot),
                cmdline: Some("console=ttyS0".into()),
                initrd: Some("/i".into()),
                modules: vec![ModuleConfig {
                    path: "/m".into(),
                    string: Some("m0".into()),
                }],
                bzimage_own_entry: true,
                raw: RawBoot {
                    mode: Some(BootMode::Long),
                    load_addr: Some(0x10_0000),
                    entry: Some(Entry::Segmented {
                        segment: 0x1000,
                        offset: 0,
                    }),
                },
                regs: vec![(Reg::Rax, 2), (Reg::R15, u64::MAX)],
            },
            devices: DeviceConfig {
                serial: SerialConfig::File("/s".into()),
                disks: vec![DiskConfig {
                    path: "/d".into(),
                    read_only: true,
                    serial: Some("disk0".into()),
                }],
                nets: vec![NetConfig {
                    tap: "tap0".into(),
                    mac: Some([2, 0, 0, 0, 0, 1]),
                }],
                rng: true,
                virtio_console: Some(SerialConfig::None),
                vsock: Some(VsockConfig {
                    cid: 3,
                    socket: "/v".into(),
                }),
            },
        };
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains(r#""format":"multiboot""#), "{json}");
        assert!(json.contains(r#"["rax",2]"#), "{json}");
        assert_eq!(serde_json::from_str::<VmConfig>(&json).unwrap(), config);
    }

    #[test]
    fn test_vm_config_unknown_field_is_named() {
        let e = serde_json::from_str::<VmConfig>(r#"{"boot": {"kernal": "x"}}"#).unwrap_err();
        assert!(e.to_string().contains("kernal"), "{e}");
        let c: VmConfig = serde_json::from_str(r#"{"vcpus": 4}"#).unwrap();
        assert_eq!(c.memory_mib, DEFAULT_MEMORY_MIB);
        assert_eq!(c.vcpus, 4);
    }
}
