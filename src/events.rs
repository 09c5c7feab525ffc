//! The daemon's event log (`vswitchctl events`, `GET /events`): what happened to networks,
//! endpoints, published ports and data paths, as JSON lines in the spirit of `docker events`.
//!
//! Events go to a tokio broadcast channel for live readers and into a bounded ring of the
//! last [`KEPT`] for `--since`. Sending never waits: a reader that falls more than
//! [`BACKLOG`] events behind loses the oldest ones and is told how many (an
//! `{"type":"events","action":"lost","count":N}` line). Data path threads send events too
//! (caught panics, a TAP that fails), which is why [`Events`] is a plain synchronous handle.
//!
//! The JSON shape of one event (fields with no value are left out):
//! `{"time":"2026-11-29T15:04:05.123456789Z","type":"endpoint","action":"connect",
//! "network":"net1","endpoint":"web","attributes":{"ip":"172.18.0.2",...}}`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

/// Events kept for `--since`.
pub const KEPT: usize = 1024;
/// Events a live reader may fall behind before it loses some.
pub const BACKLOG: usize = 1024;
/// Live readers at once (each holds one of the API's connections); one more is refused.
pub const MAX_READERS: usize = 32;

/// One event, as `vswitchctl events` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened, RFC 3339 in UTC with nanoseconds.
    pub time: String,
    /// `network`, `endpoint`, `port`, `datapath` (or `events` for a reader's lost events).
    #[serde(rename = "type")]
    pub kind: String,
    /// `create`, `remove`, `connect`, `disconnect`, `lost`, `publish`, `unpublish`, `panic`.
    pub action: String,
    /// The network it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The endpoint (container) it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Details (subnet, ip, mac, mapping, reason, message, count).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Order of the event in this daemon's life (not printed).
    #[serde(skip)]
    pub seq: u64,
    /// `time` as a system time (not printed).
    #[serde(skip)]
    pub at: Option<SystemTime>,
}

impl Event {
    /// An event happening now (its sequence number is given when it is sent).
    pub fn new(kind: &str, action: &str, network: Option<&str>) -> Self {
        let at = SystemTime::now();
        Event {
            time: rfc3339(at),
            kind: kind.to_string(),
            action: action.to_string(),
            network: network.map(str::to_string),
            endpoint: None,
            attributes: BTreeMap::new(),
            seq: 0,
            at: Some(at),
        }
    }

    /// With the endpoint's name.
    #[must_use]
    pub fn endpoint(mut self, name: &str) -> Self {
        self.endpoint = Some(name.to_string());
        self
    }

    /// With one more attribute.
    #[must_use]
    pub fn attr(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.attributes.insert(key.to_string(), value.to_string());
        self
    }
}

/// RFC 3339 in UTC with nanoseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// The event log: a handle cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Events(Arc<Inner>);

struct Inner {
    /// The kept events and the next sequence number; sending and subscribing take this lock
    /// (never per frame), so a replay and the live stream join without a gap or a repeat.
    kept: Mutex<(VecDeque<Event>, u64)>,
    live: broadcast::Sender<Event>,
    /// Set when the daemon shuts down: streams (events, captures) end so that the API's
    /// graceful shutdown does not wait for them.
    closing: watch::Sender<bool>,
}

impl Default for Events {
    fn default() -> Self {
        let (live, _) = broadcast::channel(BACKLOG);
        Events(Arc::new(Inner {
            kept: Mutex::new((VecDeque::with_capacity(KEPT), 1)),
            live,
            closing: watch::channel(false).0,
        }))
    }
}

impl Events {
    /// Records an event and sends it to live readers (never waits for them).
    pub fn send(&self, mut event: Event) {
        tracing::debug!(kind = event.kind, action = event.action, "event");
        let Ok(mut kept) = self.0.kept.lock() else {
            return;
        };
        event.seq = kept.1;
        kept.1 += 1;
        if kept.0.len() >= KEPT {
            kept.0.pop_front();
        }
        kept.0.push_back(event.clone());
        let _ = self.0.live.send(event);
    }

    /// Tells streaming readers the daemon is shutting down.
    pub fn close(&self) {
        self.0.closing.send_replace(true);
    }

    /// Resolves once [`Events::close`] has been called.
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.0.closing.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// The kept events at or after `since` (all of them for `None`), and a receiver of
    /// every event sent after them.
    ///
    /// # Errors
    /// [`MAX_READERS`] readers are following already.
    pub fn subscribe(
        &self,
        since: Option<SystemTime>,
    ) -> Result<(Vec<Event>, broadcast::Receiver<Event>), crate::error::Error> {
        if self.0.live.receiver_count() >= MAX_READERS {
            return Err(crate::error::Error::Conflict(format!(
                "{MAX_READERS} event readers are following already; stop one first"
            )));
        }
        let Ok(kept) = self.0.kept.lock() else {
            return Ok((Vec::new(), self.0.live.subscribe()));
        };
        let past = match since {
            Some(since) => kept
                .0
                .iter()
                .filter(|e| e.at.is_some_and(|at| at >= since))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        Ok((past, self.0.live.subscribe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shape_is_stable() {
        let mut e = Event::new("endpoint", "connect", Some("net1"))
            .endpoint("web")
            .attr("ip", "172.18.0.2");
        e.time = "2026-11-29T15:04:05.123456789Z".into();
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"time":"2026-11-29T15:04:05.123456789Z","type":"endpoint","action":"connect","network":"net1","endpoint":"web","attributes":{"ip":"172.18.0.2"}}"#
        );
        let lost = Event::new("events", "lost", None).attr("count", 3);
        let line = serde_json::to_string(&lost).unwrap();
        assert!(line.contains(r#""type":"events","action":"lost","attributes":{"count":"3"}"#));
    }

    #[test]
    fn since_replays_kept_events_and_the_ring_is_bounded() {
        let events = Events::default();
        let t0 = SystemTime::now();
        for i in 0..KEPT + 10 {
            events.send(Event::new("network", "create", Some(&format!("n{i}"))));
        }
        let (past, mut rx) = events.subscribe(Some(t0)).unwrap();
        assert_eq!(past.len(), KEPT);
        assert_eq!(past[0].network.as_deref(), Some("n10"));
        let (none, _) = events.subscribe(None).unwrap();
        assert!(none.is_empty());
        events.send(Event::new("network", "remove", Some("n0")));
        let live = rx.try_recv().unwrap();
        assert_eq!(live.action, "remove");
        assert_eq!(live.seq, past.last().unwrap().seq + 1);

        let readers: Vec<_> = (1..MAX_READERS)
            .map(|_| events.subscribe(None).unwrap())
            .collect();
        let err = events.subscribe(None).unwrap_err().to_string();
        assert!(err.contains("32 event readers"), "{err}");
        drop(readers);
        assert!(events.subscribe(None).is_ok());
    }
}
