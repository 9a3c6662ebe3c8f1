//! A small HTTP/1.1 client for the API socket over
//! `std::os::unix::net::UnixStream` (keep-alive, `Content-Length` bodies,
//! as Firecracker's clients speak it), and a `vmm-bin` process serving one.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::run::{vmm_bin, vmm_command, PROCESS_WATCHDOG};

/// One response.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// Status code.
    pub status: u16,
    /// The body (empty for 204).
    pub body: String,
    /// The server said `Connection: close`.
    pub close: bool,
}

impl ApiResponse {
    /// The `fault_message` of an error body ("" if none).
    pub fn fault(&self) -> String {
        serde_json_lite_fault(&self.body)
    }
}

/// Extracts `"fault_message":"..."` without a JSON library (the tests only
/// need this one field; escapes `\"` and `\\` are undone).
fn serde_json_lite_fault(body: &str) -> String {
    let key = "\"fault_message\":\"";
    let Some(start) = body.find(key) else {
        return String::new();
    };
    let mut out = String::new();
    let mut chars = body[start + key.len()..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// A connection to an API socket.
#[derive(Debug)]
pub struct ApiClient {
    reader: BufReader<UnixStream>,
}

impl ApiClient {
    /// Connects to `path`, waiting up to 20 s for the socket to appear.
    pub fn connect(path: &Path) -> ApiClient {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match UnixStream::connect(path) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(30)))
                        .expect("timeout");
                    return ApiClient {
                        reader: BufReader::new(s),
                    };
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("cannot connect to {}: {e}", path.display()),
            }
        }
    }

    /// Sends a request and reads its response.
    pub fn request(&mut self, method: &str, path: &str, body: Option<&str>) -> ApiResponse {
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n");
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        } else {
            req.push_str("\r\n");
        }
        self.send_raw(req.as_bytes())
    }

    /// Shorthands.
    pub fn get(&mut self, path: &str) -> ApiResponse {
        self.request("GET", path, None)
    }

    /// PUT with a JSON body.
    pub fn put(&mut self, path: &str, body: &str) -> ApiResponse {
        self.request("PUT", path, Some(body))
    }

    /// PATCH with a JSON body.
    pub fn patch(&mut self, path: &str, body: &str) -> ApiResponse {
        self.request("PATCH", path, Some(body))
    }

    /// Writes `bytes` as they are, then reads one response.
    pub fn send_raw(&mut self, bytes: &[u8]) -> ApiResponse {
        self.reader
            .get_mut()
            .write_all(bytes)
            .expect("request written");
        self.read_response()
    }

    /// Reads one response (status line, headers, `Content-Length` body).
    pub fn read_response(&mut self) -> ApiResponse {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut length = 0usize;
        let mut close = false;
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).expect("header");
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().expect("length");
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).expect("body");
        ApiResponse {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            close,
        }
    }

    /// Whether the server closed the connection (a read returns EOF).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0))
    }
}

/// A `vmm-bin` process, killed when dropped if it is still running.
#[derive(Debug)]
pub struct VmmProcess {
    child: Child,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

/// How a [`VmmProcess`] ended.
#[derive(Debug)]
pub struct Ended {
    /// Exit status (-1 if killed by a signal).
    pub status: i32,
    /// Its standard output, byte for byte.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: String,
}

impl VmmProcess {
    /// Starts `vmm-bin` with `args` (stdin closed, output captured).
    pub fn spawn(args: &[&str]) -> VmmProcess {
        vmm_bin();
        let mut child = vmm_command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vmm-bin starts");
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let stdout = std::thread::spawn(move || {
            let mut v = Vec::new();
            out.read_to_end(&mut v).ok();
            v
        });
        let stderr = std::thread::spawn(move || {
            let mut v = Vec::new();
            err.read_to_end(&mut v).ok();
            v
        });
        VmmProcess {
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// Its process ID.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` to it.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's PID.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Waits for it to end (panics after the process watchdog).
    pub fn wait(mut self) -> Ended {
        let start = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait works") {
                break st;
            }
            if start.elapsed() > PROCESS_WATCHDOG {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("vmm-bin still running after {PROCESS_WATCHDOG:?}: hung");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stdout = self
            .stdout
            .take()
            .map(|t| t.join().expect("reader"))
            .unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .map(|t| t.join().expect("reader"))
            .unwrap_or_default();
        Ended {
            status: status.code().unwrap_or(-1),
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

impl Drop for VmmProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fresh socket path under the temp directory (not created).
pub fn socket_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("vmm-api-test-{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}
