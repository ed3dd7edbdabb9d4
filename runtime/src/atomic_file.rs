//! Files that appear whole or not at all: written under a temporary name in the same directory,
//! flushed to disk, then renamed over the target. A process killed mid-write leaves at most a
//! hidden temporary file (`.<name>.tmp-<host>-<pid>-<n>`), never a truncated file where a user
//! expects the output; the next write of the same file on the same host removes it once its
//! process is gone.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result, create_parent_dir};

/// Copies the file `source` to `target`, whole or not at all (`action` names the work in
/// errors).
#[cfg(feature = "postgres")]
pub(crate) fn copy_atomically(source: &Path, target: &Path, action: &'static str) -> Result<()> {
    replace_atomically(target, action, |tmp| {
        std::fs::copy(source, tmp)
            .map(drop)
            .map_err(|source_error| Error::Io {
                action: "copy",
                path: source.to_owned(),
                source: source_error,
            })
    })
}

/// Writes `path` through `write`, which is given the temporary path to fill. On success the
/// temporary file is synced and renamed over `path`; on failure it is removed. `action` names
/// the work in errors ("write sidecar", "export parquet").
pub(crate) fn replace_atomically<T>(
    path: &Path,
    action: &'static str,
    write: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    create_parent_dir(path)?;
    remove_leftovers(path);
    let tmp = temporary_path(path)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    let result = write(&tmp).and_then(|value| {
        // Synced before the rename, so after a power loss the name never points at a file
        // whose contents were not yet written.
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        Ok(value)
    });
    match result {
        Ok(value) => {
            // The rename itself is durable once the directory is synced; best effort (some
            // filesystems refuse to sync a directory).
            if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(value)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// This machine's name, as the kernel has it (Linux), so temporary files on a shared
/// filesystem are told apart by the machine that wrote them.
pub(crate) fn host() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().replace(['/', '-'], "_"))
        .filter(|h| !h.is_empty())
}

/// Removes the temporary files of `path` left by killed processes of this machine: those whose
/// process is gone (Linux: no `/proc/<pid>`). Files of other machines (a shared filesystem),
/// and everything on other systems, are left alone.
fn remove_leftovers(path: &Path) {
    let Some(host) = host() else {
        return;
    };
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{name}.tmp-{host}-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `.<name>.tmp-<host>-<pid>-<n>` beside `path`: unique within the process, across processes
/// and across machines sharing the directory.
fn temporary_path(path: &Path) -> Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Format(format!("{} has no file name", path.display())))?;
    Ok(path.with_file_name(format!(
        ".{name}.tmp-{}-{}-{}",
        host().unwrap_or_else(|| "host".to_owned()),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_appears_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/a.txt");
        replace_atomically(&path, "write", |tmp| {
            assert_ne!(tmp, path);
            assert_eq!(tmp.parent(), path.parent());
            std::fs::write(tmp, "one").map_err(|e| Error::Format(e.to_string()))
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one");
        let failed = replace_atomically(&path, "write", |tmp| {
            std::fs::write(tmp, "half").unwrap();
            Err::<(), _>(Error::Format("failed mid-way".into()))
        });
        assert!(failed.is_err());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "one",
            "the old file stays"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path().join("out")).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
    }

    /// A killed writer's temporary file is removed by the next write of the same file, once
    /// its process is gone; a live process's is not touched.
    #[test]
    #[cfg(target_os = "linux")]
    fn leftovers_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.parquet");
        // No process has pid 4194304 + 1 (above Linux's maximum pid).
        let host = host().unwrap();
        let dead = dir.path().join(format!(".a.parquet.tmp-{host}-4194305-0"));
        let alive = dir
            .path()
            .join(format!(".a.parquet.tmp-{host}-{}-99", std::process::id()));
        let other = dir.path().join(format!(".b.parquet.tmp-{host}-4194305-0"));
        // Another machine's, on a shared filesystem: its pids are not ours to check.
        let elsewhere = dir.path().join(".a.parquet.tmp-another_machine-4194305-0");
        for f in [&dead, &alive, &other, &elsewhere] {
            std::fs::write(f, "partial").unwrap();
        }
        replace_atomically(&path, "write", |tmp| {
            std::fs::write(tmp, "whole").map_err(|e| Error::Format(e.to_string()))
        })
        .unwrap();
        assert!(!dead.exists());
        assert!(alive.exists() && other.exists() && elsewhere.exists());
    }
}
