//! Binding a Unix listening socket that only the VMM's user may connect
//! to, the way Firecracker treats its API socket: a leftover socket file
//! of a process that died is replaced, a live socket or any other file is
//! refused. Shared by the control API (vmm-bin) and the GDB stub.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Why [`bind_private`] failed; callers add the path and what the socket
/// is for to their own error.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another process answers on the path.
    #[error("another process is listening on this socket")]
    InUse,
    /// The path exists and is not a socket.
    #[error("the path exists and is not a socket (remove it first)")]
    NotASocket,
    /// Probing, removing, binding or restricting failed.
    #[error("{what} failed: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// Binds `path` with mode 0600 (`name` says in the log what the socket
/// is for). An existing socket file nobody listens on (connecting is
/// refused) is replaced; a live one, or any other file, is an error.
///
/// The umask is process-wide: call this before other threads exist, so
/// none creates a file with the narrowed mask.
pub fn bind_private(path: &Path, name: &str) -> Result<UnixListener, BindError> {
    let io = |what, source| BindError::Io { what, source };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => return Err(BindError::InUse),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                log::info!("replacing stale {name} socket {}", path.display());
                std::fs::remove_file(path).map_err(|e| io("removing the stale socket", e))?;
            }
            Err(e) => return Err(io("probing the existing socket", e)),
        },
        Ok(_) => return Err(BindError::NotASocket),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspecting the path", e)),
    }
    // The file gets its mode at bind(2), from the umask: 0600 from the
    // start, so no other user can connect in between.
    // SAFETY: umask only swaps the process's file-mode mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| io("binding", e))?;
    // A umask cannot widen, but check what was made.
    let mode = std::fs::metadata(path)
        .map_err(|e| io("inspecting the socket", e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("restricting the socket's mode", e))?;
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_bind_private_mode_live_stale_and_other_files() {
        let p = std::env::temp_dir().join(format!("vmm-private-sock-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let l = bind_private(&p, "test").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(bind_private(&p, "test"), Err(BindError::InUse)));
        drop(l);
        // The file stays behind, nobody listens: stale, replaced.
        let again = bind_private(&p, "test").unwrap();
        drop(again);
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, b"not a socket").unwrap();
        assert!(matches!(
            bind_private(&p, "test"),
            Err(BindError::NotASocket)
        ));
        std::fs::remove_file(&p).unwrap();
    }
}
