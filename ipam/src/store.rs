//! Crash-safe JSON persistence: a state file is either the old or the new version, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::IpamError;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> IpamError + '_ {
    move |source| IpamError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

/// Mode of every file written here: owner read/write only (state files hold container names
/// and namespace paths).
pub const FILE_MODE: u32 = 0o600;

/// Write tmp file (mode 0600) in the same dir → fsync → rename → fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IpamError> {
    write_replacing(path, bytes, None)
}

/// Like [`write_atomic`], but first keeps the file being replaced as `backup` (itself
/// replaced atomically): at every instant `path` holds the old or the new content, and
/// `backup` the previous or the one before. A missing `path` just skips the backup.
pub fn write_atomic_with_backup(path: &Path, bytes: &[u8], backup: &Path) -> Result<(), IpamError> {
    write_replacing(path, bytes, Some(backup))
}

/// Makes `backup` a copy of `path` (a hard link where the filesystem allows it) by way of a
/// temp name and a rename, so `backup` is never half-written. Ok(false) if `path` is absent.
fn keep_backup(path: &Path, backup: &Path) -> Result<bool, IpamError> {
    let tmp = tmp_path(backup);
    let _ = fs::remove_file(&tmp);
    match fs::hard_link(path, &tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(_) => {
            // No hard links here: copy, and make the copy durable before it is renamed.
            let bytes = match fs::read(path) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(io_err(path)(e)),
            };
            let mut file = create_private(&tmp)?;
            file.write_all(&bytes).map_err(io_err(&tmp))?;
            file.sync_all().map_err(io_err(&tmp))?;
        }
    }
    // A state file written by an older version may be world-readable: its backup is not.
    fs::set_permissions(&tmp, fs::Permissions::from_mode(FILE_MODE)).map_err(io_err(&tmp))?;
    let renamed = fs::rename(&tmp, backup);
    // rename() between two links of one file does nothing: after a crash between the two
    // renames of a save, `backup` and `path` are one file, and the temp link stays behind.
    let _ = fs::remove_file(&tmp);
    renamed.map_err(io_err(backup))?;
    Ok(true)
}

/// Creates (or truncates) `path` with mode 0600.
fn create_private(path: &Path) -> Result<File, IpamError> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_err(path))?;
    // `mode` applies only when the file is created; a stale temp file keeps its old mode.
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
        .map_err(io_err(path))?;
    Ok(file)
}

fn write_replacing(path: &Path, bytes: &[u8], backup: Option<&Path>) -> Result<(), IpamError> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut file = create_private(&tmp)?;
        file.write_all(bytes).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        if let Some(backup) = backup {
            keep_backup(path, backup)?;
        }
        fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Serializes `value` as pretty JSON and writes it atomically to `path`.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<(), IpamError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| IpamError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads JSON from `path`; Ok(None) if the file does not exist.
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, IpamError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_err(path)(source)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| IpamError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AddressPool, SubnetConfig};
    use std::net::Ipv4Addr;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn pool_round_trip_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net1.json");
        let cfg = SubnetConfig::new(
            "10.5.0.0/24".parse().unwrap(),
            Some(Ipv4Addr::new(10, 5, 0, 254)),
            Some("10.5.0.0/25".parse().unwrap()),
        )
        .unwrap();
        let mut pool = AddressPool::new(cfg.clone());
        let a = pool.allocate("c1").unwrap();
        pool.reserve(Ipv4Addr::new(10, 5, 0, 200), "c2").unwrap();

        save_json(&path, &pool).unwrap();
        assert_eq!(entries(dir.path()), ["net1.json"]);

        let mut loaded: AddressPool = load_json(&path).unwrap().expect("file exists");
        assert_eq!(loaded.config(), &cfg);
        let leases: Vec<_> = loaded.leases().map(|(ip, o)| (ip, o.to_owned())).collect();
        assert_eq!(
            leases,
            [
                (a, "c1".to_owned()),
                (Ipv4Addr::new(10, 5, 0, 200), "c2".to_owned())
            ]
        );
        // The reloaded pool keeps honouring existing leases.
        assert_eq!(loaded.allocate("c3").unwrap(), Ipv4Addr::new(10, 5, 0, 2));

        // Overwrite replaces content and still leaves a single file.
        save_json(&path, &loaded).unwrap();
        let again: AddressPool = load_json(&path).unwrap().unwrap();
        assert_eq!(again.len(), 3);
        assert_eq!(entries(dir.path()), ["net1.json"]);
    }

    #[test]
    fn backup_holds_the_replaced_file_and_modes_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let bak = dir.path().join("state.json.bak");
        write_atomic_with_backup(&path, b"one", &bak).unwrap();
        assert!(!bak.exists(), "nothing to back up the first time");
        // An old world-readable file: its backup and its replacement are 0600.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic_with_backup(&path, b"two", &bak).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read(&bak).unwrap(), b"one");
        write_atomic_with_backup(&path, b"three", &bak).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        assert_eq!(fs::read(&bak).unwrap(), b"two");
        for p in [&path, &bak] {
            let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        assert_eq!(entries(dir.path()), ["state.json", "state.json.bak"]);
    }

    /// Found by tests/crash_churn: a kill between the backup's rename and the state's
    /// leaves both names on one file; the next save must still leave no temp file.
    #[test]
    fn backup_already_linked_to_the_file_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let bak = dir.path().join("state.json.bak");
        fs::write(&path, b"one").unwrap();
        fs::hard_link(&path, &bak).unwrap();
        write_atomic_with_backup(&path, b"two", &bak).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read(&bak).unwrap(), b"one");
        assert_eq!(entries(dir.path()), ["state.json", "state.json.bak"]);
    }

    #[test]
    fn missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let got: Option<AddressPool> = load_json(&dir.path().join("absent.json")).unwrap();
        assert!(got.is_none());
    }

    #[test]
    fn corrupt_file_is_reported_with_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        fs::write(&path, b"{ not json").unwrap();
        let e = load_json::<AddressPool>(&path).unwrap_err();
        assert!(matches!(&e, IpamError::Corrupt { path: p, .. } if p == &path));
        assert!(e.to_string().contains("bad.json"), "{e}");
    }

    #[test]
    fn write_into_missing_dir_fails_with_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope").join("x.json");
        let e = write_atomic(&path, b"{}").unwrap_err();
        assert!(matches!(e, IpamError::Io { .. }), "{e}");
    }
}
