//! A log file appended through a shared memory map: the WAL's file on
//! [`StdFs`](super::StdFs).
//!
//! Why: an append with `write(2)` was about a third of a direct put's time
//! (docs/BENCHMARKS.md, issue 14: the syscall, the file-system write path
//! and the copy into the page cache). Storing into a `MAP_SHARED` mapping
//! puts the bytes in the same page cache with no syscall, so the durability
//! is the same:
//! - a **process crash** loses nothing appended: the pages belong to the
//!   file, not to the process, and the kernel writes them back as it does
//!   pages written with `write(2)`;
//! - **power loss** keeps what `fdatasync` covered, and `fdatasync` on the
//!   file writes back the pages dirtied through the mapping as well.
//!
//! How:
//! - The file is grown ahead of the appends in [`CHUNK_BYTES`] steps with
//!   `fallocate` (mode 0: blocks reserved, size extended), except for the
//!   first append, which gets only what it needs: a WAL's first record is
//!   its identity (tens of bytes, `engine/wal_identity.rs`), and a WAL that
//!   never holds a write should not hold a chunk. A full disk is
//!   reported there, as an error of the append that needed the space,
//!   never as a `SIGBUS` on a store into a hole.
//! - Only on file systems that overwrite a file's blocks in place (ext4,
//!   XFS, tmpfs). On a copy-on-write one (btrfs, ZFS) an overwrite needs
//!   new space, which a store into a mapping could only report as
//!   `SIGBUS`; there the WAL is written with `write(2)`.
//! - One mapping of [`RESERVE_BYTES`] of address space is made when the file
//!   is created; appends store into it up to the allocated size. An append
//!   that would pass the reservation, or any append after `fallocate` turned
//!   out unsupported, is written with `pwrite` at the logical end instead
//!   (the page cache keeps the two coherent).
//! - Stores go forward, eight bytes at a time, with volatile writes: if the
//!   process dies in the middle of an append, the file holds a prefix of
//!   it followed by zeros, which the WAL reader drops as a torn tail (see
//!   `format/wal.rs`, "Recovery").
//! - Dropping the file unmaps it and truncates it to its logical length, so
//!   a WAL closed cleanly ends at its last record. One left by a crash ends
//!   in zeros up to the next chunk boundary.
//!
//! The engine orders appends (one at a time, see `engine/memtable/direct.rs`);
//! an append that finds another in progress is refused with an error rather
//! than racing it.
//!
//! Known limit: a store into the mapping cannot fail with an error code. If
//! the file system refuses a write fault (for example, ext4 shut down after
//! an I/O error), the process receives `SIGBUS` where `write(2)` would have
//! returned `EIO`. Recovery then proceeds as after any crash.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::WritableFile;

/// Address space mapped per log file. A WAL is rolled when its memtable is
/// frozen (32 MiB by default), far below this; a larger one goes on with
/// `pwrite`.
const RESERVE_BYTES: usize = 1 << 30;

/// The file is grown this much at a time.
const CHUNK_BYTES: u64 = 1 << 20;

/// `statfs` magic numbers of the file systems that overwrite in place.
const IN_PLACE_FILE_SYSTEMS: [i64; 3] = [
    0xEF53,      // ext2, ext3, ext4
    0x5846_5342, // XFS
    0x0102_1994, // tmpfs
];

/// A log file appended through a memory map. See the module doc.
pub struct MappedLog {
    file: File,
    /// The start of the mapping, [`RESERVE_BYTES`] long.
    base: NonNull<u8>,
    /// The logical length: bytes appended so far.
    end: AtomicU64,
    /// The file's length: what `fallocate` reserved.
    allocated: AtomicU64,
    /// The mapping's pages below this are handed back (see `release`).
    released: AtomicU64,
    /// False once appends go through `pwrite` (no `fallocate`).
    mapped: AtomicBool,
    /// Set while an append runs.
    appending: AtomicBool,
}

// SAFETY: the mapping is written only by the append holding `appending`
// (one at a time, checked), and read by nobody through this handle; the
// pointer stays valid until `drop` unmaps it.
unsafe impl Send for MappedLog {}
// SAFETY: as above; every other field is a `File` or an atomic.
unsafe impl Sync for MappedLog {}

impl MappedLog {
    /// Maps `file` (just created, empty, opened for reading and writing).
    /// Gives the file back if it cannot be mapped: the caller appends with
    /// `write(2)`.
    pub fn new(file: File) -> Result<MappedLog, File> {
        if !overwrites_in_place(&file) {
            return Err(file);
        }
        // SAFETY: a fresh shared mapping of an open file; the kernel picks
        // the address. Nothing is touched until `fallocate` has extended the
        // file past the bytes stored.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                RESERVE_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        let Some(base) = NonNull::new(base.cast::<u8>()).filter(|_| base != libc::MAP_FAILED)
        else {
            return Err(file);
        };
        Ok(MappedLog {
            file,
            base,
            end: AtomicU64::new(0),
            allocated: AtomicU64::new(0),
            released: AtomicU64::new(0),
            mapped: AtomicBool::new(true),
            appending: AtomicBool::new(false),
        })
    }

    /// Makes sure the file is allocated up to `new_end`; `Ok(false)` if the
    /// file system cannot preallocate (appends then use `pwrite`).
    fn allocate(&self, new_end: u64) -> io::Result<bool> {
        let allocated = self.allocated.load(Ordering::Relaxed);
        if new_end <= allocated {
            return Ok(true);
        }
        let chunk_end = match allocated {
            0 => new_end,
            _ => new_end
                .div_ceil(CHUNK_BYTES)
                .saturating_mul(CHUNK_BYTES)
                .min(RESERVE_BYTES as u64)
                .max(new_end),
        };
        // On a nearly full disk a whole chunk may not fit where the append
        // does: then only what the append needs, so that the disk is full
        // for the WAL where it would have been without preallocation.
        for target in [chunk_end, new_end] {
            match fallocate(&self.file, allocated, target - allocated) {
                Ok(()) => {
                    self.allocated.store(target, Ordering::Relaxed);
                    self.release();
                    return Ok(true);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && target > new_end => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS)) => {
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::from_raw_os_error(libc::ENOSPC))
    }

    /// Appends `buf` at the logical end.
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        let end = self.end.load(Ordering::Acquire);
        let new_end = end
            .checked_add(buf.len() as u64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::FileTooLarge))?;
        let fits = new_end <= RESERVE_BYTES as u64;
        if fits && self.mapped.load(Ordering::Relaxed) && self.allocate(new_end)? {
            // SAFETY: `end..new_end` lies inside the mapping (`fits`) and
            // inside the file (allocated above), and only this append
            // writes the mapping now (`appending`).
            unsafe { store_forward(self.base.as_ptr().add(end as usize), buf) };
        } else {
            self.mapped.store(false, Ordering::Relaxed);
            self.file.write_all_at(buf, end)?;
        }
        self.end.store(new_end, Ordering::Release);
        Ok(())
    }

    /// Unmaps the pages wholly written so far from this process (their data
    /// stays in the page cache, dirty pages still dirty), so that the log
    /// does not add its whole length to the process's resident set: a
    /// full 32 MiB WAL did. Called once per chunk.
    fn release(&self) {
        let page = page_bytes();
        let upto = self.end.load(Ordering::Acquire) / page * page;
        let from = self.released.load(Ordering::Relaxed);
        if upto <= from {
            return;
        }
        // SAFETY: `from..upto` lies inside the mapping and is page-aligned;
        // for a shared file mapping MADV_DONTNEED only drops this process's
        // page-table entries, keeping the file's data.
        let rc = unsafe {
            libc::madvise(
                self.base.as_ptr().add(from as usize).cast(),
                (upto - from) as usize,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            self.released.store(upto, Ordering::Relaxed);
        }
    }
}

fn page_bytes() -> u64 {
    // SAFETY: a plain query.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096).max(1)
}

/// Whether `file` lives on a file system known to overwrite blocks in
/// place (see the module doc).
fn overwrites_in_place(file: &File) -> bool {
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `stat` points to writable memory of the right type; the fd
    // is open.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), stat.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    // `f_type`'s integer type differs between targets.
    #[allow(clippy::useless_conversion)]
    // SAFETY: fstatfs returned 0, so it filled `stat` in.
    let magic = i64::from(unsafe { stat.assume_init() }.f_type);
    IN_PLACE_FILE_SYSTEMS.contains(&magic)
}

/// Reserves `len` bytes of `file` from `at` (mode 0: the size grows too).
fn fallocate(file: &File, at: u64, len: u64) -> io::Result<()> {
    let (at, len) = (to_off(at)?, to_off(len)?);
    loop {
        // SAFETY: a plain system call on an open descriptor.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, at, len) };
        if rc == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINTR) {
            return Err(error);
        }
    }
}

fn to_off(n: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::FileTooLarge))
}

/// Copies `src` to `dst` front to back, eight bytes per store, with
/// volatile writes the compiler may neither merge nor reorder: a process
/// stopped at any instruction has stored a prefix of `src`.
///
/// # Safety
/// `dst` must be valid for writes of `src.len()` bytes.
unsafe fn store_forward(dst: *mut u8, src: &[u8]) {
    let mut words = src.chunks_exact(8);
    let mut at = 0usize;
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        // SAFETY: `at + 8 <= src.len()`, inside `dst` (the caller's
        // promise); `[u8; 8]` has alignment 1.
        unsafe { std::ptr::write_volatile(dst.add(at).cast::<[u8; 8]>(), bytes) };
        at += 8;
    }
    for &byte in words.remainder() {
        // SAFETY: `at < src.len()`, inside `dst`.
        unsafe { std::ptr::write_volatile(dst.add(at), byte) };
        at += 1;
    }
}

impl WritableFile for MappedLog {
    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        if self.appending.swap(true, Ordering::Acquire) {
            return Err(io::Error::other("two appends to one log at once"));
        }
        let result = self.append(buf);
        self.appending.store(false, Ordering::Release);
        result
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl Drop for MappedLog {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; nothing uses
        // `base` after this.
        unsafe { libc::munmap(self.base.as_ptr().cast(), RESERVE_BYTES) };
        let end = self.end.load(Ordering::Acquire);
        if self.allocated.load(Ordering::Relaxed) > end
            && let Err(error) = self.file.set_len(end)
        {
            // Only preallocated zeros are left behind; the WAL reader
            // ignores them.
            log::warn!("could not trim a WAL's preallocated space: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn create(path: &std::path::Path) -> io::Result<MappedLog> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        MappedLog::new(file).map_err(|_| io::Error::other("mmap refused"))
    }

    #[test]
    fn appends_read_back_and_the_file_is_trimmed_on_drop() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log");
        let log = create(&path)?;
        let mut expected = Vec::new();
        for i in 0..1000u32 {
            let record: Vec<u8> = (0..(i % 61 + 1)).map(|b| (b ^ i) as u8 | 1).collect();
            log.write_all(&record)?;
            expected.extend_from_slice(&record);
        }
        log.sync_data()?;
        // While open: the data, then preallocated zeros.
        let open = std::fs::read(&path)?;
        assert_eq!(open.len() as u64, CHUNK_BYTES);
        assert_eq!(&open[..expected.len()], expected.as_slice());
        assert!(open[expected.len()..].iter().all(|&b| b == 0));
        drop(log);
        assert_eq!(std::fs::read(&path)?, expected);
        Ok(())
    }

    #[test]
    fn appends_cross_chunk_boundaries() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log");
        let log = create(&path)?;
        let big: Vec<u8> = (0..(CHUNK_BYTES as usize + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        log.write_all(b"head")?;
        log.write_all(&big)?;
        log.write_all(b"tail")?;
        drop(log);
        let read = std::fs::read(&path)?;
        assert_eq!(read.len(), 8 + big.len());
        assert_eq!(&read[..4], b"head");
        assert_eq!(&read[4..4 + big.len()], big.as_slice());
        assert_eq!(&read[4 + big.len()..], b"tail");
        Ok(())
    }

    #[test]
    fn store_forward_copies_every_length() {
        for len in 0..40usize {
            let src: Vec<u8> = (0..len).map(|i| i as u8 + 1).collect();
            let mut dst = vec![0u8; len + 3];
            // SAFETY: `dst` has room for `len` bytes from offset 1.
            unsafe { store_forward(dst.as_mut_ptr().add(1), &src) };
            assert_eq!(&dst[1..=len], src.as_slice(), "len {len}");
            assert_eq!((dst[0], dst[len + 1], dst[len + 2]), (0, 0, 0));
        }
    }
}
