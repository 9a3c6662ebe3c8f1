//! The devices' timers on the main thread's event loop: one subscriber per
//! [`TimedDevice`] (the RTC's interrupts, the ACPI PM timer's carry), with
//! a timerfd armed for the device's next event and the device's re-arm
//! eventfd, which vCPU threads write when a guest access brings that event
//! forward. Either firing calls [`TimedDevice::service`], which raises what
//! became due and says when to come back.
//!
//! The timerfd is never read: `timerfd_settime` (re-arming or disarming it
//! after every service) resets its expiry count, so a stale readiness from
//! the same epoll batch cannot make a later read block.

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_devices::timer::TimedDeviceLink;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::timerfd::TimerFd;

use crate::error::VmmError;

/// One timed device on the event loop.
pub(crate) struct DeviceTimer {
    link: TimedDeviceLink,
    timer: TimerFd,
}

impl DeviceTimer {
    /// A disarmed timer for `link`'s device (armed at the first service,
    /// when the loop registers it).
    pub fn new(link: TimedDeviceLink) -> Result<Self, VmmError> {
        Ok(DeviceTimer {
            link,
            timer: TimerFd::new().map_err(VmmError::TimerFd)?,
        })
    }

    fn service(&mut self) {
        let armed = match self.link.device.service() {
            Some(after) => self.timer.reset(after, None),
            None => self.timer.clear(),
        };
        if let Err(e) = armed {
            log::warn!("{}: arming its timer failed: {e}", self.link.name);
        }
    }
}

impl MutEventSubscriber for DeviceTimer {
    fn process(&mut self, _: Events, _: &mut EventOps) {
        // Non-blocking; empty when only the timer fired.
        let _ = self.link.rearm.read();
        self.service();
    }

    fn init(&mut self, ops: &mut EventOps) {
        for (fd, what) in [
            (Events::new(&self.timer, EventSet::IN), "timer"),
            (
                Events::new(&self.link.rearm, EventSet::IN),
                "re-arm eventfd",
            ),
        ] {
            if let Err(e) = ops.add(fd) {
                log::warn!("{}: watching its {what} failed: {e:?}", self.link.name);
            }
        }
        self.service();
    }
}
