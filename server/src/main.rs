//! `jt809`: see [`poolalloc_jt809::cli`].

fn main() -> std::process::ExitCode {
    poolalloc_jt809::cli::main()
}
