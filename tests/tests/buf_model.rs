//! `PooledBuf` against `BytesMut` as the model: random sequences of put,
//! get, advance, split, freeze, reserve, truncate, clear, copy and touch
//! give the same bytes, refusals under the pool's limit change nothing, and
//! every block is back in the pool at the end (`poolalloc_tests::buf_ops`).

use poolalloc::buf::BufPool;
use poolalloc_tests::buf_ops::{self, Op};
use proptest::prelude::*;
use std::sync::OnceLock;

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..64,
        3 => 0usize..4096,
        1 => 0usize..(2 << 20),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0usize..8;
    prop_oneof![
        2 => size().prop_map(Op::New),
        4 => (i.clone(), size()).prop_map(|(i, n)| Op::Put(i, n)),
        2 => (i.clone(), any::<u32>()).prop_map(|(i, v)| Op::PutU32(i, v)),
        1 => (i.clone(), any::<u8>(), size()).prop_map(|(i, v, n)| Op::PutBytes(i, v, n)),
        1 => (i.clone(), size()).prop_map(|(i, n)| Op::Write(i, n)),
        2 => i.clone().prop_map(Op::GetU32),
        2 => (i.clone(), size()).prop_map(|(i, n)| Op::Get(i, n)),
        2 => (i.clone(), size()).prop_map(|(i, n)| Op::Advance(i, n)),
        3 => (i.clone(), size()).prop_map(|(i, n)| Op::SplitTo(i, n)),
        3 => (i.clone(), size()).prop_map(|(i, n)| Op::SplitOff(i, n)),
        2 => i.clone().prop_map(Op::Freeze),
        1 => (i.clone(), size()).prop_map(|(i, n)| Op::CopyToBytes(i, n)),
        2 => (i.clone(), size()).prop_map(|(i, n)| Op::Reserve(i, n)),
        1 => (i.clone(), size()).prop_map(|(i, n)| Op::Truncate(i, n)),
        1 => i.clone().prop_map(Op::Clear),
        1 => i.clone().prop_map(Op::Copy),
        1 => i.clone().prop_map(Op::Touch),
        1 => i.clone().prop_map(Op::Drop),
        1 => i.prop_map(Op::DropFrozen),
    ]
}

/// One pool for the whole test (allocators' state is never unmapped, so a
/// pool per case would pile up), used by this test's thread alone.
fn pool() -> &'static BufPool {
    static POOL: OnceLock<BufPool> = OnceLock::new();
    POOL.get_or_init(buf_ops::pool)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 64 } else { 256 }))]

    #[test]
    fn pooled_buf_matches_bytes_mut(ops in proptest::collection::vec(op(), 1..120)) {
        buf_ops::run(pool(), &ops, false);
    }
}
