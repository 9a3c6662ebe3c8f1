//! The API socket's request path: the HTTP/1.1 parser (`vmm_bin::api::http`)
//! on a byte stream as the server reads it, every complete request routed
//! (`vmm_bin::api::routes`, which decodes the JSON body into the model
//! types); and, with byte 0 odd, the config-file decoder on a document.
//! Must never panic; beyond that:
//! - a complete request uses at least one byte and at most what was there,
//!   its body is within `MAX_BODY`, its path absolute and query-free;
//! - every proper prefix of a complete request is "need more" (a request
//!   is recognised only once it has all arrived, however it is split);
//! - pipelined requests are consumed one after another to the end;
//! - a decoded body serialises and decodes back to itself, and so does a
//!   config document (its refused raw-JSON sections by presence only).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_bin::api::http::{self, Progress, MAX_BODY};
use vmm_bin::api::model::FullVmConfig;
use vmm_bin::api::routes::{self, Action};

fn round_trip<T>(v: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_string(v).expect("model types serialise");
    let back: T = serde_json::from_str(&json).expect("what we print reads back");
    assert_eq!(&back, v, "{json}");
}

fn check_action(a: &Action) {
    match a {
        Action::PutBootSource(b) => round_trip(b),
        Action::PutMachineConfig(m) => round_trip(m),
        Action::PutDrive(d) => round_trip(d),
        Action::PutNetwork(n) => round_trip(n),
        Action::PutVsock(v) => round_trip(v),
        Action::PutEntropy(e) => round_trip(e),
        Action::PutLogger(l) => round_trip(l),
        Action::PutMetrics(m) => round_trip(m),
        _ => {}
    }
}

fn http_stream(mut buf: &[u8]) {
    // At most as many requests as bytes: each uses at least one.
    while !buf.is_empty() {
        match http::parse(buf) {
            Ok(Progress::NeedMore { .. }) | Err(_) => return,
            Ok(Progress::Done { request, used }) => {
                assert!(used > 0 && used <= buf.len(), "used {used} of {}", buf.len());
                assert!(request.body.as_ref().is_none_or(|b| !b.is_empty() && b.len() <= MAX_BODY));
                assert!(request.path.starts_with('/'), "{:?}", request.path);
                assert!(!request.path.contains(['?', '#']), "{:?}", request.path);
                for cut in [used - 1, used / 2, used.saturating_sub(2)] {
                    if cut < used {
                        assert!(
                            matches!(http::parse(&buf[..cut]), Ok(Progress::NeedMore { .. })),
                            "a prefix of {cut} of {used} bytes was not 'need more'"
                        );
                    }
                }
                vmm_fuzz::trace(&request);
                match routes::route(&request) {
                    Ok(action) => check_action(&action),
                    Err(e) => assert!(!e.to_string().is_empty()),
                }
                buf = &buf[used..];
            }
        }
    }
}

fn config_document(doc: &[u8]) {
    if let Ok(mut c) = vmm_bin::config_file::parse(doc) {
        // Sections that are never printed.
        c.pmem = None;
        c.memory_hotplug = None;
        let json = serde_json::to_string(&c).expect("serialises");
        let mut back: FullVmConfig = serde_json::from_str(&json).expect("reads back");
        // The sections this VMM refuses are kept as raw JSON values, whose
        // floats serde_json does not round-trip exactly (it parses them
        // fast, not correctly rounded): compare their presence only.
        for (a, b) in [
            (&mut c.balloon, &mut back.balloon),
            (&mut c.cpu_config, &mut back.cpu_config),
            (&mut c.mmds_config, &mut back.mmds_config),
        ] {
            assert_eq!(a.is_some(), b.is_some(), "{json}");
            *a = None;
            *b = None;
        }
        assert_eq!(back, c, "{json}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        http_stream(rest);
    } else {
        config_document(rest);
    }
});
