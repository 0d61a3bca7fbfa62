//! The manifest. (STUB: format doc to be written by the module's author.)
use std::path::Path;

use crate::Result;
use crate::fs::FileSystem;
use crate::proto::storage::Manifest;

/// The manifest's file name inside the database directory.
pub const MANIFEST_FILE: &str = "MANIFEST";

/// Replaces the directory's manifest atomically and durably: write
/// `MANIFEST.tmp`, fdatasync, rename over `MANIFEST`, fsync the directory.
pub fn write_manifest(fs: &dyn FileSystem, directory: &Path, manifest: &Manifest) -> Result<()> {
    let _ = (fs, directory, manifest);
    todo!()
}

/// Reads the directory's manifest; `Ok(None)` if there is none yet.
pub fn read_manifest(fs: &dyn FileSystem, directory: &Path) -> Result<Option<Manifest>> {
    let _ = (fs, directory);
    todo!()
}
