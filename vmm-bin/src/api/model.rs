//! The API's JSON bodies, mirroring the definitions of Firecracker's
//! swagger file (`src/firecracker/swagger/firecracker.yaml`): the same
//! field names, required fields, enums and defaults, and unknown fields
//! refused (serde's message names the field). The config file
//! ([`crate::config_file`]) is a [`FullVmConfig`] read with these types.
//!
//! Parsing accepts everything the swagger allows; what this VMM cannot do
//! (rate limiters, SMT, CPU templates, hugetlbfs, vhost-user, UFFD...)
//! is refused afterwards by [`super::prepare`] with a message naming the
//! field, rather than failing as an unknown field.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `BootSource`: the kernel and what it is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSource {
    /// Host path of the kernel image.
    pub kernel_image_path: String,
    /// Host path of the initrd.
    #[serde(default)]
    pub initrd_path: Option<String>,
    /// The kernel command line.
    #[serde(default)]
    pub boot_args: Option<String>,
}

/// `CpuTemplate` (deprecated in Firecracker; only `None` is supported here).
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CpuTemplate {
    C3,
    T2,
    T2S,
    T2CL,
    T2A,
    V1N1,
    None,
}

/// `MachineConfiguration.huge_pages`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HugePages {
    /// 4 KiB pages.
    #[default]
    None,
    /// Transparent huge pages (madvise): this VMM's `--thp`.
    Transparent,
    /// hugetlbfs 2 MiB pages (refused: not supported).
    #[serde(rename = "2M")]
    Hugetlbfs2M,
}

/// `MachineConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    /// vCPUs (1 to 32).
    pub vcpu_count: u8,
    /// Guest RAM in MiB.
    pub mem_size_mib: u64,
    /// Simultaneous multithreading in the guest's CPU topology.
    #[serde(default)]
    pub smt: bool,
    /// A static CPU template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_template: Option<CpuTemplate>,
    /// Dirty page tracking (for diff snapshots).
    #[serde(default)]
    pub track_dirty_pages: bool,
    /// Huge pages behind guest RAM.
    #[serde(default)]
    pub huge_pages: HugePages,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            vcpu_count: 1,
            mem_size_mib: vmm_core::DEFAULT_MEMORY_MIB,
            smt: false,
            cpu_template: None,
            track_dirty_pages: false,
            huge_pages: HugePages::None,
        }
    }
}

/// The body of `PATCH /machine-config`: any subset of [`MachineConfig`].
#[allow(missing_docs)]
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfigUpdate {
    #[serde(default)]
    pub vcpu_count: Option<u8>,
    #[serde(default)]
    pub mem_size_mib: Option<u64>,
    #[serde(default)]
    pub smt: Option<bool>,
    #[serde(default)]
    pub cpu_template: Option<CpuTemplate>,
    #[serde(default)]
    pub track_dirty_pages: Option<bool>,
    #[serde(default)]
    pub huge_pages: Option<HugePages>,
}

impl MachineConfigUpdate {
    /// Whether no field is set (Firecracker: "Empty PATCH request.").
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// `TokenBucket`.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBucket {
    pub size: u64,
    #[serde(default)]
    pub one_time_burst: Option<u64>,
    pub refill_time: u64,
}

/// `RateLimiter` (parsed so the error can name it; refused).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimiter {
    #[serde(default)]
    pub bandwidth: Option<TokenBucket>,
    #[serde(default)]
    pub ops: Option<TokenBucket>,
}

/// `Drive.cache_type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheType {
    /// Flushes may be ignored (Firecracker's default).
    #[default]
    Unsafe,
    /// Flushes must reach the host's storage (refused: see prepare).
    Writeback,
}

/// `Drive.io_engine`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum IoEngine {
    /// Blocking I/O on the device thread.
    #[default]
    Sync,
    /// io_uring (refused: not supported).
    Async,
}

/// `Drive`: a virtio-blk device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drive {
    /// The drive's ID (also in the path).
    pub drive_id: String,
    /// The root partition's PARTUUID (`root=PARTUUID=...`).
    #[serde(default)]
    pub partuuid: Option<String>,
    /// Whether the guest boots from it (`root=/dev/vda`, first in order).
    pub is_root_device: bool,
    /// Flush behaviour.
    #[serde(default)]
    pub cache_type: CacheType,
    /// Open read-only.
    #[serde(default)]
    pub is_read_only: Option<bool>,
    /// The backing file.
    #[serde(default)]
    pub path_on_host: Option<String>,
    /// I/O limits (refused).
    #[serde(default)]
    pub rate_limiter: Option<RateLimiter>,
    /// I/O engine.
    #[serde(default)]
    pub io_engine: IoEngine,
    /// A vhost-user-blk backend socket (refused).
    #[serde(default)]
    pub socket: Option<String>,
}

/// `PartialDrive` (`PATCH /drives/{id}`, post-boot; refused).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialDrive {
    pub drive_id: String,
    #[serde(default)]
    pub path_on_host: Option<String>,
    #[serde(default)]
    pub rate_limiter: Option<RateLimiter>,
}

/// `NetworkInterface`: a virtio-net device on a tap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterface {
    /// The interface's ID (also in the path).
    pub iface_id: String,
    /// The host tap's name.
    pub host_dev_name: String,
    /// The guest's MAC address.
    #[serde(default)]
    pub guest_mac: Option<String>,
    /// MTU to advertise (refused: not supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Receive limits (refused).
    #[serde(default)]
    pub rx_rate_limiter: Option<RateLimiter>,
    /// Transmit limits (refused).
    #[serde(default)]
    pub tx_rate_limiter: Option<RateLimiter>,
}

/// `PartialNetworkInterface` (`PATCH /network-interfaces/{id}`; refused).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialNetworkInterface {
    pub iface_id: String,
    #[serde(default)]
    pub rx_rate_limiter: Option<RateLimiter>,
    #[serde(default)]
    pub tx_rate_limiter: Option<RateLimiter>,
}

/// `Vsock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vsock {
    /// Deprecated ID, ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsock_id: Option<String>,
    /// The guest's context ID (3 or more).
    pub guest_cid: u32,
    /// The host Unix socket.
    pub uds_path: String,
}

/// `EntropyDevice`: a virtio-rng device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entropy {
    /// Limits (refused).
    #[serde(default)]
    pub rate_limiter: Option<RateLimiter>,
}

/// `Logger.level`: case-insensitive, as Firecracker reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Error.
    Error,
    /// Warning (also read as `Warn`).
    Warning,
    /// Info.
    Info,
    /// Debug.
    Debug,
    /// Trace.
    Trace,
    /// Nothing.
    Off,
}

impl LogLevel {
    /// The `log` crate's filter.
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warning => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
            LogLevel::Off => log::LevelFilter::Off,
        }
    }

    fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "Error",
            LogLevel::Warning => "Warning",
            LogLevel::Info => "Info",
            LogLevel::Debug => "Debug",
            LogLevel::Trace => "Trace",
            LogLevel::Off => "Off",
        }
    }
}

impl Serialize for LogLevel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.to_ascii_lowercase().as_str() {
            "error" => LogLevel::Error,
            "warning" | "warn" => LogLevel::Warning,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            "off" => LogLevel::Off,
            _ => {
                return Err(serde::de::Error::custom(format!(
                "unknown log level `{s}`, expected one of Error, Warning, Info, Debug, Trace, Off"
            )))
            }
        })
    }
}

/// `Logger`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logger {
    /// File or named pipe for the log (created if missing, appended to).
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    /// The most verbose level written (default Info).
    #[serde(default)]
    pub level: Option<LogLevel>,
    /// Write the level on each line.
    #[serde(default)]
    pub show_level: Option<bool>,
    /// Write the source file and line on each line.
    #[serde(default)]
    pub show_log_origin: Option<bool>,
    /// Only records whose module path starts with this.
    #[serde(default)]
    pub module: Option<String>,
}

/// `Metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// File or named pipe the JSON records are appended to, one a line.
    pub metrics_path: PathBuf,
}

/// `InstanceActionInfo.action_type`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ActionType {
    FlushMetrics,
    InstanceStart,
    SendCtrlAltDel,
}

/// `InstanceActionInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceActionInfo {
    /// The action.
    pub action_type: ActionType,
}

/// `Vm.state`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum VmState {
    Paused,
    Resumed,
}

/// `Vm` (`PATCH /vm`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmStateRequest {
    /// The state asked for.
    pub state: VmState,
}

/// `SnapshotCreateParams.snapshot_type`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SnapshotType {
    Full,
    Diff,
}

/// `SnapshotCreateParams` (`PUT /snapshot/create`).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCreateParams {
    pub mem_file_path: String,
    pub snapshot_path: String,
    #[serde(default)]
    pub snapshot_type: Option<SnapshotType>,
}

/// `MemoryBackend.backend_type`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MemBackendType {
    File,
    Uffd,
}

/// `MemoryBackend`.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemBackend {
    pub backend_type: MemBackendType,
    pub backend_path: String,
}

/// `NetworkOverride`.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkOverride {
    pub iface_id: String,
    pub host_dev_name: String,
}

/// `VsockOverride`.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockOverride {
    pub uds_path: String,
}

/// `SnapshotLoadParams` (`PUT /snapshot/load`); exactly one of
/// `mem_backend` and `mem_file_path`, checked when routed.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotLoadParams {
    pub snapshot_path: String,
    #[serde(default)]
    pub mem_file_path: Option<String>,
    #[serde(default)]
    pub mem_backend: Option<MemBackend>,
    #[serde(default)]
    pub enable_diff_snapshots: Option<bool>,
    #[serde(default)]
    pub track_dirty_pages: Option<bool>,
    #[serde(default)]
    pub resume_vm: Option<bool>,
    #[serde(default)]
    pub network_overrides: Option<Vec<NetworkOverride>>,
    #[serde(default)]
    pub vsock_override: Option<VsockOverride>,
    #[serde(default)]
    pub clock_realtime: Option<bool>,
}

/// `InstanceInfo` (`GET /`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// The instance ID (`--id`).
    pub id: String,
    /// "Not started", "Running" or "Paused".
    pub state: String,
    /// This VMM's version.
    pub vmm_version: String,
    /// This VMM's name.
    pub app_name: String,
}

/// `FirecrackerVersion` (`GET /version`): the field keeps Firecracker's
/// name; the value is this VMM's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// This VMM's version.
    pub firecracker_version: String,
}

/// `FullVmConfiguration`: `GET /vm/config`, and the `--config-file`
/// document. Sections Firecracker has and this VMM does not (balloon, CPU
/// configuration, MMDS, pmem, memory hot-plug) are accepted as `null` or
/// empty, so a configuration printed by either VMM reads back; anything
/// else in them is refused by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullVmConfig {
    /// Not supported: must be null.
    #[serde(default)]
    pub balloon: Option<serde_json::Value>,
    /// Block devices, root first.
    #[serde(default)]
    pub drives: Vec<Drive>,
    /// The kernel.
    #[serde(rename = "boot-source", default)]
    pub boot_source: Option<BootSource>,
    /// Not supported: must be null.
    #[serde(rename = "cpu-config", default)]
    pub cpu_config: Option<serde_json::Value>,
    /// The logger.
    #[serde(default)]
    pub logger: Option<Logger>,
    /// vCPUs and memory.
    #[serde(rename = "machine-config", default)]
    pub machine_config: Option<MachineConfig>,
    /// The metrics file.
    #[serde(default)]
    pub metrics: Option<Metrics>,
    /// Not supported: must be null.
    #[serde(rename = "mmds-config", default)]
    pub mmds_config: Option<serde_json::Value>,
    /// Network interfaces.
    #[serde(rename = "network-interfaces", default)]
    pub network_interfaces: Vec<NetworkInterface>,
    /// The vsock device.
    #[serde(default)]
    pub vsock: Option<Vsock>,
    /// The entropy device.
    #[serde(default)]
    pub entropy: Option<Entropy>,
    /// Not supported: must be absent, null or empty.
    #[serde(default, skip_serializing)]
    pub pmem: Option<serde_json::Value>,
    /// Not supported: must be absent or null.
    #[serde(rename = "memory-hotplug", default, skip_serializing)]
    pub memory_hotplug: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_model_matches_swagger_required_fields_and_enums() {
        let m: MachineConfig =
            serde_json::from_str(r#"{"vcpu_count": 2, "mem_size_mib": 256}"#).unwrap();
        assert_eq!((m.vcpu_count, m.mem_size_mib, m.smt), (2, 256, false));
        let e = serde_json::from_str::<MachineConfig>(r#"{"vcpu_count": 2}"#).unwrap_err();
        assert!(e.to_string().contains("mem_size_mib"), "{e}");
        let e = serde_json::from_str::<MachineConfig>(r#"{"vcpu_count": 300, "mem_size_mib": 1}"#)
            .unwrap_err();
        assert!(e.to_string().contains("300"), "{e}");
        let h: MachineConfigUpdate = serde_json::from_str(r#"{"huge_pages": "2M"}"#).unwrap();
        assert_eq!(h.huge_pages, Some(HugePages::Hugetlbfs2M));
        let e = serde_json::from_str::<Drive>(
            r#"{"drive_id": "a", "is_root_device": true, "readonly": true}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `readonly`"), "{e}");
        let a: InstanceActionInfo =
            serde_json::from_str(r#"{"action_type": "InstanceStart"}"#).unwrap();
        assert_eq!(a.action_type, ActionType::InstanceStart);
        assert!(
            serde_json::from_str::<InstanceActionInfo>(r#"{"action_type": "Reboot"}"#).is_err()
        );
        let l: Logger = serde_json::from_str(r#"{"level": "wArN"}"#).unwrap();
        assert_eq!(l.level, Some(LogLevel::Warning));
        assert_eq!(serde_json::to_string(&l.level).unwrap(), r#""Warning""#);
        assert!(serde_json::from_str::<Logger>(r#"{"level": "loud"}"#).is_err());
    }

    #[test]
    fn test_full_config_prints_as_firecracker_and_reads_back() {
        let c = FullVmConfig {
            boot_source: Some(BootSource {
                kernel_image_path: "/k".into(),
                initrd_path: None,
                boot_args: Some("console=ttyS0".into()),
            }),
            machine_config: Some(MachineConfig::default()),
            ..Default::default()
        };
        let json = serde_json::to_string(&c).unwrap();
        for key in [
            r#""balloon":null"#,
            r#""drives":[]"#,
            r#""boot-source":{"kernel_image_path":"/k","initrd_path":null,"boot_args":"console=ttyS0"}"#,
            r#""machine-config":{"vcpu_count":1,"mem_size_mib":128,"smt":false,"track_dirty_pages":false,"huge_pages":"None"}"#,
            r#""network-interfaces":[]"#,
            r#""vsock":null"#,
        ] {
            assert!(json.contains(key), "{key} in {json}");
        }
        assert_eq!(serde_json::from_str::<FullVmConfig>(&json).unwrap(), c);
        let e = serde_json::from_str::<FullVmConfig>(r#"{"boot_source": {}}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `boot_source`"), "{e}");
    }
}
