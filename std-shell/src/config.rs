//! Shell configuration (in progress).
