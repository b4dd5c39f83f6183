//! Shared fixtures for Veil's cross-crate integration tests and benches.

pub mod ort_retinaface;
