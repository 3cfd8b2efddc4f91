//! ESO-compatible hashes (placeholder until implemented).
