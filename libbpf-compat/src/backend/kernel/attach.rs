//! Attaching kernel programs (in progress).
