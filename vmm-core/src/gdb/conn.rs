//! gdb's connection: a Unix stream with bounded buffers both ways, and
//! reads that wait with `poll(2)` for a limited time, so the stub thread
//! notices a VM that ends while gdb is quiet. gdbstub's own `UnixStream`
//! connection writes one byte per system call and switches the socket's
//! blocking mode with `ioctl(FIONBIO)`; this one needs neither.

use std::io::Read;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use gdbstub::conn::Connection;

/// Bytes buffered before a write goes out (gdbstub flushes after every
/// packet anyway); also the most read at once.
const BUFFER: usize = 4096;

/// What waiting for gdb found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// gdb sent data (read it with [`GdbConnection::next_byte`]).
    Gdb,
    /// The other descriptor became readable.
    Other,
    /// Nothing within the timeout.
    Timeout,
}

/// The connection to one gdb.
pub struct GdbConnection {
    stream: UnixStream,
    out: Vec<u8>,
    input: Box<[u8; BUFFER]>,
    start: usize,
    end: usize,
}

impl GdbConnection {
    /// Wraps an accepted stream.
    pub fn new(stream: UnixStream) -> Self {
        GdbConnection {
            stream,
            out: Vec::with_capacity(BUFFER),
            input: Box::new([0; BUFFER]),
            start: 0,
            end: 0,
        }
    }

    /// Waits up to `timeout` for gdb's data or for `other` (an eventfd) to
    /// become readable. Buffered input counts as ready at once.
    pub fn wait(&mut self, other: Option<RawFd>, timeout: Duration) -> std::io::Result<Ready> {
        if self.start < self.end {
            return Ok(Ready::Gdb);
        }
        let mut fds = [
            libc::pollfd {
                fd: self.stream.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: other.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `fds` is a valid array of two pollfd for the duration of
        // the call; a negative fd is ignored by poll(2).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(Ready::Timeout);
            }
            return Err(e);
        }
        // Hang-up and errors on gdb's side are "readable": the read sees
        // the end of the stream.
        if fds[0].revents != 0 {
            return Ok(Ready::Gdb);
        }
        if fds[1].revents != 0 {
            return Ok(Ready::Other);
        }
        Ok(Ready::Timeout)
    }

    /// Reads what gdb sent (blocking when nothing is buffered); `false`
    /// when gdb closed the connection without sending anything more.
    pub fn has_input(&mut self) -> bool {
        match self.fill() {
            Ok(n) => n > 0,
            Err(_) => false,
        }
    }

    /// Buffers input when none is; the bytes buffered (0: end of stream).
    fn fill(&mut self) -> std::io::Result<usize> {
        if self.start < self.end {
            return Ok(self.end - self.start);
        }
        let n = loop {
            match self.stream.read(&mut self.input[..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.start = 0;
        self.end = n;
        Ok(n)
    }

    /// The next byte from gdb, reading (blocking) when none is buffered;
    /// `None` when gdb closed the connection.
    pub fn next_byte(&mut self) -> std::io::Result<Option<u8>> {
        if self.fill()? == 0 {
            return Ok(None);
        }
        let b = self.input[self.start];
        self.start += 1;
        Ok(Some(b))
    }
}

impl Connection for GdbConnection {
    type Error = std::io::Error;

    fn write(&mut self, byte: u8) -> Result<(), Self::Error> {
        if self.out.len() >= BUFFER {
            self.flush()?;
        }
        self.out.push(byte);
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> Result<(), Self::Error> {
        for b in buf {
            Connection::write(self, *b)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        std::io::Write::write_all(&mut self.stream, &self.out)?;
        self.out.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn test_gdb_connection_buffers_and_waits() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut c = GdbConnection::new(a);
        assert_eq!(
            c.wait(None, Duration::from_millis(1)).unwrap(),
            Ready::Timeout
        );
        Write::write_all(&mut b, b"$g#67").unwrap();
        assert_eq!(c.wait(None, Duration::from_secs(5)).unwrap(), Ready::Gdb);
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(c.next_byte().unwrap().unwrap());
        }
        assert_eq!(got, b"$g#67");
        // Nothing goes out before a flush; everything after it.
        Connection::write_all(&mut c, b"+$OK#9a").unwrap();
        b.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        assert!(b.read(&mut buf).is_err(), "written before the flush");
        c.flush().unwrap();
        b.set_nonblocking(false).unwrap();
        let n = b.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"+$OK#9a");
        drop(b);
        assert_eq!(c.next_byte().unwrap(), None, "closed by gdb");
    }
}
