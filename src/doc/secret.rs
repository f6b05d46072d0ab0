//! Secrets: symmetric keys and certificate thumbprints.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A symmetric key or certificate thumbprint.
///
/// `Debug` and `Display` show only a fingerprint (`sha256:` and the first 8
/// hex digits of the SHA-256 of the value), so a secret cannot leak into a
/// log, a report, a conflict record or an error by accident. Conflict
/// records and reports carry [`Secret::fingerprint`] too. Only `Serialize`
/// writes the clear value: it is used by the export writer, import plans and
/// replica state files, which must carry keys to be useful.
///
/// # Example
///
/// ```
/// use failback::doc::Secret;
///
/// let key = Secret::new("c2VjcmV0LWtleQ==");
/// assert_eq!(format!("{key}"), key.fingerprint());
/// assert!(!format!("{key:?}").contains("c2VjcmV0"));
/// assert_eq!(key.expose(), "c2VjcmV0LWtleQ==");
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Secret(Box<str>);

impl Secret {
    /// Wraps a clear value.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::Secret;
    ///
    /// let key = Secret::new("cHJpbWFyeS1rZXktMDEyMzQ1Njc4OWFi");
    /// assert_eq!(format!("{key:?}"), key.fingerprint()); // never the key itself
    /// ```
    pub fn new(clear: &str) -> Self {
        Self(clear.into())
    }

    /// A symmetric key of these bytes, base64-encoded as the hub writes
    /// keys (the hub takes 16 to 64 bytes).
    ///
    /// ```
    /// use failback::doc::Secret;
    ///
    /// assert_eq!(Secret::from_key_bytes(b"Man").expose(), "TWFu");
    /// ```
    pub fn from_key_bytes(bytes: &[u8]) -> Self {
        Self(base64(bytes).into())
    }

    /// The clear value: for writers of exports, plans and state files only.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::Secret;
    ///
    /// let key = Secret::new("cHJpbWFyeS1rZXktMDEyMzQ1Njc4OWFi");
    /// let line = serde_json::to_string(&key)?; // what an export carries
    /// assert_eq!(line, format!("\"{}\"", key.expose()));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `sha256:` followed by the first 8 hex digits of the value's SHA-256.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::Secret;
    ///
    /// // SHA-256("abc") starts ba7816bf.
    /// assert_eq!(Secret::new("abc").fingerprint(), "sha256:ba7816bf");
    /// ```
    pub fn fingerprint(&self) -> String {
        fingerprint(self.0.as_bytes())
    }
}

/// `sha256:` followed by the first 8 hex digits of the SHA-256 of `bytes`.
pub(crate) fn fingerprint(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = Sha256::digest(bytes);
    let mut out = String::from("sha256:");
    for byte in &digest[..4] {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648, `+` and `/`).
pub(crate) fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let clear = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(Self::new(&clear))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn fingerprint_is_a_sha256_prefix() {
        // SHA-256("abc") = ba7816bf...
        assert_eq!(Secret::new("abc").fingerprint(), "sha256:ba7816bf");
        assert_eq!(format!("{:?}", Secret::new("abc")), "sha256:ba7816bf");
        // Shown, it is its fingerprint too, never the key.
        assert_eq!(Secret::new("abc").to_string(), "sha256:ba7816bf");
    }
}
