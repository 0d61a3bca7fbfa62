//! An idle database burns no CPU: the memtable actor and the writers poll
//! only while writes keep coming, then park. After a burst of writes from
//! plain OS threads, the process uses under 1% of a core over one quiet
//! second (CPU time, from `getrusage`, not wall-clock time).

use std::time::Duration;

use naive_kv::{Db, Options, SyncPolicy};

/// User plus system CPU time of the whole process so far.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Writes from `threads` plain threads, each waiting for its answers.
async fn burst(db: &Db, threads: usize, writes: usize) {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                for i in 0..writes {
                    let put = db.put(format!("{t}/{i}"), "value");
                    runtime.block_on(put).unwrap();
                }
            })
        })
        .collect();
    actix_rt::task::spawn_blocking(move || handles.into_iter().for_each(|h| h.join().unwrap()))
        .await
        .unwrap();
}

#[actix_rt::test]
async fn an_idle_database_uses_under_one_percent_of_a_core() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path());
    options.sync = SyncPolicy::None; // the policy under which both sides spin
    let db = Db::open(options).await.unwrap();
    burst(&db, 2, 2_000).await;
    // Spinning stops within microseconds of the last write; leave margin.
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    let before = process_cpu();
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let used = process_cpu() - before;
    assert!(
        used < Duration::from_millis(10),
        "{used:?} of CPU in one idle second"
    );
    // Still answering after the idle second.
    burst(&db, 1, 10).await;
    assert_eq!(db.get("0/9").await.unwrap().as_deref(), Some(&b"value"[..]));
    db.close().await.unwrap();
}
