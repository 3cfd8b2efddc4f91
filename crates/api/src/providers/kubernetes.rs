//! Configuration of the `kubernetes` provider (placeholder until implemented).
