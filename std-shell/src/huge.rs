//! Huge allocations (in progress).
