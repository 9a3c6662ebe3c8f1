//! Interrupt lines for devices, behind vm-superio's `Trigger` trait so a
//! device never knows how its interrupt is delivered.

use vm_superio::Trigger;
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

/// An interrupt line: unconnected (polled guests, no irqchip) or an eventfd
/// that the VMM registered with KVM as an irqfd, so raising it injects the
/// interrupt without a trip through userspace.
#[derive(Debug)]
pub enum IrqLine {
    /// Not connected: raising it does nothing.
    None,
    /// An irqfd.
    EventFd(EventFd),
}

impl IrqLine {
    /// A new eventfd-backed line; register `line.eventfd()` as an irqfd.
    pub fn eventfd() -> std::io::Result<Self> {
        // Non-blocking: a write must never block a vCPU thread, even if KVM
        // has not consumed the previous edge yet (the counter just grows).
        Ok(IrqLine::EventFd(EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?))
    }

    /// The eventfd, for KVM_IRQFD, if this line has one.
    pub fn as_eventfd(&self) -> Option<&EventFd> {
        match self {
            IrqLine::EventFd(e) => Some(e),
            IrqLine::None => None,
        }
    }
}

impl Trigger for IrqLine {
    type E = std::io::Error;

    fn trigger(&self) -> Result<(), Self::E> {
        match self {
            IrqLine::None => Ok(()),
            IrqLine::EventFd(e) => e.write(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_eventfd_line_counts_triggers() {
        let line = IrqLine::eventfd().unwrap();
        line.trigger().unwrap();
        line.trigger().unwrap();
        assert_eq!(line.as_eventfd().unwrap().read().unwrap(), 2);
        assert!(IrqLine::None.trigger().is_ok());
        assert!(IrqLine::None.as_eventfd().is_none());
    }
}
