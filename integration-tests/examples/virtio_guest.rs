//! Builds the freestanding virtio driver guest and prints its path, for
//! scripts (`integration-tests/scripts/bench-block.sh`):
//! `cargo run -q -p integration-tests --example virtio_guest [-- pvh]`.

fn main() {
    let pvh = std::env::args().nth(1).as_deref() == Some("pvh");
    let path = if pvh {
        integration_tests::virtio_guest_pvh()
    } else {
        integration_tests::virtio_guest()
    };
    println!("{}", path.display());
}
