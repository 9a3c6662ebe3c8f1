//! Opening `/dev/kvm` and checking it is a KVM we can drive.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use kvm_ioctls::Kvm;

/// The only KVM API version there has ever been (KVM_GET_API_VERSION).
pub const KVM_API_VERSION: i32 = 12;

/// Why KVM cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// The device node does not exist.
    #[error("{path} does not exist: KVM is not available. Load the kvm module (modprobe kvm_intel or kvm_amd) or run on a host with virtualization enabled")]
    Missing {
        /// The path tried.
        path: PathBuf,
    },
    /// No permission to open it.
    #[error("permission denied opening {path}: add your user to the 'kvm' group (sudo usermod -aG kvm $USER, then log in again) or run as root")]
    PermissionDenied {
        /// The path tried.
        path: PathBuf,
    },
    /// Any other open failure.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path tried.
        path: PathBuf,
        /// The error.
        source: kvm_ioctls::Error,
    },
    /// The node opened but does not answer KVM_GET_API_VERSION: it is some
    /// other file or device.
    #[error("{path} is not a KVM device (it does not answer KVM_GET_API_VERSION); the KVM device is normally /dev/kvm")]
    NotKvm {
        /// The path tried.
        path: PathBuf,
    },
    /// KVM_GET_API_VERSION returned something other than 12.
    #[error("{path} reports KVM API version {found}, this VMM needs {KVM_API_VERSION}: update the host kernel")]
    ApiVersion {
        /// The path tried.
        path: PathBuf,
        /// The version reported.
        found: i32,
    },
}

/// Opens the KVM device at `path` and checks its API version.
pub fn open_kvm(path: &Path) -> Result<Kvm, KvmError> {
    let c_path =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| KvmError::Open {
            path: path.to_path_buf(),
            source: kvm_ioctls::Error::new(libc::EINVAL),
        })?;
    let kvm = Kvm::new_with_path(c_path).map_err(|source| match source.errno() {
        libc::ENOENT => KvmError::Missing {
            path: path.to_path_buf(),
        },
        libc::EACCES | libc::EPERM => KvmError::PermissionDenied {
            path: path.to_path_buf(),
        },
        _ => KvmError::Open {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let found = kvm.get_api_version();
    // The ioctl's -1 (ENOTTY, EINVAL): not a version, not KVM at all.
    if found < 0 {
        return Err(KvmError::NotKvm {
            path: path.to_path_buf(),
        });
    }
    if found != KVM_API_VERSION {
        return Err(KvmError::ApiVersion {
            path: path.to_path_buf(),
            found,
        });
    }
    Ok(kvm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_open_kvm_missing_path_says_how_to_fix() {
        let e = open_kvm(Path::new("/nonexistent/kvm")).unwrap_err();
        assert!(matches!(e, KvmError::Missing { .. }));
        assert!(e.to_string().contains("modprobe"), "{e}");
    }

    #[test]
    fn test_open_kvm_not_a_kvm_device() {
        // /dev/null opens but is not KVM: the API-version ioctl fails.
        let e = open_kvm(Path::new("/dev/null")).unwrap_err();
        assert!(matches!(e, KvmError::NotKvm { .. }), "{e}");
        assert!(
            e.to_string().contains("/dev/null is not a KVM device"),
            "{e}"
        );
    }
}
