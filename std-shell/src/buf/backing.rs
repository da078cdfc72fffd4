//! Where buffers' blocks come from: the one place in `buf` that names the
//! allocator.
//!
//! A [`Backing`] is what every buffer carries to allocate and free blocks: a
//! `&'static PooledAllocator` (one word, `Copy`), so that creating or
//! dropping a buffer touches no shared reference count. [`Source`] is what a
//! [`BufPool`](super::BufPool) holds: the allocator it was given, moved to
//! the heap and leaked so that the `'static` reference is sound.
//!
//! # Why leaking is right here
//!
//! A buffer may outlive every `BufPool` handle (a frozen `Bytes` kept in a
//! cache), and then it still has to reach its allocator to free its block.
//! Counting the handles in every buffer would put an atomic increment and
//! decrement on every buffer's life, all on one cache line shared by every
//! thread. The allocator's state is never unmapped anyway (see
//! `allocator.rs`, *Lifetime*: other threads' caches may point at it), so
//! the only thing leaked is the `PooledAllocator` handle itself, a hundred
//! bytes per pool. What dropping an allocator does (returning empty chunks
//! to the OS) is done when the last `BufPool` handle drops.
//!
//! # Under Miri
//!
//! The allocator maps its memory with `mmap`, which Miri does not run. With
//! `cfg(miri)` a `Backing` is the global heap instead, with the blocks'
//! sizes rounded to the core's size classes as the pool rounds them, and no
//! leak tracker: the buffer logic (sharing, growth, splitting, freezing) is
//! the same code, checked by Miri through `buf`'s unit tests
//! (`ci/miri.sh`).

use crate::error::AllocError;
use crate::leak::Tracker;
use crate::PooledAllocator;
use core::alloc::Layout;
use core::panic::Location;
use core::ptr::NonNull;

/// Alignment of every buffer's block.
const ALIGN: usize = 16;

/// The layout of a block of `size` bytes, or why there is none.
fn layout(size: usize) -> Result<Layout, AllocError> {
    Layout::from_size_align(size, ALIGN).map_err(|_| AllocError::Unsupported { size, align: ALIGN })
}

/// What a pool holds: its allocator (see the module docs).
pub(crate) struct Source {
    #[cfg(not(miri))]
    alloc: &'static PooledAllocator,
    #[cfg(miri)]
    alloc: Box<PooledAllocator>,
}

impl Source {
    pub(crate) fn new(allocator: PooledAllocator) -> Source {
        Source {
            #[cfg(not(miri))]
            alloc: Box::leak(Box::new(allocator)),
            #[cfg(miri)]
            alloc: Box::new(allocator),
        }
    }

    pub(crate) fn allocator(&self) -> &PooledAllocator {
        #[cfg(not(miri))]
        {
            self.alloc
        }
        #[cfg(miri)]
        {
            &self.alloc
        }
    }

    pub(crate) fn backing(&self) -> Backing {
        Backing {
            #[cfg(not(miri))]
            alloc: self.alloc,
        }
    }
}

#[cfg(not(miri))]
impl Drop for Source {
    fn drop(&mut self) {
        // What dropping the allocator would do; its live blocks stay valid.
        self.alloc.trim();
    }
}

/// A buffer's way to its allocator; see the module docs.
#[derive(Clone, Copy)]
pub(crate) struct Backing {
    #[cfg(not(miri))]
    alloc: &'static PooledAllocator,
}

impl Backing {
    /// A block of at least `size` (> 0) bytes, attributed to `at` by the
    /// leak tracker; the slice is the whole usable block.
    #[inline]
    pub(crate) fn allocate(
        self,
        size: usize,
        at: &'static Location<'static>,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let layout = layout(size)?;
        #[cfg(not(miri))]
        {
            self.alloc
                .allocate_for(layout, crate::leak::Origin::Caller(at))
        }
        #[cfg(miri)]
        {
            let _ = at;
            let class = poolalloc_core::size_class::class_for(size, ALIGN);
            let usable = poolalloc_core::size_class::SIZES
                .get(class)
                .copied()
                .unwrap_or(size);
            let layout = self::layout(usable)?;
            // SAFETY: `layout` has a non-zero size.
            let p = NonNull::new(unsafe { std::alloc::alloc(layout) })
                .ok_or(AllocError::OutOfMemory { size })?;
            Ok(NonNull::slice_from_raw_parts(p, usable))
        }
    }

    /// Frees a block.
    ///
    /// # Safety
    /// `base` and `size` are a block from [`Backing::allocate`] (its start
    /// and its whole usable size) of this backing, live and not used again.
    #[inline]
    pub(crate) unsafe fn release(self, base: NonNull<u8>, size: usize) {
        let layout = layout(size).expect("a block's layout was valid when allocated");
        #[cfg(not(miri))]
        {
            // SAFETY: the caller's contract; the usable size rounds to the
            // block's own class (or pages, for a huge block), so the layout
            // matches it.
            unsafe { self.alloc.deallocate(base, layout) }
        }
        #[cfg(miri)]
        {
            // SAFETY: the caller's contract; allocated with this layout.
            unsafe { std::alloc::dealloc(base.as_ptr(), layout) }
        }
    }

    /// The allocator's leak tracker (none under Miri).
    #[inline]
    pub(crate) fn tracker(self) -> Option<&'static Tracker> {
        #[cfg(not(miri))]
        {
            Some(&self.alloc.inner().leak)
        }
        #[cfg(miri)]
        {
            None
        }
    }
}
