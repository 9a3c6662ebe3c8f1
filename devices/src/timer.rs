//! Devices whose events come from the passing of time (the RTC's periodic,
//! update and alarm interrupts, the ACPI PM timer's carry) but which have no
//! thread of their own.
//!
//! Such a device computes its state lazily from a clock whenever the guest
//! touches it, and implements [`TimedDevice`]: the VMM's main event loop
//! calls [`TimedDevice::service`] when the device's next event is due (a
//! timerfd), and the device raises whatever interrupt became due and says
//! how long until the next one. When a guest access changes that schedule
//! (a new rate, an interrupt enabled, a flag read and cleared), the device
//! writes its [`Rearm`] eventfd so the loop asks again; that write is the
//! only system call a vCPU thread makes for it.

use std::sync::Arc;
use std::time::Duration;

use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

/// A device with time-driven events and no thread.
pub trait TimedDevice: Send + Sync {
    /// Brings the device up to the current time: sets the status flags that
    /// became due and raises their interrupts. Returns how long until the
    /// next event that needs the loop (at least 1 ns), or `None` if nothing
    /// will happen before the guest acts (and the guest's action writes the
    /// device's [`Rearm`] eventfd).
    fn service(&self) -> Option<Duration>;
}

/// Where a device says "ask me again": an eventfd the VMM's event loop
/// watches, or nothing (tests, VMMs without a timer loop).
#[derive(Debug)]
pub struct Rearm(Option<EventFd>);

impl Rearm {
    /// Notifications go nowhere.
    pub fn none() -> Self {
        Rearm(None)
    }

    /// Notifications write `fd` (which must be non-blocking: a vCPU thread
    /// must never block on it).
    pub fn new(fd: EventFd) -> Self {
        Rearm(Some(fd))
    }

    /// A new non-blocking eventfd pair: the device's end and the loop's.
    pub fn eventfd() -> std::io::Result<(Self, EventFd)> {
        let loop_end = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?;
        let device_end = loop_end.try_clone()?;
        Ok((Rearm(Some(device_end)), loop_end))
    }

    /// Tells the loop to call [`TimedDevice::service`] again.
    pub fn notify(&self) {
        if let Some(fd) = &self.0 {
            // EAGAIN (counter full) still leaves the fd readable: the loop
            // wakes either way.
            let _ = fd.write(1);
        }
    }
}

/// A timed device as the VMM's event loop gets it: the device, and the
/// eventfd it writes when its schedule changes.
pub struct TimedDeviceLink {
    /// The device's bus name (for logs).
    pub name: &'static str,
    /// The device.
    pub device: Arc<dyn TimedDevice>,
    /// Readable when the device wants [`TimedDevice::service`] called.
    pub rearm: EventFd,
}

impl std::fmt::Debug for TimedDeviceLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedDeviceLink")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Turns a deadline `at` (ns, on the clock `now` is read from) into the
/// delay [`TimedDevice::service`] returns: at least 1 ns, since a zero
/// timerfd duration would disarm the timer instead of firing it.
pub(crate) fn delay_until(at: i128, now: i128) -> Duration {
    let ns = (at - now).clamp(1, i128::from(u64::MAX));
    Duration::from_nanos(ns as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rearm_eventfd_counts_and_none_is_silent() {
        let (rearm, watched) = Rearm::eventfd().unwrap();
        rearm.notify();
        rearm.notify();
        assert_eq!(watched.read().unwrap(), 2);
        Rearm::none().notify();
    }

    #[test]
    fn test_delay_until_is_never_zero() {
        assert_eq!(delay_until(10, 10), Duration::from_nanos(1));
        assert_eq!(delay_until(5, 10), Duration::from_nanos(1));
        assert_eq!(delay_until(1_500, 500), Duration::from_nanos(1_000));
        assert_eq!(delay_until(i128::MAX, 0), Duration::from_nanos(u64::MAX));
    }
}
