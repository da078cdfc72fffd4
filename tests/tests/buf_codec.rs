//! `PooledFrames`, the length-field codec into pooled buffers (feature
//! `codec`): frames cut from a stream however it arrives, every knob of the
//! length field, frames too long, the zero-copy path over a pooled read
//! buffer, refusals of the pool that lose nothing, and every block back.

use poolalloc::buf::bytes::{BufMut, Bytes, BytesMut};
use poolalloc::buf::{BufPool, FrameError, PooledFrames};
use poolalloc::PooledAllocator;
use tokio_util::codec::{Decoder, Encoder};

fn pool() -> BufPool {
    BufPool::new(
        PooledAllocator::builder()
            .arenas(1)
            .max_memory(32 << 20)
            .build(),
    )
}

fn payload(i: usize) -> Vec<u8> {
    (0..(i * 37) % 300).map(|k| (k + i) as u8).collect()
}

#[test]
fn frames_round_trip_whatever_the_chunking() {
    let pool = pool();
    let mut codec = PooledFrames::new(pool.clone());
    let mut wire = BytesMut::new();
    for i in 0..50 {
        codec.encode(&payload(i)[..], &mut wire).unwrap();
    }
    let wire = wire.freeze();
    for step in [1, 3, 64, 1000, wire.len()] {
        let mut src = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(step) {
            src.extend_from_slice(piece);
            while let Some(frame) = codec.decode(&mut src).unwrap() {
                got.push(frame);
            }
        }
        assert!(src.is_empty());
        assert_eq!(got.len(), 50, "step {step}");
        for (i, f) in got.iter().enumerate() {
            assert_eq!(f[..], payload(i)[..]);
        }
    }
    assert_eq!(pool.allocator().metrics().active_bytes, 0);
}

#[test]
fn length_fields_of_every_shape() {
    let pool = pool();
    let body = b"0123456789";
    // (codec, expected header before the body)
    let shapes: Vec<(PooledFrames, Vec<u8>)> = vec![
        (PooledFrames::new(pool.clone()), vec![0, 0, 0, 10]),
        (
            PooledFrames::new(pool.clone())
                .length_field_length(2)
                .little_endian(),
            vec![10, 0],
        ),
        (
            PooledFrames::new(pool.clone()).length_field_length(1),
            vec![10],
        ),
        (
            PooledFrames::new(pool.clone()).length_field_length(8),
            vec![0, 0, 0, 0, 0, 0, 0, 10],
        ),
        // The field counts itself too.
        (
            PooledFrames::new(pool.clone()).length_adjustment(-4),
            vec![0, 0, 0, 14],
        ),
    ];
    for (mut codec, header) in shapes {
        let mut wire = BytesMut::new();
        codec.encode(&body[..], &mut wire).unwrap();
        assert_eq!(&wire[..header.len()], &header[..]);
        assert_eq!(codec.decode(&mut wire).unwrap().unwrap(), body[..]);
        assert!(wire.is_empty());
    }
}

#[test]
fn a_jtt809_style_header() {
    // A start flag, then a big-endian u32 counting the whole message
    // (flag, length, body); the frame delivered keeps the whole message.
    let pool = pool();
    let mut codec = PooledFrames::new(pool)
        .length_field_offset(1)
        .length_adjustment(-5)
        .num_skip(0)
        .freezing();
    let mut msg = vec![0x5b];
    msg.extend_from_slice(&(5u32 + 6).to_be_bytes());
    msg.extend_from_slice(b"body!!");
    let mut src = BytesMut::from(&msg[..]);
    src.extend_from_slice(&msg[..3]);
    let frame: Bytes = codec.decode(&mut src).unwrap().unwrap();
    assert_eq!(frame[..], msg[..]);
    assert!(
        codec.decode(&mut src).unwrap().is_none(),
        "a partial header"
    );
    assert_eq!(src.len(), 3);
    // Encoding: the item's first byte goes before the length field.
    let mut wire = BytesMut::new();
    let mut item = vec![0x5b];
    item.extend_from_slice(b"body!!");
    codec.encode(&item[..], &mut wire).unwrap();
    assert_eq!(wire[..], msg[..]);
}

#[test]
fn frames_too_long_or_too_short_are_errors() {
    let pool = pool();
    let mut codec = PooledFrames::new(pool.clone()).max_frame_length(100);
    let mut src = BytesMut::new();
    src.put_u32(101);
    assert!(matches!(
        codec.decode(&mut src),
        Err(FrameError::TooLong {
            length: 101,
            max: 100
        })
    ));
    let mut dst = BytesMut::new();
    assert!(matches!(
        codec.encode(&[0u8; 101][..], &mut dst),
        Err(FrameError::TooLong { .. })
    ));
    let mut tiny = PooledFrames::new(pool.clone()).length_field_length(1);
    assert!(
        tiny.encode(&[0u8; 256][..], &mut dst).is_err(),
        "256 needs two bytes"
    );
    let mut short = PooledFrames::new(pool).length_adjustment(-8);
    let mut src = BytesMut::new();
    src.put_u32(2);
    assert!(matches!(
        short.decode(&mut src),
        Err(FrameError::BadLength { value: 2 })
    ));
    let io: std::io::Error = FrameError::BadLength { value: 2 }.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
}

#[test]
fn decoding_from_a_pooled_read_buffer_splits_without_copying() {
    let pool = pool();
    let mut codec = PooledFrames::new(pool.clone());
    let mut wire = BytesMut::new();
    for i in 0..100 {
        codec.encode(&payload(i)[..], &mut wire).unwrap();
    }
    let mut read = pool.buffer(64 << 10);
    read.put_slice(&wire);
    let (start, end) = (
        read.as_ptr() as usize,
        read.as_ptr() as usize + read.capacity(),
    );
    let mut frames = Vec::new();
    while let Some(f) = codec.decode_buf(&mut read).unwrap() {
        let p = f.as_ptr() as usize;
        assert!(
            f.is_empty() || (start..end).contains(&p),
            "a copy, not a split"
        );
        frames.push(f);
    }
    assert_eq!(frames.len(), 100);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f[..], payload(i)[..]);
    }
    // A partial frame reserves room for the rest.
    read.put_u32(5000);
    assert!(codec.decode_buf(&mut read).unwrap().is_none());
    assert!(read.capacity() >= 5004);
    drop((frames, read));
    assert_eq!(pool.allocator().metrics().active_bytes, 0);
}

#[test]
fn a_refused_frame_leaves_the_stream_as_it_was() {
    let pool = pool();
    let mut codec = PooledFrames::new(pool.clone()).max_frame_length(16 << 20);
    let mut held = Vec::new();
    while let Ok(b) = pool.try_buffer(1 << 20) {
        held.push(b);
    }
    let mut src = BytesMut::new();
    codec.encode(&vec![7u8; 8 << 20][..], &mut src).unwrap();
    let before = src.clone();
    match codec.decode(&mut src) {
        Err(FrameError::Alloc(e)) => assert!(e.to_string().starts_with("failed to allocate")),
        other => panic!("not refused: {:?}", other.map(|f| f.map(|f| f.len()))),
    }
    assert_eq!(src, before, "the stream changed");
    held.clear();
    let frame = codec.decode(&mut src).unwrap().unwrap();
    assert_eq!(frame.len(), 8 << 20);
    assert!(src.is_empty());
}
