//! SAVE, BGSAVE, LASTSAVE: Redis's snapshot commands, as NaiveKV
//! checkpoints (see [`crate::server::checkpoints`]).
//!
//! Each writes a checkpoint directory `save-<unix milliseconds>` under the
//! server's `--checkpoint-dir`, which opens as a database (`run_server
//! --directory DIR/save-...`). Without that flag they are refused.
//! - `SAVE`: replies `+OK` once the checkpoint is written and synced.
//! - `BGSAVE [SCHEDULE]`: starts one and replies `+Background saving
//!   started`; one runs at a time (`-ERR Background save already in
//!   progress`).
//! - `LASTSAVE`: Unix seconds when the last checkpoint (from either
//!   protocol) finished; 0 if none has.

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{LocalBoxFuture, ready};

use super::super::reply::Reply;
use super::{Engine, Op, Parsed, ServerInfo};
use crate::server::checkpoints::{CheckpointRefused, CheckpointRoot, NO_ROOT};

/// A snapshot command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    Save,
    BackgroundSave,
    LastSave,
}

/// Parses a snapshot command; `None` if `name` is not one.
pub fn parse(name: &str, args: &[Bytes]) -> Option<Parsed> {
    let command = match name {
        "save" => Persistence::Save,
        "bgsave" => match args.first() {
            None => Persistence::BackgroundSave,
            Some(arg) if arg.eq_ignore_ascii_case(b"schedule") && args.len() == 1 => {
                Persistence::BackgroundSave
            }
            Some(_) => return Some(Parsed::Reply(super::syntax_error())),
        },
        "lastsave" => Persistence::LastSave,
        _ => return None,
    };
    Some(Parsed::Engine(Op::Persistence(command)))
}

/// Runs a snapshot command.
pub fn execute(command: Persistence, engine: &Engine) -> LocalBoxFuture<'static, Reply> {
    let root = &engine.checkpoints;
    match command {
        Persistence::LastSave => ready(Reply::Integer(last_save(root, &engine.info))).boxed_local(),
        _ if !root.enabled() => ready(Reply::err(NO_ROOT)).boxed_local(),
        Persistence::Save => {
            let saved = root.save(&engine.db(), &root.timestamped_name());
            async move {
                match saved.await {
                    Ok(_) => Reply::ok(),
                    Err(refused) => refusal(&refused),
                }
            }
            .boxed_local()
        }
        Persistence::BackgroundSave => {
            if !root.begin_background() {
                return ready(Reply::err("Background save already in progress")).boxed_local();
            }
            let saved = root.save(&engine.db(), &root.timestamped_name());
            let root = root.clone();
            actix_rt::spawn(async move {
                if let Err(refused) = saved.await {
                    log::warn!("BGSAVE failed: {}", describe(&refused));
                }
                root.end_background();
            });
            ready(Reply::Status("Background saving started".into())).boxed_local()
        }
    }
}

/// The `# Persistence` section of `INFO`.
pub fn info_section(root: &CheckpointRoot, info: &ServerInfo) -> String {
    format!(
        "loading:0\r\nasync_loading:0\r\nrdb_bgsave_in_progress:{}\r\n\
         rdb_last_save_time:{}\r\nnaive_kv_checkpoints_enabled:{}\r\n\
         aof_enabled:1\r\naof_rewrite_in_progress:0\r\n",
        u8::from(root.background_running()),
        last_save(root, info),
        u8::from(root.enabled()),
    )
}

/// Unix seconds of the last checkpoint, or, as Redis answers before its
/// first save, of the server's start.
fn last_save(root: &CheckpointRoot, info: &ServerInfo) -> i64 {
    let saved = match root.last_save_unix() {
        0 => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            now.saturating_sub(info.started.elapsed()).as_secs()
        }
        saved => saved,
    };
    i64::try_from(saved).unwrap_or(i64::MAX)
}

fn refusal(refused: &CheckpointRefused) -> Reply {
    match refused {
        CheckpointRefused::Request(message) => Reply::err(message),
        CheckpointRefused::Engine(e) => super::engine_error(e),
    }
}

fn describe(refused: &CheckpointRefused) -> String {
    match refused {
        CheckpointRefused::Request(message) => message.clone(),
        CheckpointRefused::Engine(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn snapshot_commands_parse() {
        let op = |name: &str, rest: &[&str]| match parse(name, &args(rest)) {
            Some(Parsed::Engine(Op::Persistence(p))) => Some(p),
            _ => None,
        };
        assert_eq!(op("save", &[]), Some(Persistence::Save));
        assert_eq!(op("bgsave", &[]), Some(Persistence::BackgroundSave));
        assert_eq!(
            op("bgsave", &["SCHEDULE"]),
            Some(Persistence::BackgroundSave)
        );
        assert_eq!(op("lastsave", &[]), Some(Persistence::LastSave));
        assert!(matches!(
            parse("bgsave", &args(&["now"])),
            Some(Parsed::Reply(Reply::Error(_)))
        ));
        assert!(parse("get", &args(&["k"])).is_none());
    }

    #[test]
    fn the_info_section_names_redis_fields() {
        let root = CheckpointRoot::new(None);
        let info = ServerInfo {
            started: std::time::Instant::now(),
            port: 0,
        };
        let text = info_section(&root, &info);
        // Before any checkpoint, as Redis before its first save: the start.
        let started = last_save(&root, &info);
        assert!(started > 1_700_000_000, "{started}");
        assert!(
            text.contains(&format!("rdb_last_save_time:{started}\r\n")),
            "{text}"
        );
        assert!(text.contains("rdb_bgsave_in_progress:0\r\n"), "{text}");
        assert!(root.begin_background());
        assert!(info_section(&root, &info).contains("rdb_bgsave_in_progress:1\r\n"));
    }
}
