//! The key vault: encryption at rest (AES-256-GCM) of holders' plaintext OpenRouter keys until
//! they are revealed, and the key file that holds the vault key when `KEY_ENCRYPTION_KEY` is unset.
//!
//! OpenRouter shows a key's plaintext exactly once, when it is created; the daemon must keep it
//! until the holder reveals it (DESIGN §5). It is stored only sealed by this vault, bound to its
//! row by the associated data (the key hash), so a ciphertext copied into another row does not
//! decrypt there.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::secret::Secret;

/// The key file's name, in the database's directory (see [`key_file_path_for`]).
pub const KEY_FILE_NAME: &str = "creditbrain.keyvault";

/// Prepended to every associated data: ties a ciphertext to this use and format version, so
/// nothing sealed elsewhere with the same key (or by a later format) opens as a vault entry.
const AAD_DOMAIN: &[u8] = b"creditbrain/keyvault/v1\0";

/// A key file holds 32 bytes as 64 hex characters, optionally followed by one newline.
const KEY_HEX_LEN: usize = 64;

/// Errors of the vault. None of them carries key material, a plaintext or file contents.
#[derive(thiserror::Error, Debug)]
pub enum KeyVaultError {
    /// Reading, creating or syncing the key file (or its directory) failed.
    #[error("key file {}: {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// The key file is readable or writable by group or others.
    #[error(
        "key file {} has mode {mode:04o}, readable by group or others; it holds the key that \
         decrypts holders' API keys: run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
    /// The key file exists but is not what this daemon writes.
    #[error(
        "key file {} is malformed: {problem} (expected 64 hex characters and an optional \
         newline; contents not shown)",
        path.display()
    )]
    Malformed {
        path: PathBuf,
        problem: &'static str,
    },
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Sealing failed (only possible for absurdly long plaintexts).
    #[error("encryption failed")]
    Encrypt,
    /// The ciphertext, nonce or associated row does not match this vault's key: tampered, moved
    /// to another row, or sealed under a different key (e.g. `KEY_ENCRYPTION_KEY` changed, or
    /// the key file was replaced).
    #[error(
        "decryption failed: the ciphertext was altered, belongs to another row, or was sealed \
         with a different vault key"
    )]
    Decrypt,
    /// The ciphertext authenticated but its plaintext is not text (never written by this vault).
    #[error("decrypted value is not UTF-8 text")]
    NotText,
}

/// A sealed plaintext: the ciphertext (with the 16-byte GCM tag appended) and its random
/// 96-bit nonce, as stored in `user_keys.encrypted_key` / `user_keys.key_nonce`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub ciphertext: Vec<u8>,
    pub nonce: [u8; NONCE_LEN],
}

impl Sealed {
    /// The `(ciphertext, nonce)` pair the store takes and returns.
    pub fn into_parts(self) -> (Vec<u8>, [u8; NONCE_LEN]) {
        (self.ciphertext, self.nonce)
    }
}

impl From<(Vec<u8>, [u8; NONCE_LEN])> for Sealed {
    fn from((ciphertext, nonce): (Vec<u8>, [u8; NONCE_LEN])) -> Self {
        Self { ciphertext, nonce }
    }
}

// Not secret, but bytes in logs help nobody; the length is enough to debug with.
impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// Seals and opens holders' plaintext keys with one AES-256-GCM key.
///
/// Nonces are 96 random bits per seal. That is safe for far more seals than this daemon will
/// ever make under one key (the usual bound is 2^32 random nonces per key).
#[derive(Clone)]
pub struct KeyVault {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyVault(***)")
    }
}

impl KeyVault {
    /// A vault over a 32-byte key (`KEY_ENCRYPTION_KEY`, or a key file's contents).
    pub fn from_key_bytes(key: [u8; 32]) -> KeyVault {
        let unbound =
            UnboundKey::new(&AES_256_GCM, &key).expect("AES-256-GCM takes exactly a 32-byte key");
        KeyVault {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        }
    }

    /// The daemon's vault: over `configured` (`KEY_ENCRYPTION_KEY`) when it is set, else over
    /// the key file beside the database ([`key_file_path_for`]), created on first use.
    pub fn from_config(
        configured: Option<[u8; 32]>,
        database_path: &Path,
    ) -> Result<KeyVault, KeyVaultError> {
        match configured {
            Some(key) => Ok(KeyVault::from_key_bytes(key)),
            None => KeyVault::open_or_create_key_file(&key_file_path_for(database_path)),
        }
    }

    /// Opens the key file at `path`, or creates it with a fresh random key if it does not exist.
    ///
    /// An existing file must hold exactly 64 hex characters (and at most one trailing newline),
    /// must not be all zeros, and must not be accessible by group or others (mode 0600 or
    /// stricter); otherwise this refuses rather than guess, since a wrong key makes every stored
    /// ciphertext undecryptable and a readable one exposes them all.
    ///
    /// A new file is written completely under a temporary name created with mode 0600 (never
    /// wider), synced, then hard-linked into place, which fails if the name exists: the file
    /// appears whole or not at all, and of two concurrent creators the loser reads the winner's
    /// key, so both vaults use the same key.
    pub fn open_or_create_key_file(path: &Path) -> Result<KeyVault, KeyVaultError> {
        match read_key_file(path) {
            Ok(key) => return Ok(KeyVault::from_key_bytes(key)),
            Err(KeyVaultError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        create_key_file(path)?;
        // Read back whatever is in place now: ours, or a concurrent creator's that won.
        read_key_file(path).map(KeyVault::from_key_bytes)
    }

    /// Seals `plaintext`, bound to `associated` (the row it will be stored in, e.g. the key
    /// hash): [`KeyVault::decrypt`] succeeds only with the same `associated`.
    pub fn encrypt(&self, plaintext: &Secret, associated: &str) -> Result<Sealed, KeyVaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| KeyVaultError::Random)?;
        let mut in_out = plaintext.expose().as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(associated)),
                &mut in_out,
            )
            .map_err(|_| KeyVaultError::Encrypt)?;
        Ok(Sealed {
            ciphertext: in_out,
            nonce,
        })
    }

    /// Opens what [`KeyVault::encrypt`] sealed with the same `associated`.
    pub fn decrypt(&self, sealed: &Sealed, associated: &str) -> Result<Secret, KeyVaultError> {
        let mut in_out = sealed.ciphertext.clone();
        let plaintext = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(sealed.nonce),
                Aad::from(aad(associated)),
                &mut in_out,
            )
            .map_err(|_| KeyVaultError::Decrypt)?;
        let len = plaintext.len();
        in_out.truncate(len);
        String::from_utf8(in_out)
            .map(Secret::new)
            .map_err(|_| KeyVaultError::NotText)
    }
}

/// Where the key file lives when `KEY_ENCRYPTION_KEY` is unset: [`KEY_FILE_NAME`] in the
/// database file's directory, so backing up or moving that directory keeps the two together.
pub fn key_file_path_for(database_path: &Path) -> PathBuf {
    match database_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(KEY_FILE_NAME),
        _ => PathBuf::from(KEY_FILE_NAME),
    }
}

fn aad(associated: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + associated.len());
    aad.extend_from_slice(AAD_DOMAIN);
    aad.extend_from_slice(associated.as_bytes());
    aad
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> KeyVaultError {
    move |source| KeyVaultError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Reads and validates an existing key file.
fn read_key_file(path: &Path) -> Result<[u8; 32], KeyVaultError> {
    let not_a_file = || KeyVaultError::Malformed {
        path: path.to_path_buf(),
        problem: "not a regular file",
    };
    // Checked before opening too: opening a FIFO for reading would block startup forever.
    if !std::fs::metadata(path)
        .map_err(io_error(path, "cannot stat"))?
        .is_file()
    {
        return Err(not_a_file());
    }
    let file = File::open(path).map_err(io_error(path, "cannot open"))?;
    // Permissions of the file we opened (fstat), not of whatever the name points to later.
    let metadata = file.metadata().map_err(io_error(path, "cannot stat"))?;
    if !metadata.is_file() {
        return Err(not_a_file());
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyVaultError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    // One byte more than the longest valid content, so an oversized file is noticed.
    let mut contents = Vec::with_capacity(KEY_HEX_LEN + 2);
    file.take(KEY_HEX_LEN as u64 + 2)
        .read_to_end(&mut contents)
        .map_err(io_error(path, "cannot read"))?;
    let malformed = |problem| KeyVaultError::Malformed {
        path: path.to_path_buf(),
        problem,
    };
    let hex = match contents.strip_suffix(b"\n") {
        Some(hex) => hex,
        None => &contents[..],
    };
    if hex.len() != KEY_HEX_LEN {
        return Err(malformed("wrong length"));
    }
    let key = decode_hex32(hex).ok_or_else(|| malformed("not hexadecimal"))?;
    if key == [0; 32] {
        return Err(malformed("the key is all zeros"));
    }
    Ok(key)
}

/// Writes a fresh key to `path` unless a file is already there (then leaves it alone).
fn create_key_file(path: &Path) -> Result<(), KeyVaultError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io_error(&dir, "cannot create directory"))?;

    let rng = SystemRandom::new();
    let mut key = [0u8; 32];
    // All zeros is refused on read (as in KEY_ENCRYPTION_KEY); a real RNG never yields it.
    while key == [0; 32] {
        rng.fill(&mut key).map_err(|_| KeyVaultError::Random)?;
    }
    let mut suffix = [0u8; 8];
    rng.fill(&mut suffix).map_err(|_| KeyVaultError::Random)?;
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| KEY_FILE_NAME.to_string());
    let temp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        encode_hex(&suffix)
    ));

    let result = write_new_key_file(&temp, &key).and_then(|()| {
        match std::fs::hard_link(&temp, path) {
            Ok(()) => {}
            // Someone else created it first: theirs is the key; ours is discarded unused.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(error) => return Err(io_error(path, "cannot link into place")(error)),
        }
        // Make the new directory entry durable too, so a crash cannot lose the key after
        // ciphertexts sealed with it were committed.
        File::open(&dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error(&dir, "cannot sync directory"))
    });
    // The temporary name goes in every case; the linked name (if any) keeps the contents.
    let _ = std::fs::remove_file(&temp);
    result
}

/// Creates `path` (which must not exist) with mode 0600 from the first instant, writes the key
/// as hex and a newline, and syncs it.
fn write_new_key_file(path: &Path, key: &[u8; 32]) -> Result<(), KeyVaultError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path, "cannot create"))?;
    let mut contents = encode_hex(key);
    contents.push('\n');
    file.write_all(contents.as_bytes())
        .map_err(io_error(path, "cannot write"))?;
    file.sync_all().map_err(io_error(path, "cannot sync"))
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// 64 hex digits (either case) → 32 bytes.
fn decode_hex32(hex: &[u8]) -> Option<[u8; 32]> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            b'A'..=b'F' => Some(digit - b'A' + 10),
            _ => None,
        }
    }
    if hex.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;

    const PLAINTEXT: &str = "sk-or-v1-0123456789abcdefSECRETMARKER";

    fn vault(byte: u8) -> KeyVault {
        KeyVault::from_key_bytes([byte; 32])
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn sealed_keys_open_with_the_same_row() {
        let vault = vault(7);
        let secret = Secret::new(PLAINTEXT);
        let sealed = vault.encrypt(&secret, "hash-1").unwrap();
        assert_eq!(sealed.ciphertext.len(), PLAINTEXT.len() + 16);
        assert!(
            !sealed
                .ciphertext
                .windows(12)
                .any(|w| w == &PLAINTEXT.as_bytes()[..12]),
            "the plaintext shows through the ciphertext"
        );
        assert_eq!(vault.decrypt(&sealed, "hash-1").unwrap(), secret);
        // Through the store's tuple form and back.
        let back = Sealed::from(sealed.clone().into_parts());
        assert_eq!(vault.decrypt(&back, "hash-1").unwrap(), secret);
        // Fresh nonce per seal: the same plaintext never gives the same ciphertext.
        let again = vault.encrypt(&secret, "hash-1").unwrap();
        assert_ne!(again.nonce, sealed.nonce);
        assert_ne!(again.ciphertext, sealed.ciphertext);
        // The empty string round-trips too.
        let empty = vault.encrypt(&Secret::new(""), "hash-1").unwrap();
        assert_eq!(vault.decrypt(&empty, "hash-1").unwrap().expose(), "");
    }

    #[test]
    fn tampering_is_refused() {
        let vault = vault(7);
        let sealed = vault.encrypt(&Secret::new(PLAINTEXT), "hash-1").unwrap();
        for i in 0..sealed.ciphertext.len() {
            let mut bad = sealed.clone();
            bad.ciphertext[i] ^= 0x01;
            assert!(matches!(
                vault.decrypt(&bad, "hash-1"),
                Err(KeyVaultError::Decrypt)
            ));
        }
        let mut bad = sealed.clone();
        bad.ciphertext.pop();
        assert!(matches!(
            vault.decrypt(&bad, "hash-1"),
            Err(KeyVaultError::Decrypt)
        ));
        let mut bad = sealed.clone();
        bad.ciphertext.truncate(3); // shorter than the tag
        assert!(matches!(
            vault.decrypt(&bad, "hash-1"),
            Err(KeyVaultError::Decrypt)
        ));
        let mut bad = sealed.clone();
        bad.nonce[11] ^= 0x80;
        assert!(matches!(
            vault.decrypt(&bad, "hash-1"),
            Err(KeyVaultError::Decrypt)
        ));
        // Moved to another row.
        for other in ["hash-2", "hash-", "hash-1 ", ""] {
            assert!(matches!(
                vault.decrypt(&sealed, other),
                Err(KeyVaultError::Decrypt)
            ));
        }
        assert!(vault.decrypt(&sealed, "hash-1").is_ok());
    }

    #[test]
    fn another_vault_cannot_open() {
        let sealed = vault(7).encrypt(&Secret::new(PLAINTEXT), "h").unwrap();
        let error = vault(8).decrypt(&sealed, "h").unwrap_err();
        assert!(matches!(error, KeyVaultError::Decrypt));
        assert!(!error.to_string().contains("SECRETMARKER"));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let vault = vault(0xab);
        let shown = format!("{vault:?} {:?}", Some(&vault));
        assert_eq!(format!("{vault:?}"), "KeyVault(***)");
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        assert!(!shown.contains("171"), "{shown}"); // 0xab in decimal
        let sealed = vault.encrypt(&Secret::new(PLAINTEXT), "h").unwrap();
        assert_eq!(
            format!("{sealed:?}"),
            format!("Sealed {{ ciphertext_len: {}, .. }}", PLAINTEXT.len() + 16)
        );
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file_path_for(&dir.path().join("data").join("creditbrain.db"));
        assert_eq!(path, dir.path().join("data").join(KEY_FILE_NAME));

        let first = KeyVault::open_or_create_key_file(&path).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let contents = std::fs::read_to_string(&path).unwrap();
        assert_eq!(contents.len(), 65);
        assert!(contents.ends_with('\n'));
        assert!(decode_hex32(contents.trim_end().as_bytes()).is_some());
        // Only the key file is left in the directory (no temporary names).
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(KEY_FILE_NAME)]);

        let sealed = first.encrypt(&Secret::new(PLAINTEXT), "h").unwrap();
        let second = KeyVault::open_or_create_key_file(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), contents);
        assert_eq!(second.decrypt(&sealed, "h").unwrap().expose(), PLAINTEXT);

        // The same key as KEY_ENCRYPTION_KEY opens it too (the operator may move it to env).
        let bytes = decode_hex32(contents.trim_end().as_bytes()).unwrap();
        let from_env = KeyVault::from_config(Some(bytes), Path::new("/elsewhere/x.db")).unwrap();
        assert_eq!(from_env.decrypt(&sealed, "h").unwrap().expose(), PLAINTEXT);
        let from_file =
            KeyVault::from_config(None, &dir.path().join("data").join("creditbrain.db")).unwrap();
        assert_eq!(from_file.decrypt(&sealed, "h").unwrap().expose(), PLAINTEXT);
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        KeyVault::open_or_create_key_file(&path).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let error = KeyVault::open_or_create_key_file(&path).unwrap_err();
            assert!(
                matches!(error, KeyVaultError::InsecurePermissions { .. }),
                "{error}"
            );
            let message = error.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains("chmod 600"), "{message}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        KeyVault::open_or_create_key_file(&path).unwrap();
    }

    #[test]
    fn a_malformed_key_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        let good = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let cases = [
            String::new(),
            "\n".to_string(),
            good[..63].to_string(),
            format!("{good}0"),
            format!("{good}\n\n"),
            format!("{good} "),
            format!(" {good}"),
            format!("{}g", &good[..63]),
            "0".repeat(64),
            format!("{good}\r\n"),
        ];
        for contents in &cases {
            std::fs::write(&path, contents).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let error = KeyVault::open_or_create_key_file(&path).unwrap_err();
            assert!(
                matches!(error, KeyVaultError::Malformed { .. }),
                "{contents:?}: {error}"
            );
            assert!(!error.to_string().contains("0011223344"), "{error}");
            assert_eq!(&std::fs::read_to_string(&path).unwrap(), contents);
        }
        for contents in [good.to_string(), format!("{good}\n")] {
            std::fs::write(&path, &contents).unwrap();
            KeyVault::open_or_create_key_file(&path).unwrap();
        }
        // A directory in its place is not a key file.
        let dir_path = dir.path().join("as-dir");
        std::fs::create_dir(&dir_path).unwrap();
        std::fs::set_permissions(&dir_path, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(
            KeyVault::open_or_create_key_file(&dir_path),
            Err(KeyVaultError::Malformed { .. })
        ));
    }

    #[test]
    fn concurrent_creators_share_one_key() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = Arc::new(dir.path().join("nested").join(KEY_FILE_NAME));
            let barrier = Arc::new(Barrier::new(4));
            let vaults: Vec<KeyVault> = (0..4)
                .map(|_| {
                    let (path, barrier) = (Arc::clone(&path), Arc::clone(&barrier));
                    std::thread::spawn(move || {
                        barrier.wait();
                        KeyVault::open_or_create_key_file(&path).unwrap()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|handle| handle.join().unwrap())
                .collect();
            for (i, sealer) in vaults.iter().enumerate() {
                let sealed = sealer.encrypt(&Secret::new(PLAINTEXT), "h").unwrap();
                for opener in &vaults {
                    assert_eq!(
                        opener.decrypt(&sealed, "h").unwrap().expose(),
                        PLAINTEXT,
                        "vault {i}"
                    );
                }
            }
            assert_eq!(mode_of(&path), 0o600);
            assert_eq!(
                std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
                1
            );
        }
    }

    #[test]
    fn hex_round_trips() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(decode_hex32(encode_hex(&bytes).as_bytes()), Some(bytes));
        assert_eq!(encode_hex(&[0x0f, 0xa0]), "0fa0");
    }
}
