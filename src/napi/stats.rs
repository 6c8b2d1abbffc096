//! `stats()` as JS sees it: a channel's counters (core/channel/stats.rs) as one plain object, which lib/channel.js
//! completes with what only JS knows (send() returning false, the errors JS itself reports).

use std::collections::HashMap;

use napi_derive::napi;

use crate::core::channel::Snapshot;

/// A channel's counters. Numbers are exact up to 2^53.
#[napi(object, object_from_js = false)]
pub struct ChannelStats {
    pub messages_sent: f64,
    pub bytes_sent: f64,
    pub handles_sent: f64,
    pub messages_received: f64,
    pub bytes_received: f64,
    pub handles_received: f64,
    pub bytes_queued: f64,
    /// Error code → times reported.
    pub errors: HashMap<String, f64>,
}

impl From<Snapshot> for ChannelStats {
    fn from(s: Snapshot) -> Self {
        ChannelStats {
            messages_sent: s.messages_sent as f64,
            bytes_sent: s.bytes_sent as f64,
            handles_sent: s.handles_sent as f64,
            messages_received: s.messages_received as f64,
            bytes_received: s.bytes_received as f64,
            handles_received: s.handles_received as f64,
            bytes_queued: s.bytes_queued as f64,
            errors: s.errors.into_iter().map(|(k, v)| (k, v as f64)).collect(),
        }
    }
}
