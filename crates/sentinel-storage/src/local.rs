//! The local-directory backend: uploads go to a hidden temp file next to the target
//! (`.<name>.partial-<uuid>`), are fsynced and renamed into place on complete, so a killed process
//! never leaves a file that looks like a finished backup.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::error::from_io;
use crate::spec::validate_key;
use crate::{ObjectInfo, PendingUpload, StorageError};

/// Marks in-progress files; `list` hides them and `incomplete_uploads` finds them.
const PARTIAL_MARK: &str = ".partial-";
/// Read size for downloads: large enough for few syscalls, small enough to bound memory.
const READ_CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    pub(crate) fn open(path: &Path) -> Result<Self, StorageError> {
        if !path.is_absolute() {
            return Err(StorageError::invalid("path", format!("`{}` must be an absolute path", path.display())));
        }
        if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(StorageError::invalid("path", format!("`{}` must not contain `..`", path.display())));
        }
        Ok(Self { root: path.to_owned() })
    }

    pub(crate) fn location(&self, key: &str) -> String {
        let path = if key.is_empty() { self.root.clone() } else { self.root.join(key) };
        match reqwest::Url::from_file_path(&path) {
            Ok(u) => u.to_string(),
            Err(()) => format!("file://{}", path.display()),
        }
    }

    /// The root must exist and be a directory. It is never created: a missing root is usually an
    /// unmounted volume, and writing into the mount point would fill the wrong disk.
    async fn ensure_root(&self) -> Result<(), StorageError> {
        match tokio::fs::metadata(&self.root).await {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(StorageError::BucketMissing(format!("`{}` is not a directory", self.root.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::BucketMissing(format!(
                "directory `{}` does not exist (is the volume mounted?)",
                self.root.display()
            ))),
            Err(e) => Err(from_io(e, &format!("directory `{}`", self.root.display()))),
        }
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StorageError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    pub(crate) async fn upload(&self, key: &str) -> Result<LocalUpload, StorageError> {
        let target = self.path_of(key)?;
        self.ensure_root().await?;
        let (dir, name) = match (target.parent(), target.file_name()) {
            (Some(d), Some(n)) => (d.to_owned(), n.to_string_lossy().into_owned()),
            _ => return Err(StorageError::invalid("key", format!("`{key}` names no file"))),
        };
        tokio::fs::create_dir_all(&dir).await.map_err(|e| from_io(e, &format!("creating `{}`", dir.display())))?;
        let temp = dir.join(format!(".{name}{PARTIAL_MARK}{}", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .await
            .map_err(|e| from_io(e, &format!("creating `{}`", temp.display())))?;
        Ok(LocalUpload { file: Some(file), temp, target, dir, finished: false })
    }

    pub(crate) async fn download(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
        let path = self.path_of(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.ensure_root().await?;
                return Err(StorageError::NotFound(self.location(key)));
            }
            Err(e) => return Err(from_io(e, &format!("opening `{}`", path.display()))),
        };
        let what = path.display().to_string();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK)
            .map(move |r| r.map_err(|e| from_io(e, &format!("reading `{what}`"))));
        Ok(stream.boxed())
    }

    pub(crate) async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let path = self.path_of(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(info(key.to_owned(), &m))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.ensure_root().await?;
                Ok(None)
            }
            Err(e) => Err(from_io(e, &format!("reading `{}`", path.display()))),
        }
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.ensure_root().await,
            Err(e) => return Err(from_io(e, &format!("deleting `{}`", path.display()))),
        }
        // Retention deletes whole dated folders over time: drop directories left empty, up to the
        // root. `remove_dir` fails on a non-empty directory, which ends the walk.
        let mut dir = path.parent().map(Path::to_owned);
        while let Some(d) = dir {
            if d == self.root || !d.starts_with(&self.root) || tokio::fs::remove_dir(&d).await.is_err() {
                break;
            }
            dir = d.parent().map(Path::to_owned);
        }
        Ok(())
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        self.ensure_root().await?;
        let start = if prefix.is_empty() { self.root.clone() } else { self.root.join(prefix) };
        let mut out = Vec::new();
        for (path, meta) in walk(&start, false).await? {
            if let Some(key) = self.key_of(&path) {
                out.push(info(key, &meta));
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Stray `.partial-` files: uploads whose process died before complete or abort.
    pub(crate) async fn incomplete_uploads(&self) -> Result<Vec<PendingUpload>, StorageError> {
        self.ensure_root().await?;
        let mut out = Vec::new();
        for (path, meta) in walk(&self.root, true).await? {
            let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
            let Some((target, _)) = name.strip_prefix('.').and_then(|n| n.rsplit_once(PARTIAL_MARK)) else {
                continue;
            };
            let Some(upload_id) = self.key_of_any(&path) else { continue };
            let key = match upload_id.rsplit_once('/') {
                Some((dir, _)) => format!("{dir}/{target}"),
                None => target.to_owned(),
            };
            let initiated = meta.modified().ok().map(DateTime::<Utc>::from);
            out.push(PendingUpload { key, upload_id, initiated });
        }
        Ok(out)
    }

    pub(crate) async fn abort_incomplete(&self, pending: &PendingUpload) -> Result<(), StorageError> {
        let id = &pending.upload_id;
        let name = id.rsplit('/').next().unwrap_or_default();
        let safe = !id.starts_with('/')
            && id.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
            && name.starts_with('.')
            && name.contains(PARTIAL_MARK);
        if !safe {
            return Err(StorageError::invalid("upload_id", format!("`{id}` is not an in-progress upload file")));
        }
        let path = self.root.join(id);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(from_io(e, &format!("deleting `{}`", path.display()))),
        }
    }

    /// The key of a visible file under the root (hidden files and directories give `None`).
    fn key_of(&self, path: &Path) -> Option<String> {
        let key = self.key_of_any(path)?;
        key.split('/').all(|s| !s.starts_with('.')).then_some(key)
    }

    fn key_of_any(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        (!parts.is_empty()).then(|| parts.join("/"))
    }
}

fn info(key: String, meta: &std::fs::Metadata) -> ObjectInfo {
    let last_modified = meta.modified().ok().map(DateTime::<Utc>::from).unwrap_or_default();
    ObjectInfo { key, size: meta.len(), last_modified }
}

/// Every regular file under `start` (symlinks are not followed, so a link loop cannot hang a
/// listing). `hidden` also descends into directories whose name starts with `.`.
async fn walk(start: &Path, hidden: bool) -> Result<Vec<(PathBuf, std::fs::Metadata)>, StorageError> {
    let mut out = Vec::new();
    let mut dirs = vec![start.to_owned()];
    while let Some(dir) = dirs.pop() {
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            // A listing prefix that names no directory is simply empty.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => continue,
            Err(e) => return Err(from_io(e, &format!("listing `{}`", dir.display()))),
        };
        loop {
            let entry = match entries.next_entry().await {
                Ok(Some(entry)) => entry,
                Ok(None) => break,
                Err(e) => return Err(from_io(e, &format!("listing `{}`", dir.display()))),
            };
            let Ok(kind) = entry.file_type().await else { continue };
            let is_hidden = entry.file_name().to_string_lossy().starts_with('.');
            if kind.is_dir() && (hidden || !is_hidden) {
                dirs.push(entry.path());
            } else if kind.is_file()
                && let Ok(meta) = entry.metadata().await
            {
                out.push((entry.path(), meta));
            }
        }
    }
    Ok(out)
}

/// An upload in progress: a hidden temp file in the target's directory.
pub(crate) struct LocalUpload {
    file: Option<tokio::fs::File>,
    temp: PathBuf,
    target: PathBuf,
    dir: PathBuf,
    finished: bool,
}

impl LocalUpload {
    pub(crate) async fn put(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        let Some(file) = self.file.as_mut() else {
            return Err(StorageError::Other("upload already finished".to_owned()));
        };
        file.write_all(&chunk).await.map_err(|e| from_io(e, &format!("writing `{}`", self.temp.display())))
    }

    pub(crate) async fn complete(mut self) -> Result<(), StorageError> {
        let temp = self.temp.display().to_string();
        if let Some(mut file) = self.file.take() {
            file.flush().await.map_err(|e| from_io(e, &format!("writing `{temp}`")))?;
            // fsync before rename: otherwise a crash can leave the final name pointing at an empty
            // or short file.
            file.sync_all().await.map_err(|e| from_io(e, &format!("syncing `{temp}`")))?;
        }
        tokio::fs::rename(&self.temp, &self.target)
            .await
            .map_err(|e| from_io(e, &format!("renaming `{temp}` to `{}`", self.target.display())))?;
        self.finished = true;
        // And fsync the directory, so the rename itself survives a crash.
        let dir = self.dir.clone();
        let synced = tokio::task::spawn_blocking(move || std::fs::File::open(&dir).and_then(|d| d.sync_all())).await;
        match synced {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(from_io(e, &format!("syncing `{}`", self.dir.display()))),
            Err(e) => Err(StorageError::Other(format!("syncing `{}`: {e}", self.dir.display()))),
        }
    }

    pub(crate) async fn abort(mut self) -> Result<(), StorageError> {
        self.file.take();
        self.finished = true;
        match tokio::fs::remove_file(&self.temp).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(from_io(e, &format!("deleting `{}`", self.temp.display()))),
        }
    }
}

impl Drop for LocalUpload {
    /// An upload dropped without complete or abort (its task was cancelled) removes its temp file,
    /// off the async threads when a runtime is there.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let temp = std::mem::take(&mut self.temp);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(move || std::fs::remove_file(temp));
            }
            Err(_) => {
                let _ = std::fs::remove_file(temp);
            }
        }
    }
}
