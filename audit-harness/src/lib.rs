//! veil-audit: verification of Veil evidence chains for auditors.
