//! The i8042's snapshot state: the controller (RAM, output buffer,
//! pending command, output port, interrupt levels), its queues and both
//! devices' command state machines, as the model holds them.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use vm_superio::Trigger;

use super::{State, I8042, KEY_QUEUE_CAP, REPLY_QUEUE_CAP};
use crate::lock;
use crate::state::StateError;
use crate::vm_event::VmEventSink;

/// Everything the 8042 model holds (its fields are the model's own, so
/// they are not public: capture with [`I8042::state`], rebuild with
/// [`I8042::from_state`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct I8042State(State);

fn bounded(field: &'static str, found: usize, max: usize) -> Result<(), StateError> {
    if found > max {
        return Err(StateError::TooLong {
            device: "i8042",
            field,
            found,
            max,
        });
    }
    Ok(())
}

impl<T: Trigger> I8042<T> {
    /// The controller's and its devices' state.
    pub fn state(&self) -> I8042State {
        I8042State(lock(&self.state).clone())
    }

    /// A controller in `state`, wired as [`I8042::new`]. The interrupt
    /// levels are taken as saved: an interrupt already raised is not
    /// raised again (the interrupt controller's saved state has it).
    pub fn from_state(
        state: &I8042State,
        sink: Arc<dyn VmEventSink>,
        kbd_irq: T,
        aux_irq: T,
    ) -> Result<Self, StateError> {
        let s = &state.0;
        bounded("the controller queue", s.controller.len(), REPLY_QUEUE_CAP)?;
        bounded("the keyboard replies", s.kbd.replies.len(), REPLY_QUEUE_CAP)?;
        bounded("the keyboard buffer", s.kbd.keys.len(), KEY_QUEUE_CAP)?;
        bounded("the mouse replies", s.aux.replies.len(), REPLY_QUEUE_CAP)?;
        Ok(I8042 {
            sink,
            kbd_irq,
            aux_irq,
            state: Mutex::new(s.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::i8042::{CMD_WRITE_CTR, I8042_COMMAND_PORT, I8042_DATA_PORT};
    use crate::legacy::uart8250::NoIrq;
    use crate::vm_event::RecordingSink;
    use vm_device::bus::PioAddress;
    use vm_device::DevicePio;

    fn read_data(d: &I8042<NoIrq>) -> u8 {
        let mut b = [0u8];
        d.pio_read(PioAddress(I8042_DATA_PORT), 0, &mut b);
        b[0]
    }

    #[test]
    fn test_i8042_state_round_trips_through_json() {
        let sink = Arc::new(RecordingSink::default());
        let dev = I8042::new(sink.clone(), NoIrq, NoIrq);
        // A new command byte, then the keyboard's identify reply queued.
        dev.pio_write(PioAddress(I8042_COMMAND_PORT), 0, &[CMD_WRITE_CTR]);
        dev.pio_write(PioAddress(I8042_DATA_PORT), 0, &[0x47]);
        dev.pio_write(PioAddress(I8042_DATA_PORT), 0, &[0xf2]);
        assert_eq!(read_data(&dev), 0xfa);
        let state = dev.state();
        let json = serde_json::to_string(&state).unwrap();
        let back: I8042State = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
        let copy = I8042::from_state(&back, sink, NoIrq, NoIrq).unwrap();
        assert_eq!(copy.command_byte(), 0x47);
        // The rest of the identify reply comes out of the copy.
        assert_eq!(read_data(&copy), 0xab);
    }

    #[test]
    fn test_i8042_from_state_refuses_overlong_queues() {
        let sink = Arc::new(RecordingSink::default());
        let mut state = I8042::new(sink.clone(), NoIrq, NoIrq).state();
        state
            .0
            .kbd
            .keys
            .extend(std::iter::repeat_n(0x1c, KEY_QUEUE_CAP + 1));
        let e = I8042::from_state(&state, sink, NoIrq, NoIrq).err().unwrap();
        assert!(e.to_string().contains("keyboard buffer"), "{e}");
    }
}
