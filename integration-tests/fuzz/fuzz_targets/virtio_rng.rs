//! virtio-rng behind the MMIO transport, driven by a fuzzer-steered driver
//! (`vmm_fuzz::virtio`): arbitrary descriptors, chains, notifies, register
//! accesses and resets.
//!
//! Checked beyond the harness's ring checks: no request is answered with
//! more than `RNG_REQUEST_MAX` bytes, and the device's byte counter is the
//! sum of the used lengths it reported.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use vmm_devices::virtio::rng::RNG_REQUEST_MAX;
use vmm_devices::virtio::VirtioRng;
use vmm_fuzz::virtio::{Harness, Op, MAX_OPS};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(features) = u64::arbitrary(&mut u) else {
        return;
    };
    let rng = VirtioRng::new();
    let metrics = rng.metrics();
    let mut h = Harness::new(Box::new(rng), features);
    let mut reported = 0u64;
    // Empty input decodes as zeros forever: stop when it runs out.
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = Op::arbitrary(&mut u) else {
            break;
        };
        vmm_fuzz::trace(&op);
        for (_, _, len) in h.run(&op, features) {
            assert!(len as usize <= RNG_REQUEST_MAX, "used len {len}");
            reported += u64::from(len);
        }
    }
    // After an INDIRECT descriptor the used ring may be overwritten by the
    // device itself, so the sum is only meaningful without one.
    if !h.unchecked() {
        assert_eq!(metrics.bytes(), reported, "bytes counted vs used lengths");
    }
});
