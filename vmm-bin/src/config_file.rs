//! `--config-file FILE`: Firecracker's JSON configuration document
//! (`boot-source`, `machine-config`, `drives`, `network-interfaces`,
//! `vsock`, `entropy`, `logger`, `metrics`), read into the API's own model
//! ([`crate::api::model::FullVmConfig`]) and applied through the same
//! checks as the API calls ([`crate::api::prepare::Prepared::apply_file`]),
//! so a file and the equivalent API calls build the same `VmConfig`.
//! Unknown fields, anywhere in the document, are an error naming them.

use std::path::{Path, PathBuf};

use crate::api::model::FullVmConfig;

/// Errors reading the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file cannot be read.
    #[error("--config-file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The JSON does not decode (serde's message names an unknown field,
    /// a missing one or a bad value, with its line and column).
    #[error("--config-file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The error.
        source: serde_json::Error,
    },
}

/// Reads and decodes `path`.
pub fn load(path: &Path) -> Result<FullVmConfig, ConfigFileError> {
    let text = std::fs::read(path).map_err(|source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|source| ConfigFileError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Decodes a configuration document.
pub fn parse(text: &[u8]) -> Result<FullVmConfig, serde_json::Error> {
    serde_json::from_slice(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_firecracker_document_reads_and_unknown_fields_are_named() {
        let doc = br#"{
          "boot-source": {"kernel_image_path": "vmlinux", "boot_args": "console=ttyS0 reboot=k panic=1"},
          "drives": [{"drive_id": "rootfs", "path_on_host": "rootfs.ext4", "is_root_device": true, "is_read_only": false}],
          "machine-config": {"vcpu_count": 2, "mem_size_mib": 1024, "smt": false},
          "network-interfaces": [{"iface_id": "eth0", "guest_mac": "AA:FC:00:00:00:01", "host_dev_name": "tap0"}],
          "vsock": {"guest_cid": 3, "uds_path": "/tmp/v.sock"},
          "entropy": {},
          "logger": {"log_path": "/tmp/fc.log", "level": "Debug", "show_level": true},
          "metrics": {"metrics_path": "/tmp/fc-metrics"},
          "balloon": null, "mmds-config": null, "cpu-config": null
        }"#;
        let c = parse(doc).unwrap();
        assert_eq!(c.drives[0].drive_id, "rootfs");
        assert_eq!(c.machine_config.unwrap().vcpu_count, 2);
        assert_eq!(c.network_interfaces[0].host_dev_name, "tap0");
        let e =
            parse(br#"{"machine-config": {"vcpu_count": 1, "mem_size_mib": 64, "turbo": true}}"#)
                .unwrap_err();
        assert!(e.to_string().contains("unknown field `turbo`"), "{e}");
        let e = parse(br#"{"boot-sauce": {}}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `boot-sauce`"), "{e}");
    }
}
