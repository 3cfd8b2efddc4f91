//! Configuration of the `vault` and `openBao` providers (placeholder until implemented).
