//! The API socket: binding it (mode 0600; an existing path is replaced
//! only if it is a stale socket nobody listens on) and serving it on its
//! own thread, confined to [`ThreadRole::Api`] before the first request.
//!
//! One thread serves up to [`MAX_CONNECTIONS`] clients with `poll(2)`,
//! one request at a time, keep-alive by default (Firecracker's SDKs reuse
//! their connection). A malformed or oversized request gets 400 and its
//! connection is closed; nothing a client sends reaches the VM except
//! through a decoded [`super::routes::Action`].

use std::io::{ErrorKind, Read};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use vmm_core::private_socket::{bind_private, BindError};
use vmm_core::seccomp::{confine_current_thread, ThreadRole};

use super::controller::Controller;
use super::http::{self, Progress, Response};
use super::routes;

/// Clients served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 8;
/// How long a response write may block on a client that does not read.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read per `read(2)`.
const READ_CHUNK: usize = 4096;

/// Errors binding the socket.
#[derive(Debug, thiserror::Error)]
pub enum ApiSocketError {
    /// Another process answers on the path.
    #[error("--api-sock {0}: another process is listening on this socket")]
    InUse(PathBuf),
    /// The path is something other than a socket.
    #[error("--api-sock {0}: the path exists and is not a socket (remove it first)")]
    NotASocket(PathBuf),
    /// Probing, removing or binding failed.
    #[error("--api-sock {path}: {what} failed: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// A bound API socket; the file is removed when this is dropped.
#[derive(Debug)]
pub struct ApiSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ApiSocket {
    /// Binds `path` with mode 0600. An existing socket file nobody listens
    /// on (connecting is refused) is a leftover of a process that died and
    /// is replaced; a live one, or any other file, is an error.
    pub fn bind(path: &Path) -> Result<ApiSocket, ApiSocketError> {
        let listener = bind_private(path, "API").map_err(|e| match e {
            BindError::InUse => ApiSocketError::InUse(path.to_path_buf()),
            BindError::NotASocket => ApiSocketError::NotASocket(path.to_path_buf()),
            BindError::Io { what, source } => ApiSocketError::Io {
                path: path.to_path_buf(),
                what,
                source,
            },
        })?;
        Ok(ApiSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves the socket on a new thread named `api`, confined first when
    /// `seccomp` is on (the SIGSYS reporter must be installed already).
    /// The file is removed by a [`SocketFile`] the caller holds (taken
    /// right after binding, so every way out removes it).
    pub fn serve(self, controller: Controller, seccomp: bool) -> std::io::Result<()> {
        let listener = self.listener;
        std::thread::Builder::new()
            .name("api".into())
            .spawn(move || {
                if seccomp {
                    if let Err(e) = confine_current_thread(ThreadRole::Api) {
                        // Never serve unconfined when confinement was asked.
                        crate::stderr_line!("vmm-bin: error: API thread: {e}");
                        std::process::exit(crate::exit_status::VMM_FAILURE);
                    }
                }
                serve_forever(&listener, controller);
            })?;
        Ok(())
    }
}

/// Removes the socket file when dropped (the VM ended, start-up failed, or
/// a stop signal arrived before the start). A process killed outright
/// leaves it behind: the next `bind` replaces it as stale.
#[derive(Debug)]
pub struct SocketFile(PathBuf);

impl SocketFile {
    /// Takes over removal of `socket`'s file without serving it.
    pub fn of(socket: &ApiSocket) -> SocketFile {
        SocketFile(socket.path.clone())
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One client.
struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    /// `100 Continue` was sent for the request being read.
    continued: bool,
}

impl Conn {
    /// Reads what is there and answers every complete request; false when
    /// the connection is done.
    fn service(&mut self, controller: &mut Controller) -> bool {
        let mut chunk = [0u8; READ_CHUNK];
        let n = match self.stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted || e.kind() == ErrorKind::WouldBlock => {
                return true
            }
            Err(_) => return false,
        };
        // Bounded: every pass below consumes complete requests, and what is
        // left is one partial request, which `parse` caps at MAX_HEAD +
        // MAX_BODY.
        self.buf.extend_from_slice(&chunk[..n]);
        loop {
            match http::parse(&self.buf) {
                Ok(Progress::NeedMore { expect_continue }) => {
                    if expect_continue && !self.continued {
                        self.continued = true;
                        if std::io::Write::write_all(&mut self.stream, http::CONTINUE).is_err() {
                            return false;
                        }
                    }
                    return true;
                }
                Ok(Progress::Done { request, used }) => {
                    self.buf.drain(..used);
                    self.continued = false;
                    let response = match routes::route(&request) {
                        Ok(action) => controller.handle(action),
                        Err(e) => Response::fault(400, &e.to_string()),
                    };
                    log::info!(
                        "API: {} {} -> {}",
                        request.method.as_str(),
                        request.path,
                        response.status
                    );
                    if response
                        .write_to(&mut self.stream, request.keep_alive)
                        .is_err()
                        || !request.keep_alive
                    {
                        return false;
                    }
                }
                Err(e) => {
                    log::info!("API: bad request: {e}");
                    // The stream cannot be framed any more: answer, close.
                    let _ = Response::fault(400, &e.to_string()).write_to(&mut self.stream, false);
                    return false;
                }
            }
        }
    }
}

fn serve_forever(listener: &UnixListener, mut controller: Controller) {
    let mut conns: Vec<Conn> = Vec::new();
    loop {
        let accepting = conns.len() < MAX_CONNECTIONS;
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(conns.len() + 1);
        fds.push(libc::pollfd {
            fd: listener.as_raw_fd(),
            events: if accepting { libc::POLLIN } else { 0 },
            revents: 0,
        });
        fds.extend(conns.iter().map(|c| libc::pollfd {
            fd: c.stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds that lives
        // across the call; the descriptors stay open meanwhile.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            log::error!("API: poll failed: {e}; the API stops serving");
            return;
        }
        // Connections first (indices shift when one closes), newest last.
        let ready: Vec<bool> = fds[1..].iter().map(|p| p.revents != 0).collect();
        let mut i = 0;
        conns.retain_mut(|c| {
            let keep = !ready[i] || c.service(&mut controller);
            i += 1;
            keep
        });
        if fds[0].revents & libc::POLLIN != 0 {
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = stream.set_write_timeout(Some(SEND_TIMEOUT)) {
                        log::warn!("API: setting the send timeout failed: {e}");
                    }
                    conns.push(Conn {
                        stream,
                        buf: Vec::new(),
                        continued: false,
                    });
                }
                Err(e) => log::warn!("API: accept failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_sock(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("vmm-api-{}-{name}.sock", std::process::id()))
    }

    #[test]
    fn test_bind_mode_stale_and_live_sockets() {
        let p = temp_sock("bind");
        let _ = std::fs::remove_file(&p);
        let s = ApiSocket::bind(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Live: someone listens.
        assert!(matches!(ApiSocket::bind(&p), Err(ApiSocketError::InUse(_))));
        // Stale: the listener is gone, the file stays.
        drop(s.listener);
        assert!(p.exists());
        let s2 = ApiSocket::bind(&p).unwrap();
        let guard = SocketFile::of(&s2);
        drop(guard);
        assert!(!p.exists());
        let f = temp_sock("plain");
        std::fs::write(&f, b"x").unwrap();
        assert!(matches!(
            ApiSocket::bind(&f),
            Err(ApiSocketError::NotASocket(_))
        ));
        let _ = std::fs::remove_file(&f);
    }
}
