//! Tests of the 8042 controller with its keyboard and mouse, driven
//! through the ports as a guest would.

use super::mouse::{AUX_DEFAULT_RES, AUX_IDLE_PACKET};
use super::xlate::set2_to_set1;
use super::*;
use crate::vm_event::RecordingSink;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Default, Clone)]
struct CountIrq(Arc<AtomicUsize>);

impl CountIrq {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Trigger for CountIrq {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct Rig {
    dev: I8042<CountIrq>,
    sink: Arc<RecordingSink>,
    kbd: CountIrq,
    aux: CountIrq,
}

fn rig() -> Rig {
    let sink = Arc::new(RecordingSink::default());
    let (kbd, aux) = (CountIrq::default(), CountIrq::default());
    Rig {
        dev: I8042::new(sink.clone(), kbd.clone(), aux.clone()),
        sink,
        kbd,
        aux,
    }
}

impl Rig {
    fn status(&self) -> u8 {
        let mut d = [0u8];
        self.dev.pio_read(PioAddress(I8042_COMMAND_PORT), 0, &mut d);
        d[0]
    }
    fn cmd(&self, c: u8) {
        self.dev.pio_write(PioAddress(I8042_COMMAND_PORT), 0, &[c]);
    }
    fn write(&self, v: u8) {
        self.dev.pio_write(PioAddress(I8042_DATA_PORT), 0, &[v]);
    }
    fn read(&self) -> u8 {
        let mut d = [0u8];
        self.dev.pio_read(PioAddress(I8042_DATA_PORT), 0, &mut d);
        d[0]
    }
    /// Reads everything in the output buffer, as Linux's i8042_flush.
    fn drain(&self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.status() & STS_OBF != 0 {
            out.push(self.read());
            assert!(out.len() <= 4096, "output never empties");
        }
        out
    }
    /// Drains and records whether each byte came with AUXDATA.
    fn drain_tagged(&self) -> Vec<(u8, bool)> {
        let mut out = Vec::new();
        loop {
            let st = self.status();
            if st & STS_OBF == 0 {
                return out;
            }
            out.push((self.read(), st & STS_AUXDATA != 0));
        }
    }
    fn kbd_cmd(&self, bytes: &[u8]) -> Vec<u8> {
        for &b in bytes {
            self.write(b);
        }
        self.drain()
    }
    fn aux_cmd(&self, bytes: &[u8]) -> Vec<(u8, bool)> {
        for &b in bytes {
            self.cmd(CMD_WRITE_AUX);
            self.write(b);
        }
        self.drain_tagged()
    }
    fn read_ctr(&self) -> u8 {
        self.cmd(CMD_READ_CTR);
        assert_eq!(self.status() & (STS_OBF | STS_AUXDATA), STS_OBF);
        self.read()
    }
    fn write_ctr(&self, v: u8) {
        self.cmd(CMD_WRITE_CTR);
        self.write(v);
    }
}

#[test]
fn test_i8042_power_on_state() {
    let r = rig();
    let st = r.status();
    assert_eq!(st & STS_OBF, 0, "no stale data: Linux's flush must end");
    assert_eq!(st & STS_IBF, 0);
    assert_ne!(st & STS_SYS, 0, "self-test passed at POST");
    assert_ne!(st & STS_UNLOCKED, 0, "keylock not engaged");
    assert_eq!(r.read_ctr(), CTR_DEFAULT);
    assert_eq!(r.kbd.count(), 1, "the CTR reply raised IRQ1 (KBDINT set)");
    assert!(r.sink.events().is_empty());
}

/// The sequence Linux's i8042 driver runs at probe (i8042.c:
/// i8042_controller_check, _selftest, _init, i8042_check_mux,
/// i8042_check_aux), step by step.
#[test]
fn test_i8042_linux_probe_sequence() {
    let r = rig();
    // i8042_controller_check: flush.
    assert!(r.drain().is_empty());
    // i8042_controller_selftest.
    r.cmd(CMD_SELF_TEST);
    assert_eq!(r.drain(), vec![REPLY_SELF_TEST_OK]);
    // i8042_controller_init: stable CTR, then KBDDIS and no KBDINT.
    let ctr = r.read_ctr();
    assert_eq!(r.read_ctr(), ctr);
    assert_ne!(ctr & CTR_XLATE, 0, "translated keyboard, not direct");
    let ctr = (ctr | CTR_KBDDIS) & !CTR_KBDINT;
    r.write_ctr(ctr);
    assert_eq!(r.read_ctr(), ctr);
    assert!(r.drain().is_empty());
    // i8042_set_mux_mode: loopback F0, 56, A4: the last coming back
    // unchanged means "no active multiplexing".
    for v in [0xf0, 0x56, 0xa4] {
        r.cmd(CMD_WRITE_AUX_OBUF);
        r.write(v);
        assert_eq!(r.drain_tagged(), vec![(v, true)]);
    }
    // i8042_check_aux: AUX_LOOP 0x5a.
    r.cmd(CMD_WRITE_AUX_OBUF);
    r.write(0x5a);
    assert_eq!(r.drain_tagged(), vec![(0x5a, true)]);
    // i8042_toggle_aux(false/true) reads back AUXDIS.
    r.cmd(CMD_AUX_DISABLE);
    assert_ne!(r.read_ctr() & CTR_AUXDIS, 0);
    r.cmd(CMD_AUX_ENABLE);
    assert_eq!(r.read_ctr() & CTR_AUXDIS, 0);
    // AUX IRQ test: with AUXINT enabled, a loopback raises IRQ12.
    let ctr = r.read_ctr();
    r.write_ctr((ctr & !CTR_AUXDIS) | CTR_AUXINT);
    let before = r.aux.count();
    r.cmd(CMD_WRITE_AUX_OBUF);
    r.write(0xa5);
    assert_eq!(r.aux.count(), before + 1);
    assert_eq!(r.drain_tagged(), vec![(0xa5, true)]);
    // Enabling the keyboard port with its interrupt for atkbd.
    let ctr = r.read_ctr();
    r.write_ctr((ctr & !CTR_KBDDIS) | CTR_KBDINT);
    // atkbd_probe: GETID through the translating controller.
    assert_eq!(r.kbd_cmd(&[KBD_CMD_GET_ID]), vec![DEV_ACK, 0xab, 0x41]);
    // psmouse: reset and ID.
    assert_eq!(
        r.aux_cmd(&[AUX_CMD_RESET]),
        vec![(DEV_ACK, true), (DEV_BAT_OK, true), (AUX_ID, true)]
    );
    assert_eq!(
        r.aux_cmd(&[AUX_CMD_GET_ID]),
        vec![(DEV_ACK, true), (AUX_ID, true)]
    );
    assert!(r.sink.events().is_empty());
}

#[test]
fn test_i8042_controller_commands() {
    let r = rig();
    r.cmd(CMD_AUX_TEST);
    assert_eq!(r.drain(), vec![REPLY_INTERFACE_OK]);
    r.cmd(CMD_KBD_TEST);
    assert_eq!(r.drain(), vec![REPLY_INTERFACE_OK]);
    r.cmd(CMD_KBD_DISABLE);
    assert_ne!(r.read_ctr() & CTR_KBDDIS, 0);
    r.cmd(CMD_KBD_ENABLE);
    assert_eq!(r.read_ctr() & CTR_KBDDIS, 0);
    r.cmd(CMD_AUX_ENABLE);
    assert_eq!(r.read_ctr() & CTR_AUXDIS, 0);
    r.cmd(CMD_AUX_DISABLE);
    assert_ne!(r.read_ctr() & CTR_AUXDIS, 0);
    // Output port: default, then written (A20 off, no reset).
    r.cmd(CMD_READ_OUTPUT);
    assert_eq!(r.drain(), vec![OUT_DEFAULT]);
    r.cmd(CMD_WRITE_OUTPUT);
    r.write(0xdd);
    r.cmd(CMD_READ_OUTPUT);
    assert_eq!(r.drain(), vec![0xdd & !(OUT_KBD_OBF | OUT_AUX_OBF)]);
    assert!(r.sink.events().is_empty());
    // Controller RAM bytes 1-31.
    for i in 1..32u8 {
        r.cmd(CMD_WRITE_CTR + i);
        r.write(i ^ 0xa0);
    }
    for i in 1..32u8 {
        r.cmd(CMD_READ_CTR + i);
        assert_eq!(r.drain(), vec![i ^ 0xa0]);
    }
    // D2: as if from the keyboard (IRQ1 with KBDINT), not translated.
    let k = r.kbd.count();
    r.cmd(CMD_WRITE_KBD_OBUF);
    r.write(0x1c);
    assert_eq!(r.kbd.count(), k + 1);
    assert_eq!(r.drain_tagged(), vec![(0x1c, false)]);
    // D3 with AUXINT clear: data, AUXDATA, no IRQ12.
    let a = r.aux.count();
    r.cmd(CMD_WRITE_AUX_OBUF);
    r.write(0x77);
    assert_eq!(r.drain_tagged(), vec![(0x77, true)]);
    assert_eq!(r.aux.count(), a);
}

#[test]
fn test_i8042_status_flags() {
    let r = rig();
    r.cmd(CMD_READ_CTR);
    assert_ne!(r.status() & STS_CMD, 0, "A2: last write was a command");
    let ctr = r.read();
    r.write_ctr(ctr & !CTR_SYS);
    assert_eq!(r.status() & STS_CMD, 0, "last write was data");
    assert_eq!(r.status() & STS_SYS, 0, "SYS follows the command byte");
    r.cmd(CMD_SELF_TEST);
    assert_ne!(r.status() & STS_SYS, 0, "self-test sets SYS");
    assert_eq!(r.status() & (STS_OBF | STS_AUXDATA), STS_OBF);
    assert_eq!(r.read(), REPLY_SELF_TEST_OK);
    assert_eq!(r.status() & STS_OBF, 0);
    // Reading with OBF clear gives the last byte again.
    assert_eq!(r.read(), REPLY_SELF_TEST_OK);
    assert_eq!(r.status() & (STS_IBF | STS_TIMEOUT | STS_PARITY), 0);
}

#[test]
fn test_i8042_reset_commands() {
    let r = rig();
    r.cmd(CMD_PULSE_RESET);
    assert_eq!(r.sink.events(), vec![VmEvent::Reset]);
    // 0xFF pulses nothing; every even F-command pulses the reset line.
    let r = rig();
    r.cmd(0xff);
    r.cmd(0xfd);
    assert!(r.sink.events().is_empty());
    r.cmd(0xf0);
    assert_eq!(r.sink.events(), vec![VmEvent::Reset]);
    // Output port write with bit 0 low.
    let r = rig();
    r.cmd(CMD_WRITE_OUTPUT);
    r.write(0xde);
    assert_eq!(r.sink.events(), vec![VmEvent::Reset]);
}

#[test]
fn test_i8042_keyboard_commands_translated_and_raw() {
    let r = rig();
    assert_eq!(r.kbd_cmd(&[KBD_CMD_RESET]), vec![DEV_ACK, DEV_BAT_OK]);
    assert_eq!(r.kbd_cmd(&[KBD_CMD_GET_ID]), vec![DEV_ACK, 0xab, 0x41]);
    assert_eq!(r.kbd_cmd(&[KBD_CMD_ENABLE]), vec![DEV_ACK]);
    assert_eq!(r.kbd_cmd(&[KBD_CMD_DISABLE]), vec![DEV_ACK]);
    assert_eq!(r.kbd_cmd(&[KBD_CMD_DEFAULTS]), vec![DEV_ACK]);
    assert_eq!(r.kbd_cmd(&[KBD_CMD_SET_LEDS, 0x07]), vec![DEV_ACK, DEV_ACK]);
    assert_eq!(r.kbd_cmd(&[KBD_CMD_SET_RATE, 0x20]), vec![DEV_ACK, DEV_ACK]);
    assert_eq!(r.kbd_cmd(&[KBD_CMD_ECHO]), vec![KBD_ECHO]);
    // Scancode set 2, read through translation: 0x41.
    assert_eq!(
        r.kbd_cmd(&[KBD_CMD_SCANCODE_SET, 0]),
        vec![DEV_ACK, DEV_ACK, 0x41]
    );
    // Untranslated.
    let ctr = r.read_ctr();
    r.write_ctr(ctr & !CTR_XLATE);
    assert_eq!(r.kbd_cmd(&[KBD_CMD_GET_ID]), vec![DEV_ACK, 0xab, 0x83]);
    assert_eq!(
        r.kbd_cmd(&[KBD_CMD_SCANCODE_SET, 0]),
        vec![DEV_ACK, DEV_ACK, 2]
    );
    assert_eq!(
        r.kbd_cmd(&[KBD_CMD_SCANCODE_SET, 3]),
        vec![DEV_ACK, DEV_ACK]
    );
    assert_eq!(
        r.kbd_cmd(&[KBD_CMD_SCANCODE_SET, 0]),
        vec![DEV_ACK, DEV_ACK, 3]
    );
    assert_eq!(
        r.kbd_cmd(&[KBD_CMD_SCANCODE_SET, 1]),
        vec![DEV_ACK, DEV_ACK]
    );
    assert_eq!(
        r.kbd_cmd(&[KBD_CMD_SCANCODE_SET, 0]),
        vec![DEV_ACK, DEV_ACK, 1]
    );
    // Bad options: resend.
    assert_eq!(
        r.kbd_cmd(&[KBD_CMD_SCANCODE_SET, 4]),
        vec![DEV_ACK, DEV_RESEND]
    );
    assert_eq!(
        r.kbd_cmd(&[KBD_CMD_SET_LEDS, 0x08]),
        vec![DEV_ACK, DEV_RESEND]
    );
    // A command in place of an option runs.
    assert_eq!(
        r.kbd_cmd(&[KBD_CMD_SET_RATE, KBD_CMD_ECHO]),
        vec![DEV_ACK, KBD_ECHO]
    );
    // Resend repeats the last byte sent.
    assert_eq!(r.kbd_cmd(&[KBD_CMD_RESEND]), vec![KBD_ECHO]);
    // Set-3 modes acknowledged.
    assert_eq!(r.kbd_cmd(&[0xf8]), vec![DEV_ACK]);
    // Reset restores set 2.
    assert_eq!(r.kbd_cmd(&[KBD_CMD_RESET]), vec![DEV_ACK, DEV_BAT_OK]);
    assert_eq!(
        r.kbd_cmd(&[KBD_CMD_SCANCODE_SET, 0]),
        vec![DEV_ACK, DEV_ACK, 2]
    );
}

#[test]
fn test_i8042_unknown_keyboard_commands_get_resend() {
    let r = rig();
    for v in [0x00u8, 0x12, 0x80, 0xab, 0xec, 0xef, 0xf1, 0xfb, 0xfc, 0xfd] {
        assert_eq!(r.kbd_cmd(&[v]), vec![DEV_RESEND], "command {v:#x}");
    }
}

#[test]
fn test_i8042_writing_to_keyboard_enables_its_port() {
    let r = rig();
    r.cmd(CMD_KBD_DISABLE);
    assert_eq!(r.kbd_cmd(&[KBD_CMD_ECHO]), vec![KBD_ECHO]);
    assert_eq!(r.read_ctr() & CTR_KBDDIS, 0);
    r.cmd(CMD_AUX_DISABLE);
    assert_eq!(
        r.aux_cmd(&[AUX_CMD_GET_ID]),
        vec![(DEV_ACK, true), (AUX_ID, true)]
    );
    assert_eq!(r.read_ctr() & CTR_AUXDIS, 0);
}

#[test]
fn test_i8042_mouse_commands() {
    let r = rig();
    let acked = |bytes: &[u8]| -> Vec<(u8, bool)> {
        std::iter::once(DEV_ACK)
            .chain(bytes.iter().copied())
            .map(|b| (b, true))
            .collect()
    };
    assert_eq!(r.aux_cmd(&[AUX_CMD_RESET]), acked(&[DEV_BAT_OK, AUX_ID]));
    assert_eq!(
        r.aux_cmd(&[AUX_CMD_STATUS]),
        acked(&[0x00, AUX_DEFAULT_RES, 100])
    );
    // Sample rate 200, resolution 3, scaling 2:1, reporting on, remote.
    assert_eq!(r.aux_cmd(&[AUX_CMD_SET_RATE, 200]), acked(&[DEV_ACK]));
    assert_eq!(r.aux_cmd(&[AUX_CMD_SET_RES, 3]), acked(&[DEV_ACK]));
    assert_eq!(r.aux_cmd(&[AUX_CMD_SCALE_2_1]), acked(&[]));
    assert_eq!(r.aux_cmd(&[AUX_CMD_ENABLE]), acked(&[]));
    assert_eq!(r.aux_cmd(&[AUX_CMD_REMOTE]), acked(&[]));
    assert_eq!(r.aux_cmd(&[AUX_CMD_STATUS]), acked(&[0x70, 3, 200]));
    assert_eq!(r.aux_cmd(&[AUX_CMD_STREAM]), acked(&[]));
    assert_eq!(r.aux_cmd(&[AUX_CMD_SCALE_1_1]), acked(&[]));
    assert_eq!(r.aux_cmd(&[AUX_CMD_DISABLE]), acked(&[]));
    assert_eq!(r.aux_cmd(&[AUX_CMD_STATUS]), acked(&[0x00, 3, 200]));
    assert_eq!(r.aux_cmd(&[AUX_CMD_DEFAULTS]), acked(&[]));
    assert_eq!(r.aux_cmd(&[AUX_CMD_STATUS]), acked(&[0x00, 2, 100]));
    assert_eq!(r.aux_cmd(&[AUX_CMD_READ_DATA]), acked(&AUX_IDLE_PACKET));
    // Bad resolution: resend.
    assert_eq!(r.aux_cmd(&[AUX_CMD_SET_RES, 9]), acked(&[DEV_RESEND]));
    // Synaptics probe (E8 00 x4, E9) must not see 0x47 in byte 2.
    let mut seq = Vec::new();
    for _ in 0..4 {
        seq.extend([AUX_CMD_SET_RES, 0]);
    }
    seq.push(AUX_CMD_STATUS);
    let got = r.aux_cmd(&seq);
    assert_eq!(got[got.len() - 2].0, 0, "resolution 0, not Synaptics' 0x47");
    // IntelliMouse knock (200, 100, 80) still reports a plain mouse.
    let got = r.aux_cmd(&[
        AUX_CMD_SET_RATE,
        200,
        AUX_CMD_SET_RATE,
        100,
        AUX_CMD_SET_RATE,
        80,
        AUX_CMD_GET_ID,
    ]);
    assert_eq!(got.last(), Some(&(AUX_ID, true)));
    // Wrap mode echoes until EC.
    assert_eq!(r.aux_cmd(&[AUX_CMD_SET_WRAP]), acked(&[]));
    assert_eq!(
        r.aux_cmd(&[0x12, AUX_CMD_GET_ID]),
        vec![(0x12, true), (AUX_CMD_GET_ID, true)]
    );
    assert_eq!(r.aux_cmd(&[AUX_CMD_RESET_WRAP]), acked(&[]));
    assert_eq!(r.aux_cmd(&[AUX_CMD_GET_ID]), acked(&[AUX_ID]));
    // Unknown, then resend of the last byte.
    assert_eq!(r.aux_cmd(&[0x00]), vec![(DEV_RESEND, true)]);
    assert_eq!(r.aux_cmd(&[AUX_CMD_RESEND]), vec![(DEV_RESEND, true)]);
}

#[test]
fn test_i8042_key_press_translation() {
    let r = rig();
    // 'A' make/break in set 2: 1C, F0 1C -> set 1: 1E, 9E.
    assert!(r.dev.key_press(&[0x1c]));
    assert!(r.dev.key_press(&[0xf0, 0x1c]));
    // Up arrow: E0 75 / E0 F0 75 -> E0 48 / E0 C8.
    assert!(r.dev.key_press(&[0xe0, 0x75]));
    assert!(r.dev.key_press(&[0xe0, 0xf0, 0x75]));
    // F7 (0x83) -> 0x41.
    assert!(r.dev.key_press(&[0x83]));
    assert_eq!(r.drain(), vec![0x1e, 0x9e, 0xe0, 0x48, 0xe0, 0xc8, 0x41]);
    // Without translation the bytes pass untouched.
    let ctr = r.read_ctr();
    r.write_ctr(ctr & !CTR_XLATE);
    assert!(r.dev.key_press(&[0xf0, 0x1c]));
    assert_eq!(r.drain(), vec![0xf0, 0x1c]);
    // The whole table: every set-2 make code has a set-1 code below 0x80
    // (except 0x00, the overrun code, which becomes 0xFF).
    for b in 1..0x80u8 {
        assert!(set2_to_set1(b) < 0x80, "{b:#x}");
    }
    assert_eq!(set2_to_set1(0x00), 0xff);
    assert_eq!(set2_to_set1(DEV_ACK), DEV_ACK);
    assert_eq!(set2_to_set1(DEV_BAT_OK), DEV_BAT_OK);
}

#[test]
fn test_i8042_key_queue_is_bounded_and_counts_drops() {
    let r = rig();
    let mut accepted = 0u64;
    for i in 0..100_000u32 {
        if r.dev
            .key_press(&[(i % 0x70) as u8 + 1, 0xf0, (i % 0x70) as u8 + 1])
        {
            accepted += 3;
        }
    }
    assert!(accepted <= KEY_QUEUE_CAP as u64 + 3);
    assert_eq!(r.dev.dropped_key_bytes(), 300_000 - accepted);
    let out = r.drain();
    // Breaks fold into one byte under translation: 2 out per 3 in.
    assert_eq!(out.len() as u64, accepted / 3 * 2);
    assert!(out.len() <= 16, "Linux's flush limit");
    // Room again after draining.
    assert!(r.dev.key_press(&[0x1c]));
    assert_eq!(r.drain(), vec![0x1e]);
    // Scanning disabled: presses dropped.
    assert_eq!(r.kbd_cmd(&[KBD_CMD_DISABLE]), vec![DEV_ACK]);
    let before = r.dev.dropped_key_bytes();
    assert!(!r.dev.key_press(&[0x1c, 0xf0, 0x1c]));
    assert_eq!(r.dev.dropped_key_bytes(), before + 3);
    assert!(r.drain().is_empty());
    assert_eq!(r.kbd_cmd(&[KBD_CMD_ENABLE]), vec![DEV_ACK]);
    assert!(r.dev.key_press(&[0x1c]));
    assert_eq!(r.drain(), vec![0x1e]);
}

#[test]
fn test_i8042_keys_wait_while_keyboard_port_disabled() {
    let r = rig();
    r.cmd(CMD_KBD_DISABLE);
    assert!(r.dev.key_press(&[0x1c]));
    assert_eq!(r.status() & STS_OBF, 0);
    r.cmd(CMD_KBD_ENABLE);
    assert_eq!(r.drain(), vec![0x1e]);
}

#[test]
fn test_i8042_interrupts_follow_ctr_and_output_buffer() {
    let r = rig();
    // KBDINT on at power-on: each key byte entering the buffer is an edge.
    assert!(r.dev.key_press(&[0x1c, 0x32]));
    assert_eq!(r.kbd.count(), 1);
    let _ = r.read();
    assert_eq!(r.kbd.count(), 2, "next byte loaded, new edge");
    let _ = r.read();
    assert_eq!(r.kbd.count(), 2);
    // KBDINT off: no interrupt; turning it on with data waiting raises it.
    r.write_ctr(CTR_DEFAULT & !CTR_KBDINT);
    assert_eq!(r.kbd.count(), 2);
    assert!(r.dev.key_press(&[0x1c]));
    assert_eq!(r.kbd.count(), 2);
    r.write_ctr(CTR_DEFAULT);
    assert_eq!(r.kbd.count(), 3);
    assert_eq!(r.drain(), vec![0x1e]);
    // Mouse bytes raise IRQ12 only, when AUXINT is set.
    r.write_ctr((CTR_DEFAULT | CTR_AUXINT) & !CTR_AUXDIS);
    let (k, a) = (r.kbd.count(), r.aux.count());
    assert_eq!(
        r.aux_cmd(&[AUX_CMD_GET_ID]),
        vec![(DEV_ACK, true), (AUX_ID, true)]
    );
    assert_eq!(r.aux.count(), a + 2);
    assert_eq!(r.kbd.count(), k);
    assert_eq!(
        r.dev.command_byte(),
        (CTR_DEFAULT | CTR_AUXINT) & !CTR_AUXDIS
    );
}

#[test]
fn test_i8042_every_command_and_data_value_is_safe() {
    let r = rig();
    for cmd in 0..=255u8 {
        for data in [0x00u8, 0x5a, 0xff] {
            r.cmd(cmd);
            r.write(data);
            let _ = r.drain();
        }
    }
    // Resets only from F0-FF with bit 0 clear (8 commands, each run
    // three times) and D1 with data bit 0 clear (0x00 and 0x5a).
    let resets = r.sink.events().len();
    assert_eq!(resets, 8 * 3 + 2);
    assert!(r.sink.events().iter().all(|e| *e == VmEvent::Reset));
    // A flood of commands without reading stays bounded.
    let r = rig();
    for _ in 0..10_000 {
        r.write(KBD_CMD_GET_ID);
        r.cmd(CMD_SELF_TEST);
        r.cmd(CMD_WRITE_AUX);
        r.write(AUX_CMD_STATUS);
    }
    assert!(r.drain().len() <= 3 * REPLY_QUEUE_CAP + 1);
}

#[test]
fn test_i8042_ports_and_byte_lanes() {
    let r = rig();
    r.cmd(CMD_SELF_TEST);
    // A 16-bit read at 0x60 reads the data, then port 0x61 (not ours).
    let mut d = [0u8; 2];
    r.dev.pio_read(PioAddress(I8042_DATA_PORT), 0, &mut d);
    assert_eq!(d, [REPLY_SELF_TEST_OK, 0xff]);
    // Dispatch is on the port: base 0x60 + offset 4 is the status port.
    let mut d = [0u8];
    r.dev.pio_read(PioAddress(I8042_DATA_PORT), 4, &mut d);
    assert_eq!(d[0] & STS_UNLOCKED, STS_UNLOCKED);
    // Other ports: 0xff, writes ignored.
    r.dev.pio_read(PioAddress(0x62), 0, &mut d);
    assert_eq!(d[0], 0xff);
    r.dev.pio_write(PioAddress(0x65), 0, &[CMD_PULSE_RESET]);
    r.dev
        .pio_write(PioAddress(0xffff), 0xffff, &[CMD_PULSE_RESET]);
    r.dev.pio_read(PioAddress(0xffff), 0xffff, &mut [0u8; 3]);
    r.dev.pio_write(PioAddress(I8042_COMMAND_PORT), 0, &[]);
    assert!(r.sink.events().is_empty());
    // A 2-byte write at 0x64 writes the command, then port 0x65.
    r.dev
        .pio_write(PioAddress(I8042_COMMAND_PORT), 0, &[CMD_PULSE_RESET, 0]);
    assert_eq!(r.sink.events(), vec![VmEvent::Reset]);
}
