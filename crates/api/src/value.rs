//! Secret material in memory: a byte buffer that never prints and is wiped when dropped.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Bytes fetched from a secret store or destined for a Secret. `Debug` and `Display` print a
/// placeholder, never the content; the buffer is zeroed on drop.
#[derive(Clone, Default, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    /// Wraps bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The bytes, for code that must use them (building a Secret, parsing JSON).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as UTF-8 text, when they are.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Takes the bytes out (the caller becomes responsible for them).
    pub fn into_bytes(mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretValue {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl From<&str> for SecretValue {
    fn from(v: &str) -> Self {
        Self(v.as_bytes().to_vec())
    }
}

impl From<String> for SecretValue {
    fn from(v: String) -> Self {
        Self(v.into_bytes())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(<redacted, {} bytes>)", self.0.len())
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_content() {
        let v = SecretValue::from("canary-4f1d2c");
        assert!(!format!("{v:?}").contains("canary"));
        assert!(!format!("{v}").contains("canary"));
        assert!(!format!("{:?}", vec![v.clone()]).contains("canary"));
        assert_eq!(v.expose(), b"canary-4f1d2c");
    }
}
