//! The pre-boot state: what `PUT /boot-source`, `/machine-config`,
//! `/drives/{id}`, `/network-interfaces/{id}`, `/vsock`, `/entropy`,
//! `/logger` and `/metrics` (or the same sections of a config file)
//! accumulate, checked as each arrives, and turned into the
//! [`vmm_core::VmConfig`] the VM is built from.
//!
//! It starts from the command line's `VmConfig`: the flags with a
//! Firecracker equivalent (`--memory`, `--cpus`, `--disk`, `--net`,
//! `--rng`, `--vsock`) become entries here (drives `disk0`, `disk1`...,
//! interfaces `net0`...), which the API may replace; the kernel flags are
//! used unless a boot source is given; the others (`--serial`, `--mode`,
//! `--platform`, `--reg`...) pass through untouched.
//!
//! Firecracker's semantics, mapped:
//! - `boot-source`: the kernel, `boot_args` is the command line, the initrd.
//! - drives: virtio-blk in order, the root device first (Firecracker keeps
//!   it at the front of its list); a root device appends
//!   `root=/dev/vda` (or `root=PARTUUID=...`) and `ro`/`rw` to the command
//!   line, as Firecracker's builder does.
//! - `machine-config`: `vcpu_count` (1-32) and `mem_size_mib`;
//!   `huge_pages: Transparent` is `--thp`; `track_dirty_pages` is
//!   `--track-dirty-pages` (diff snapshots). SMT, CPU templates and
//!   hugetlbfs pages are refused (see [`PrepareError`]).
//! - boot-specific resources (everything but the logger and metrics, and
//!   the flags that describe a VM: `--kernel` and the device flags) rule
//!   out `PUT /snapshot/load` ([`Prepared::may_load_snapshot`]), as in
//!   Firecracker.
//! - rate limiters, MTU, vhost-user and io_uring are refused by name.

use std::path::{Path, PathBuf};

use vmm_core::config::{DiskConfig, KernelImage, NetConfig, VsockConfig};
use vmm_core::VmConfig;

use super::model::{
    BootSource, CacheType, CpuTemplate, Drive, Entropy, FullVmConfig, HugePages, IoEngine, Logger,
    MachineConfig, MachineConfigUpdate, Metrics, NetworkInterface, Vsock,
};
use crate::device_args::parse_mac;

/// Most vCPUs Firecracker's machine configuration allows.
pub const MAX_VCPUS: u8 = 32;

/// A configuration call that cannot be applied; the message (the
/// response's `fault_message`) carries Firecracker's section prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    /// `boot-source`.
    #[error("Boot source error: {0}")]
    BootSource(String),
    /// `machine-config`.
    #[error("Machine config error: {0}")]
    MachineConfig(String),
    /// `drives`.
    #[error("Drive config error: {0}")]
    Drive(String),
    /// `network-interfaces`.
    #[error("Network config error: {0}")]
    Network(String),
    /// `vsock`.
    #[error("Vsock config error: {0}")]
    Vsock(String),
    /// `entropy`.
    #[error("Entropy config error: {0}")]
    Entropy(String),
    /// `logger`.
    #[error("Logger error: {0}")]
    Logger(String),
    /// `metrics`.
    #[error("Metrics error: {0}")]
    Metrics(String),
    /// A section this VMM does not have.
    #[error("{0} is not supported by this build")]
    Unsupported(String),
}

/// "`what` is not supported by this VMM: `why`".
fn unsupported(what: &str, why: &str) -> String {
    format!("{what} is not supported by this VMM: {why}")
}

/// A drive and the real path behind it (a flag's path need not be UTF-8;
/// the model's string is for display only then).
#[derive(Debug, Clone, PartialEq, Eq)]
struct DriveEntry {
    drive: Drive,
    path: PathBuf,
    /// `--disk serial=` (virtio-blk GET_ID); the API has no such field.
    serial: Option<String>,
}

/// The VM as configured so far.
#[derive(Debug, Clone)]
pub struct Prepared {
    base: VmConfig,
    boot_source: Option<BootSource>,
    machine: MachineConfig,
    drives: Vec<DriveEntry>,
    nets: Vec<NetworkInterface>,
    vsock: Option<(Vsock, PathBuf)>,
    entropy: Option<Entropy>,
    logger: Option<Logger>,
    metrics: Option<Metrics>,
    /// A boot-specific resource was configured (Firecracker's `boot_path`).
    boot_path: bool,
}

/// What the VM is built from, beyond its `VmConfig`.
#[derive(Debug, Clone)]
pub struct PreparedVm {
    /// The VM.
    pub config: VmConfig,
    /// Transparent huge pages (`huge_pages: Transparent`).
    pub thp: bool,
    /// Where metrics records go (`PUT /metrics`).
    pub metrics: Option<PathBuf>,
    /// Dirty-page tracking (`track_dirty_pages`: diff snapshots).
    pub track_dirty_pages: bool,
}

fn lossy(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Prepared {
    /// The state the command line describes.
    pub fn from_flags(base: VmConfig) -> Prepared {
        let machine = MachineConfig {
            vcpu_count: u8::try_from(base.vcpus).unwrap_or(u8::MAX),
            mem_size_mib: base.memory_mib,
            ..MachineConfig::default()
        };
        let drives = base
            .devices
            .disks
            .iter()
            .enumerate()
            .map(|(i, d)| DriveEntry {
                drive: Drive {
                    drive_id: format!("disk{i}"),
                    partuuid: None,
                    is_root_device: false,
                    cache_type: CacheType::Unsafe,
                    is_read_only: Some(d.read_only),
                    path_on_host: Some(lossy(&d.path)),
                    rate_limiter: None,
                    io_engine: IoEngine::Sync,
                    socket: None,
                },
                path: d.path.clone(),
                serial: d.serial.clone(),
            })
            .collect();
        let nets = base
            .devices
            .nets
            .iter()
            .enumerate()
            .map(|(i, n)| NetworkInterface {
                iface_id: format!("net{i}"),
                host_dev_name: n.tap.clone(),
                guest_mac: n.mac.as_ref().map(format_mac),
                mtu: None,
                rx_rate_limiter: None,
                tx_rate_limiter: None,
            })
            .collect();
        let vsock = base.devices.vsock.as_ref().map(|v| {
            (
                Vsock {
                    vsock_id: None,
                    guest_cid: u32::try_from(v.cid).unwrap_or(u32::MAX),
                    uds_path: lossy(&v.socket),
                },
                v.socket.clone(),
            )
        });
        let entropy = base.devices.rng.then(Entropy::default);
        // Flags that describe the VM configure it as much as the API would.
        let d = &base.devices;
        let boot_path = base.boot.kernel.is_some()
            || !d.disks.is_empty()
            || !d.nets.is_empty()
            || d.vsock.is_some()
            || d.rng
            || d.virtio_console.is_some();
        Prepared {
            base,
            boot_source: None,
            machine,
            drives,
            nets,
            vsock,
            entropy,
            logger: None,
            metrics: None,
            boot_path,
        }
    }

    /// Where metrics records go (`PUT /metrics`), if set.
    pub fn metrics_path(&self) -> Option<PathBuf> {
        self.metrics.as_ref().map(|m| m.metrics_path.clone())
    }

    /// Whether `PUT /snapshot/load` may still come: no boot-specific
    /// resource has been configured.
    pub fn may_load_snapshot(&self) -> bool {
        !self.boot_path
    }

    /// `PUT /boot-source`: the kernel (and initrd) must be readable now,
    /// as Firecracker opens them when the call arrives.
    pub fn set_boot_source(&mut self, b: BootSource) -> Result<(), PrepareError> {
        std::fs::File::open(&b.kernel_image_path).map_err(|e| {
            PrepareError::BootSource(format!(
                "The kernel file cannot be opened: {e} ({})",
                b.kernel_image_path
            ))
        })?;
        if let Some(initrd) = &b.initrd_path {
            std::fs::File::open(initrd).map_err(|e| {
                PrepareError::BootSource(format!(
                    "The initrd file cannot be opened due to invalid path or invalid permissions. {e} ({initrd})"
                ))
            })?;
        }
        self.boot_source = Some(b);
        self.boot_path = true;
        Ok(())
    }

    /// `PUT /machine-config`: every field (absent optional ones reset to
    /// their defaults).
    pub fn set_machine_config(&mut self, m: MachineConfig) -> Result<(), PrepareError> {
        check_machine(&m)?;
        self.machine = m;
        self.boot_path = true;
        Ok(())
    }

    /// `PATCH /machine-config`: only the fields given.
    pub fn patch_machine_config(&mut self, u: MachineConfigUpdate) -> Result<(), PrepareError> {
        let cur = &self.machine;
        let m = MachineConfig {
            vcpu_count: u.vcpu_count.unwrap_or(cur.vcpu_count),
            mem_size_mib: u.mem_size_mib.unwrap_or(cur.mem_size_mib),
            smt: u.smt.unwrap_or(cur.smt),
            cpu_template: u.cpu_template.or(cur.cpu_template),
            track_dirty_pages: u.track_dirty_pages.unwrap_or(cur.track_dirty_pages),
            huge_pages: u.huge_pages.unwrap_or(cur.huge_pages),
        };
        self.set_machine_config(m)
    }

    /// The machine configuration (`GET /machine-config`).
    pub fn machine_config(&self) -> &MachineConfig {
        &self.machine
    }

    /// `PUT /drives/{id}`: a new drive, or a replacement for the one with
    /// that ID; at most one root device, kept first.
    pub fn insert_drive(&mut self, d: Drive) -> Result<(), PrepareError> {
        let err = PrepareError::Drive;
        if d.rate_limiter.is_some() {
            return Err(err(unsupported(
                "rate_limiter",
                "drives are not rate limited",
            )));
        }
        if d.socket.is_some() {
            return Err(err(unsupported("socket", "vhost-user-blk backends")));
        }
        if d.io_engine == IoEngine::Async {
            return Err(err(unsupported(
                "io_engine \"Async\"",
                "disk I/O is synchronous on the device thread",
            )));
        }
        if d.cache_type == CacheType::Writeback {
            return Err(err(unsupported(
                "cache_type \"Writeback\"",
                "the flush behaviour is the virtio-blk device's own",
            )));
        }
        let Some(path) = d.path_on_host.clone() else {
            return Err(err("path_on_host is required for a virtio-blk drive".into()));
        };
        let read_only = d.is_read_only.unwrap_or(false);
        std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(&path)
            .map_err(|e| err(format!("Cannot open block device {path}: {e}")))?;
        let position = self
            .drives
            .iter()
            .position(|e| e.drive.drive_id == d.drive_id);
        let root_at = self.drives.iter().position(|e| e.drive.is_root_device);
        if d.is_root_device && root_at.is_some() && root_at != position {
            return Err(err("A root block device already exists!".into()));
        }
        let entry = DriveEntry {
            path: PathBuf::from(&path),
            serial: position.and_then(|i| self.drives[i].serial.clone()),
            drive: d,
        };
        match position {
            Some(i) => self.drives[i] = entry,
            None => self.drives.push(entry),
        }
        self.boot_path = true;
        // The root device first: it is /dev/vda, the first virtio-blk.
        if let Some(i) = self.drives.iter().position(|e| e.drive.is_root_device) {
            let root = self.drives.remove(i);
            self.drives.insert(0, root);
        }
        Ok(())
    }

    /// `PUT /network-interfaces/{id}`.
    pub fn insert_net(&mut self, n: NetworkInterface) -> Result<(), PrepareError> {
        let err = PrepareError::Network;
        if n.rx_rate_limiter.is_some() || n.tx_rate_limiter.is_some() {
            let which = if n.rx_rate_limiter.is_some() {
                "rx_rate_limiter"
            } else {
                "tx_rate_limiter"
            };
            return Err(err(unsupported(which, "interfaces are not rate limited")));
        }
        if let Some(mtu) = n.mtu {
            return Err(err(unsupported(
                &format!("mtu {mtu}"),
                "VIRTIO_NET_F_MTU is not offered",
            )));
        }
        // IFNAMSIZ is 16 with the NUL.
        if n.host_dev_name.is_empty() || n.host_dev_name.len() > 15 {
            return Err(err(format!(
                "host_dev_name '{}' must be 1 to 15 bytes",
                n.host_dev_name
            )));
        }
        if let Some(mac) = &n.guest_mac {
            parse_mac(mac).map_err(err)?;
        }
        let others = || self.nets.iter().filter(|o| o.iface_id != n.iface_id);
        if others().any(|o| o.host_dev_name == n.host_dev_name) {
            return Err(err(format!(
                "The host device name {} is already in use.",
                n.host_dev_name
            )));
        }
        if let Some(mac) = &n.guest_mac {
            if others().any(|o| {
                o.guest_mac
                    .as_ref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(mac))
            }) {
                return Err(err(format!(
                    "The guest MAC address {mac} is already in use."
                )));
            }
        }
        match self.nets.iter().position(|o| o.iface_id == n.iface_id) {
            Some(i) => self.nets[i] = n,
            None => self.nets.push(n),
        }
        self.boot_path = true;
        Ok(())
    }

    /// `PUT /vsock`.
    pub fn set_vsock(&mut self, v: Vsock) -> Result<(), PrepareError> {
        // 0-2 are the hypervisor, local and host; u32::MAX is "any".
        if v.guest_cid < 3 || v.guest_cid == u32::MAX {
            return Err(PrepareError::Vsock(format!(
                "guest_cid {} must be 3 to {}",
                v.guest_cid,
                u32::MAX - 1
            )));
        }
        if v.uds_path.is_empty() {
            return Err(PrepareError::Vsock("uds_path must not be empty".into()));
        }
        let path = PathBuf::from(&v.uds_path);
        self.vsock = Some((v, path));
        self.boot_path = true;
        Ok(())
    }

    /// `PUT /entropy`.
    pub fn set_entropy(&mut self, e: Entropy) -> Result<(), PrepareError> {
        if e.rate_limiter.is_some() {
            return Err(PrepareError::Entropy(unsupported(
                "rate_limiter",
                "the entropy device is not rate limited",
            )));
        }
        self.entropy = Some(e);
        self.boot_path = true;
        Ok(())
    }

    /// `PUT /logger`: recorded here (the caller applies it to the process's
    /// logger).
    pub fn set_logger(&mut self, l: Logger) {
        self.logger = Some(l);
    }

    /// `PUT /metrics`: once, as in Firecracker; the file must be writable.
    pub fn set_metrics(&mut self, m: Metrics) -> Result<(), PrepareError> {
        if self.metrics.is_some() {
            return Err(PrepareError::Metrics(
                "Reinitialization of metrics not allowed.".into(),
            ));
        }
        open_append(&m.metrics_path).map_err(|e| {
            PrepareError::Metrics(format!(
                "Cannot open the metrics file {}: {e}",
                m.metrics_path.display()
            ))
        })?;
        self.metrics = Some(m);
        Ok(())
    }

    /// Applies a config file's sections in Firecracker's order (logger and
    /// metrics first, then machine, boot source, drives, interfaces, vsock,
    /// entropy). The logger section is returned for the caller to apply.
    pub fn apply_file(&mut self, f: FullVmConfig) -> Result<Option<Logger>, PrepareError> {
        for (name, value) in [
            ("balloon", &f.balloon),
            ("cpu-config", &f.cpu_config),
            ("mmds-config", &f.mmds_config),
            ("memory-hotplug", &f.memory_hotplug),
        ] {
            if value.is_some() {
                return Err(PrepareError::Unsupported(format!("the {name} section")));
            }
        }
        if f.pmem
            .as_ref()
            .is_some_and(|p| p.as_array().is_none_or(|a| !a.is_empty()))
        {
            return Err(PrepareError::Unsupported("the pmem section".into()));
        }
        if let Some(m) = f.metrics {
            self.set_metrics(m)?;
        }
        if let Some(m) = f.machine_config {
            self.set_machine_config(m)?;
        }
        if let Some(b) = f.boot_source {
            self.set_boot_source(b)?;
        }
        for d in f.drives {
            self.insert_drive(d)?;
        }
        for n in f.network_interfaces {
            self.insert_net(n)?;
        }
        if let Some(v) = f.vsock {
            self.set_vsock(v)?;
        }
        if let Some(e) = f.entropy {
            self.set_entropy(e)?;
        }
        if let Some(l) = &f.logger {
            self.set_logger(l.clone());
        }
        Ok(f.logger)
    }

    /// The boot source in force: the API's, else the flags'.
    fn boot_source_view(&self) -> Option<BootSource> {
        self.boot_source
            .clone()
            .or_else(|| match &self.base.boot.kernel {
                Some(KernelImage::Path(p)) => Some(BootSource {
                    kernel_image_path: lossy(p),
                    initrd_path: self.base.boot.initrd.as_deref().map(lossy),
                    boot_args: self.base.boot.cmdline.clone(),
                }),
                _ => None,
            })
    }

    /// `GET /vm/config` of a VM loaded from a snapshot that describes it as
    /// `vm`: its machine and devices (drives `disk0`..., interfaces
    /// `net0`..., the snapshot keeps no API IDs), this process's logger and
    /// metrics, and no boot source (Firecracker leaves it empty too).
    pub fn restored_config(&self, vm: &VmConfig, track_dirty_pages: bool) -> FullVmConfig {
        let mut full = Prepared::from_flags(vm.clone()).full_config();
        full.boot_source = None;
        if let Some(m) = full.machine_config.as_mut() {
            m.track_dirty_pages = track_dirty_pages;
        }
        full.logger = self.logger.clone();
        full.metrics = self.metrics.clone();
        full
    }

    /// `GET /vm/config`: the configuration as Firecracker prints it.
    pub fn full_config(&self) -> FullVmConfig {
        FullVmConfig {
            drives: self.drives.iter().map(|e| e.drive.clone()).collect(),
            boot_source: self.boot_source_view(),
            logger: self.logger.clone(),
            machine_config: Some(self.machine.clone()),
            metrics: self.metrics.clone(),
            network_interfaces: self.nets.clone(),
            vsock: self.vsock.as_ref().map(|(v, _)| v.clone()),
            entropy: self.entropy.clone(),
            ..FullVmConfig::default()
        }
    }

    /// The VM to build. Fails without a kernel.
    pub fn vm_config(&self) -> Result<PreparedVm, PrepareError> {
        let mut config = self.base.clone();
        if let Some(b) = &self.boot_source {
            config.boot.kernel = Some(KernelImage::Path(PathBuf::from(&b.kernel_image_path)));
            config.boot.cmdline = b.boot_args.clone();
            config.boot.initrd = b.initrd_path.as_ref().map(PathBuf::from);
        }
        if config.boot.kernel.is_none() {
            return Err(PrepareError::BootSource(
                "no boot source: PUT /boot-source (or --kernel) first".into(),
            ));
        }
        if let Some(root) = self.drives.first().filter(|e| e.drive.is_root_device) {
            // Firecracker's builder appends these after the boot arguments.
            let root_arg = match &root.drive.partuuid {
                Some(uuid) => format!("root=PARTUUID={uuid}"),
                None => "root=/dev/vda".to_string(),
            };
            let mode = if root.drive.is_read_only.unwrap_or(false) {
                "ro"
            } else {
                "rw"
            };
            let args = [
                config.boot.cmdline.as_deref().unwrap_or(""),
                &root_arg,
                mode,
            ]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
            config.boot.cmdline = Some(args);
        }
        config.vcpus = u64::from(self.machine.vcpu_count);
        config.memory_mib = self.machine.mem_size_mib;
        config.devices.disks = self
            .drives
            .iter()
            .map(|e| DiskConfig {
                path: e.path.clone(),
                read_only: e.drive.is_read_only.unwrap_or(false),
                serial: e.serial.clone(),
            })
            .collect();
        config.devices.nets = self
            .nets
            .iter()
            .map(|n| NetConfig {
                tap: n.host_dev_name.clone(),
                // Checked when inserted.
                mac: n.guest_mac.as_deref().and_then(|m| parse_mac(m).ok()),
            })
            .collect();
        config.devices.vsock = self.vsock.as_ref().map(|(v, path)| VsockConfig {
            cid: u64::from(v.guest_cid),
            socket: path.clone(),
        });
        config.devices.rng = self.entropy.is_some();
        Ok(PreparedVm {
            config,
            thp: self.machine.huge_pages == HugePages::Transparent,
            metrics: self.metrics.as_ref().map(|m| m.metrics_path.clone()),
            track_dirty_pages: self.machine.track_dirty_pages,
        })
    }
}

/// Opens `path` for appending, creating it if missing (a named pipe works
/// too: opened read-write, it never blocks for want of a reader).
pub fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

fn check_machine(m: &MachineConfig) -> Result<(), PrepareError> {
    let err = PrepareError::MachineConfig;
    if m.vcpu_count == 0 || m.vcpu_count > MAX_VCPUS {
        return Err(err(format!(
            "The number of vCPUs must be greater than 0, less than {MAX_VCPUS} and must be 1 or an even number if SMT is enabled."
        )));
    }
    if m.mem_size_mib == 0 {
        return Err(err(
            "The memory size (MiB) is either 0, or not a multiple of the configured page size."
                .into(),
        ));
    }
    if m.smt {
        return Err(err(unsupported(
            "smt: true",
            "vCPUs are presented as one thread per core",
        )));
    }
    if let Some(t) = m.cpu_template.filter(|t| *t != CpuTemplate::None) {
        return Err(err(unsupported(
            &format!("cpu_template {t:?}"),
            "the guest sees the host's CPUID as KVM filters it",
        )));
    }
    if m.huge_pages == HugePages::Hugetlbfs2M {
        return Err(err(unsupported(
            "huge_pages \"2M\"",
            "guest RAM is anonymous memory (\"Transparent\" is supported)",
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> (PathBuf, String) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "vmm-prepare-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&p, b"x").unwrap();
        let s = p.to_str().unwrap().to_string();
        (p, s)
    }

    fn drive(id: &str, path: &str, root: bool) -> Drive {
        Drive {
            drive_id: id.into(),
            partuuid: None,
            is_root_device: root,
            cache_type: CacheType::Unsafe,
            is_read_only: Some(false),
            path_on_host: Some(path.into()),
            rate_limiter: None,
            io_engine: IoEngine::Sync,
            socket: None,
        }
    }

    #[test]
    fn test_root_drive_goes_first_and_sets_the_command_line() {
        let (k, ks) = file();
        let (d1, d1s) = file();
        let (d2, d2s) = file();
        let mut p = Prepared::from_flags(VmConfig::default());
        assert!(p
            .vm_config()
            .unwrap_err()
            .to_string()
            .starts_with("Boot source error"));
        p.set_boot_source(BootSource {
            kernel_image_path: ks,
            initrd_path: None,
            boot_args: Some("console=ttyS0".into()),
        })
        .unwrap();
        p.insert_drive(drive("data", &d1s, false)).unwrap();
        p.insert_drive(drive("rootfs", &d2s, true)).unwrap();
        let e = p.insert_drive(drive("other", &d1s, true)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Drive config error: A root block device already exists!"
        );
        let vm = p.vm_config().unwrap();
        assert_eq!(vm.config.devices.disks[0].path, d2);
        assert_eq!(vm.config.devices.disks[1].path, d1);
        assert_eq!(
            vm.config.boot.cmdline.as_deref(),
            Some("console=ttyS0 root=/dev/vda rw")
        );
        let mut ro = drive("rootfs", &d2s, true);
        ro.is_read_only = Some(true);
        ro.partuuid = Some("0eaa91a0-01".into());
        p.insert_drive(ro).unwrap();
        assert_eq!(p.drives.len(), 2);
        let vm = p.vm_config().unwrap();
        assert_eq!(
            vm.config.boot.cmdline.as_deref(),
            Some("console=ttyS0 root=PARTUUID=0eaa91a0-01 ro")
        );
        assert_eq!(p.full_config().drives[0].drive_id, "rootfs");
        for f in [k, d1, d2] {
            let _ = std::fs::remove_file(f);
        }
    }

    #[test]
    fn test_unsupported_settings_are_refused_by_name() {
        let (d, ds) = file();
        let mut p = Prepared::from_flags(VmConfig::default());
        let mut m = MachineConfig {
            smt: true,
            ..MachineConfig::default()
        };
        assert!(p
            .set_machine_config(m.clone())
            .unwrap_err()
            .to_string()
            .contains("smt"));
        m.smt = false;
        m.huge_pages = HugePages::Hugetlbfs2M;
        assert!(p
            .set_machine_config(m.clone())
            .unwrap_err()
            .to_string()
            .contains("2M"));
        m.huge_pages = HugePages::Transparent;
        m.vcpu_count = 33;
        assert!(p
            .set_machine_config(m.clone())
            .unwrap_err()
            .to_string()
            .contains("vCPUs"));
        m.vcpu_count = 2;
        p.set_machine_config(m).unwrap();
        let e = p
            .patch_machine_config(MachineConfigUpdate {
                cpu_template: Some(CpuTemplate::T2),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.to_string().contains("cpu_template T2"), "{e}");
        let mut limited = drive("d", &ds, false);
        limited.rate_limiter = Some(super::super::model::RateLimiter {
            bandwidth: None,
            ops: None,
        });
        assert!(p
            .insert_drive(limited)
            .unwrap_err()
            .to_string()
            .contains("rate_limiter"));
        let e = p
            .insert_drive(drive("d", "/nonexistent/disk.img", false))
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/disk.img"), "{e}");
        let e = p.set_entropy(Entropy {
            rate_limiter: Some(super::super::model::RateLimiter {
                bandwidth: None,
                ops: None,
            }),
        });
        assert!(e
            .unwrap_err()
            .to_string()
            .starts_with("Entropy config error"));
        let e = p.set_vsock(Vsock {
            vsock_id: None,
            guest_cid: 2,
            uds_path: "/v".into(),
        });
        assert!(e.unwrap_err().to_string().contains("guest_cid 2"));
        let vm = p.vm_config();
        assert!(vm.is_err(), "still no kernel");
        let _ = std::fs::remove_file(d);
    }

    #[test]
    fn test_flags_prefill_and_interfaces_must_not_collide() {
        let mut base = VmConfig {
            memory_mib: 64,
            ..VmConfig::default()
        };
        base.devices.nets.push(NetConfig {
            tap: "tap0".into(),
            mac: Some([2, 0, 0, 0, 0, 1]),
        });
        base.devices.rng = true;
        base.boot.kernel = Some(KernelImage::Path("/k".into()));
        let mut p = Prepared::from_flags(base);
        let full = p.full_config();
        assert_eq!(full.machine_config.unwrap().mem_size_mib, 64);
        assert_eq!(full.network_interfaces[0].iface_id, "net0");
        assert_eq!(
            full.network_interfaces[0].guest_mac.as_deref(),
            Some("02:00:00:00:00:01")
        );
        assert!(full.entropy.is_some());
        assert_eq!(full.boot_source.unwrap().kernel_image_path, "/k");
        let net = |id: &str, tap: &str, mac: Option<&str>| NetworkInterface {
            iface_id: id.into(),
            host_dev_name: tap.into(),
            guest_mac: mac.map(str::to_string),
            mtu: None,
            rx_rate_limiter: None,
            tx_rate_limiter: None,
        };
        let e = p.insert_net(net("eth1", "tap0", None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Network config error: The host device name tap0 is already in use."
        );
        let e = p
            .insert_net(net("eth1", "tap1", Some("02:00:00:00:00:01")))
            .unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
        p.insert_net(net("net0", "tap9", None)).unwrap();
        let vm = p.vm_config().unwrap();
        assert_eq!(vm.config.devices.nets[0].tap, "tap9");
        assert!(vm.config.devices.rng);
        assert_eq!(vm.config.memory_mib, 64);
    }

    #[test]
    fn test_boot_specific_resources_rule_out_a_snapshot_load() {
        let (d, ds) = file();
        let mut p = Prepared::from_flags(VmConfig::default());
        assert!(p.may_load_snapshot());
        // Logger and metrics are not boot-specific.
        p.set_logger(Logger::default());
        p.set_metrics(Metrics {
            metrics_path: d.clone(),
        })
        .unwrap();
        assert!(p.may_load_snapshot());
        // A refused call configures nothing.
        assert!(p.insert_drive(drive("d", "/nonexistent/x", false)).is_err());
        assert!(p.may_load_snapshot());
        p.insert_drive(drive("d", &ds, false)).unwrap();
        assert!(!p.may_load_snapshot());
        let mut p = Prepared::from_flags(VmConfig::default());
        p.set_machine_config(MachineConfig::default()).unwrap();
        assert!(!p.may_load_snapshot());
        let mut flags = VmConfig::default();
        flags.boot.kernel = Some(KernelImage::Path("/k".into()));
        assert!(!Prepared::from_flags(flags).may_load_snapshot());
        let _ = std::fs::remove_file(d);
    }

    #[test]
    fn test_restored_config_has_no_boot_source_and_the_snapshots_machine() {
        let mut vm = VmConfig {
            memory_mib: 48,
            vcpus: 2,
            ..VmConfig::default()
        };
        vm.boot.kernel = Some(KernelImage::Path("/k".into()));
        vm.devices.rng = true;
        let p = Prepared::from_flags(VmConfig::default());
        let full = p.restored_config(&vm, true);
        assert!(full.boot_source.is_none());
        let m = full.machine_config.unwrap();
        assert_eq!(
            (m.vcpu_count, m.mem_size_mib, m.track_dirty_pages),
            (2, 48, true)
        );
        assert!(full.entropy.is_some());
        // Dirty-page tracking is accepted now, and reaches the VM.
        let mut p = Prepared::from_flags(VmConfig::default());
        p.set_machine_config(MachineConfig {
            track_dirty_pages: true,
            ..MachineConfig::default()
        })
        .unwrap();
        p.base.boot.kernel = Some(KernelImage::Path("/k".into()));
        assert!(p.vm_config().unwrap().track_dirty_pages);
    }
}
