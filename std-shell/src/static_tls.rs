//! Thread-locals in the static TLS block, for allocators built into a
//! shared library (`libpoolalloc.so`).
//!
//! # Why
//!
//! In a shared library, Rust's `thread_local!` compiles to the
//! general-dynamic TLS model: every access calls `__tls_get_addr` and then
//! the key's accessor through a function pointer. The preload library
//! reaches two thread-locals per call (its own record and this crate's
//! cache slots), four per `malloc`+`free`; measured with callgrind on the
//! preload's C loop (`BENCHMARKS.md`), that machinery was about 100 of the
//! 570 instructions of a step. A library loaded at start-up (preloaded,
//! or linked by the program) may use the *initial-exec* model instead, as
//! glibc's own malloc does for its thread cache: the block sits at a fixed
//! offset from the thread pointer, which one GOT load gives, so an access
//! is two instructions and no call. Stable Rust cannot ask for that model
//! (`-Z tls-model` is nightly), so
//! [`static_thread_local!`](crate::static_thread_local) declares the block
//! in assembly and reaches it with inline assembly.
//!
//! # Where
//!
//! x86-64 Linux with the `static-tls` feature (which the preload library
//! turns on), not under Miri; anywhere else the macro falls back to
//! `thread_local!` with the same interface. A library with static TLS can
//! still be `dlopen`ed while the C library's reserve of static TLS lasts
//! (glibc keeps some for this); `LD_PRELOAD` and linking are always fine.
//!
//! # Contract
//!
//! The block starts as all-zero bytes in every thread (`.tbss`) and is
//! never dropped, so the type must be valid as zero bytes and need no
//! `Drop`: [`ZeroInit`], an `unsafe` marker trait, says the first, and the
//! macro checks the second and the alignment at compile time. Like
//! `thread_local!` without a destructor, the block is there from a thread's
//! first instruction to its last, so `with` never fails.

/// Types whose all-zero bytes are a valid value, for
/// [`static_thread_local!`](crate::static_thread_local).
///
/// # Safety
/// Every field of the type is valid as zero bytes (null pointers in
/// `Cell`s, zero integers and atomics, `false`), and so is the whole.
pub unsafe trait ZeroInit {}

/// Declares `$name`, a unit struct whose `with(f)` runs `f` on the calling
/// thread's `$ty` (see the module docs). `$sym` names the block in the
/// object file; it must be unique in the final library. This crate's
/// `static-tls` feature picks the model, for every crate that uses the
/// macro.
#[cfg(all(
    feature = "static-tls",
    target_arch = "x86_64",
    target_os = "linux",
    not(miri)
))]
#[doc(hidden)]
#[macro_export]
macro_rules! static_thread_local {
    ($(#[$meta:meta])* $vis:vis static $name:ident: $ty:ty = $sym:literal;) => {
        $crate::__static_thread_local_type!($(#[$meta])* $vis $name: $ty);

        ::core::arch::global_asm!(
            ::core::concat!(".pushsection .tbss.", $sym, ",\"awT\",@nobits"),
            ".p2align 6",
            ::core::concat!(".globl ", $sym),
            ::core::concat!(".hidden ", $sym),
            ::core::concat!(".type ", $sym, ",@object"),
            ::core::concat!(".size ", $sym, ", {size}"),
            ::core::concat!($sym, ":"),
            ".zero {size}",
            ".popsection",
            size = const ::core::mem::size_of::<$ty>(),
        );

        impl $name {
            /// Runs `f` on the calling thread's value.
            #[inline(always)]
            $vis fn with<R>(f: impl FnOnce(&$ty) -> R) -> R {
                let p: *const $ty;
                // SAFETY: the initial-exec sequence: the thread pointer
                // (`%fs:0` holds its own address on x86-64 Linux) plus the
                // block's offset from it, which the dynamic linker wrote in
                // the GOT. It reads memory only, and the same for the whole
                // life of a thread.
                unsafe {
                    ::core::arch::asm!(
                        "movq %fs:0, {p}",
                        ::core::concat!("addq ", $sym, "@gottpoff(%rip), {p}"),
                        p = out(reg) p,
                        options(att_syntax, nostack, pure, readonly),
                    )
                };
                // SAFETY: the block is this thread's, mapped for as long as
                // the thread runs, aligned (`.p2align 6`, checked), and valid
                // as zero bytes (`ZeroInit`); only this thread reaches it,
                // and only through shared references (the type's own `Cell`s
                // and atomics do the mutation).
                f(unsafe { &*p })
            }
        }
    };
}

/// [`static_thread_local!`] as a `thread_local!` (see the module docs).
#[cfg(not(all(
    feature = "static-tls",
    target_arch = "x86_64",
    target_os = "linux",
    not(miri)
)))]
#[doc(hidden)]
#[macro_export]
macro_rules! static_thread_local {
    ($(#[$meta:meta])* $vis:vis static $name:ident: $ty:ty = $sym:literal;) => {
        $crate::__static_thread_local_type!($(#[$meta])* $vis $name: $ty);

        impl $name {
            /// Runs `f` on the calling thread's value.
            #[inline(always)]
            $vis fn with<R>(f: impl FnOnce(&$ty) -> R) -> R {
                ::std::thread_local! {
                    // SAFETY: `ZeroInit` (checked): zero bytes are a valid
                    // value.
                    static VALUE: $ty = const { unsafe { ::core::mem::zeroed() } };
                }
                VALUE.with(f)
            }
        }
    };
}

/// The struct of [`static_thread_local!`] and its compile-time checks.
#[doc(hidden)]
#[macro_export]
macro_rules! __static_thread_local_type {
    ($(#[$meta:meta])* $vis:vis $name:ident: $ty:ty) => {
        $(#[$meta])*
        $vis struct $name;

        const _: () = {
            const fn zero_init<T: $crate::static_tls::ZeroInit>() {}
            zero_init::<$ty>();
            assert!(!::core::mem::needs_drop::<$ty>(), "never dropped");
            assert!(::core::mem::align_of::<$ty>() <= 64, "aligned to 64");
            assert!(::core::mem::size_of::<$ty>() > 0, "not zero-sized");
        };
    };
}
