//! All-or-nothing output. A run's files are written into a hidden staging
//! folder (or file) beside the target and moved into place together, once
//! everything succeeded; a run that fails or is interrupted leaves the
//! previous output exactly as it was and no temporary files.
//!
//! The guarantees, and how they are kept:
//! - **Together or not at all.** A folder is swapped with the previous one
//!   in one step (`renameat2` with `RENAME_EXCHANGE` on Linux; elsewhere,
//!   or on a file system without it, the old folder is renamed aside first,
//!   and a crash between the two renames leaves it there, complete, under
//!   its hidden name). A single file is renamed over the old one.
//! - **Interrupts clean up.** [`handle_interrupts`] routes SIGINT and
//!   SIGTERM to one thread, which removes every staging path still
//!   registered and exits with 130 or 143 and one line. Staging writes and
//!   the final swap hold the registry's lock, so the thread never removes
//!   a folder half-way through a write or a swap.
//! - **Nothing else is lost.** A folder is replaced only if it holds
//!   nothing but the files the same command writes (checked when staging
//!   begins and again, under the lock, just before the swap): `--out ~` is
//!   an error, not a deletion, and `rain compare` never replaces a
//!   training run's folder.
//!
//! A symlink given as the target is replaced itself (its target's files
//! stay where they are); parent folders created for the target stay.

use crate::error::RainError;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Staging paths not yet moved into place: what an interrupt removes.
static STAGING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn staging() -> MutexGuard<'static, Vec<PathBuf>> {
    // A panic elsewhere must not stop the clean-up.
    STAGING.lock().unwrap_or_else(|e| e.into_inner())
}

fn remove(path: &Path) {
    let _ = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> RainError + '_ {
    move |source| RainError::Write { path: path.to_path_buf(), source }
}

/// A hidden name beside `target`, unique to this process.
fn hidden_beside(target: &Path, what: &str) -> Result<PathBuf, RainError> {
    let name = target.file_name().ok_or_else(|| {
        RainError::bad("output path", target.display(), "must name a file or folder, not '.', '..' or '/'")
    })?;
    let mut hidden = std::ffi::OsString::from(".");
    hidden.push(name);
    hidden.push(format!(".{what}-{}", std::process::id()));
    Ok(target.with_file_name(hidden))
}

/// Where an output goes: a folder of files (`rain train`) or one file
/// (`rain predict --out`, `rain activation`).
#[derive(Debug)]
enum Kind {
    Folder,
    File,
}

/// Outputs being staged. Dropped without [`Staged::commit`], they are
/// removed and the target is untouched.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("rain-doc-staged-{}", std::process::id()));
/// let out = dir.join("run");
/// let staged = rain::output::Staged::folder(&out, &["metrics.json"]).unwrap();
/// staged.write("metrics.json", b"{}").unwrap();
/// assert!(!out.exists());
/// staged.commit().unwrap();
/// assert_eq!(std::fs::read(out.join("metrics.json")).unwrap(), b"{}");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Debug)]
pub struct Staged {
    target: PathBuf,
    temp: PathBuf,
    kind: Kind,
    /// The names a replaced folder may hold.
    known: &'static [&'static str],
    committed: bool,
}

/// The entries of folder `target` that are not files named in `known`.
fn foreign(target: &Path, known: &[&str]) -> Result<Vec<String>, RainError> {
    let mut out = Vec::new();
    if !target.is_dir() {
        return Ok(out);
    }
    for e in std::fs::read_dir(target).map_err(write_error(target))? {
        let e = e.map_err(write_error(target))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let is_file = e.file_type().map(|t| t.is_file()).unwrap_or(false);
        if !is_file || !known.contains(&name.as_str()) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

fn refuse_foreign(target: &Path, names: &[String]) -> RainError {
    RainError::bad(
        "--out",
        target.display(),
        format!(
            "the folder holds files this command did not write ({}), and a run replaces the whole folder; \
             choose a new or empty folder",
            names.join(", ")
        ),
    )
}

impl Staged {
    /// Stages a folder of outputs for `target`, creating its parent
    /// folders; an existing folder may hold only the files named in `known`
    /// (those the command writes).
    ///
    /// # Errors
    /// When `target` is a file, or a folder holding anything else, or the
    /// staging folder cannot be made.
    ///
    /// ```
    /// let file = std::env::temp_dir().join(format!("rain-doc-notdir-{}", std::process::id()));
    /// std::fs::write(&file, b"x").unwrap();
    /// assert!(rain::output::Staged::folder(&file, &[]).is_err());
    /// # std::fs::remove_file(&file).unwrap();
    /// ```
    pub fn folder(target: &Path, known: &'static [&'static str]) -> Result<Self, RainError> {
        if target.exists() && !target.is_dir() {
            return Err(RainError::bad("--out", target.display(), "is a file, not a folder"));
        }
        let names = foreign(target, known)?;
        if !names.is_empty() {
            return Err(refuse_foreign(target, &names));
        }
        let temp = hidden_beside(target, "tmp")?;
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(write_error(parent))?;
        }
        let mut list = staging();
        remove(&temp); // left by a killed run of the same process id
        std::fs::create_dir(&temp).map_err(write_error(target))?;
        list.push(temp.clone());
        Ok(Staged { target: target.to_path_buf(), temp, kind: Kind::Folder, known, committed: false })
    }

    /// Stages one output file for `target`, creating its parent folders.
    ///
    /// # Errors
    /// When `target` is a folder or its parent cannot be made.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("rain-doc-file-{}", std::process::id()));
    /// let out = dir.join("p.csv");
    /// let staged = rain::output::Staged::file(&out).unwrap();
    /// staged.write("", b"row,probability\n").unwrap();
    /// staged.commit().unwrap();
    /// assert!(out.is_file());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn file(target: &Path) -> Result<Self, RainError> {
        if target.is_dir() {
            return Err(RainError::bad("output file", target.display(), "is a folder"));
        }
        let temp = hidden_beside(target, "tmp")?;
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(write_error(parent))?;
        }
        let mut list = staging();
        remove(&temp); // left by a killed run of the same process id
        list.push(temp.clone());
        Ok(Staged { target: target.to_path_buf(), temp, kind: Kind::File, known: &[], committed: false })
    }

    /// Writes one file of the set: `name` inside a staged folder (ignored
    /// for a staged file, which is written whole).
    ///
    /// # Errors
    /// The I/O error, naming the final path.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("rain-doc-write-{}", std::process::id()));
    /// let staged = rain::output::Staged::folder(&dir.join("out"), &["cost.svg"]).unwrap();
    /// staged.write("cost.svg", b"<svg/>").unwrap();
    /// drop(staged); // not committed: nothing appears
    /// assert!(!dir.join("out").exists());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), RainError> {
        use std::io::Write;
        let (path, shown) = match self.kind {
            Kind::Folder => (self.temp.join(name), self.target.join(name)),
            Kind::File => (self.temp.clone(), self.target.clone()),
        };
        let result = {
            let _hold = staging();
            (|| {
                // A new file: never through a link planted at the name.
                let _ = std::fs::remove_file(&path);
                let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
                f.write_all(bytes)?;
                f.sync_all()
            })()
        };
        // A test hook of debug builds: stretches the write phase so that the
        // interrupt test can land signals inside it.
        #[cfg(debug_assertions)]
        if let Some(ms) = std::env::var("RAIN_TEST_WRITE_DELAY_MS").ok().and_then(|v| v.parse().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        result.map_err(write_error(&shown))
    }

    /// Moves the staged outputs into place, replacing the previous ones in
    /// one step.
    ///
    /// # Errors
    /// The I/O error; the previous outputs are then as they were.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("rain-doc-commit-{}", std::process::id()));
    /// for run in ["first", "second"] {
    ///     let staged = rain::output::Staged::folder(&dir, &["metrics.json"]).unwrap();
    ///     staged.write("metrics.json", run.as_bytes()).unwrap();
    ///     staged.commit().unwrap();
    /// }
    /// assert_eq!(std::fs::read(dir.join("metrics.json")).unwrap(), b"second");
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn commit(mut self) -> Result<(), RainError> {
        let mut list = staging();
        // Files may have appeared since staging began (another command's
        // output): a swap would delete them.
        if matches!(self.kind, Kind::Folder) {
            let names = foreign(&self.target, self.known)?;
            if !names.is_empty() {
                return Err(refuse_foreign(&self.target, &names));
            }
        }
        let result = match self.kind {
            Kind::File => std::fs::rename(&self.temp, &self.target),
            Kind::Folder if !self.target.exists() => std::fs::rename(&self.temp, &self.target),
            Kind::Folder => swap(&self.temp, &self.target),
        };
        result.map_err(write_error(&self.target))?;
        // After a swap the staging path holds the previous outputs.
        remove(&self.temp);
        list.retain(|p| p != &self.temp);
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let mut list = staging();
            remove(&self.temp);
            list.retain(|p| p != &self.temp);
        }
    }
}

/// Exchanges two folders: `new` ends at `target` and the old one at `new`.
fn swap(new: &Path, target: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
        let (a, b) = (c(new)?, c(target)?);
        // SAFETY: two valid NUL-terminated paths, relative to the current
        // folder; the call only renames.
        let rc = unsafe {
            libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE)
        };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        // Not supported here: fall back to two renames.
        if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::ENOTSUP)) {
            return Err(e);
        }
    }
    let aside = hidden_beside(target, "old").map_err(std::io::Error::other)?;
    std::fs::rename(target, &aside)?;
    if let Err(e) = std::fs::rename(new, target) {
        let _ = std::fs::rename(&aside, target);
        return Err(e);
    }
    // The new set is in place: the old one goes (the caller removes `new`).
    let _ = std::fs::remove_dir_all(&aside);
    Ok(())
}

/// Routes SIGINT and SIGTERM to a thread that removes every staged output
/// not yet moved into place, prints one line and exits with 130 or 143.
/// Call it first in `main`, before any other thread starts (threads
/// inherit the blocked signals, so only that thread receives them).
///
/// ```
/// rain::output::handle_interrupts();
/// ```
pub fn handle_interrupts() {
    #[cfg(unix)]
    {
        // SAFETY: signal-set manipulation on zeroed values owned here; the
        // dispositions are only read; the signals are blocked in this
        // thread before others start.
        // A signal the parent set to be ignored (SIGINT in a shell's
        // background job) stays ignored.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in [libc::SIGINT, libc::SIGTERM] {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction != libc::SIG_IGN
                {
                    libc::sigaddset(&mut set, sig);
                }
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            set
        };
        std::thread::spawn(move || {
            let mut sig: libc::c_int = 0;
            // SAFETY: waits on a valid set; `sig` receives the signal.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                return;
            }
            let list = staging();
            for p in list.iter() {
                remove(p);
            }
            let name = if sig == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
            let what = if list.is_empty() { "" } else { "; the unfinished output was removed" };
            // Over a progress bar's line, if one is drawn.
            let clear = if std::io::IsTerminal::is_terminal(&std::io::stderr()) { "\r\x1b[2K" } else { "" };
            eprintln!("{clear}rain: interrupted by {name}{what}");
            // The lock is held to the end: nothing is staged after this.
            std::process::exit(128 + sig);
        });
    }
}
