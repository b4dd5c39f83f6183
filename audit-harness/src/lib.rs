//! veil-audit: the audit harness (runs a test plan and emits a signed, verifiable evidence bundle).
//!
//! Not built yet: this crate only holds its place in the workspace's dependency order
//! (core ← host-sim ← audit-harness ← tests). Evidence chains can already be verified with
//! `veil_core::evidence::verify_bytes`.
