//! Binding the GDB socket: mode 0600 from the start (bind before other
//! threads exist: the umask is process-wide); an existing socket
//! file nobody listens on (a VMM that died) is replaced, a live one or any
//! other file is refused. Removed again when the [`SocketFile`] drops.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use super::GdbError;
use crate::private_socket::{bind_private, BindError};

/// Removes the socket file when dropped.
#[derive(Debug)]
pub struct SocketFile(PathBuf);

impl SocketFile {
    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds `path`.
pub(super) fn bind(path: &Path) -> Result<(UnixListener, SocketFile), GdbError> {
    // Only the user who started the VMM may debug its guest.
    let listener = bind_private(path, "GDB").map_err(|e| match e {
        BindError::InUse => GdbError::InUse(path.to_path_buf()),
        BindError::NotASocket => GdbError::NotASocket(path.to_path_buf()),
        BindError::Io { what, source } => GdbError::Socket {
            path: path.to_path_buf(),
            what,
            source,
        },
    })?;
    let file = SocketFile(path.to_path_buf());
    Ok((listener, file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("vmm-gdb-{}-{name}", std::process::id()))
    }

    #[test]
    fn test_gdb_socket_bind_mode_stale_live_and_file() {
        let path = scratch("sock");
        let (listener, file) = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            matches!(bind(&path), Err(GdbError::InUse(_))),
            "live socket"
        );
        // A listener that is gone leaves a stale file, which is replaced.
        drop(listener);
        std::mem::forget(file);
        let (_l, file) = bind(&path).unwrap();
        drop(file);
        assert!(!path.exists(), "removed on drop");
        let plain = scratch("plain");
        std::fs::write(&plain, b"x").unwrap();
        assert!(matches!(bind(&plain), Err(GdbError::NotASocket(_))));
        std::fs::remove_file(&plain).unwrap();
    }
}
