//! The vault/openBao provider against the real OpenBao (placeholder until implemented).
