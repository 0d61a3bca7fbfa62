//! `SimFs`: an in-memory [`FileSystem`] for crash and fault tests. It knows,
//! for every file and directory, what a power loss would keep.
//!
//! # What is durable
//!
//! - A file's **data** is durable up to its last `sync_data`. Bytes written
//!   after it are only in the "page cache".
//! - A directory's **entries** (creations, renames, removals, new
//!   subdirectories) are durable as of its last `sync_dir`. Syncing a file
//!   does not make its name durable, and a rename is durable only once the
//!   directory holding it is synced.
//! - A file whose name was never made durable vanishes in a crash, even if
//!   its data was synced: nothing on the disk points at it any more.
//! - A directory made by `create_dir_all` is an entry of its parent: it too
//!   survives only once the parent is synced.
//!
//! # Power loss
//!
//! [`SimFs::crash`] throws away everything not durable: each directory goes
//! back to its durable entries (a created file vanishes, a renamed file is
//! back under its old name, a removed file comes back), and each file to its
//! durable bytes, plus (if torn tails are on, the default) a random-length
//! prefix of the bytes appended after its last sync, as a disk that wrote
//! some pages and not others would. The randomness is seeded.
//! `crash` returns the handle of the rebooted disk; every handle of the
//! previous boot (the old `SimFs`, its open files and locks) fails from then
//! on, as a process killed by the power cut would never touch the disk again.
//! Locks are released by a crash.
//!
//! To crash *at* a chosen point, [`SimFs::power_off_at`] cuts the power at
//! the K-th mutating call (creating a directory or file, writing, syncing,
//! renaming, removing, syncing a directory, locking; counted from 1 since
//! the `SimFs` was made, over all boots, see [`SimFs::steps`]): that call and
//! every later one fail with an I/O error and change nothing. Then `crash()`.
//!
//! # Faults
//!
//! [`SimFs::inject`] adds a [`Fault`]: the Nth matching call (by [`Op`] and,
//! optionally, a substring of the path) fails with a chosen error kind, or a
//! write keeps only part of its buffer and then fails. A failed `sync_data`
//! makes nothing durable.
//!
//! # Design
//!
//! The disk is owned by one thread, and every call is a closure sent to it
//! over a channel with a reply channel (an actor without actix): there are
//! no locks. If the thread is gone, calls fail with an I/O error.
//!
//! Limits: no permissions, no hard links, no directory removal or rename,
//! and unsynced directory operations are always undone (a real file system
//! may keep some of them).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, ErrorKind};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};

use super::{DirectoryLock, FileSystem, ReadableFile, WritableFile};

/// The kinds of call a [`Fault`] can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `create_dir_all`.
    CreateDir,
    /// `create`.
    Create,
    /// `WritableFile::write_all`.
    Write,
    /// `WritableFile::sync_data`.
    Sync,
    /// `rename` (matched on the source path).
    Rename,
    /// `remove_file`.
    Remove,
    /// `sync_dir`.
    SyncDir,
    /// `open`.
    Open,
    /// `read` and `ReadableFile::read_exact_at`.
    Read,
    /// `list_dir`.
    List,
    /// `lock`.
    Lock,
}

impl Op {
    /// True for the calls that change the disk: these count as steps.
    pub fn is_mutating(self) -> bool {
        !matches!(self, Op::Open | Op::Read | Op::List)
    }
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultEffect {
    /// The call fails with this kind and changes nothing.
    Fail(ErrorKind),
    /// A write appends the first `keep` bytes of its buffer, then fails with
    /// `kind` (for other calls: like `Fail(kind)`).
    ShortWrite { keep: usize, kind: ErrorKind },
}

/// One planned failure: the `nth` matching call (1-based, counted from
/// injection) and the `times - 1` matching calls after it fail.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The kind of call.
    pub op: Op,
    /// Only calls whose path contains this; `None` for any path.
    pub path_contains: Option<String>,
    /// Which matching call fails first.
    pub nth: u64,
    /// How many matching calls fail from then on (`u64::MAX`: all).
    pub times: u64,
    /// What the failing call does.
    pub effect: FaultEffect,
}

impl Fault {
    /// The first `op` call fails once with `kind`.
    pub fn fail(op: Op, kind: ErrorKind) -> Self {
        Fault {
            op,
            path_contains: None,
            nth: 1,
            times: 1,
            effect: FaultEffect::Fail(kind),
        }
    }
    /// The first write keeps `keep` bytes, then fails once with `kind`.
    pub fn short_write(keep: usize, kind: ErrorKind) -> Self {
        Fault {
            effect: FaultEffect::ShortWrite { keep, kind },
            ..Fault::fail(Op::Write, kind)
        }
    }
    /// Only calls on paths containing `part`.
    pub fn on_path(mut self, part: impl Into<String>) -> Self {
        self.path_contains = Some(part.into());
        self
    }
    /// The `nth` matching call fails first (1-based).
    pub fn nth(mut self, nth: u64) -> Self {
        self.nth = nth.max(1);
        self
    }
    /// `times` matching calls fail (`u64::MAX`: every one from the nth on).
    pub fn times(mut self, times: u64) -> Self {
        self.times = times;
        self
    }
}

/// An in-memory file system that simulates power loss and faults; see the
/// module documentation. Clones share one disk.
#[derive(Debug, Clone)]
pub struct SimFs {
    jobs: Sender<Job>,
    /// The boot this handle belongs to; handles of an earlier boot fail.
    boot: u64,
}

type Job = Box<dyn FnOnce(&mut Disk) + Send>;

fn disconnected() -> io::Error {
    io::Error::other("simulated disk thread is gone")
}

/// Runs `f` on the disk's thread and returns what it returns.
fn call<T: Send + 'static>(
    jobs: &Sender<Job>,
    f: impl FnOnce(&mut Disk) -> T + Send + 'static,
) -> io::Result<T> {
    let (reply, answer) = mpsc::channel();
    jobs.send(Box::new(move |disk: &mut Disk| {
        let _ = reply.send(f(disk));
    }))
    .map_err(|_| disconnected())?;
    answer.recv().map_err(|_| disconnected())
}

impl Default for SimFs {
    fn default() -> Self {
        SimFs::new(0)
    }
}

impl SimFs {
    /// An empty disk (just the root directory); `seed` drives torn tails.
    pub fn new(seed: u64) -> SimFs {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            let mut disk = Disk::new(seed);
            for job in queue {
                job(&mut disk);
            }
        });
        SimFs { jobs, boot: 0 }
    }

    fn control<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Disk) -> T + Send + 'static,
    ) -> io::Result<T> {
        call(&self.jobs, f)
    }

    /// A call from this boot, checked against power and faults first.
    fn run<T: Send + 'static>(
        &self,
        op: Op,
        path: &Path,
        f: impl FnOnce(&mut Disk, Option<FaultEffect>) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        run_on(&self.jobs, self.boot, op, path, f)
    }

    /// Mutating calls made so far, over all boots (see [`Self::power_off_at`]).
    pub fn steps(&self) -> io::Result<u64> {
        self.control(|disk| disk.steps)
    }

    /// Cuts the power at mutating call number `step` (1-based, as counted by
    /// [`Self::steps`]): it and every later call fail and change nothing.
    pub fn power_off_at(&self, step: u64) -> io::Result<()> {
        self.control(move |disk| disk.power_off_at = Some(step))
    }

    /// Cuts the power now.
    pub fn power_off(&self) -> io::Result<()> {
        self.control(|disk| disk.powered_off = true)
    }

    /// True once the power is cut (until [`Self::crash`]).
    pub fn is_powered_off(&self) -> io::Result<bool> {
        self.control(|disk| disk.powered_off)
    }

    /// Turns torn tails on crash on (the default) or off.
    pub fn set_torn_tails(&self, on: bool) -> io::Result<()> {
        self.control(move |disk| disk.torn_tails = on)
    }

    /// Adds a planned fault.
    pub fn inject(&self, fault: Fault) -> io::Result<()> {
        self.control(move |disk| disk.faults.push((fault, 0)))
    }

    /// Removes every planned fault.
    pub fn clear_faults(&self) -> io::Result<()> {
        self.control(|disk| disk.faults.clear())
    }

    /// How many calls injected faults have failed so far.
    pub fn faults_fired(&self) -> io::Result<u64> {
        self.control(|disk| disk.fired)
    }

    /// Power loss: keeps only what is durable (see the module doc), releases
    /// locks, clears faults and the power cut, and returns the handle of the
    /// rebooted disk. Handles of earlier boots fail from now on.
    pub fn crash(&self) -> io::Result<SimFs> {
        let boot = self.control(|disk| disk.crash())?;
        Ok(SimFs {
            jobs: self.jobs.clone(),
            boot,
        })
    }

    /// The current names in directory `path`, sorted (no fault, no step).
    pub fn names(&self, path: &Path) -> io::Result<Vec<String>> {
        let path = normalize(path);
        self.control(move |disk| disk.dir(&path).map(|d| d.current.keys().cloned().collect()))?
    }

    /// The current contents of file `path` (no fault, no step).
    pub fn contents(&self, path: &Path) -> io::Result<Vec<u8>> {
        let path = normalize(path);
        self.control(move |disk| disk.inode_at(&path).map(|i| i.current.clone()))?
    }
}

fn run_on<T: Send + 'static>(
    jobs: &Sender<Job>,
    boot: u64,
    op: Op,
    path: &Path,
    f: impl FnOnce(&mut Disk, Option<FaultEffect>) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let path = path.to_string_lossy().into_owned();
    call(jobs, move |disk| {
        let effect = disk.admit(boot, op, &path)?;
        f(disk, effect)
    })?
}

/// A file's durable and current bytes.
#[derive(Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    /// `durable` is a prefix of `current` (false after a truncation).
    appended_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File(u64),
    Dir,
}

/// A directory's entries, as of its last sync and now.
#[derive(Debug, Default)]
struct Dir {
    durable: BTreeMap<String, Node>,
    current: BTreeMap<String, Node>,
}

/// The whole simulated disk, owned by its thread.
struct Disk {
    boot: u64,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    /// Every directory that exists now, by normalized path ("/" is the root).
    dirs: BTreeMap<PathBuf, Dir>,
    /// Held locks: path and the token of the guard that holds it.
    locks: HashMap<PathBuf, u64>,
    next_token: u64,
    steps: u64,
    power_off_at: Option<u64>,
    powered_off: bool,
    faults: Vec<(Fault, u64)>,
    fired: u64,
    torn_tails: bool,
    rng: u64,
}

fn error(kind: ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, what.to_string())
}

/// The path as a rooted path without `.` components.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The parent directory and the name of a normalized path.
fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            Ok((parent.to_path_buf(), name.to_string_lossy().into_owned()))
        }
        _ => Err(error(ErrorKind::InvalidInput, "not a file path")),
    }
}

impl Disk {
    fn new(seed: u64) -> Disk {
        let mut dirs = BTreeMap::new();
        dirs.insert(PathBuf::from("/"), Dir::default());
        Disk {
            boot: 0,
            inodes: HashMap::new(),
            next_inode: 1,
            dirs,
            locks: HashMap::new(),
            next_token: 1,
            steps: 0,
            power_off_at: None,
            powered_off: false,
            faults: Vec::new(),
            fired: 0,
            torn_tails: true,
            rng: seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// Checks boot and power, counts the step, and picks a fault if one is due.
    fn admit(&mut self, boot: u64, op: Op, path: &str) -> io::Result<Option<FaultEffect>> {
        if boot != self.boot {
            return Err(io::Error::other(
                "handle from before a simulated power loss",
            ));
        }
        if op.is_mutating() && !self.powered_off {
            self.steps += 1;
            if self.power_off_at == Some(self.steps) {
                self.powered_off = true;
            }
        }
        if self.powered_off {
            return Err(io::Error::other("simulated power loss"));
        }
        let mut due = None;
        for (fault, seen) in &mut self.faults {
            let path_matches = fault
                .path_contains
                .as_ref()
                .is_none_or(|p| path.contains(p));
            if fault.op != op || !path_matches {
                continue;
            }
            *seen += 1;
            let fires = *seen >= fault.nth && *seen - fault.nth < fault.times;
            if fires && due.is_none() {
                due = Some(fault.effect);
            }
        }
        match due {
            Some(FaultEffect::Fail(kind)) => {
                self.fired += 1;
                Err(error(kind, "injected fault"))
            }
            Some(effect) => {
                self.fired += 1;
                Ok(Some(effect))
            }
            None => Ok(None),
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: enough to pick torn lengths reproducibly.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn dir(&self, path: &Path) -> io::Result<&Dir> {
        self.dirs
            .get(path)
            .ok_or_else(|| error(ErrorKind::NotFound, "no such directory"))
    }

    fn dir_mut(&mut self, path: &Path) -> io::Result<&mut Dir> {
        self.dirs
            .get_mut(path)
            .ok_or_else(|| error(ErrorKind::NotFound, "no such directory"))
    }

    fn lookup(&self, path: &Path) -> io::Result<Node> {
        let (parent, name) = split(path)?;
        self.dir(&parent)?
            .current
            .get(&name)
            .copied()
            .ok_or_else(|| error(ErrorKind::NotFound, "no such file"))
    }

    fn file_at(&self, path: &Path) -> io::Result<u64> {
        match self.lookup(path)? {
            Node::File(id) => Ok(id),
            Node::Dir => Err(error(ErrorKind::IsADirectory, "is a directory")),
        }
    }

    fn inode_at(&self, path: &Path) -> io::Result<&Inode> {
        let id = self.file_at(path)?;
        self.inodes
            .get(&id)
            .ok_or_else(|| error(ErrorKind::NotFound, "no such file"))
    }

    fn create_dir_all(&mut self, path: &Path) -> io::Result<()> {
        let mut at = PathBuf::from("/");
        for component in path.components().skip(1) {
            let name = component.as_os_str().to_string_lossy().into_owned();
            let child = at.join(&name);
            match self.dir(&at)?.current.get(&name) {
                Some(Node::Dir) => {}
                Some(Node::File(_)) => {
                    return Err(error(ErrorKind::NotADirectory, "a file is in the way"));
                }
                None => {
                    self.dir_mut(&at)?.current.insert(name, Node::Dir);
                    self.dirs.insert(child.clone(), Dir::default());
                }
            }
            at = child;
        }
        Ok(())
    }

    /// Creates (or truncates) the file at `path`; returns its inode.
    fn create(&mut self, path: &Path) -> io::Result<u64> {
        let (parent, name) = split(path)?;
        match self.dir(&parent)?.current.get(&name).copied() {
            Some(Node::Dir) => Err(error(ErrorKind::IsADirectory, "is a directory")),
            Some(Node::File(id)) => {
                let inode = self.inodes.entry(id).or_default();
                inode.current.clear();
                inode.appended_only = inode.durable.is_empty();
                Ok(id)
            }
            None => {
                let id = self.next_inode;
                self.next_inode += 1;
                self.inodes.insert(id, Inode::default());
                self.dir_mut(&parent)?.current.insert(name, Node::File(id));
                Ok(id)
            }
        }
    }

    fn write(&mut self, id: u64, buf: &[u8], effect: Option<FaultEffect>) -> io::Result<()> {
        // A file removed while open still takes writes; they go nowhere.
        let Some(inode) = self.inodes.get_mut(&id) else {
            return Ok(());
        };
        match effect {
            Some(FaultEffect::ShortWrite { keep, kind }) => {
                inode
                    .current
                    .extend_from_slice(buf.get(..keep).unwrap_or(buf));
                Err(error(kind, "injected short write"))
            }
            Some(FaultEffect::Fail(kind)) => Err(error(kind, "injected fault")),
            None => {
                inode.current.extend_from_slice(buf);
                Ok(())
            }
        }
    }

    fn sync(&mut self, id: u64) {
        if let Some(inode) = self.inodes.get_mut(&id) {
            if inode.appended_only {
                let tail = inode.current.get(inode.durable.len()..).unwrap_or(&[]);
                inode.durable.extend_from_slice(tail);
            } else {
                inode.durable = inode.current.clone();
            }
            inode.appended_only = true;
        }
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let id = self.file_at(from)?;
        let (to_parent, to_name) = split(to)?;
        if self.dir(&to_parent)?.current.get(&to_name) == Some(&Node::Dir) {
            return Err(error(ErrorKind::IsADirectory, "target is a directory"));
        }
        let (from_parent, from_name) = split(from)?;
        self.dir_mut(&from_parent)?.current.remove(&from_name);
        self.dir_mut(&to_parent)?
            .current
            .insert(to_name, Node::File(id));
        Ok(())
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.file_at(path)?;
        let (parent, name) = split(path)?;
        self.dir_mut(&parent)?.current.remove(&name);
        Ok(())
    }

    fn sync_dir(&mut self, path: &Path) -> io::Result<()> {
        let dir = self.dir_mut(path)?;
        dir.durable = dir.current.clone();
        self.collect_garbage();
        Ok(())
    }

    /// Drops inodes that no directory names, durably or now.
    fn collect_garbage(&mut self) {
        let named: HashSet<u64> = self
            .dirs
            .values()
            .flat_map(|d| d.durable.values().chain(d.current.values()))
            .filter_map(|node| match node {
                Node::File(id) => Some(*id),
                Node::Dir => None,
            })
            .collect();
        self.inodes.retain(|id, _| named.contains(id));
    }

    fn lock(&mut self, path: &Path) -> io::Result<u64> {
        if self.file_at(path).is_err() {
            self.create(path)?;
        }
        if self.locks.contains_key(path) {
            return Err(error(ErrorKind::WouldBlock, "locked"));
        }
        let token = self.next_token;
        self.next_token += 1;
        self.locks.insert(path.to_path_buf(), token);
        Ok(token)
    }

    fn unlock(&mut self, boot: u64, path: &Path, token: u64) {
        if boot == self.boot && self.locks.get(path) == Some(&token) {
            self.locks.remove(path);
        }
    }

    /// The power loss itself; returns the new boot number.
    fn crash(&mut self) -> u64 {
        let mut dirs = BTreeMap::new();
        let mut pending = vec![PathBuf::from("/")];
        while let Some(path) = pending.pop() {
            let durable = self
                .dirs
                .remove(&path)
                .map(|d| d.durable)
                .unwrap_or_default();
            for (name, node) in &durable {
                if *node == Node::Dir {
                    pending.push(path.join(name));
                }
            }
            let current = durable.clone();
            dirs.insert(path, Dir { durable, current });
        }
        self.dirs = dirs;
        self.collect_garbage();
        let mut ids: Vec<u64> = self.inodes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let keep = self.torn_length(id);
            if let Some(inode) = self.inodes.get_mut(&id) {
                let end = inode.durable.len() + keep;
                if let Some(tail) = inode.current.get(inode.durable.len()..end) {
                    let tail = tail.to_vec();
                    inode.durable.extend_from_slice(&tail);
                }
                inode.current = inode.durable.clone();
                inode.appended_only = true;
            }
        }
        self.locks.clear();
        self.faults.clear();
        self.power_off_at = None;
        self.powered_off = false;
        self.boot += 1;
        self.boot
    }

    /// How many unsynced appended bytes of inode `id` a crash keeps.
    fn torn_length(&mut self, id: u64) -> usize {
        let unsynced = match self.inodes.get(&id) {
            Some(inode) if inode.appended_only => inode.current.len() - inode.durable.len(),
            _ => 0,
        };
        if !self.torn_tails || unsynced == 0 {
            return 0;
        }
        let draw = self.random();
        // Half of the time nothing of the tail survives; else a random prefix.
        if draw & 1 == 0 {
            0
        } else {
            ((draw >> 1) % (unsynced as u64 + 1)) as usize
        }
    }
}

impl FileSystem for SimFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        self.run(Op::CreateDir, &path.clone(), move |disk, _| {
            disk.create_dir_all(&path)
        })
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let path = normalize(path);
        let for_disk = path.clone();
        let inode = self.run(Op::Create, &path, move |disk, _| disk.create(&for_disk))?;
        Ok(Box::new(SimWritable {
            jobs: self.jobs.clone(),
            boot: self.boot,
            path,
            inode,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        let path = normalize(path);
        let for_disk = path.clone();
        let data = self.run(Op::Open, &path, move |disk, _| {
            disk.inode_at(&for_disk)
                .map(|i| Arc::<[u8]>::from(i.current.as_slice()))
        })?;
        Ok(Arc::new(SimReadable {
            jobs: self.jobs.clone(),
            boot: self.boot,
            path,
            data,
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let path = normalize(path);
        self.run(Op::Read, &path.clone(), move |disk, _| {
            disk.inode_at(&path).map(|i| i.current.clone())
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (normalize(from), normalize(to));
        self.run(Op::Rename, &from.clone(), move |disk, _| {
            disk.rename(&from, &to)
        })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        self.run(Op::Remove, &path.clone(), move |disk, _| disk.remove(&path))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        self.run(Op::SyncDir, &path.clone(), move |disk, _| {
            disk.sync_dir(&path)
        })
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let path = normalize(path);
        self.run(Op::List, &path.clone(), move |disk, _| {
            disk.dir(&path).map(|d| d.current.keys().cloned().collect())
        })
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirectoryLock>> {
        let path = normalize(path);
        let for_disk = path.clone();
        let token = self.run(Op::Lock, &path, move |disk, _| disk.lock(&for_disk))?;
        Ok(Box::new(SimLock {
            jobs: self.jobs.clone(),
            boot: self.boot,
            path,
            token,
        }))
    }
}

/// A file being written on the simulated disk.
struct SimWritable {
    jobs: Sender<Job>,
    boot: u64,
    path: PathBuf,
    inode: u64,
}

impl WritableFile for SimWritable {
    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        let (id, buf) = (self.inode, buf.to_vec());
        run_on(
            &self.jobs,
            self.boot,
            Op::Write,
            &self.path,
            move |disk, effect| disk.write(id, &buf, effect),
        )
    }

    fn sync_data(&self) -> io::Result<()> {
        let id = self.inode;
        run_on(
            &self.jobs,
            self.boot,
            Op::Sync,
            &self.path,
            move |disk, _| {
                disk.sync(id);
                Ok(())
            },
        )
    }
}

/// A file opened for reading: its bytes as of `open`, as the engine only
/// opens files it no longer writes.
#[derive(Debug)]
struct SimReadable {
    jobs: Sender<Job>,
    boot: u64,
    path: PathBuf,
    data: Arc<[u8]>,
}

impl ReadableFile for SimReadable {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        run_on(&self.jobs, self.boot, Op::Read, &self.path, |_, _| Ok(()))?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let source = start
            .checked_add(buf.len())
            .and_then(|end| self.data.get(start..end))
            .ok_or_else(|| error(ErrorKind::UnexpectedEof, "read past the end"))?;
        buf.copy_from_slice(source);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.data.len() as u64
    }
}

/// A held lock; dropping it releases the lock (if no crash did already).
#[derive(Debug)]
struct SimLock {
    jobs: Sender<Job>,
    boot: u64,
    path: PathBuf,
    token: u64,
}

impl DirectoryLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let (boot, path, token) = (self.boot, self.path.clone(), self.token);
        let _ = self.jobs.send(Box::new(move |disk: &mut Disk| {
            disk.unlock(boot, &path, token)
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn write_file(fs: &SimFs, path: &str, data: &[u8], sync: bool) -> io::Result<()> {
        let file = fs.create(Path::new(path))?;
        file.write_all(data)?;
        if sync {
            file.sync_data()?;
        }
        Ok(())
    }

    #[test]
    fn synced_data_without_a_synced_name_vanishes() -> TestResult {
        let fs = SimFs::new(1);
        fs.create_dir_all(Path::new("/db"))?;
        fs.sync_dir(Path::new("/"))?;
        write_file(&fs, "/db/a", b"hello", true)?;
        let fs = fs.crash()?;
        assert!(fs.names(Path::new("/db"))?.is_empty());
        Ok(())
    }

    #[test]
    fn unsynced_directory_is_lost_with_its_contents() -> TestResult {
        let fs = SimFs::new(1);
        fs.create_dir_all(Path::new("/db"))?;
        write_file(&fs, "/db/a", b"hello", true)?;
        fs.sync_dir(Path::new("/db"))?;
        let fs = fs.crash()?;
        assert!(fs.names(Path::new("/db")).is_err());
        Ok(())
    }

    #[test]
    fn rename_and_remove_are_undone_until_the_directory_is_synced() -> TestResult {
        let fs = SimFs::new(1);
        fs.set_torn_tails(false)?;
        write_file(&fs, "/old", b"old", true)?;
        write_file(&fs, "/tmp", b"new", true)?;
        write_file(&fs, "/gone", b"gone", true)?;
        fs.sync_dir(Path::new("/"))?;
        fs.rename(Path::new("/tmp"), Path::new("/old"))?;
        fs.remove_file(Path::new("/gone"))?;
        let fs = fs.crash()?;
        assert_eq!(fs.names(Path::new("/"))?, ["gone", "old", "tmp"]);
        assert_eq!(fs.contents(Path::new("/old"))?, b"old");
        fs.rename(Path::new("/tmp"), Path::new("/old"))?;
        fs.sync_dir(Path::new("/"))?;
        let fs = fs.crash()?;
        assert_eq!(fs.contents(Path::new("/old"))?, b"new");
        Ok(())
    }

    #[test]
    fn unsynced_tail_is_dropped_or_torn_never_invented() -> TestResult {
        for seed in 0..50 {
            let fs = SimFs::new(seed);
            let file = fs.create(Path::new("/f"))?;
            fs.sync_dir(Path::new("/"))?;
            file.write_all(b"durable")?;
            file.sync_data()?;
            file.write_all(b"-unsynced")?;
            let fs = fs.crash()?;
            let kept = fs.contents(Path::new("/f"))?;
            assert!(b"durable-unsynced".starts_with(&kept));
            assert!(kept.starts_with(b"durable"));
            assert!(file.write_all(b"x").is_err(), "old handles are dead");
        }
        Ok(())
    }

    #[test]
    fn power_off_at_a_step_fails_that_call_and_every_later_one() -> TestResult {
        let fs = SimFs::new(1);
        let before = fs.steps()?;
        fs.power_off_at(before + 2)?;
        let file = fs.create(Path::new("/f"))?;
        assert!(file.write_all(b"x").is_err());
        assert!(fs.read(Path::new("/f")).is_err());
        assert!(fs.is_powered_off()?);
        let fs = fs.crash()?;
        assert!(fs.read(Path::new("/f")).is_err(), "name never synced");
        Ok(())
    }

    #[test]
    fn faults_fire_on_the_nth_matching_call() -> TestResult {
        let fs = SimFs::new(1);
        fs.inject(
            Fault::fail(Op::Sync, ErrorKind::Other)
                .on_path(".wal")
                .nth(2),
        )?;
        fs.inject(Fault::short_write(2, ErrorKind::StorageFull).on_path("b"))?;
        let wal = fs.create(Path::new("/1.wal"))?;
        wal.sync_data()?;
        assert!(wal.sync_data().is_err());
        wal.sync_data()?;
        let other = fs.create(Path::new("/b"))?;
        let short = other.write_all(b"abcd");
        assert!(short.is_err_and(|e| e.kind() == ErrorKind::StorageFull));
        assert_eq!(fs.contents(Path::new("/b"))?, b"ab");
        assert_eq!(fs.faults_fired()?, 2);
        Ok(())
    }

    #[test]
    fn lock_is_exclusive_until_dropped_or_crash() -> TestResult {
        let fs = SimFs::new(1);
        let held = fs.lock(Path::new("/LOCK"))?;
        let second = fs.lock(Path::new("/LOCK"));
        assert!(second.is_err_and(|e| e.kind() == ErrorKind::WouldBlock));
        drop(held);
        let held = fs.lock(Path::new("/LOCK"))?;
        let fs = fs.crash()?;
        let _again = fs.lock(Path::new("/LOCK"))?;
        drop(held); // a stale guard must not release the new holder's lock
        assert!(fs.lock(Path::new("/LOCK")).is_err());
        Ok(())
    }
}
