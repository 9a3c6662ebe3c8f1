//! The POST-code port's snapshot state. The history is diagnostic only
//! (no guest reads it back), so a snapshot keeps the count of codes ever
//! written and the newest [`POST_CODES_SAVED`] codes with their times:
//! enough for a restored VM's report to show where the firmware got to.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{PostCode, PostCodePort, Record};
use crate::lock;
use crate::state::StateError;

/// Codes a snapshot keeps.
pub const POST_CODES_SAVED: usize = 16;

/// The newest codes (value, nanoseconds after the VM started) and the
/// count of all codes written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostCodeState {
    /// `(code, ns since the VM started)`, oldest first.
    pub newest: Vec<(u8, u64)>,
    /// Codes ever written.
    pub total: u64,
}

impl PostCodePort {
    /// The count and the newest codes.
    pub fn state(&self) -> PostCodeState {
        let rec = lock(&self.record);
        let skip = rec.codes.len().saturating_sub(POST_CODES_SAVED);
        PostCodeState {
            newest: rec
                .codes
                .iter()
                .skip(skip)
                .map(|c| (c.code, u64::try_from(c.at.as_nanos()).unwrap_or(u64::MAX)))
                .collect(),
            total: rec.total,
        }
    }

    /// A port holding `state`'s codes, timing new ones from `start` (the
    /// restored VM's start) plus the newest saved time, so times keep
    /// increasing.
    pub fn from_state(
        state: &PostCodeState,
        start: Instant,
        print: bool,
    ) -> Result<Self, StateError> {
        if state.newest.len() > POST_CODES_SAVED {
            return Err(StateError::TooLong {
                device: "post-code",
                field: "the saved codes",
                found: state.newest.len(),
                max: POST_CODES_SAVED,
            });
        }
        let last = state.newest.last().map_or(0, |c| c.1);
        let codes: VecDeque<PostCode> = state
            .newest
            .iter()
            .map(|&(code, at)| PostCode {
                code,
                at: Duration::from_nanos(at),
            })
            .collect();
        let shifted = start
            .checked_sub(Duration::from_nanos(last))
            .unwrap_or(start);
        Ok(PostCodePort {
            start: shifted,
            print,
            record: Mutex::new(Record {
                codes,
                total: state.total.max(state.newest.len() as u64),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_device::bus::PioAddress;
    use vm_device::DevicePio;

    #[test]
    fn test_post_code_state_keeps_the_newest_codes_and_the_count() {
        let dev = PostCodePort::new(Instant::now(), false);
        for i in 0..40u8 {
            dev.pio_write(PioAddress(0x80), 0, &[i]);
        }
        let state = dev.state();
        assert_eq!(state.total, 40);
        assert_eq!(state.newest.len(), POST_CODES_SAVED);
        assert_eq!(state.newest[0].0, 40 - POST_CODES_SAVED as u8);
        let copy = PostCodePort::from_state(&state, Instant::now(), false).unwrap();
        copy.pio_write(PioAddress(0x80), 0, &[0xaa]);
        let codes = copy.codes();
        assert_eq!(codes.last().unwrap().code, 0xaa);
        assert!(codes.windows(2).all(|w| w[0].at <= w[1].at));
        assert_eq!(copy.total(), 41);
        let big = PostCodeState {
            newest: vec![(0, 0); POST_CODES_SAVED + 1],
            total: 0,
        };
        assert!(PostCodePort::from_state(&big, Instant::now(), false).is_err());
    }
}
