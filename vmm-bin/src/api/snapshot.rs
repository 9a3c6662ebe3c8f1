//! `PUT /snapshot/create` and `PUT /snapshot/load` in Firecracker's terms:
//! its checks, in its order, with its messages; the work is vmm-core's
//! ([`VmHandle::snapshot`], [`vmm_core::Vm::restore_with_console`]).
//!
//! - **create** is a runtime call on a *Paused* VM (Firecracker's vCPUs
//!   answer "save/restore unavailable while running" otherwise); `Diff`
//!   needs dirty-page tracking (`machine-config`'s `track_dirty_pages`,
//!   `--track-dirty-pages`, or the load's `track_dirty_pages`).
//! - **load** is a pre-boot call, refused once a boot-specific resource was
//!   configured (anything but the logger and metrics); it names exactly one
//!   of `mem_backend` (type `File`) and the deprecated `mem_file_path`. The
//!   main thread builds the VM from it, as `--restore` does, and the API
//!   then serves runtime calls for it. Unlike Firecracker, whose process is
//!   unusable after a failed load, a failed load here leaves nothing behind
//!   (vmm-core checks everything before it touches KVM), so the process
//!   keeps serving pre-boot calls.

use std::path::PathBuf;

use vmm_core::{SnapshotError, SnapshotKind, SnapshotRequest, VmHandle, VmmError};

use super::http::Response;
use super::model::{MemBackendType, SnapshotCreateParams, SnapshotLoadParams, SnapshotType};

/// Firecracker's `MISSING_FIELD` for `PUT /snapshot/load`.
pub const MISSING_MEM: &str = "missing field: either `mem_backend` or `mem_file_path` is required";
/// Firecracker's `TOO_MANY_FIELDS` for `PUT /snapshot/load`.
pub const TOO_MANY_MEM: &str =
    "too many fields: either `mem_backend` or `mem_file_path` exclusively is required";
/// Firecracker's answer to `PUT /snapshot/create` on a running VM.
pub const WHILE_RUNNING: &str = "Create snapshot error: Cannot save the microVM state: Operation not allowed: save/restore unavailable while running";
/// Firecracker's answer to a `Diff` without dirty-page tracking.
pub const DIFF_UNTRACKED: &str = "The requested operation is not supported: Diff snapshots are not allowed on uVMs with dirty page tracking disabled.";
/// Firecracker's `LoadSnapshotNotAllowed`.
pub const LOAD_NOT_ALLOWED: &str = "Load snapshot error: Loading a microVM snapshot not allowed after configuring boot-specific resources.";

/// Checks that a load names exactly one memory source (Firecracker checks
/// this while parsing the body, so the message is a JSON error's).
pub fn check_mem_fields(p: &SnapshotLoadParams) -> Result<(), &'static str> {
    match (&p.mem_backend, &p.mem_file_path) {
        (Some(_), Some(_)) => Err(TOO_MANY_MEM),
        (None, None) => Err(MISSING_MEM),
        _ => Ok(()),
    }
}

/// A `PUT /snapshot/load` as the main thread carries it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadRequest {
    /// The snapshot file.
    pub snapshot_path: PathBuf,
    /// Its memory file.
    pub mem_file_path: PathBuf,
    /// Track dirty pages (diff snapshots of the loaded VM).
    pub track_dirty_pages: bool,
    /// Run at once instead of waiting paused.
    pub resume_vm: bool,
}

/// "Load snapshot error: `what` is not supported by this VMM: `why`".
fn load_unsupported(what: &str, why: &str) -> String {
    format!("Load snapshot error: {what} is not supported by this VMM: {why}")
}

/// The load `p` asks for, or the 400 message refusing it.
pub fn load_request(p: SnapshotLoadParams) -> Result<LoadRequest, String> {
    check_mem_fields(&p).map_err(|m| {
        format!("An error occurred when deserializing the json body of a request: {m}.")
    })?;
    let mem = match (p.mem_backend, p.mem_file_path) {
        (Some(b), _) if b.backend_type == MemBackendType::Uffd => {
            return Err(load_unsupported(
                "mem_backend \"Uffd\"",
                "guest RAM is mapped from the memory file (use \"File\")",
            ))
        }
        (Some(b), _) => b.backend_path,
        (None, Some(path)) => path,
        (None, None) => return Err(MISSING_MEM.to_string()),
    };
    if p.network_overrides.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(load_unsupported(
            "network_overrides",
            "a restored interface uses the tap it was snapshotted with",
        ));
    }
    if p.vsock_override.is_some() {
        return Err(load_unsupported(
            "vsock_override",
            "a restored vsock device uses the socket it was snapshotted with",
        ));
    }
    if p.clock_realtime == Some(true) {
        return Err(load_unsupported(
            "clock_realtime: true",
            "the guest's kvmclock resumes where it was saved",
        ));
    }
    Ok(LoadRequest {
        snapshot_path: PathBuf::from(p.snapshot_path),
        mem_file_path: PathBuf::from(mem),
        track_dirty_pages: p.track_dirty_pages.or(p.enable_diff_snapshots) == Some(true),
        resume_vm: p.resume_vm == Some(true),
    })
}

/// The answer to a failed load (`message` from [`crate::hints::message`]).
pub fn load_failed(message: &str) -> Response {
    Response::fault(
        400,
        &format!("Load snapshot error: Failed to restore from snapshot: {message}"),
    )
}

/// `PUT /snapshot/create` on a started VM.
pub fn create(handle: &VmHandle, p: &SnapshotCreateParams) -> Response {
    // Firecracker asks the vCPUs first: a running VM is refused before
    // anything else is looked at.
    if !handle.is_paused() {
        return Response::fault(400, WHILE_RUNNING);
    }
    let request = SnapshotRequest {
        snapshot_path: PathBuf::from(&p.snapshot_path),
        mem_file_path: PathBuf::from(&p.mem_file_path),
        kind: match p.snapshot_type {
            Some(SnapshotType::Diff) => SnapshotKind::Diff,
            Some(SnapshotType::Full) | None => SnapshotKind::Full,
        },
    };
    match handle.snapshot(request) {
        Ok(info) => {
            log::info!(
                "'create {:?} snapshot' took {:.3} ms ({} bytes of state, {} of {} bytes of RAM written)",
                info.kind,
                info.elapsed.as_secs_f64() * 1e3,
                info.snapshot_bytes,
                info.memory_bytes_written,
                info.memory_bytes
            );
            Response::no_content()
        }
        Err(VmmError::Snapshot(SnapshotError::NotPaused)) => Response::fault(400, WHILE_RUNNING),
        Err(VmmError::Snapshot(SnapshotError::DiffNotTracked)) => {
            Response::fault(400, DIFF_UNTRACKED)
        }
        Err(VmmError::NotRunning) => Response::fault(
            400,
            "Create snapshot error: the microVM has stopped (or is stopping)",
        ),
        Err(e) => Response::fault(400, &format!("Create snapshot error: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(body: &str) -> SnapshotLoadParams {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn test_load_request_resolves_the_memory_file_and_flags() {
        let r = load_request(params(
            r#"{"snapshot_path": "/s", "mem_backend": {"backend_path": "/m", "backend_type": "File"}, "resume_vm": true}"#,
        ))
        .unwrap();
        assert_eq!(
            r,
            LoadRequest {
                snapshot_path: "/s".into(),
                mem_file_path: "/m".into(),
                track_dirty_pages: false,
                resume_vm: true,
            }
        );
        let r = load_request(params(
            r#"{"snapshot_path": "/s", "mem_file_path": "/m", "enable_diff_snapshots": true}"#,
        ))
        .unwrap();
        assert_eq!(r.mem_file_path, PathBuf::from("/m"));
        assert!(r.track_dirty_pages && !r.resume_vm);
        // The newer field wins over the deprecated one.
        let r = load_request(params(
            r#"{"snapshot_path": "/s", "mem_file_path": "/m", "enable_diff_snapshots": true, "track_dirty_pages": false}"#,
        ))
        .unwrap();
        assert!(!r.track_dirty_pages);
    }

    #[test]
    fn test_load_request_refusals_name_the_field() {
        for (body, expect) in [
            (r#"{"snapshot_path": "/s"}"#, MISSING_MEM),
            (
                r#"{"snapshot_path": "/s", "mem_file_path": "/m", "mem_backend": {"backend_path": "/m", "backend_type": "File"}}"#,
                TOO_MANY_MEM,
            ),
            (
                r#"{"snapshot_path": "/s", "mem_backend": {"backend_path": "/u", "backend_type": "Uffd"}}"#,
                "Uffd",
            ),
            (
                r#"{"snapshot_path": "/s", "mem_file_path": "/m", "network_overrides": [{"iface_id": "a", "host_dev_name": "t"}]}"#,
                "network_overrides",
            ),
            (
                r#"{"snapshot_path": "/s", "mem_file_path": "/m", "vsock_override": {"uds_path": "/v"}}"#,
                "vsock_override",
            ),
            (
                r#"{"snapshot_path": "/s", "mem_file_path": "/m", "clock_realtime": true}"#,
                "clock_realtime",
            ),
        ] {
            let e = load_request(params(body)).unwrap_err();
            assert!(e.contains(expect), "{body}: {e}");
        }
        // Empty overrides and a false clock_realtime ask for nothing.
        assert!(load_request(params(
            r#"{"snapshot_path": "/s", "mem_file_path": "/m", "network_overrides": [], "clock_realtime": false}"#
        ))
        .is_ok());
    }
}
