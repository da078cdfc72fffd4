//! Shared bench workloads.
