//! The kubernetes provider against the real apiserver (placeholder until implemented).
