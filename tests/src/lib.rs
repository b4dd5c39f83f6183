//! Shared fixtures for Veil's cross-crate integration tests.
