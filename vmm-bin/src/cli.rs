//! Command-line arguments and their parsers.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use vmm_core::config::{
    BootConfig, DeviceConfig, DiskConfig, KernelImage, ModuleConfig, NetConfig, RawBoot,
    VsockConfig,
};

use crate::device_args::{parse_disk, parse_net, parse_vsock};
use vmm_core::cpu::Reg;
use vmm_core::loader::{BootMode, Entry, Format};
use vmm_core::{HostOptions, OnReset, Platform, VmConfig};

use crate::exit_status::EXIT_STATUS_HELP;

/// CPU mode for raw images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// 16-bit real mode.
    Real,
    /// 32-bit flat protected mode.
    Protected,
    /// 64-bit long mode, first 4 GiB identity-mapped.
    Long,
}

impl From<Mode> for BootMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Real => BootMode::Real,
            Mode::Protected => BootMode::Protected,
            Mode::Long => BootMode::Long,
        }
    }
}

/// Where guest console output goes (`--serial`): the VM description's own
/// type.
pub use vmm_core::config::SerialConfig as SerialOut;

/// Run a guest under KVM.
#[derive(Debug, Parser)]
#[command(name = "vmm-bin", version, about, after_help = help_footer())]
pub struct Cli {
    /// Guest image: Linux bzImage/vmlinux, PVH ELF, Multiboot kernel, ELF program or raw binary (detected). Optional with --api-sock or --config-file (their boot-source names it) and with --restore.
    #[arg(long, value_name = "PATH", required_unless_present_any = ["api_sock", "config_file", "restore"])]
    pub kernel: Option<PathBuf>,

    /// Serve Firecracker's API on this Unix socket (created mode 0600, removed at exit). Without --config-file the VM waits for InstanceStart.
    #[arg(long = "api-sock", value_name = "PATH", conflicts_with = "no_api")]
    pub api_sock: Option<PathBuf>,

    /// Configure the VM from Firecracker's JSON document (boot-source, machine-config, drives, network-interfaces, vsock, entropy, logger, metrics) and start it at once; flags fill what the file leaves out.
    #[arg(long = "config-file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// No API socket (Firecracker's flag; needs --config-file).
    #[arg(long = "no-api", requires = "config_file")]
    pub no_api: bool,

    /// The instance ID the API reports (GET /) and the Firecracker-format log lines carry.
    #[arg(long, value_name = "ID", default_value = "anonymous-instance", value_parser = parse_id)]
    pub id: String,

    /// Build the VM from a snapshot instead (taken through the API's PUT /snapshot/create); needs --restore-mem. It starts paused unless --resume.
    #[arg(
        long,
        value_name = "SNAPSHOT",
        requires = "restore_mem",
        conflicts_with_all = RESTORE_CONFLICTS
    )]
    pub restore: Option<PathBuf>,

    /// The snapshot's memory file (guest RAM, mapped copy-on-write, so restore time does not grow with RAM).
    #[arg(long = "restore-mem", value_name = "MEMFILE", requires = "restore")]
    pub restore_mem: Option<PathBuf>,

    /// Run the restored VM at once (Firecracker's resume_vm) instead of waiting paused.
    #[arg(long, requires = "restore")]
    pub resume: bool,

    /// Track the pages the guest and devices write, so diff snapshots can be taken.
    #[arg(long = "track-dirty-pages")]
    pub track_dirty_pages: bool,

    /// What a guest reset (i8042 0xFE, the ACPI reset register) does: exit (status 14), or reboot (the VM is built again from its configuration and boots anew in this process; limits and metrics cover the whole run).
    #[arg(long = "on-reset", value_name = "exit|reboot", default_value = "exit", value_parser = parse_on_reset)]
    pub on_reset: OnReset,

    /// Image format, instead of detecting it.
    #[arg(long, value_name = "raw|elf|multiboot|linux|pvh", value_parser = parse_format)]
    pub format: Option<Format>,

    /// Kernel command line (Linux, Multiboot, PVH).
    #[arg(long, value_name = "STRING")]
    pub cmdline: Option<String>,

    /// Initial ramdisk (Linux), or module 0 (Multiboot, PVH).
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,

    /// Extra Multiboot/PVH module, with an optional string (default: the path). Repeatable.
    #[arg(long = "module", value_name = "PATH[,STRING]", value_parser = parse_module)]
    pub modules: Vec<(PathBuf, Option<String>)>,

    /// Run a bzImage's own 64-bit entry (decompressing in the guest) instead of decompressing on the host.
    #[arg(long = "bzimage-entry")]
    pub bzimage_entry: bool,

    /// Keep decompressed bzImage payloads here and map them into guest RAM on later starts of the same file [default: $XDG_CACHE_HOME/vmm/vmlinux, else ~/.cache/vmm/vmlinux].
    #[arg(
        long = "kernel-cache",
        value_name = "DIR",
        conflicts_with = "no_kernel_cache"
    )]
    pub kernel_cache: Option<PathBuf>,

    /// Decompress a bzImage's payload on every start; read and write no kernel cache.
    #[arg(long = "no-kernel-cache")]
    pub no_kernel_cache: bool,

    /// Guest RAM: MiB, or with a unit (512M, 2G, 1T; MiB, GiB, TiB also).
    #[arg(long, value_name = "MIB|SIZE", default_value = "128", value_parser = parse_memory)]
    pub memory: u64,

    /// Number of vCPUs (1 to the KVM maximum; more than one needs the PC platform).
    #[arg(long, value_name = "N", default_value = "1", value_parser = parse_u64)]
    pub cpus: u64,

    /// Machine: pc (irqchip, PIT, firmware tables, SMP), minimal (hlt ends the VM), auto (pc for Multiboot, Linux and PVH kernels; minimal for raw binaries and plain ELF programs).
    #[arg(long, value_name = "auto|minimal|pc", default_value = "auto", value_parser = parse_platform)]
    pub platform: Platform,

    /// Advertise KVM's hypercall-based paravirtual features (they hang where vmcall does not exit).
    #[arg(long = "pv-hypercalls")]
    pub pv_hypercalls: bool,

    /// CPU mode a raw image starts in [default: real].
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,

    /// Guest-physical load address of a raw image [default: 0x1000].
    #[arg(long = "load-addr", value_name = "ADDR", value_parser = parse_u64)]
    pub load_addr: Option<u64>,

    /// Entry point of a raw image: ADDR (real mode: CS=0, IP=ADDR) or SEG:OFF (real mode CS:IP). Default: the load address.
    #[arg(long, value_name = "ADDR|SEG:OFF", value_parser = parse_entry)]
    pub entry: Option<Entry>,

    /// Set a register at entry, after everything else (rax..r15, rip, rsp, rflags). Repeatable.
    #[arg(long = "reg", value_name = "NAME=VALUE", value_parser = parse_reg)]
    pub regs: Vec<(Reg, u64)>,

    /// Console output: stdio, file:PATH or none.
    #[arg(long, value_name = "stdio|file:PATH|none", default_value = "stdio", value_parser = parse_serial)]
    pub serial: SerialOut,

    /// A virtio-blk disk backed by FILE (readonly=on: opened read-only, writes fail). Repeatable.
    #[arg(long = "disk", value_name = "path=FILE[,readonly=on][,serial=ID]", value_parser = parse_disk)]
    pub disks: Vec<DiskConfig>,

    /// A virtio-net interface on the existing tap NAME. Repeatable.
    #[arg(long = "net", value_name = "tap=NAME[,mac=MAC]", value_parser = parse_net)]
    pub nets: Vec<NetConfig>,

    /// A virtio-rng entropy device (host getrandom).
    #[arg(long)]
    pub rng: bool,

    /// A virtio console (hvc0): its output goes to stdio, a file, or nowhere. With stdio, stdin feeds hvc0 instead of the UART.
    #[arg(long = "virtio-console", value_name = "stdio|file:PATH|none", value_parser = parse_serial)]
    pub virtio_console: Option<SerialOut>,

    /// A virtio-vsock device with guest CID N; the host side is the Unix socket PATH (Firecracker's convention).
    #[arg(long, value_name = "cid=N,socket=PATH", value_parser = parse_vsock)]
    pub vsock: Option<VsockConfig>,

    /// Print every port and MMIO access to stderr.
    #[arg(long = "trace-io")]
    pub trace_io: bool,

    /// Print every KVM step (open /dev/kvm, KVM_CREATE_VM, memory slots, vCPU set-up) and every exit with its kvm_run fields to stderr, as it happens; long runs are summarised.
    #[arg(long)]
    pub explain: bool,

    /// Draw the run as an SVG picture at PATH: exits per kind over time, the start-up phases, a legend.
    #[arg(long = "exit-plot", value_name = "PATH.svg")]
    pub exit_plot: Option<PathBuf>,

    /// Serve a GDB stub on this Unix socket (created mode 0600, removed at exit): `target remote PATH` in gdb. The guest waits at its entry until gdb continues; `break` uses the four debug registers (see README, Debugging with GDB).
    #[arg(long, value_name = "PATH")]
    pub gdb: Option<PathBuf>,

    /// Stop after N port/MMIO exits (N at least 1).
    #[arg(long = "max-exits", value_name = "N", value_parser = parse_max_exits)]
    pub max_exits: Option<u64>,

    /// Stop after SECS seconds of wall time (decimals allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<std::time::Duration>,

    /// Print exit, port and timing statistics to stderr at exit.
    #[arg(long)]
    pub stats: bool,

    /// Write the --stats figures as JSON to PATH at exit (and every --metrics-interval).
    #[arg(long = "metrics-file", value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,

    /// Also write --metrics-file every SECS seconds while the guest runs.
    #[arg(long = "metrics-interval", value_name = "SECS", value_parser = parse_secs, requires = "metrics_file")]
    pub metrics_interval: Option<std::time::Duration>,

    /// Print POST codes (port 0x80) to stderr as they arrive.
    #[arg(long = "post-codes")]
    pub post_codes: bool,

    /// Back guest RAM with transparent huge pages.
    #[arg(long)]
    pub thp: bool,

    /// Do not confine VMM threads with seccomp (for debugging).
    #[arg(long = "no-seccomp")]
    pub no_seccomp: bool,

    /// Stop on every instruction this host's KVM fails to emulate, instead of finishing the listed ones (clwb, clflush, clflushopt, rdtscp, cmpxchg16b, clac/stac; #UD for rdpru/invpcid when not in CPUID). Also stops advertising RDTSCP.
    #[arg(long = "no-emulation-fallback")]
    pub no_emulation_fallback: bool,

    /// The KVM device node.
    #[arg(long = "kvm-device", value_name = "PATH", default_value = "/dev/kvm")]
    pub kvm_device: PathBuf,

    /// More logging (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// What the snapshot describes and --restore therefore refuses.
const RESTORE_CONFLICTS: [&str; 20] = [
    "kernel",
    "config_file",
    "format",
    "cmdline",
    "initrd",
    "modules",
    "bzimage_entry",
    "memory",
    "cpus",
    "platform",
    "pv_hypercalls",
    "mode",
    "load_addr",
    "entry",
    "regs",
    "disks",
    "nets",
    "rng",
    "virtio_console",
    "vsock",
];

/// Examples a new user can copy, shown at the end of --help.
const EXAMPLES: &str = "\
Examples:
  # the seed guest: 12 bytes of real-mode code that print 4 and halt
  vmm-bin --kernel integration-tests/guests/hello.bin
  # a Multiboot kernel with a command line and a module, on the PC platform
  vmm-bin --kernel kernel.elf --cmdline 'console=ttyS0' --module initrd.img
  # Linux with a root disk on virtio-blk, its console on the UART
  vmm-bin --kernel bzImage --memory 512M --disk path=rootfs.ext4 \\
      --cmdline 'console=ttyS0 root=/dev/vda rw' --timeout 60
  # a VM from a snapshot, running at once
  vmm-bin --restore vm.snap --restore-mem vm.mem --resume
";

/// The text after the options in --help: examples, then exit statuses.
fn help_footer() -> String {
    format!("{EXAMPLES}\n{EXIT_STATUS_HELP}")
}

/// Parses a decimal or 0x-hex number.
pub fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse::<u64>(),
    };
    parsed.map_err(|_| {
        format!(
            "'{s}' is not a number (use decimal or 0x-hex, at most {})",
            u64::MAX
        )
    })
}

/// clap's error as one line (the README promises one-line errors): its
/// message paragraph joined, without the usage block and the "try --help"
/// footer, with a pointer to --help instead.
pub fn one_line_error(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let joined = message.join(" ");
    let joined = joined.strip_prefix("error: ").unwrap_or(&joined);
    format!("{joined} (see --help)")
}

/// Parses `--max-exits`: a budget of 0 would stop the guest before its
/// first exit, which nobody means.
pub fn parse_max_exits(s: &str) -> Result<u64, String> {
    match parse_u64(s)? {
        0 => Err(
            "--max-exits 0 allows no exit at all; give at least 1 (or leave it out for no limit)"
                .into(),
        ),
        n => Ok(n),
    }
}

/// Parses a guest RAM size into MiB: a plain number is MiB (as before
/// units were accepted); `M`/`MiB`, `G`/`GiB` and `T`/`TiB` scale it.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let units: [(&[&str], u32); 3] = [
        (&["MiB", "M", "m"], 0),
        (&["GiB", "G", "g"], 10),
        (&["TiB", "T", "t"], 20),
    ];
    for (suffixes, shift) in units {
        if let Some(number) = suffixes.iter().find_map(|u| t.strip_suffix(u)) {
            let n = parse_u64(number).map_err(|_| {
                format!("'{s}' is not a size (a number of MiB, or one with M, G or T)")
            })?;
            return n
                .checked_mul(1 << shift)
                .ok_or_else(|| format!("'{s}' is too large (at most {} MiB)", u64::MAX));
        }
    }
    parse_u64(t)
        .map_err(|_| format!("'{s}' is not a size (a number of MiB, or one with M, G or T)"))
}

fn parse_u16(s: &str, what: &str) -> Result<u16, String> {
    let v = parse_u64(s)?;
    u16::try_from(v).map_err(|_| format!("{what} '{s}' does not fit in 16 bits"))
}

/// Parses `ADDR` or `SEG:OFF`.
pub fn parse_entry(s: &str) -> Result<Entry, String> {
    match s.split_once(':') {
        Some((seg, off)) => Ok(Entry::Segmented {
            segment: parse_u16(seg, "segment")
                .map_err(|e| format!("malformed entry '{s}': {e}"))?,
            offset: parse_u16(off, "offset").map_err(|e| format!("malformed entry '{s}': {e}"))?,
        }),
        None => parse_u64(s)
            .map(|a| Entry::Linear(vm_memory::GuestAddress(a)))
            .map_err(|e| format!("malformed entry '{s}': {e}")),
    }
}

/// Parses an instance ID: 1 to 64 alphanumerics or '-' (Firecracker's rule).
pub fn parse_id(s: &str) -> Result<String, String> {
    if (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Ok(s.to_string())
    } else {
        Err(format!(
            "instance ID '{s}' must be 1 to 64 characters, alphanumeric or '-'"
        ))
    }
}

/// Parses `NAME=VALUE`.
pub fn parse_reg(s: &str) -> Result<(Reg, u64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not NAME=VALUE"))?;
    let reg = name.trim().parse::<Reg>().map_err(|e| e.to_string())?;
    let value = parse_u64(value).map_err(|e| format!("bad value for {}: {e}", reg.name()))?;
    Ok((reg, value))
}

/// Parses `stdio`, `none` or `file:PATH`.
pub fn parse_serial(s: &str) -> Result<SerialOut, String> {
    match s {
        "stdio" => Ok(SerialOut::Stdio),
        "none" => Ok(SerialOut::None),
        _ => match s.strip_prefix("file:") {
            Some(p) if !p.is_empty() => Ok(SerialOut::File(PathBuf::from(p))),
            _ => Err(format!("'{s}' is not stdio, none or file:PATH")),
        },
    }
}

/// Parses a `--platform` name.
pub fn parse_platform(s: &str) -> Result<Platform, String> {
    s.parse()
}

/// Parses an `--on-reset` action.
pub fn parse_on_reset(s: &str) -> Result<OnReset, String> {
    s.parse()
}

/// Parses a `--format` name.
pub fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

/// Parses `PATH[,STRING]`.
pub fn parse_module(s: &str) -> Result<(PathBuf, Option<String>), String> {
    let (path, string) = match s.split_once(',') {
        Some((p, st)) => (p, Some(st.to_string())),
        None => (s, None),
    };
    if path.is_empty() {
        return Err(format!("'{s}' has no path (expected PATH[,STRING])"));
    }
    Ok((PathBuf::from(path), string))
}

/// Parses seconds, possibly fractional; positive and finite.
pub fn parse_secs(s: &str) -> Result<std::time::Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(v.is_finite() && v > 0.0 && v < 1e9) {
        return Err(format!(
            "timeout '{s}' must be a positive number of seconds below 1e9"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(v))
}

impl Cli {
    /// The VM the flags describe: everything the guest sees.
    pub fn vm_config(&self) -> VmConfig {
        VmConfig {
            memory_mib: self.memory,
            vcpus: self.cpus,
            platform: self.platform,
            hypercall_pv_features: self.pv_hypercalls,
            boot: BootConfig {
                kernel: self.kernel.clone().map(KernelImage::Path),
                format: self.format,
                cmdline: self.cmdline.clone(),
                initrd: self.initrd.clone(),
                modules: self
                    .modules
                    .iter()
                    .map(|(path, string)| ModuleConfig {
                        path: path.clone(),
                        string: string.clone(),
                    })
                    .collect(),
                bzimage_own_entry: self.bzimage_entry,
                raw: RawBoot {
                    mode: self.mode.map(BootMode::from),
                    load_addr: self.load_addr,
                    entry: self.entry,
                },
                regs: self.regs.clone(),
            },
            devices: DeviceConfig {
                serial: self.serial.clone(),
                disks: self.disks.clone(),
                nets: self.nets.clone(),
                rng: self.rng,
                virtio_console: self.virtio_console.clone(),
                vsock: self.vsock.clone(),
            },
        }
    }

    /// How this process runs the VM (the metrics sink, console input and
    /// start time are the caller's to add).
    pub fn host_options(&self) -> HostOptions {
        HostOptions {
            kvm_path: self.kvm_device.clone(),
            kernel_cache: self.kernel_cache_dir(),
            thp: self.thp,
            seccomp: !self.no_seccomp,
            trace_io: self.trace_io,
            print_post_codes: self.post_codes,
            max_exits: self.max_exits,
            timeout: self.timeout,
            emulation_fallback: !self.no_emulation_fallback,
            exit_timeline: self.exit_plot.is_some(),
            track_dirty_pages: self.track_dirty_pages,
            ..HostOptions::default()
        }
    }

    /// The kernel cache directory: `--kernel-cache`, else the XDG default,
    /// else none (no `--no-kernel-cache`, no usable home).
    pub fn kernel_cache_dir(&self) -> Option<PathBuf> {
        if self.no_kernel_cache {
            return None;
        }
        if let Some(dir) = &self.kernel_cache {
            return Some(dir.clone());
        }
        default_kernel_cache_dir(
            std::env::var_os("XDG_CACHE_HOME").as_deref(),
            std::env::var_os("HOME").as_deref(),
        )
    }
}

/// `$XDG_CACHE_HOME/vmm/vmlinux`, or `$HOME/.cache/vmm/vmlinux`; relative
/// values are ignored, as the XDG base directory specification says.
fn default_kernel_cache_dir(
    xdg_cache_home: Option<&std::ffi::OsStr>,
    home: Option<&std::ffi::OsStr>,
) -> Option<PathBuf> {
    let absolute = |v: Option<&std::ffi::OsStr>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    let base = absolute(xdg_cache_home).or_else(|| absolute(home).map(|h| h.join(".cache")))?;
    Some(base.join("vmm").join("vmlinux"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_numbers() {
        assert_eq!(parse_u64("4096"), Ok(4096));
        assert_eq!(parse_u64("0x1000"), Ok(4096));
        assert!(parse_u64("12abc").unwrap_err().contains("'12abc'"));
        assert!(parse_u64("-1").is_err());
        assert!(parse_u64("0x").is_err());
    }

    #[test]
    fn test_clap_errors_are_one_line() {
        let e = Cli::try_parse_from(["vmm-bin"]).unwrap_err();
        let line = one_line_error(&e);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("--kernel"), "{line}");
        assert!(!line.contains("Usage:"), "{line}");
        let e = Cli::try_parse_from(["vmm-bin", "--kernel", "k", "--memory", "lots"]).unwrap_err();
        let line = one_line_error(&e);
        assert!(line.contains("'lots' is not a size"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn test_on_reset_flag() {
        let cli =
            |args: &[&str]| Cli::try_parse_from([&["vmm-bin", "--kernel", "k"], args].concat());
        assert_eq!(cli(&[]).unwrap().on_reset, OnReset::Exit);
        assert_eq!(
            cli(&["--on-reset", "reboot"]).unwrap().on_reset,
            OnReset::Reboot
        );
        let e = cli(&["--on-reset", "halt"]).unwrap_err().to_string();
        assert!(e.contains("'halt'"), "{e}");
    }

    #[test]
    fn test_restore_flags() {
        let cli = |args: &[&str]| Cli::try_parse_from([&["vmm-bin"], args].concat());
        let c = cli(&["--restore", "s", "--restore-mem", "m", "--resume"]).unwrap();
        assert_eq!(c.restore, Some(PathBuf::from("s")));
        assert_eq!(c.restore_mem, Some(PathBuf::from("m")));
        assert!(c.resume && c.kernel.is_none());
        // The snapshot describes the VM: VM flags are refused with it.
        for extra in [
            &["--kernel", "k"][..],
            &["--memory", "64"],
            &["--cpus", "2"],
            &["--rng"],
        ] {
            let args = [&["--restore", "s", "--restore-mem", "m"][..], extra].concat();
            let e = cli(&args).unwrap_err();
            assert!(one_line_error(&e).contains("cannot be used"), "{extra:?}");
        }
        assert!(
            cli(&["--restore", "s"]).is_err(),
            "--restore-mem is required"
        );
        assert!(
            cli(&["--kernel", "k", "--resume"]).is_err(),
            "--resume needs --restore"
        );
        // Host options still apply.
        let c = cli(&[
            "--restore",
            "s",
            "--restore-mem",
            "m",
            "--timeout",
            "2",
            "--serial",
            "none",
        ])
        .unwrap();
        assert_eq!(c.timeout, Some(std::time::Duration::from_secs(2)));
    }

    #[test]
    fn test_parse_memory_units() {
        assert_eq!(parse_memory("128"), Ok(128));
        assert_eq!(parse_memory("0x80"), Ok(128));
        assert_eq!(parse_memory("512M"), Ok(512));
        assert_eq!(parse_memory("512MiB"), Ok(512));
        assert_eq!(parse_memory("2G"), Ok(2048));
        assert_eq!(parse_memory("2GiB"), Ok(2048));
        assert_eq!(parse_memory("1t"), Ok(1 << 20));
        assert_eq!(parse_memory("10T"), Ok(10 << 20));
        let e = parse_memory("lots").unwrap_err();
        assert!(e.contains("'lots' is not a size"), "{e}");
        assert!(parse_memory("G").unwrap_err().contains("'G'"));
        let e = parse_memory("18446744073709551615T").unwrap_err();
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn test_parse_entry_forms() {
        assert_eq!(
            parse_entry("0x1000:0"),
            Ok(Entry::Segmented {
                segment: 0x1000,
                offset: 0
            })
        );
        assert_eq!(
            parse_entry("0x7c00"),
            Ok(Entry::Linear(vm_memory::GuestAddress(0x7c00)))
        );
        assert!(parse_entry("0x10000:0").unwrap_err().contains("16 bits"));
        assert!(parse_entry("1:2:3").is_err());
        assert!(parse_entry(":5").is_err());
    }

    #[test]
    fn test_parse_reg() {
        assert_eq!(parse_reg("rax=2"), Ok((Reg::Rax, 2)));
        assert_eq!(parse_reg("R15=0xff"), Ok((Reg::R15, 255)));
        assert!(parse_reg("eax=1").unwrap_err().contains("'eax'"));
        assert!(parse_reg("rax").unwrap_err().contains("NAME=VALUE"));
        assert!(parse_reg("rbx=zz").unwrap_err().contains("'zz'"));
    }

    #[test]
    fn test_parse_module_and_format() {
        assert_eq!(parse_module("a.bin"), Ok(("a.bin".into(), None)));
        assert_eq!(
            parse_module("a.bin,x y,z"),
            Ok(("a.bin".into(), Some("x y,z".into())))
        );
        assert!(parse_module(",x").is_err());
        assert_eq!(parse_format("pvh"), Ok(Format::Pvh));
        assert!(parse_format("coff").is_err());
    }

    #[test]
    fn test_parse_serial_and_secs() {
        assert_eq!(
            parse_serial("file:/tmp/x"),
            Ok(SerialOut::File("/tmp/x".into()))
        );
        assert!(parse_serial("file:").is_err());
        assert!(parse_serial("tcp:1").is_err());
        assert_eq!(
            parse_secs("1.5"),
            Ok(std::time::Duration::from_millis(1500))
        );
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("nan").is_err());
    }

    #[test]
    fn test_kernel_cache_dir_defaults_follow_xdg() {
        use std::ffi::OsStr;
        let d = |x: Option<&str>, h: Option<&str>| {
            default_kernel_cache_dir(x.map(OsStr::new), h.map(OsStr::new))
        };
        assert_eq!(
            d(Some("/x"), Some("/h")),
            Some(PathBuf::from("/x/vmm/vmlinux"))
        );
        assert_eq!(
            d(None, Some("/h")),
            Some(PathBuf::from("/h/.cache/vmm/vmlinux"))
        );
        assert_eq!(
            d(Some("rel"), Some("/h")),
            Some(PathBuf::from("/h/.cache/vmm/vmlinux"))
        );
        assert_eq!(d(None, Some("")), None);
        assert_eq!(d(None, None), None);
        let cli =
            |args: &[&str]| Cli::try_parse_from([&["vmm-bin", "--kernel", "k"], args].concat());
        assert_eq!(
            cli(&["--kernel-cache", "/c"]).unwrap().kernel_cache_dir(),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            cli(&["--no-kernel-cache"]).unwrap().kernel_cache_dir(),
            None
        );
        assert!(cli(&["--no-kernel-cache", "--kernel-cache", "/c"]).is_err());
    }

    #[test]
    fn test_kernel_is_required_without_api_or_config_file() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["vmm-bin"], args].concat());
        let e = parse(&[]).unwrap_err();
        assert!(e.to_string().contains("--kernel"), "{e}");
        assert!(parse(&["--api-sock", "/tmp/s"]).unwrap().kernel.is_none());
        assert!(parse(&["--config-file", "c.json", "--no-api"]).is_ok());
        assert!(
            parse(&["--kernel", "k", "--no-api"]).is_err(),
            "--no-api needs a file"
        );
        assert!(parse(&["--api-sock", "/s", "--config-file", "c", "--no-api"]).is_err());
        assert_eq!(parse(&["--kernel", "k"]).unwrap().id, "anonymous-instance");
        assert!(parse(&["--kernel", "k", "--id", "vm_1"]).is_err());
        assert!(parse(&["--kernel", "k", "--id", "vm-1"]).is_ok());
    }
}
