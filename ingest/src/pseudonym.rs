//! Pseudonymisation of subjects: keyed HMAC-SHA256 digests.
//!
//! A subject (CCCD number, phone number, ticket id) is replaced on entry by
//! the first 16 bytes of `HMAC-SHA256(key, domain tag ‖ 0x00 ‖ normalised
//! subject)`. Without the key a digest cannot be reversed by enumerating the
//! (small) space of ID or phone numbers. The domain tag keeps the kinds
//! apart: a ticket id spelled like a phone number gets another digest.
//!
//! The tags are part of the stored state's format: changing one (or the key)
//! changes every digest, so every subject would count again.

use std::fmt;

use aggregator::Digest;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::{Digest as _, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;

/// SHA-256's block size: HMAC keys are padded (or first hashed) to this.
const BLOCK: usize = 64;

/// The pseudonymisation key. Never printed: `Debug` and `Display` show
/// `[redacted]`; its bytes are wiped from memory when it is dropped
/// (`secrecy`).
#[derive(Clone)]
pub struct SecretKey(SecretSlice<u8>);

/// Why a key was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Fewer than [`MIN_KEY_LEN`] bytes.
    #[error("secret key too short: {len} bytes, at least 16 needed")]
    TooShort {
        /// The length given.
        len: usize,
    },
}

impl SecretKey {
    /// Takes the raw key bytes (at least [`MIN_KEY_LEN`]; any length above
    /// works, as in HMAC: longer than 64 bytes is hashed first).
    pub fn from_bytes(b: Vec<u8>) -> Result<Self, KeyError> {
        if b.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort { len: b.len() });
        }
        Ok(SecretKey(SecretSlice::from(b)))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What kind of subject is digested; each kind has its own domain tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubjectKind {
    /// A 12-digit citizen ID (CCCD) number (`cccd.application`, `vneid.account`).
    CitizenId,
    /// A normalised Vietnamese mobile number (`sim.*`).
    Phone,
    /// A 1022 hotline ticket id (`hotline.ticket`).
    Ticket,
}

impl SubjectKind {
    /// Its slot in [`Pseudonymiser`]'s states.
    fn index(self) -> usize {
        match self {
            SubjectKind::CitizenId => 0,
            SubjectKind::Phone => 1,
            SubjectKind::Ticket => 2,
        }
    }

    /// The domain tag hashed before the subject (followed by one 0x00 byte).
    pub fn domain_tag(self) -> &'static str {
        match self {
            SubjectKind::CitizenId => "d06.subject.citizen_id",
            SubjectKind::Phone => "d06.subject.phone",
            SubjectKind::Ticket => "d06.subject.ticket",
        }
    }
}

/// Computes subject digests. Holds, per subject kind, the HMAC state
/// already keyed and fed the kind's domain tag and 0x00, cloned per call,
/// so a digest costs two SHA-256 compressions for short subjects and
/// nothing else.
#[derive(Clone)]
pub struct Pseudonymiser {
    /// Indexed by [`SubjectKind::index`].
    macs: [HmacSha256; 3],
}

impl fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonymiser { key: [redacted] }")
    }
}

impl Pseudonymiser {
    /// Keys the HMAC once.
    pub fn new(key: &SecretKey) -> Self {
        // RFC 2104: a key longer than the block is hashed, then every key is
        // zero-padded to the block size. Doing it here gives a fixed-size key,
        // so keying cannot fail.
        let mut block = [0u8; BLOCK];
        let key = key.0.expose_secret();
        if key.len() > BLOCK {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mac = <HmacSha256 as KeyInit>::new(&block.into());
        let tagged = |kind: SubjectKind| {
            let mut m = mac.clone();
            m.update(kind.domain_tag().as_bytes());
            m.update(&[0]);
            m
        };
        Pseudonymiser {
            macs: [tagged(SubjectKind::CitizenId), tagged(SubjectKind::Phone), tagged(SubjectKind::Ticket)],
        }
    }

    /// The digest of an already normalised subject: the first 16 bytes of
    /// `HMAC-SHA256(key, kind.domain_tag() ‖ 0x00 ‖ normalised)`.
    pub fn digest(&self, kind: SubjectKind, normalised: &str) -> Digest {
        self.digest_bytes(kind, normalised.as_bytes())
    }

    /// [`Pseudonymiser::digest`] over bytes.
    pub(crate) fn digest_bytes(&self, kind: SubjectKind, normalised: &[u8]) -> Digest {
        let mut mac = self.macs[kind.index()].clone();
        mac.update(normalised);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        Digest(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn hex(d: Digest) -> String {
        format!("{d:?}")
    }

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    // Known answers computed independently with Python:
    // hmac.new(key, tag + b"\x00" + msg, hashlib.sha256).hexdigest()[:32]
    #[test]
    fn known_answers() {
        let p = Pseudonymiser::new(&SecretKey::from_bytes(KEY.to_vec()).unwrap());
        assert_eq!(hex(p.digest(SubjectKind::Phone, "0912345678")), "dccd5d409110d2635f1401d8223e671e");
        assert_eq!(hex(p.digest(SubjectKind::CitizenId, "070203004567")), "cebc384ad4ab2c3b867a25257a8d0310");
        assert_eq!(hex(p.digest(SubjectKind::Ticket, "0912345678")), "f1722c17a7edc6527d003c8f05ae0abe");
    }

    #[test]
    fn known_answers_for_short_exact_and_long_keys() {
        let short = Pseudonymiser::new(&SecretKey::from_bytes(b"sixteen-byte-key".to_vec()).unwrap());
        assert_eq!(hex(short.digest(SubjectKind::CitizenId, "070203004567")), "451ba163db1bc58e71e1056f659d4637");
        let exact = Pseudonymiser::new(&SecretKey::from_bytes((0u8..64).collect()).unwrap());
        assert_eq!(hex(exact.digest(SubjectKind::Phone, "0912345678")), "01cbacad4e586179d2952c5b8ad11840");
        let long = Pseudonymiser::new(&SecretKey::from_bytes((0u8..100).collect()).unwrap());
        assert_eq!(hex(long.digest(SubjectKind::Ticket, "T-2024-0001")), "bba808467877b67f93dc1f764d7d78dc");
    }

    #[test]
    fn domains_are_separated_and_keys_matter() {
        let p = Pseudonymiser::new(&SecretKey::from_bytes(KEY.to_vec()).unwrap());
        let q = Pseudonymiser::new(&SecretKey::from_bytes(b"another key, 16+".to_vec()).unwrap());
        assert_ne!(p.digest(SubjectKind::Phone, "0912345678"), p.digest(SubjectKind::Ticket, "0912345678"));
        assert_ne!(p.digest(SubjectKind::Phone, "0912345678"), q.digest(SubjectKind::Phone, "0912345678"));
        // Cloning the keyed state per call does not leak one call into the next.
        assert_eq!(p.digest(SubjectKind::Phone, "0912345678"), p.digest(SubjectKind::Phone, "0912345678"));
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(SecretKey::from_bytes(vec![1; 15]).unwrap_err(), KeyError::TooShort { len: 15 });
        assert_eq!(SecretKey::from_bytes(Vec::new()).unwrap_err(), KeyError::TooShort { len: 0 });
        assert!(SecretKey::from_bytes(vec![1; 16]).is_ok());
    }

    #[test]
    fn key_is_never_printed() {
        let key = SecretKey::from_bytes(b"SUPERSECRETKEY-0123456789".to_vec()).unwrap();
        let p = Pseudonymiser::new(&key);
        for s in [format!("{key:?}"), format!("{key}"), format!("{key:#?}"), format!("{p:?}"), format!("{p:#?}")] {
            assert!(!s.contains("SUPERSECRET"), "{s}");
            assert!(!s.contains("83, 85, 80"), "{s}"); // the key's first bytes as a list
            assert!(s.contains("[redacted]"), "{s}");
        }
    }
}
