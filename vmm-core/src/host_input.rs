//! Host input to the guest's console (the UART, or virtio-console's hvc0):
//! the main thread's event loop reads stdin and feeds the console's receive
//! side. When the guest reads slowly, bytes wait in a bounded queue here, and
//! once it is full stdin is no longer read, so the kernel's pipe or tty
//! buffer holds the rest and the writer blocks: flow control, not dropped
//! bytes. The console reports an emptied receive side through an eventfd, so
//! refilling needs no polling.

use std::collections::VecDeque;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::Arc;

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_devices::legacy::Uart8250;
use vmm_devices::virtio::console::ConsoleInput;
use vmm_devices::IrqLine;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

/// Bytes read from the host but not yet taken by the console, at most.
pub const INPUT_QUEUE_MAX: usize = 4096;

/// A console's receive side, as host input sees it.
pub trait InputSink: Send {
    /// Takes what fits of `bytes` and says how many it took; 0 when full.
    fn take(&mut self, bytes: &[u8]) -> usize;
}

impl InputSink for Arc<Uart8250<IrqLine>> {
    fn take(&mut self, bytes: &[u8]) -> usize {
        self.receive(bytes)
    }
}

impl InputSink for ConsoleInput {
    fn take(&mut self, bytes: &[u8]) -> usize {
        self.push(bytes)
    }
}

/// The stdin-to-console subscriber.
pub struct HostInput {
    input: RawFd,
    sink: Box<dyn InputSink>,
    drained: EventFd,
    queue: VecDeque<u8>,
    watching_input: bool,
    /// epoll refuses regular files and /dev/null (EPERM): such input is
    /// always readable, so it is read directly whenever the queue has room.
    pollable: bool,
    eof: bool,
}

impl HostInput {
    /// Feeds `input` (a readable descriptor, normally stdin) to `sink`;
    /// `drained` is the eventfd the console writes when its receive side
    /// empties.
    pub fn new(input: RawFd, sink: Box<dyn InputSink>, drained: EventFd) -> Self {
        HostInput {
            input,
            sink,
            drained,
            queue: VecDeque::new(),
            watching_input: false,
            pollable: true,
            eof: false,
        }
    }

    fn read_input(&mut self) {
        let room = INPUT_QUEUE_MAX - self.queue.len();
        if room == 0 {
            return;
        }
        let mut buf = [0u8; INPUT_QUEUE_MAX];
        // SAFETY: reading at most `room` bytes into a buffer of at least that
        // size; the descriptor stays open for the VM's lifetime.
        let n = unsafe { libc::read(self.input, buf.as_mut_ptr().cast(), room) };
        match n {
            0 => self.eof = true,
            n if n > 0 => self.queue.extend(&buf[..n as usize]),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted
                    && e.kind() != std::io::ErrorKind::WouldBlock
                {
                    log::warn!("console input: reading the host input failed: {e}; input closed");
                    self.eof = true;
                }
            }
        }
    }

    fn feed_sink(&mut self) {
        while !self.queue.is_empty() {
            let (front, _) = self.queue.as_slices();
            let taken = self.sink.take(front);
            if taken == 0 {
                break;
            }
            self.queue.drain(..taken);
        }
    }

    /// Watches the input only while the queue has room and input remains.
    fn update_interest(&mut self, ops: &mut EventOps) {
        if !self.pollable {
            // Always readable: top the queue up now; the console's "drained"
            // event brings us back for more.
            while !self.eof && self.queue.len() < INPUT_QUEUE_MAX {
                let before = self.queue.len();
                self.read_input();
                if self.queue.len() == before {
                    break;
                }
            }
            self.feed_sink();
            return;
        }
        let want = !self.eof && self.queue.len() < INPUT_QUEUE_MAX;
        if want != self.watching_input {
            let ev = Events::new_raw(self.input, EventSet::IN);
            let result = if want { ops.add(ev) } else { ops.remove(ev) };
            match result {
                Ok(()) => self.watching_input = want,
                Err(event_manager::Error::Epoll(e)) if e.errno() == libc::EPERM => {
                    self.pollable = false;
                    self.update_interest(ops);
                }
                Err(e) => {
                    log::warn!(
                        "console input: updating the event loop failed: {e:?}; input closed"
                    );
                    self.eof = true;
                }
            }
        }
    }
}

impl MutEventSubscriber for HostInput {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.input {
            if events.event_set().contains(EventSet::IN) {
                self.read_input();
            } else {
                // HUP/ERR without data: nothing more will come.
                self.eof = true;
            }
        } else if events.fd() == self.drained.as_raw_fd() {
            let _ = self.drained.read();
        }
        self.feed_sink();
        self.update_interest(ops);
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.drained, EventSet::IN)) {
            log::warn!("console input: watching the console failed: {e:?}");
        }
        self.update_interest(ops);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_manager::{EventManager, SubscriberOps};
    use std::io::Write;
    use std::os::unix::io::FromRawFd;
    use std::sync::Mutex;
    use vm_device::bus::PioAddress;
    use vm_device::DevicePio;
    use vmm_devices::Console;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    /// A pipe: (read end fd, write end as File).
    fn pipe() -> (RawFd, std::fs::File) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors we then own.
        let ret = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) };
        assert_eq!(ret, 0);
        // SAFETY: fds[1] is a fresh descriptor owned by nobody else.
        (fds[0], unsafe { std::fs::File::from_raw_fd(fds[1]) })
    }

    #[test]
    fn test_input_reaches_guest_in_order_without_loss() {
        let drained = EventFd::new(EFD_NONBLOCK).unwrap();
        let uart = Arc::new(Uart8250::with_rx_drained(
            IrqLine::None,
            Console::discard(),
            drained.try_clone().unwrap(),
        ));
        let (rd, mut wr) = pipe();
        let sink = Box::new(uart.clone());
        let input = Arc::new(Mutex::new(HostInput::new(rd, sink, drained)));
        let mut em: EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>> =
            EventManager::new().unwrap();
        em.add_subscriber(input.clone());
        // More than the UART FIFO and the queue together: flow control must
        // hold the rest in the pipe until the "guest" reads.
        let sent: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut written = 0;
        let mut received = Vec::new();
        while received.len() < sent.len() {
            if written < sent.len() {
                written += wr.write(&sent[written..]).unwrap_or(0);
            }
            em.run_with_timeout(10).unwrap();
            // The guest reads a few bytes at a time, slowly.
            let mut b = [0u8];
            for _ in 0..7 {
                let mut lsr = [0u8];
                uart.pio_read(PioAddress(0x3f8), 5, &mut lsr);
                if lsr[0] & 1 == 0 {
                    break;
                }
                uart.pio_read(PioAddress(0x3f8), 0, &mut b);
                received.push(b[0]);
            }
            assert!(input.lock().unwrap().queue.len() <= INPUT_QUEUE_MAX);
        }
        assert_eq!(received, sent);
        drop(wr);
        // SAFETY: closing the read end we created.
        unsafe { libc::close(rd) };
    }
}
