//! Crash-safe, private output files and directories.
//!
//! Every output is first written whole under a hidden temporary name
//! beside its final place, flushed and `fsync`ed, then renamed into place,
//! and the directory that holds it is `fsync`ed, so that after a crash or a
//! kill at any point (power loss included) the final name holds either the
//! previous complete output or the new complete one.
//!
//! - [`stage_file`] / [`Staged::commit`]: one file.
//! - [`DirWriter`]: a whole directory of files, written into a sibling
//!   temporary directory and swapped with the old one in one step
//!   (`renameat2(RENAME_EXCHANGE)` on Linux; elsewhere, or on a file system
//!   without it, the old directory is renamed aside first and the next run
//!   puts it back if it was killed in between).
//!
//! Files are created exclusively (`O_EXCL`, so a file or link left at the
//! temporary name is never followed or reused), mode 0600 from the moment
//! they exist, and directories mode 0700: outputs can hold device keys.
//! A temporary or aside name left behind by a kill starts with `.` and ends
//! in `.failback-tmp` or `.failback-aside`; the next run into the same
//! output removes (or restores) it first, and it is never read as output.
//! One run at a time may write a given output.
//!
//! For tests, `FAILBACK_CRASH_AT=N` aborts the process right after the
//! N-th step (a file or directory created, a file written, synced or
//! renamed, a directory synced, swapped or removed). It is only honoured
//! with the `cli` feature (the binary's build); unset, it costs one
//! look-up per process. The library's writers (`merge`, the C2D
//! settlement) and the binary's (`apply`, `ingest`, `replica`, the drill
//! report) all go through this module, public under the `internals`
//! feature, so one counter numbers every step of a run.
#![cfg_attr(
    not(feature = "internals"),
    allow(
        dead_code,
        reason = "without `internals` the library uses a part; the rest is the binary's"
    )
)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The mode of every output file: it may hold keys.
pub const FILE_MODE: u32 = 0o600;
/// The mode of every output directory.
pub const DIR_MODE: u32 = 0o700;

/// Marks one filesystem step done, and aborts the process when it is the
/// step `FAILBACK_CRASH_AT` names.
#[cfg(feature = "cli")]
fn step() {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static CRASH_AT: OnceLock<Option<u64>> = OnceLock::new();
    static STEPS: AtomicU64 = AtomicU64::new(0);
    let at = CRASH_AT.get_or_init(|| {
        std::env::var("FAILBACK_CRASH_AT")
            .ok()
            .and_then(|n| n.parse().ok())
    });
    if let Some(at) = at {
        if STEPS.fetch_add(1, Ordering::SeqCst) + 1 == *at {
            std::process::abort();
        }
    }
}

#[cfg(not(feature = "cli"))]
fn step() {}

/// Creates `path`, which must not exist, for writing, mode 0600.
///
/// # Errors
///
/// The file system's: `path` exists (`AlreadyExists`), or its directory is missing or not writable.
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    let file = options.open(path)?;
    step();
    Ok(file)
}

/// Creates the directory `path` (not its parents), mode 0700.
///
/// # Errors
///
/// The file system's: `path` exists, or its parent is missing or not writable.
pub fn create_dir_private(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(path)?;
    step();
    Ok(())
}

/// `fsync`s the directory `path`, making the names in it durable.
///
/// # Errors
///
/// The file system's, opening or syncing the directory.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(path)?.sync_all()?;
    step();
    Ok(())
}

/// The directory holding `path`.
fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// `.NAME.WHAT` beside `path`.
fn sibling(path: &Path, what: &str) -> PathBuf {
    let name = path.file_name().map_or_else(
        || "failback-out".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    path.with_file_name(format!(".{name}.{what}"))
}

fn remove_stale_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn remove_stale_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            fs::remove_dir_all(path)?;
            step();
        }
        Ok(_) => remove_stale_file(path)?,
        Err(_) => {}
    }
    Ok(())
}

/// An output file being written, its bytes buffered.
pub struct OutFile {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl OutFile {
    /// Creates `path` (which must not exist), mode 0600.
    ///
    /// # Errors
    ///
    /// As [`create_private`].
    pub fn create(path: PathBuf) -> io::Result<Self> {
        let file = create_private(&path)?;
        Ok(Self {
            writer: BufWriter::with_capacity(1 << 18, file),
            path,
        })
    }

    /// Where it is being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends bytes.
    ///
    /// # Errors
    ///
    /// The file system's, when the buffer is written out.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// The writer, for serializers.
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        &mut self.writer
    }

    /// Flushes and `fsync`s the file.
    ///
    /// # Errors
    ///
    /// The file system's, flushing or syncing: the file may then be
    /// partial, and is never renamed into place.
    pub fn finish(self) -> io::Result<()> {
        let file = self.writer.into_inner().map_err(|e| e.into_error())?;
        step();
        file.sync_all()?;
        step();
        Ok(())
    }
}

/// A file written whole and synced under a temporary name, not yet in
/// place. Dropped without [`Staged::commit`], it is removed.
pub struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    done: bool,
}

/// Writes a file for `path` under the temporary name `.NAME.failback-tmp`
/// beside it (removing one a killed run left), mode 0600, and syncs it.
/// Nothing is at `path` yet: see [`Staged::commit`].
///
/// # Errors
///
/// The file system's, or `write`'s: the temporary file is then removed.
pub fn stage_file(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<Staged> {
    let tmp = sibling(path, "failback-tmp");
    remove_stale_file(&tmp)?;
    let mut out = OutFile::create(tmp.clone())?;
    let staged = Staged {
        tmp,
        path: path.to_owned(),
        done: false,
    };
    write(out.writer())?;
    out.finish()?;
    Ok(staged)
}

impl Staged {
    /// Renames the file into place and syncs its directory.
    ///
    /// # Errors
    ///
    /// The file system's, renaming or syncing the directory.
    pub fn commit(mut self) -> io::Result<()> {
        fs::rename(&self.tmp, &self.path)?;
        self.done = true;
        step();
        sync_dir(&parent(&self.path))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `path` whole: [`stage_file`] then [`Staged::commit`].
///
/// # Errors
///
/// As [`stage_file`] and [`Staged::commit`].
pub fn write_file(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    stage_file(path, write)?.commit()
}

/// Removes the file `path` if it exists, durably.
///
/// # Errors
///
/// The file system's, but for a file that is not there.
pub fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {
            step();
            sync_dir(&parent(path))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Why [`DirWriter::begin`] left an existing output alone: the payload of
/// its `AlreadyExists` error, shown as the reason.
#[derive(Debug)]
struct NotReplaced(String);

impl std::fmt::Display for NotReplaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotReplaced {}

/// [`DirWriter::begin`] leaving an existing `out` alone (it is not a
/// directory, or holds something the command does not write), `why`: the
/// operator's to settle (another path, or the directory cleared), not the
/// machine's. See [`is_not_replaced`].
fn not_replaced(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::AlreadyExists, NotReplaced(why))
}

/// Whether `error` is [`DirWriter::begin`] refusing to replace its
/// output: bad usage, not a failure of the file system. Every writer, the
/// library's and the binary's, goes through this one module, so the
/// refusal is told by its own payload type.
pub fn is_not_replaced(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|payload| payload.is::<NotReplaced>())
}

/// A whole output directory being written: its files go into the sibling
/// `.NAME.failback-tmp` (mode 0700), which [`DirWriter::commit`] puts in
/// place of `out` in one step. Dropped without a commit, the temporary
/// directory is removed and `out` is left as it was.
pub struct DirWriter {
    out: PathBuf,
    tmp: PathBuf,
    /// Subdirectories made with [`DirWriter::create_dir`], synced before
    /// the directory itself.
    subdirs: Vec<PathBuf>,
    done: bool,
}

impl DirWriter {
    /// Starts writing `out` (making its missing parents): first repairs
    /// what a killed run may have left (an aside directory is put back
    /// when `out` is missing, else removed; a temporary directory is
    /// removed), then creates the temporary one.
    ///
    /// `out`, when it exists, must be a directory holding only names
    /// `is_output` accepts: a directory holding anything else is not
    /// replaced (its contents would be lost).
    ///
    /// # Errors
    ///
    /// The file system's, or an `AlreadyExists` error when `out` is not
    /// a directory of outputs (see [`is_not_replaced`]).
    pub fn begin(out: &Path, is_output: &dyn Fn(&str) -> bool) -> io::Result<Self> {
        let tmp = sibling(out, "failback-tmp");
        let aside = sibling(out, "failback-aside");
        if fs::symlink_metadata(&aside).is_ok() {
            if fs::symlink_metadata(out).is_ok() {
                remove_stale_dir(&aside)?;
            } else {
                fs::rename(&aside, out)?;
                step();
                sync_dir(&parent(out))?;
            }
        }
        remove_stale_dir(&tmp)?;
        if let Ok(meta) = fs::symlink_metadata(out) {
            if !meta.is_dir() {
                return Err(not_replaced("exists and is not a directory".into()));
            }
            for entry in fs::read_dir(out)? {
                let name = entry?.file_name();
                let name = name.to_string_lossy();
                if !is_output(&name) {
                    return Err(not_replaced(format!(
                        "not replaced: it holds {name:?}, which is not an output of this command"
                    )));
                }
            }
        }
        // Missing parents are made as `mkdir -p` would (they are not
        // outputs); only the output directory itself is 0700.
        fs::create_dir_all(parent(out))?;
        create_dir_private(&tmp)?;
        Ok(Self {
            out: out.to_owned(),
            tmp,
            subdirs: Vec::new(),
            done: false,
        })
    }

    /// Makes the subdirectory `name` (mode 0700), in which files are then
    /// created as `name/FILE`.
    ///
    /// # Errors
    ///
    /// As [`create_dir_private`].
    pub fn create_dir(&mut self, name: &str) -> io::Result<()> {
        let path = self.tmp.join(name);
        create_dir_private(&path)?;
        self.subdirs.push(path);
        Ok(())
    }

    /// Where the file `name` is being written.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    /// Creates the file `name` in the directory, mode 0600.
    ///
    /// # Errors
    ///
    /// As [`create_private`].
    pub fn create(&self, name: &str) -> io::Result<OutFile> {
        OutFile::create(self.tmp.join(name))
    }

    /// Writes the file `name` whole and syncs it.
    ///
    /// # Errors
    ///
    /// As [`OutFile::create`] and [`OutFile::finish`].
    pub fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut file = self.create(name)?;
        file.append(bytes)?;
        file.finish()
    }

    /// Puts the directory in place of `out`, every file of it having been
    /// [finished](OutFile::finish): syncs it, swaps it with the old `out`
    /// (or renames it, when there is none), syncs the parent, and removes
    /// the old one.
    ///
    /// # Errors
    ///
    /// The file system's, syncing, swapping, renaming or removing: `out`
    /// then holds the old outputs or the new, never a mix.
    pub fn commit(mut self) -> io::Result<()> {
        for subdir in &self.subdirs {
            sync_dir(subdir)?;
        }
        sync_dir(&self.tmp)?;
        let dir = parent(&self.out);
        if fs::symlink_metadata(&self.out).is_err() {
            fs::rename(&self.tmp, &self.out)?;
            self.done = true;
            step();
            return sync_dir(&dir);
        }
        if exchange(&self.tmp, &self.out)? {
            // The old directory is now at the temporary name.
            self.done = true;
            step();
            sync_dir(&dir)?;
        } else {
            let aside = sibling(&self.out, "failback-aside");
            fs::rename(&self.out, &aside)?;
            step();
            fs::rename(&self.tmp, &self.out)?;
            self.done = true;
            step();
            sync_dir(&dir)?;
            fs::rename(&aside, &self.tmp)?;
            step();
        }
        fs::remove_dir_all(&self.tmp)?;
        step();
        sync_dir(&dir)
    }
}

impl Drop for DirWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Swaps `a` and `b` in one step; `false` when the system or the file
/// system cannot.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(true),
        Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> io::Result<bool> {
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("failback-fsio-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_directory_is_replaced_whole_and_leaves_no_temporary() {
        let dir = scratch("replace");
        let out = dir.join("out");
        let deep = dir.join("new/deeper/out");
        DirWriter::begin(&deep, &|_| false)
            .unwrap()
            .commit()
            .unwrap();
        assert!(deep.is_dir());
        fs::remove_dir_all(dir.join("new")).unwrap();
        for round in ["one", "two"] {
            let w = DirWriter::begin(&out, &|n| n.ends_with(".txt")).unwrap();
            w.write("a.txt", round.as_bytes()).unwrap();
            w.commit().unwrap();
            assert_eq!(fs::read_to_string(out.join("a.txt")).unwrap(), round);
        }
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out"]);
        fs::write(out.join("mine"), "x").unwrap();
        assert!(DirWriter::begin(&out, &|n| n.ends_with(".txt")).is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_aside_directory_left_by_a_kill_is_put_back() {
        let dir = scratch("aside");
        let out = dir.join("out");
        let aside = sibling(&out, "failback-aside");
        fs::create_dir(&aside).unwrap();
        fs::write(aside.join("a.txt"), "old").unwrap();
        let w = DirWriter::begin(&out, &|_| true).unwrap();
        assert_eq!(fs::read_to_string(out.join("a.txt")).unwrap(), "old");
        drop(w);
        assert!(!sibling(&out, "failback-tmp").exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_staged_file_dropped_is_removed_and_a_stale_one_replaced() {
        let dir = scratch("file");
        let path = dir.join("state.json");
        fs::write(sibling(&path, "failback-tmp"), "stale").unwrap();
        drop(stage_file(&path, |w| w.write_all(b"x")).unwrap());
        assert!(!sibling(&path, "failback-tmp").exists());
        write_file(&path, |w| w.write_all(b"new")).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let _ = fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_written_in_the_temporary_directory_until_the_commit() {
        let dir = scratch("paths");
        let out = dir.join("out");
        let mut w = DirWriter::begin(&out, &|_| true).unwrap();
        w.create_dir("appmeta").unwrap();
        let name = "appmeta/doc.json";
        let mut file = w.create(name).unwrap();
        assert_eq!(file.path(), w.path_of(name));
        assert_eq!(
            w.path_of(name),
            sibling(&out, "failback-tmp").join("appmeta/doc.json")
        );
        file.append(b"{}").unwrap();
        file.finish().unwrap();
        assert_eq!(fs::read(w.path_of(name)).unwrap(), b"{}");
        assert!(!out.exists());
        w.commit().unwrap();
        assert_eq!(fs::read(out.join(name)).unwrap(), b"{}");
        #[cfg(unix)]
        {
            assert_eq!(mode(&out), DIR_MODE);
            assert_eq!(mode(&out.join("appmeta")), DIR_MODE);
            assert_eq!(mode(&out.join(name)), FILE_MODE);
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_a_killed_run_left_at_a_temporary_or_aside_name_is_cleared() {
        let dir = scratch("stale");
        let out = dir.join("out");
        let tmp = sibling(&out, "failback-tmp");
        // A file where the temporary directory goes.
        fs::write(&tmp, "stale").unwrap();
        let w = DirWriter::begin(&out, &|_| true).unwrap();
        w.write("a", b"1").unwrap();
        w.commit().unwrap();
        // A directory there, with a file in it.
        fs::create_dir(&tmp).unwrap();
        fs::write(tmp.join("a"), "stale").unwrap();
        let w = DirWriter::begin(&out, &|_| true).unwrap();
        w.write("a", b"2").unwrap();
        w.commit().unwrap();
        assert_eq!(fs::read(out.join("a")).unwrap(), b"2");
        // An aside directory beside the output it was put back as: removed.
        let aside = sibling(&out, "failback-aside");
        fs::create_dir(&aside).unwrap();
        fs::write(aside.join("a"), "old").unwrap();
        drop(DirWriter::begin(&out, &|_| true).unwrap());
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out"]);
        assert_eq!(fs::read(out.join("a")).unwrap(), b"2");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_at_a_temporary_file_name_is_reported_not_written_over() {
        let dir = scratch("tmpdir");
        let path = dir.join("state.json");
        fs::create_dir(sibling(&path, "failback-tmp")).unwrap();
        let err = write_file(&path, |w| w.write_all(b"x")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::IsADirectory, "{err}");
        assert!(!path.exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn remove_file_removes_a_file_passes_a_missing_one_and_refuses_a_directory() {
        let dir = scratch("remove");
        let path = dir.join("a.log");
        fs::write(&path, "x").unwrap();
        remove_file(&path).unwrap();
        assert!(!path.exists());
        remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        assert!(remove_file(&path).is_err());
        assert!(path.is_dir());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_a_refusal_to_replace_reads_as_one() {
        let dir = scratch("refusal");
        let out = dir.join("out");
        fs::write(&out, "a file").unwrap();
        let Err(refused) = DirWriter::begin(&out, &|_| true) else {
            panic!("a file at the output is replaced");
        };
        assert!(is_not_replaced(&refused), "{refused}");
        assert_eq!(fs::read(&out).unwrap(), b"a file");
        for other in [
            io::Error::from(io::ErrorKind::AlreadyExists),
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a directory",
            ),
            io::Error::other("disk on fire"),
            io::Error::new(io::ErrorKind::NotFound, "gone"),
        ] {
            assert!(!is_not_replaced(&other), "{other}");
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
