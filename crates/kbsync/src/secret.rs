//! The secret key that encrypts stored refresh tokens: from the configuration, or generated once
//! and kept in the data directory, readable by its owner only.

use std::{fs, io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use anyhow::Context;
use base64::Engine;
use kbsync_core::{OsRandom, Random};

use crate::config::{MIN_SECRET_KEY_CHARS, Settings};

const FILE_NAME: &str = "secret_key";

pub fn load_or_generate(settings: &Settings) -> anyhow::Result<String> {
    if let Some(key) = &settings.secret_key {
        return Ok(key.clone());
    }
    let path = settings.data_dir.join(FILE_NAME);
    load_or_generate_at(&path)
}

/// The secret key, from the configuration or the data directory; never generates one (an
/// operator command must not invent a key the stored secrets were not written under).
pub fn load(settings: &Settings) -> anyhow::Result<String> {
    if let Some(key) = &settings.secret_key {
        return Ok(key.clone());
    }
    let path = settings.data_dir.join(FILE_NAME);
    if !path.exists() {
        anyhow::bail!("KBSYNC_SECRET_KEY is not set and the data directory has no {FILE_NAME} file",);
    }
    load_or_generate_at(&path)
}

fn load_or_generate_at(path: &Path) -> anyhow::Result<String> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let key = text.trim().to_owned();
            if key.chars().count() < MIN_SECRET_KEY_CHARS {
                anyhow::bail!(
                    "{}: the stored secret key is too short; remove the file or set KBSYNC_SECRET_KEY",
                    path.display()
                );
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            OsRandom.fill(&mut bytes);
            let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            file.write_all(key.as_bytes())?;
            file.sync_all()?;
            tracing::warn!(
                path = %path.display(),
                "KBSYNC_SECRET_KEY is not set: generated a secret key and stored it in the data directory; \
                 back it up, or stored tokens cannot be decrypted"
            );
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_key_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let first = load_or_generate_at(&path).unwrap();
        assert!(first.len() >= MIN_SECRET_KEY_CHARS);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_generate_at(&path).unwrap(), first);
    }
}
