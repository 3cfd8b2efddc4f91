//! The `kubernetes` provider (placeholder until implemented).
