//! The `vault` and `openBao` providers (placeholder until implemented).
