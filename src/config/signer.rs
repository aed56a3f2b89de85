//! The Solana signer's configuration: where the keypair comes from (a Solana CLI keypair file or
//! the key itself) and how its 64 bytes are decoded and checked. Nothing here prints key material.

use std::fmt;
use std::path::{Path, PathBuf};

use creditbrain_actors::secret::Secret;
use solana_sdk::signature::Keypair;

/// Where the signer's keypair comes from. `Debug` shows the file path (not secret) and never the
/// key: the private-key variant holds a [`Secret`].
#[derive(Clone, PartialEq, Eq)]
pub enum SignerSource {
    /// `SIGNER_KEYPAIR_PATH`: a Solana CLI keypair file, a JSON array of 64 bytes.
    KeypairPath(PathBuf),
    /// `SIGNER_PRIVATE_KEY`: base58 of the 64 keypair bytes, or a JSON array of 64 numbers.
    PrivateKey(Secret),
}

impl fmt::Debug for SignerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeypairPath(path) => f.debug_tuple("KeypairPath").field(path).finish(),
            Self::PrivateKey(_) => f.write_str("PrivateKey(***)"),
        }
    }
}

/// Why a signer could not be loaded. No variant carries key bytes or key text.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("cannot read keypair file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("keypair file {0} is not a JSON array of 64 numbers from 0 to 255 (Solana CLI format)")]
    FileNotJson(PathBuf),
    #[error("is neither base58 of 64 bytes nor a JSON array of 64 numbers from 0 to 255")]
    NotBase58OrJson,
    #[error(
        "holds {0} bytes; a Solana keypair has 64 (the 32-byte secret key, then the 32-byte public key)"
    )]
    WrongLength(usize),
    #[error("is not a valid ed25519 keypair: its public half does not match its secret half")]
    Mismatch,
}

impl SignerSource {
    /// Loads the keypair. The file is read again on every call, so the daemon can call this once
    /// at start-up and keep the [`Keypair`] rather than the config keeping key bytes around.
    pub fn keypair(&self) -> Result<Keypair, SignerError> {
        match self {
            Self::KeypairPath(path) => keypair_from_file(path),
            Self::PrivateKey(secret) => keypair_from_text(secret.expose()),
        }
    }
}

fn keypair_from_file(path: &Path) -> Result<Keypair, SignerError> {
    let text = std::fs::read_to_string(path).map_err(|source| SignerError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // serde_json's own messages can quote the offending number: keep them out of the error.
    let bytes: Vec<u8> = serde_json::from_str(text.trim())
        .map_err(|_| SignerError::FileNotJson(path.to_path_buf()))?;
    keypair_from_bytes(&bytes)
}

fn keypair_from_text(text: &str) -> Result<Keypair, SignerError> {
    let text = text.trim();
    let bytes: Vec<u8> = if text.starts_with('[') {
        serde_json::from_str(text).map_err(|_| SignerError::NotBase58OrJson)?
    } else {
        bs58::decode(text)
            .into_vec()
            .map_err(|_| SignerError::NotBase58OrJson)?
    };
    keypair_from_bytes(&bytes)
}

fn keypair_from_bytes(bytes: &[u8]) -> Result<Keypair, SignerError> {
    if bytes.len() != 64 {
        return Err(SignerError::WrongLength(bytes.len()));
    }
    // `try_from` checks that the stored public half is the one derived from the secret half.
    Keypair::try_from(bytes).map_err(|_| SignerError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use solana_sdk::signer::Signer;

    fn json(bytes: &[u8]) -> String {
        serde_json::to_string(bytes).unwrap()
    }

    #[test]
    fn private_key_as_base58_or_json() {
        let keypair = Keypair::new();
        let from_base58 = SignerSource::PrivateKey(Secret::new(keypair.to_base58_string()));
        assert_eq!(from_base58.keypair().unwrap().pubkey(), keypair.pubkey());
        let from_json = SignerSource::PrivateKey(Secret::new(json(&keypair.to_bytes())));
        assert_eq!(from_json.keypair().unwrap().pubkey(), keypair.pubkey());
    }

    #[test]
    fn keypair_file() {
        let dir = tempfile::tempdir().unwrap();
        let keypair = Keypair::new();
        let path = dir.path().join("id.json");
        std::fs::write(&path, json(&keypair.to_bytes())).unwrap();
        let source = SignerSource::KeypairPath(path.clone());
        assert_eq!(source.keypair().unwrap().pubkey(), keypair.pubkey());
        assert!(format!("{source:?}").contains("id.json"));

        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(source.keypair(), Err(SignerError::FileNotJson(_))));
        let missing = SignerSource::KeypairPath(dir.path().join("missing.json"));
        assert!(matches!(missing.keypair(), Err(SignerError::Read { .. })));
    }

    #[test]
    fn bad_keys_are_refused_without_showing_them() {
        let keypair = Keypair::new();
        let mut mismatched = keypair.to_bytes();
        mismatched[63] ^= 1;
        let other = Keypair::new();
        mismatched[32..].copy_from_slice(&other.pubkey().to_bytes());
        let cases = [
            (bs58::encode(mismatched).into_string(), "Mismatch"),
            (json(&mismatched), "Mismatch"),
            (
                bs58::encode(&keypair.to_bytes()[..32]).into_string(),
                "WrongLength",
            ),
            (json(&[1, 2, 3]), "WrongLength"),
            ("0OIl-not-base58".to_owned(), "NotBase58OrJson"),
            ("[1, 2, 300]".to_owned(), "NotBase58OrJson"),
        ];
        for (text, expected) in cases {
            let source = SignerSource::PrivateKey(Secret::new(text.clone()));
            let err = source.keypair().unwrap_err();
            assert!(format!("{err:?}").starts_with(expected), "{err:?}");
            assert!(!err.to_string().contains(&text), "{err}");
            assert_eq!(format!("{source:?}"), "PrivateKey(***)");
        }
    }
}
