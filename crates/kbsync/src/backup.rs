//! `kbsync backup` and `kbsync restore`: a consistent copy of a SQLite deployment, taken while a
//! server may be running, and putting it back into an empty data directory.
//!
//! A backup is a directory: `kbsync.sqlite` (the database, written by SQLite's `VACUUM INTO`, so
//! it is the database as of one moment), `blobs/` (the stored files, in the blob store's layout)
//! and, when the data directory has one, `secret_key` (the generated key that encrypts stored
//! tokens).
//!
//! Blobs are content-addressed and never change, so copying one is copying it for good. They
//! are copied in two passes around the database: the bulk before it, then, after the database,
//! what was added meanwhile. A blob the copied database references was in place when its
//! document committed, so the first or the second pass finds it, unless the collector removed it
//! in between; the collector removes a blob only once no document has taken it for the grace
//! period (`KBSYNC_BLOB_GRACE_MINUTES`), so that cannot happen to a backup that takes less than
//! the grace period. Backing up again into the same directory copies only the blobs it does not
//! hold yet and replaces the database last.
//!
//! PostgreSQL deployments are backed up with `pg_dump` plus a copy of the blob directory.

use std::{
    fs,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::Context;
use kbsync_store::SqliteStore;

use crate::config::Settings;

/// The database's file name in a backup.
pub const DATABASE_FILE: &str = "kbsync.sqlite";
/// The blob directory's name in a backup and in the data directory.
pub const BLOBS_DIR: &str = "blobs";
/// The generated secret key's file name in a backup and in the data directory.
pub const SECRET_KEY_FILE: &str = "secret_key";

/// What a backup or a restore copied.
#[derive(Debug, Default)]
pub struct Copied {
    /// Blob files copied (a backup into an earlier backup copies only the new ones).
    pub blobs: u64,
    /// Blob files that were there already.
    pub blobs_present: u64,
    pub secret_key: bool,
}

/// Writes a backup of the data directory's database and blobs into the directory `target`
/// (created when missing; an earlier backup there is brought up to date).
pub async fn backup(settings: &Settings, target: &Path) -> anyhow::Result<Copied> {
    let Some(database) = sqlite_file(&settings.database_url) else {
        anyhow::bail!(
            "kbsync backup copies SQLite deployments only; for PostgreSQL, back up the database with \
             pg_dump and copy the blob directory {} (the database first, then the blobs)",
            settings.data_dir.join(BLOBS_DIR).display()
        );
    };
    if !database.is_file() {
        anyhow::bail!("there is no database at {}", database.display());
    }
    fs::create_dir_all(target).with_context(|| format!("cannot create {}", target.display()))?;
    check_backup_target(target, &settings.data_dir, &database)?;
    let blobs = settings.data_dir.join(BLOBS_DIR);
    let mut copied = Copied::default();
    copy_blobs(&blobs, &target.join(BLOBS_DIR), &mut copied)?;
    // The database under a temporary name: an interrupted backup leaves the previous database
    // (if any) with its blobs.
    let partial = target.join(format!("{DATABASE_FILE}.partial"));
    remove_if_present(&partial)?;
    let url = format!("sqlite://{}", database.display());
    let store = SqliteStore::connect(&url)
        .await
        .context("cannot open the database")?;
    store
        .vacuum_into(&partial)
        .await
        .context("cannot copy the database")?;
    drop(store);
    fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .context("cannot sync the database copy")?;

    // What was added while the database was copied; the blobs the first pass copied count once.
    let mut second = Copied::default();
    copy_blobs(&blobs, &target.join(BLOBS_DIR), &mut second)?;
    copied.blobs += second.blobs;
    let key = settings.data_dir.join(SECRET_KEY_FILE);
    if key.is_file() {
        copy_private(&key, &target.join(SECRET_KEY_FILE))?;
        copied.secret_key = true;
    }
    fs::rename(&partial, target.join(DATABASE_FILE)).context("cannot put the database copy in place")?;
    sync_dir(target);
    Ok(copied)
}

/// A backup goes into a directory of its own: never into (or above) the data directory or the
/// database's directory, and never into a directory that holds anything but an earlier (maybe
/// interrupted) backup.
fn check_backup_target(target: &Path, data_dir: &Path, database: &Path) -> anyhow::Result<()> {
    let target = fs::canonicalize(target).with_context(|| format!("cannot resolve {}", target.display()))?;
    let database_dir = database.parent().map(fs::canonicalize).transpose().ok().flatten();
    for dir in [fs::canonicalize(data_dir).ok(), database_dir]
        .into_iter()
        .flatten()
    {
        if target.starts_with(&dir) || dir.starts_with(&target) {
            anyhow::bail!(
                "the backup directory {} must lie outside the data directory {}",
                target.display(),
                dir.display()
            );
        }
    }
    let ours = [
        DATABASE_FILE.to_owned(),
        format!("{DATABASE_FILE}.partial"),
        BLOBS_DIR.to_owned(),
        SECRET_KEY_FILE.to_owned(),
    ];
    for entry in fs::read_dir(&target).with_context(|| format!("cannot read {}", target.display()))? {
        let name = entry?.file_name();
        if !ours.iter().any(|o| name.to_str() == Some(o.as_str())) {
            anyhow::bail!(
                "{} holds {} and is not a kbsync backup: back up into a new or empty directory",
                target.display(),
                name.to_string_lossy()
            );
        }
    }
    Ok(())
}

/// Puts a backup back into an empty (or missing) data directory.
pub fn restore(settings: &Settings, source: &Path) -> anyhow::Result<Copied> {
    let Some(database) = sqlite_file(&settings.database_url) else {
        anyhow::bail!(
            "kbsync restore restores SQLite deployments only; for PostgreSQL, restore the pg_dump \
             and copy the blobs back into {}",
            settings.data_dir.join(BLOBS_DIR).display()
        );
    };
    let backup_database = source.join(DATABASE_FILE);
    if !backup_database.is_file() {
        anyhow::bail!(
            "{} is not a kbsync backup: it has no {DATABASE_FILE}",
            source.display()
        );
    }
    let data_dir = &settings.data_dir;
    if is_non_empty_dir(data_dir)? {
        anyhow::bail!(
            "the data directory {} is not empty: restore only into an empty or new data directory",
            data_dir.display()
        );
    }
    for file in sqlite_files(&database) {
        if file.exists() {
            anyhow::bail!(
                "{} exists: restore only where there is no database yet",
                file.display()
            );
        }
    }
    fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let mut copied = Copied::default();
    let backup_blobs = source.join(BLOBS_DIR);
    if backup_blobs.is_dir() {
        copy_blobs(&backup_blobs, &data_dir.join(BLOBS_DIR), &mut copied)?;
    }
    let key = source.join(SECRET_KEY_FILE);
    if key.is_file() {
        copy_private(&key, &data_dir.join(SECRET_KEY_FILE))?;
        copied.secret_key = true;
    }
    // The database last, so that a restore that stopped half-way is seen as no database.
    if let Some(parent) = database.parent() {
        fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    copy_then_rename(&backup_database, &database)?;
    Ok(copied)
}

/// The file a `sqlite:` URL names (`None` for PostgreSQL or an in-memory database).
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let path = rest.trim_start_matches("//");
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

/// The database file and the files SQLite keeps next to it.
fn sqlite_files(database: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [database.to_owned(), with("-wal"), with("-shm")]
}

fn is_non_empty_dir(dir: &Path) -> anyhow::Result<bool> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

/// Copies the blob files of `from` (`ab/cd/<hash>`) that `to` lacks; the blob store's
/// temporary files (`tmp/`) and anything else are left out. A blob removed while it is copied
/// (the collector removes unreferenced ones) is skipped.
fn copy_blobs(from: &Path, to: &Path, copied: &mut Copied) -> anyhow::Result<()> {
    for first in hex_entries(from, 2)? {
        for second in hex_entries(&from.join(&first), 2)? {
            let dir = from.join(&first).join(&second);
            for name in hex_entries(&dir, 64)? {
                let dest_dir = to.join(&first).join(&second);
                let dest = dest_dir.join(&name);
                if dest.exists() {
                    copied.blobs_present += 1;
                    continue;
                }
                fs::create_dir_all(&dest_dir)
                    .with_context(|| format!("cannot create {}", dest_dir.display()))?;
                match copy_then_rename(&dir.join(&name), &dest) {
                    Ok(()) => copied.blobs += 1,
                    Err(e)
                        if e.downcast_ref::<std::io::Error>()
                            .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
            sync_dir(&to.join(&first).join(&second));
        }
    }
    Ok(())
}

/// The names in `dir` that are `len` lower-case hex digits (none when `dir` does not exist).
fn hex_entries(dir: &Path, len: usize) -> anyhow::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        if let Some(name) = entry.file_name().to_str()
            && name.len() == len
            && name
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Copies `from` to a temporary file next to `to`, syncs it and renames it to `to`: `to` either
/// does not exist or is complete. The `NotFound` of a missing `from` is returned as such.
fn copy_then_rename(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut partial = to.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let mut source = fs::File::open(from)?;
    let mut dest =
        fs::File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    std::io::copy(&mut source, &mut dest).with_context(|| format!("cannot copy {}", from.display()))?;
    dest.sync_all()?;
    fs::rename(&partial, to).with_context(|| format!("cannot rename to {}", to.display()))?;
    Ok(())
}

/// Copies a secret file, readable by its owner only.
fn copy_private(from: &Path, to: &Path) -> anyhow::Result<()> {
    let bytes = fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    remove_if_present(to)?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    Ok(())
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// Makes the renames in `dir` durable; a failure only weakens that, so it is ignored.
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_file_is_the_path_of_a_sqlite_url_only() {
        assert_eq!(
            sqlite_file("sqlite:///var/kbsync/kbsync.sqlite?mode=rwc"),
            Some(PathBuf::from("/var/kbsync/kbsync.sqlite"))
        );
        assert_eq!(
            sqlite_file("sqlite:data/kb.sqlite"),
            Some(PathBuf::from("data/kb.sqlite"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://db/kbsync"), None);
    }

    #[test]
    fn a_backup_goes_only_into_a_directory_of_its_own() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        fs::create_dir_all(data.join(BLOBS_DIR)).unwrap();
        let database = data.join(DATABASE_FILE);
        fs::write(&database, b"").unwrap();
        assert!(check_backup_target(&data, &data, &database).is_err());
        assert!(check_backup_target(root.path(), &data, &database).is_err());
        let inside = data.join("backup");
        fs::create_dir_all(&inside).unwrap();
        assert!(check_backup_target(&inside, &data, &database).is_err());

        let other = root.path().join("elsewhere");
        fs::create_dir_all(&other).unwrap();
        fs::write(other.join("notes.txt"), b"x").unwrap();
        let err = check_backup_target(&other, &data, &database).unwrap_err();
        assert!(err.to_string().contains("notes.txt"), "{err}");

        // An earlier backup, even an interrupted one, is fine.
        let earlier = root.path().join("backup");
        fs::create_dir_all(earlier.join(BLOBS_DIR)).unwrap();
        fs::write(earlier.join(format!("{DATABASE_FILE}.partial")), b"").unwrap();
        check_backup_target(&earlier, &data, &database).unwrap();
    }

    #[test]
    fn copy_blobs_copies_only_blob_files_the_target_lacks() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        let hash_a = format!("ab{}", "0".repeat(62));
        let hash_b = format!("ab{}", "1".repeat(62));
        let dir = from.path().join("ab").join("00");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(&hash_a), b"a").unwrap();
        let dir_b = from.path().join("ab").join("11");
        fs::create_dir_all(&dir_b).unwrap();
        fs::write(dir_b.join(&hash_b), b"b").unwrap();
        fs::create_dir_all(from.path().join("tmp")).unwrap();
        fs::write(from.path().join("tmp").join("upload-1"), b"partial").unwrap();

        let mut first = Copied::default();
        copy_blobs(from.path(), to.path(), &mut first).unwrap();
        assert_eq!((first.blobs, first.blobs_present), (2, 0));
        assert_eq!(fs::read(to.path().join("ab/00").join(&hash_a)).unwrap(), b"a");
        assert!(!to.path().join("tmp").exists());

        let mut again = Copied::default();
        copy_blobs(from.path(), to.path(), &mut again).unwrap();
        assert_eq!((again.blobs, again.blobs_present), (0, 2));
    }
}
