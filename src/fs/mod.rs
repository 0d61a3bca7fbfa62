//! The file-system layer: every file the engine touches (WAL, segments,
//! manifest, directory) goes through [`FileSystem`], so that tests can put a
//! failing or power-loss-simulating file system in its place.
//!
//! [`StdFs`] is the real one. It creates directories with mode 0700 and files
//! with mode 0600: a database's data is its owner's alone. [`sim::SimFs`] is
//! an in-memory one for tests: it tracks what is durable, simulates power
//! loss and injects faults.

mod mapped;
pub mod sim;

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

/// A file opened for appending (WAL, segment or manifest being written).
///
/// Shared: a WAL is appended to by whichever writer's turn it is (see
/// `engine/memtable/direct.rs`), and synced by the memtable actor meanwhile.
/// Callers order their appends; the file does not.
pub trait WritableFile: Send + Sync {
    /// Appends all of `buf`.
    fn write_all(&self, buf: &[u8]) -> io::Result<()>;
    /// Makes every byte written so far durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
}

/// A file opened for positioned reads, shared between threads.
pub trait ReadableFile: Send + Sync + Debug {
    /// Fills `buf` from `offset`; an `UnexpectedEof` error if the file is shorter.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Like `read_exact_at`, but only if the bytes can be had without
    /// waiting for the disk (they are in the page cache): `Ok(false)` means
    /// "would block, nothing read". The default never tries.
    fn read_exact_at_if_cached(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        let _ = (buf, offset);
        Ok(false)
    }
    /// The file's length when it was opened.
    fn len(&self) -> u64;
    /// True for an empty file.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Held while a process owns a database directory; dropping it unlocks.
pub trait DirectoryLock: Send + Sync + Debug {}

/// The file-system calls the engine makes.
pub trait FileSystem: Send + Sync + Debug + 'static {
    /// Creates `path` and its parents (mode 0700 for new directories).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates `path` for writing, truncating it if it exists.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Creates `path` for a log that is only ever appended to and synced,
    /// truncating it if it exists: the WAL. A file system may preallocate
    /// it, so that after a crash it can end in zeros past the last append;
    /// dropping the file trims them. The default is [`FileSystem::create`].
    fn create_log(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.create(path)
    }
    /// Opens `path` for positioned reads.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>>;
    /// Reads the whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a directory.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Takes an exclusive lock on `path` (created if missing); `WouldBlock`
    /// if another holder has it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirectoryLock>>;
    /// Makes `to` name the same data as `from` (a hard link), or, where the
    /// file system cannot link (another device, no links), a synced copy.
    /// `to` must not exist.
    fn link_or_copy(&self, from: &Path, to: &Path) -> io::Result<()> {
        let data = self.read(from)?;
        let file = self.create(to)?;
        file.write_all(&data)?;
        file.sync_data()
    }
    /// Bytes free for new data on the file system holding directory `path`;
    /// `Ok(None)` if this file system cannot tell (then nothing is refused
    /// for lack of space in advance).
    fn available_bytes(&self, path: &Path) -> io::Result<Option<u64>> {
        let _ = path;
        Ok(None)
    }
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

#[derive(Debug)]
struct StdReadable {
    file: File,
    len: u64,
}

impl ReadableFile for StdReadable {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    #[cfg(target_os = "linux")]
    fn read_exact_at_if_cached(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        read_if_cached(&self.file, buf, offset)
    }
    fn len(&self) -> u64 {
        self.len
    }
}

/// `preadv2` with `RWF_NOWAIT`: the kernel answers from the page cache or
/// says `EAGAIN`, never waiting for the disk. Kernels or file systems without
/// it (`EOPNOTSUPP`, `EINVAL`, `ENOSYS`) count as "would block".
#[cfg(target_os = "linux")]
fn read_if_cached(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    while !buf.is_empty() {
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let at = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `iov` points into `buf`, which is valid for writes of
        // `buf.len()` bytes for the whole call; the fd is open.
        let read = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, at, libc::RWF_NOWAIT) };
        match read {
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            n if n > 0 => {
                let n = n.unsigned_abs();
                buf = buf.get_mut(n..).unwrap_or_default();
                offset += n as u64;
            }
            _ => {
                let error = io::Error::last_os_error();
                return match error.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) => {
                        Ok(false)
                    }
                    _ => Err(error),
                };
            }
        }
    }
    Ok(true)
}

struct StdWritable(File);

impl WritableFile for StdWritable {
    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        (&self.0).write_all(buf)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

#[derive(Debug)]
struct StdLock(#[allow(dead_code)] File);

impl DirectoryLock for StdLock {}

impl FileSystem for StdFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        Ok(Box::new(StdWritable(file)))
    }

    /// Appended through a shared memory map (`mapped.rs`), or with
    /// `write(2)` where the file cannot be mapped.
    fn create_log(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        match mapped::MappedLog::new(file) {
            Ok(log) => Ok(Box::new(log)),
            Err(file) => Ok(Box::new(StdWritable(file))),
        }
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Arc::new(StdReadable { file, len }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirectoryLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
            std::fs::TryLockError::Error(e) => e,
        })?;
        Ok(Box::new(StdLock(file)))
    }

    fn link_or_copy(&self, from: &Path, to: &Path) -> io::Result<()> {
        match std::fs::hard_link(from, to) {
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(to)?;
                io::copy(&mut File::open(from)?, &mut file)?;
                file.sync_data()
            }
            other => other,
        }
    }

    fn available_bytes(&self, path: &Path) -> io::Result<Option<u64>> {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
        // SAFETY: `c_path` is a NUL-terminated string that outlives the
        // call, and `stat` points to writable memory of the right type.
        let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: statvfs returned 0, so it filled `stat` in.
        let stat = unsafe { stat.assume_init() };
        Ok(Some(stat.f_bavail.saturating_mul(stat.f_frsize)))
    }
}
