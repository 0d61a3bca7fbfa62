//! openraft's storage conformance suite (`Suite::test_all`) over the
//! cluster's log store and the engine-backed state machine, each build on a
//! fresh directory.

use std::sync::OnceLock;

use actix::prelude::ArbiterHandle;
use naive_kv::Options;
use naive_kv::cluster::state_machine::EngineHost;
use naive_kv::cluster::{LogStore, StateMachine, StorageError, TypeConfig};
use openraft::StorageIOError;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

/// One actix system on a thread of its own hosts every engine the suite
/// opens (the suite runs on plain tokio runtimes of its own).
fn engine_arbiter() -> ArbiterHandle {
    static ARBITER: OnceLock<ArbiterHandle> = OnceLock::new();
    ARBITER
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let system = actix_rt::System::new();
                system.block_on(async {
                    tx.send(actix_rt::Arbiter::current()).unwrap();
                });
                system.run().unwrap();
            });
            rx.recv().unwrap()
        })
        .clone()
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let raft_dir = dir.path().join("raft");
        let log = LogStore::open(&raft_dir).map_err(|e| StorageIOError::write_logs(&e))?;
        let options = Options::new(dir.path().join("unused"));
        let host = EngineHost::new(engine_arbiter(), options);
        let state_machine = StateMachine::open(&raft_dir, host)
            .await
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        Ok((dir, log, state_machine))
    }
}

#[test]
fn openraft_storage_suite_passes() -> Result<(), Box<StorageError>> {
    Suite::test_all(Builder).map_err(Box::new)
}
