//! Where commands write: stdout, whose errors are reported (a full disk or a
//! closed pipe fails the command, rather than exiting 0 or panicking as
//! `print!` does), and files, written whole or not at all.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Writes `bytes` to stdout and flushes them: an error is the command's.
pub fn stdout(bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes.as_ref())
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

/// A file beside `path`, private to this process, for writing before it
/// takes `path`'s place.
fn temporary_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.keyfilter-{}.tmp", std::process::id()))
}

/// Writes `bytes` to a new file beside `path` (created with `mode` on Unix)
/// and hands it to `install`; the temporary file is removed whatever happens.
fn via_temporary(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    install: impl FnOnce(&Path) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let temporary = temporary_beside(path);
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        install(&temporary)
    })();
    let _ = std::fs::remove_file(&temporary);
    written.with_context(|| format!("writing {}", path.display()))
}

/// Writes `bytes` to `path` whole or not at all: a failed write (a full
/// disk) leaves an existing file as it was and creates no partial one.
pub fn replace_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    via_temporary(path, bytes, 0o644, |temporary| std::fs::rename(temporary, path))
}

/// Creates `path` with `bytes` and mode 0600, refusing to overwrite it; a
/// failed write leaves no file behind (so a retry is not refused).
pub fn create_private_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if path.exists() {
        anyhow::bail!("{} already exists; not overwriting it", path.display());
    }
    // A hard link takes the name only if it is free, unlike a rename.
    via_temporary(path, bytes, 0o600, |temporary| std::fs::hard_link(temporary, path))
}
