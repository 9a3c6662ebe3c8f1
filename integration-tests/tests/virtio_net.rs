//! virtio-net end to end: the freestanding driver guest
//! (`integration-tests/guests/virtio/guest.c`, `vtest=net`) on a tap in a
//! network namespace the test makes for itself. The guest reads its MAC
//! from the configuration space, resolves 10.0.2.1 with ARP and pings it;
//! the namespace's kernel answers. No other address is involved, and the
//! namespace (with its tap) is deleted afterwards, also when the test
//! fails.
//!
//! Needs /dev/kvm, gcc, iproute2 and root; a machine without them fails
//! these tests, saying which is missing.

use integration_tests::{expect_bad_input, require_kvm, virtio_guest, NetNs, Output, TempFile};

const GUEST_MAC: &str = "52:54:00:12:34:56";

/// The guest's line "key value".
fn value<'a>(out: &'a Output, key: &str) -> &'a str {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no '{key}' line in:\n{}\n{}", out.stdout, out.stderr))
}

/// Runs `vtest=net` (plus `extra` on its command line) on tap0 of a new
/// namespace; returns the run and the tap's MAC.
fn run_net_guest(extra: &str) -> (Output, String) {
    require_kvm();
    let ns = NetNs::create();
    ns.add_tap("tap0", "10.0.2.1/24");
    let tap_mac = ns.mac("tap0");
    let guest = virtio_guest().to_str().expect("utf-8 path").to_string();
    let net = format!("tap=tap0,mac={GUEST_MAC}");
    let cmdline = format!("vtest=net {extra}");
    let out = ns.run_vmm(&[
        "--kernel",
        &guest,
        "--cmdline",
        &cmdline,
        "--net",
        &net,
        "--timeout",
        "30",
        "-v",
    ]);
    assert_eq!(
        out.status, 1,
        "guest did not finish:\n{}\n{}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.contains("done"), "{}", out.stdout);
    assert!(
        out.stdout.contains("device 0 type 1 at 0xfeb00000 gsi 5"),
        "{}",
        out.stdout
    );
    assert_eq!(value(&out, "mac"), GUEST_MAC, "config space MAC");
    assert_eq!(value(&out, "status"), "1", "VIRTIO_NET_S_LINK_UP");
    assert_eq!(
        value(&out, "peer-mac"),
        tap_mac,
        "the ARP reply came from the tap's kernel side"
    );
    assert_eq!(
        value(&out, "ping-reply"),
        "id 4660 seq 7 payload-ok 1 ip-csum-ok 1 icmp-csum-ok 1"
    );
    // The device's counters, logged at shutdown: the ARP request and the
    // echo request out.
    let counters = out
        .stderr
        .lines()
        .find(|l| l.contains(&format!("virtio-net {GUEST_MAC}: rx")))
        .unwrap_or_else(|| panic!("no counters line: {}", out.stderr));
    // Plus one per ARP request of the host's the guest answered.
    let answered = out.stdout.matches("arp-answered").count();
    let tx = format!("tx {} frames", 2 + answered);
    assert!(counters.contains(&tx), "{counters}");
    assert!(counters.contains("0 tap errors"), "{counters}");
    (out, tap_mac)
}

fn hex(out: &Output, key: &str) -> u64 {
    u64::from_str_radix(value(out, key), 16).unwrap()
}

#[test]
fn test_virtio_net_guest_arps_and_pings_the_namespace_through_a_tap() {
    let (out, _) = run_net_guest("");
    // Offered: MAC, STATUS, MRG_RXBUF, CSUM and the host offloads, and the
    // guest offloads (a tap here takes them), VERSION_1.
    let offered = hex(&out, "net-features");
    for bit in [0, 1, 5, 7, 8, 10, 11, 12, 14, 15, 16, 32] {
        assert_ne!(offered & (1 << bit), 0, "feature bit {bit} in {offered:#x}");
    }
    assert_eq!(
        hex(&out, "net-accepted"),
        (1 << 32) | (1 << 16) | (1 << 15) | (1 << 5)
    );
    // flags 0, gso_type 0 (no offloads accepted), num_buffers 1.
    assert_eq!(value(&out, "arp-hdr"), "0 0 1");
    assert!(
        !out.stderr.contains("tap offloads set"),
        "a driver without offloads needs no TUNSETOFFLOAD: {}",
        out.stderr
    );
}

#[test]
fn test_virtio_net_offloads_reach_the_tap_from_the_confined_device_thread() {
    // The device thread runs under its seccomp list (on by default): a
    // TUNSETOFFLOAD it did not allow would end the VMM with status 159.
    let (out, _) = run_net_guest("vtest-offloads=1");
    let accepted = hex(&out, "net-accepted");
    assert_eq!(accepted & 0b1_1000_0011, 0b1_1000_0011, "{accepted:#x}");
    assert!(
        out.stderr
            .contains(&format!("virtio-net {GUEST_MAC}: tap offloads set to 0x7")),
        "TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6: {}",
        out.stderr
    );
}

#[test]
fn test_virtio_net_missing_or_unusable_tap_is_refused_naming_it() {
    let g = TempFile::with_bytes(&[0xf4]);
    // Outside any namespace of the tests: no such interface, and it is not
    // created.
    expect_bad_input(
        &["--kernel", g.path(), "--net", "tap=doesnotexist"],
        "no network interface named 'doesnotexist'",
    );
    assert!(
        !std::path::Path::new("/sys/class/net/doesnotexist").exists(),
        "the refused tap must not have been created"
    );
    // An interface that is not a tap.
    expect_bad_input(
        &["--kernel", g.path(), "--net", "tap=lo"],
        "'lo' is not a tap",
    );
    // A name longer than IFNAMSIZ allows, and bad MACs: the flag parser.
    expect_bad_input(
        &["--kernel", g.path(), "--net", "tap=a-tap-name-of-20-b"],
        "a-tap-name-of-20-b",
    );
    expect_bad_input(
        &["--kernel", g.path(), "--net", "tap=tap0,mac=52:54:00:12:34"],
        "52:54:00:12:34",
    );
    expect_bad_input(
        &[
            "--kernel",
            g.path(),
            "--net",
            "tap=tap0,mac=01:00:5e:00:00:01",
        ],
        "multicast",
    );
}
