//! Whole-structure validity checks, for tests: run them on a quiescent pool.

use crate::bitmap;
use crate::pool::Pool;
use crate::subpage::{ident_class, BITMAP, IDENT};
use crate::sync::{Ordering, BITS};
use crate::tree::{self, SMALL};
use core::fmt;

/// A broken invariant, with where it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckError {
    /// Address of the chunk's first page.
    pub chunk_data: usize,
    /// Page index in the chunk.
    pub page: usize,
    /// The broken invariant.
    pub what: &'static str,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chunk at {:#x}, page {}: {}",
            self.chunk_data, self.page, self.what
        )
    }
}

impl Pool {
    /// Checks every invariant stated at the types (`tree`, `bitmap`,
    /// `subpage`): tree structure, subpage identities and run lengths, bitmap
    /// pads, every subpage with a free element in its partial set (stale bits
    /// naming retired subpages are allowed: finders drop them). Meant for
    /// a quiescent pool; under concurrent use it may report transient states.
    pub fn check(&self) -> Result<(), CheckError> {
        let cfg = self.config();
        for chunk in self.chunks() {
            let err = |page, what| CheckError {
                chunk_data: chunk.data,
                page,
                what,
            };
            tree::check(chunk.tree(), chunk.pages)
                .map_err(|p| err(p, "continuation page without a run"))?;
            let mut bad = None;
            tree::walk(chunk.tree(), chunk.pages, |start, n, kind| {
                if kind != SMALL || bad.is_some() {
                    return;
                }
                let header = chunk.header(start);
                // ORDERING: Acquire; quiescent pool.
                let Some(class) = ident_class(header[IDENT].load(Ordering::Acquire)) else {
                    bad = Some(err(start, "subpage run without a live header"));
                    return;
                };
                let (pages, elems) = cfg.subpage_run(class);
                if pages != n {
                    bad = Some(err(start, "subpage run length differs from its class"));
                }
                let k = start / BITS;
                // ORDERING: Relaxed; quiescent pool.
                let listed =
                    chunk.partial(class)[k].load(Ordering::Relaxed) & (1 << (start % BITS)) != 0;
                if !listed && !bitmap::is_full(&header[BITMAP..], elems) {
                    bad = Some(err(
                        start,
                        "subpage with free elements missing from its partial set",
                    ));
                }
                for (k, w) in header[BITMAP..BITMAP + bitmap::used_words(elems)]
                    .iter()
                    .enumerate()
                {
                    // ORDERING: Relaxed; quiescent pool.
                    let pad = bitmap::pad(elems, k);
                    if w.load(Ordering::Relaxed) & pad != pad {
                        bad = Some(err(start, "bitmap pad bits cleared"));
                    }
                }
            });
            if let Some(e) = bad {
                return Err(e);
            }
        }
        Ok(())
    }
}
