//! Progress events of sync runs, published in-process to whoever listens (the SSE handler).
//!
//! Events are a convenience for listeners on the instance that runs the sync; the durable truth
//! is the sync state and the failures in the store, which listeners on other instances poll.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use kbsync_core::{KbId, SyncStatus};
use serde::Serialize;
use tokio::sync::broadcast;
use uuid::Uuid;

/// How many events a slow listener may fall behind before it misses some (it then resynchronises
/// from the stored sync state).
const CHANNEL_CAPACITY: usize = 256;

/// One thing that happened during a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SyncEvent {
    /// `current` of `total` files of the run are done; `file` is the one just finished. `bytes`
    /// of `total_bytes` are done, by the sizes the source announced (a file without one counts 0).
    Progress {
        run_id: Uuid,
        current: u64,
        total: u64,
        bytes: u64,
        total_bytes: u64,
        file: Option<String>,
    },
    /// The knowledge base's sync status changed.
    Status { run_id: Uuid, status: SyncStatus },
    /// One file could not be brought in.
    FileFailed {
        run_id: Uuid,
        name: String,
        reason: String,
    },
    /// The run ended.
    Finished {
        run_id: Uuid,
        status: SyncStatus,
        processed: u64,
        failed: u64,
        deleted: u64,
        skipped: u64,
        total_found: u64,
    },
    /// A publish into Open WebUI progressed (`done` of `total` files to upload) or ended (zeros).
    /// Listeners read the publication's state from the store.
    Publish { done: u64, total: u64 },
}

impl SyncEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            SyncEvent::Progress { .. } => "progress",
            SyncEvent::Status { .. } => "status",
            SyncEvent::FileFailed { .. } => "file_failed",
            SyncEvent::Finished { .. } => "finished",
            SyncEvent::Publish { .. } => "publish",
        }
    }
}

/// Per knowledge base broadcast channels; cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct SyncEvents {
    channels: Arc<Mutex<HashMap<KbId, broadcast::Sender<SyncEvent>>>>,
}

impl SyncEvents {
    pub fn new() -> Self {
        Self::default()
    }

    /// Listens to the events of one knowledge base from now on.
    pub fn subscribe(&self, kb_id: KbId) -> broadcast::Receiver<SyncEvent> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        channels
            .entry(kb_id)
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Publishes to the knowledge base's listeners, if any; a channel nobody listens to is
    /// dropped so the map does not grow with every knowledge base ever synced.
    pub fn publish(&self, kb_id: KbId, event: SyncEvent) {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = channels.get(&kb_id)
            && sender.send(event).is_err()
        {
            channels.remove(&kb_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listeners_receive_events_of_their_knowledge_base_only() {
        let events = SyncEvents::new();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut rx = events.subscribe(a);
        let run_id = Uuid::from_u128(9);
        events.publish(
            b,
            SyncEvent::Status {
                run_id,
                status: SyncStatus::Syncing,
            },
        );
        events.publish(
            a,
            SyncEvent::Status {
                run_id,
                status: SyncStatus::Completed,
            },
        );
        assert_eq!(
            rx.recv().await.unwrap(),
            SyncEvent::Status {
                run_id,
                status: SyncStatus::Completed
            }
        );
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_channel_without_listeners_is_dropped_on_publish() {
        let events = SyncEvents::new();
        let kb = Uuid::from_u128(1);
        drop(events.subscribe(kb));
        events.publish(
            kb,
            SyncEvent::Status {
                run_id: Uuid::nil(),
                status: SyncStatus::Idle,
            },
        );
        assert!(events.channels.lock().unwrap().is_empty());
    }

    #[test]
    fn events_serialise_with_their_name_and_fields() {
        let event = SyncEvent::Progress {
            run_id: Uuid::nil(),
            current: 3,
            total: 10,
            bytes: 2048,
            total_bytes: 8192,
            file: Some("a.pdf".into()),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(event.name(), "progress");
        assert_eq!(json["current"], 3);
        assert_eq!(json["file"], "a.pdf");
        assert_eq!(json["bytes"], 2048);
        assert_eq!(json["total_bytes"], 8192);
    }
}
