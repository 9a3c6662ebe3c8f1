//! `request::parse` on its own: the framing rules.

use virtio_queue::{Queue, QueueT};

use super::request::{parse, Body, Header, Malformed, Segment, Unanswerable};
use super::*;

/// Parses the chain `bufs` as the device would.
fn parsed(
    mem: &GuestMemoryMmap,
    bufs: &[(u64, u32, u16)],
) -> Result<request::Request, Unanswerable> {
    let mut ring = TestRing::new(mem, GuestAddress(RING), 16);
    ring.add_chain(bufs);
    let mut q = Queue::new(16).unwrap();
    q.set_desc_table_address(Some(ring.desc.0 as u32), Some((ring.desc.0 >> 32) as u32));
    q.set_avail_ring_address(Some(ring.avail.0 as u32), Some((ring.avail.0 >> 32) as u32));
    q.set_used_ring_address(Some(ring.used.0 as u32), Some((ring.used.0 >> 32) as u32));
    q.set_ready(true);
    let chain = q.pop_descriptor_chain(mem).unwrap();
    parse(chain, mem, 16)
}

fn seg(addr: u64, len: u32) -> Segment {
    Segment {
        addr: GuestAddress(addr),
        len,
    }
}

fn header(mem: &GuestMemoryMmap, t: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&t.to_le_bytes());
    h[4..8].copy_from_slice(&0xdead_beefu32.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    mem.write_slice(&h, GuestAddress(HDR)).unwrap();
}

#[test]
fn test_parse_classic_three_descriptor_layout() {
    let mem = memory();
    header(&mem, VIRTIO_BLK_T_IN, 0x1234_5678_9abc);
    let r = parsed(&mem, &[(HDR, 16, 0), (DATA, 4096, W), (STATUS, 1, W)]).unwrap();
    assert_eq!(r.status, GuestAddress(STATUS));
    let b = r.body.unwrap();
    assert_eq!(
        b.header,
        Header {
            request_type: VIRTIO_BLK_T_IN,
            sector: 0x1234_5678_9abc
        },
        "reserved is ignored"
    );
    assert!(b.readable.is_empty());
    assert_eq!(b.writable, vec![seg(DATA, 4096)]);
}

#[test]
fn test_parse_header_split_data_shares_header_descriptor() {
    let mem = memory();
    // Header bytes 0..4 in one buffer, 4..16 plus 100 data bytes in the next.
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&VIRTIO_BLK_T_OUT.to_le_bytes());
    h[8..16].copy_from_slice(&9u64.to_le_bytes());
    mem.write_slice(&h[..4], GuestAddress(HDR)).unwrap();
    mem.write_slice(&h[4..], GuestAddress(DATA)).unwrap();
    let r = parsed(&mem, &[(HDR, 4, 0), (DATA, 112, 0), (STATUS, 1, W)]).unwrap();
    let b = r.body.unwrap();
    assert_eq!(b.header.sector, 9);
    assert_eq!(b.readable, vec![seg(DATA + 12, 100)]);
    assert_eq!(Body::len(&b.readable), 100);
}

#[test]
fn test_parse_status_is_last_byte_of_last_writable() {
    let mem = memory();
    header(&mem, VIRTIO_BLK_T_IN, 0);
    let r = parsed(
        &mem,
        &[(HDR, 16, 0), (DATA, 0, W), (DATA, 513, W), (STATUS, 0, W)],
    )
    .unwrap();
    assert_eq!(r.status, GuestAddress(DATA + 512));
    assert_eq!(r.body.unwrap().writable, vec![seg(DATA, 512)]);
}

#[test]
fn test_parse_faults() {
    let mem = memory();
    header(&mem, VIRTIO_BLK_T_IN, 0);
    assert_eq!(
        parsed(&mem, &[(HDR, 15, 0), (STATUS, 1, W)]).unwrap().body,
        Err(Malformed::ShortHeader(15))
    );
    assert_eq!(
        parsed(
            &mem,
            &[(HDR, 16, 0), (DATA, 8, W), (DATA, 8, 0), (STATUS, 1, W)]
        )
        .unwrap()
        .body,
        Err(Malformed::ReadableAfterWritable)
    );
    assert_eq!(
        parsed(&mem, &[(HDR, 16, 0), (0xf_fff0, 32, W), (STATUS, 1, W)])
            .unwrap()
            .body,
        Err(Malformed::OutsideRam(GuestAddress(0xf_fff0), 32))
    );
    assert_eq!(parsed(&mem, &[(HDR, 16, 0)]), Err(Unanswerable::NoStatus));
    assert_eq!(
        parsed(&mem, &[(HDR, 16, 0), (0x10_0000, 1, W)]),
        Err(Unanswerable::StatusOutsideRam(GuestAddress(0x10_0000)))
    );
    assert_eq!(
        parsed(&mem, &[(HDR, 16, 0), (u64::MAX, 2, W)]),
        Err(Unanswerable::StatusOutsideRam(GuestAddress(u64::MAX)))
    );
}

#[test]
fn test_parse_descriptor_budget() {
    let mem = memory();
    header(&mem, VIRTIO_BLK_T_IN, 0);
    let bufs: Vec<_> = (0..5).map(|i| (DATA + i * 512, 512, W)).collect();
    let all = [&[(HDR, 16, 0)][..], &bufs].concat();
    let mut ring = TestRing::new(&mem, GuestAddress(RING), 16);
    ring.add_chain(&all);
    let mut q = Queue::new(16).unwrap();
    q.set_desc_table_address(Some(ring.desc.0 as u32), Some(0));
    q.set_avail_ring_address(Some(ring.avail.0 as u32), Some(0));
    q.set_used_ring_address(Some(ring.used.0 as u32), Some(0));
    q.set_ready(true);
    let chain = q.pop_descriptor_chain(&mem).unwrap();
    assert!(matches!(
        parse(chain, &mem, 4),
        Err(Unanswerable::Broken(_))
    ));
}
