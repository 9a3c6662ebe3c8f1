//! Binding the GDB socket: mode 0600 from the start (bind before other
//! threads exist: the umask is process-wide); an existing socket
//! file nobody listens on (a VMM that died) is replaced, a live one or any
//! other file is refused. Removed again when the [`SocketFile`] drops.

use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::GdbError;

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
    let io = |what, source| GdbError::Socket {
        path: path.to_path_buf(),
        what,
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => return Err(GdbError::InUse(path.to_path_buf())),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                log::info!("replacing stale GDB socket {}", path.display());
                std::fs::remove_file(path).map_err(|e| io("removing the stale socket", e))?;
            }
            Err(e) => return Err(io("probing the existing socket", e)),
        },
        Ok(_) => return Err(GdbError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspecting the path", e)),
    }
    // Only the user who started the VMM may debug its guest: the file gets
    // its mode at bind(2), from the umask, so it is 0600 from the start and
    // nobody else can connect in between. The umask is process-wide: bind
    // before starting other threads (vmm-bin does it first thing).
    // SAFETY: umask only swaps the process's file-mode mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| io("binding", e))?;
    let file = SocketFile(path.to_path_buf());
    // A umask cannot widen, but check what was made.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| io("inspecting the socket", e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("restricting the socket's mode", e))?;
    }
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
