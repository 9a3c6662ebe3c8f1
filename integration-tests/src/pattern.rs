//! Reproducible pseudo-random bytes for test data: patterns that a
//! misplaced, shifted or truncated copy would not reproduce.

/// `len` bytes of xorshift32 from `state` (nonzero): the low byte of each
/// successive state.
pub fn xorshift_bytes(len: usize, state: u32) -> Vec<u8> {
    assert_ne!(state, 0, "xorshift32 stays 0 from 0");
    let mut x = state;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
