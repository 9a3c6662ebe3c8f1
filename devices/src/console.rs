//! Where guest console output (UART, debug console) goes.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::lock;

/// A shared, thread-safe byte sink. Cloning gives another handle to the same
/// sink, so the UART and the debug console can write to one stream.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Mutex<Sink>>,
    /// Bytes accepted so far, whatever the sink (so a VMM can tell a
    /// silent guest from a talking one without reading the output).
    written: Arc<AtomicU64>,
}

enum Sink {
    Writer(Box<dyn Write + Send>),
    Memory(Vec<u8>),
    Discard,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console")
    }
}

impl Console {
    /// Output to a writer (stdout, a file...). The writer decides how to
    /// buffer; `flush` is called after every byte the UART transmits.
    pub fn writer(w: Box<dyn Write + Send>) -> Self {
        Self::from_sink(Sink::Writer(w))
    }

    /// Output captured in memory, for tests and embedding.
    pub fn memory() -> Self {
        Self::from_sink(Sink::Memory(Vec::new()))
    }

    /// Output thrown away.
    pub fn discard() -> Self {
        Self::from_sink(Sink::Discard)
    }

    fn from_sink(s: Sink) -> Self {
        Console {
            inner: Arc::new(Mutex::new(s)),
            written: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Bytes written to this console (any clone) so far.
    pub fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// What a [`Console::memory`] console has captured (empty otherwise).
    pub fn captured(&self) -> Vec<u8> {
        match &*lock(&self.inner) {
            Sink::Memory(v) => v.clone(),
            _ => Vec::new(),
        }
    }
}

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut *lock(&self.inner) {
            Sink::Writer(w) => w.write(buf)?,
            Sink::Memory(v) => {
                v.extend_from_slice(buf);
                buf.len()
            }
            Sink::Discard => buf.len(),
        };
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut *lock(&self.inner) {
            Sink::Writer(w) => w.flush(),
            _ => Ok(()),
        }
    }
}

/// A writer that buffers until a newline (or 4 KiB), for file consoles: the
/// UART flushes after every byte, and a write syscall per byte is wasteful.
/// Whatever is buffered is written on drop.
pub struct LineBuffered<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> LineBuffered<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        LineBuffered {
            inner,
            buf: Vec::with_capacity(4096),
        }
    }
}

impl<W: Write> Write for LineBuffered<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.contains(&b'\n') || self.buf.len() >= 4096 {
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
            self.inner.flush()?;
        }
        Ok(())
    }
}

impl<W: Write> Drop for LineBuffered<W> {
    fn drop(&mut self) {
        let _ = self.inner.write_all(&self.buf);
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_console_clones_share_sink() {
        let c = Console::memory();
        let mut a = c.clone();
        a.write_all(b"hi").unwrap();
        assert_eq!(c.captured(), b"hi");
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<(Vec<u8>, usize)>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let mut g = self.0.lock().unwrap();
            g.0.extend_from_slice(b);
            g.1 += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn test_line_buffered_writes_per_line_and_on_drop() {
        let out = Shared::default();
        {
            let mut lb = LineBuffered::new(out.clone());
            for b in b"ab\ncd" {
                lb.write_all(&[*b]).unwrap();
                lb.flush().unwrap();
            }
            let g = out.0.lock().unwrap();
            assert_eq!((g.0.as_slice(), g.1), (&b"ab\n"[..], 1));
        }
        assert_eq!(out.0.lock().unwrap().0, b"ab\ncd");
    }
}
