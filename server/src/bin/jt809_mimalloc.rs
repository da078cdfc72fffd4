//! `jt809-mimalloc`: the `jt809` command line with mimalloc as the global
//! allocator, for the bench's `BytesMut`-on-mimalloc server (feature
//! `mimalloc`).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    poolalloc_jt809::cli::main()
}
