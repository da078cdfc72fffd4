//! The README's first command, `cargo run --release -p poolalloc --example
//! demo`, as a test: the example's source compiled into this binary and its
//! `main` run, so its own assertions (the pool's limit refuses a copy of
//! the pooled buffer, the report names the copying line and shows the
//! copies' touch, memory returns to its baseline, the top site of the server
//! is its audit stage) are checked with the suite.
//!
//! Its own binary without libtest (`harness = false`): the example installs
//! `PooledAllocator` as the global allocator, and no test threads may
//! allocate beside its server.

#[path = "../../std-shell/examples/demo.rs"]
mod demo;

fn main() {
    demo::main();
    println!("demo_runs: ok");
}
