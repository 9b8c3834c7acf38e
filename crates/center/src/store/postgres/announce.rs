//! The notification that tells every instance of a schema that new events are committed, sent
//! by one thread per instance on a connection of its own.
//!
//! A writer used to notify after each of its commits, in a transaction of its own: one more round
//! trip per batch on the writer, and one more commit through the lock PostgreSQL holds over every
//! notifying commit of a database, for each batch of each instance. The writers now hand the id
//! to this thread and go on; the thread sends the newest id it was handed, and while one
//! notification is on its way the ids that arrive meanwhile make one more, not one each. A
//! listener only needs the newest id (it raises its head to it and reads the log from where it
//! stands), so nothing is lost by sending fewer.

use super::{PgConn, StoreError, Val};
use crate::store::Conn;
use std::sync::mpsc;

/// Hands committed ids to the instance's notifying thread.
pub(crate) struct Announcer {
    ids: parking_lot::Mutex<mpsc::Sender<u64>>,
}

impl Announcer {
    /// Starts the thread that notifies `channel` for the instance on `url` and `schema`. It
    /// connects when it first has something to send, and again after its connection failed.
    pub(crate) fn start(
        url: &str,
        schema: Option<&str>,
        channel: &str,
    ) -> Result<Announcer, StoreError> {
        let (tx, rx) = mpsc::channel::<u64>();
        let (url, schema, channel) = (
            url.to_owned(),
            schema.map(str::to_owned),
            channel.to_owned(),
        );
        std::thread::Builder::new()
            .name("center-announce".into())
            .spawn(move || announce_loop(&url, schema.as_deref(), &channel, &rx))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Announcer {
            ids: parking_lot::Mutex::new(tx),
        })
    }

    /// Queues `id` for the next notification; false if the thread has ended.
    pub(crate) fn announce(&self, id: u64) -> bool {
        self.ids.lock().send(id).is_ok()
    }
}

/// Sends the newest id handed over, until every writer has dropped its end of the channel. A
/// failure is logged and the connection opened again for the next id: a notification lost only
/// delays the other instances' streams until their tailers' next poll.
fn announce_loop(url: &str, schema: Option<&str>, channel: &str, ids: &mpsc::Receiver<u64>) {
    let mut conn: Option<PgConn> = None;
    while let Ok(first) = ids.recv() {
        let id = ids.try_iter().fold(first, u64::max);
        let sent = match conn.as_mut() {
            Some(c) => notify(c, channel, id),
            None => PgConn::connect_blocking(url, schema).and_then(|mut c| {
                // Its commits need no flush: what they carry is lost in a crash anyway.
                c.batch("SET synchronous_commit TO off")?;
                let sent = notify(&mut c, channel, id);
                conn = Some(c);
                sent
            }),
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "cannot announce new events to the other instances");
            conn = None;
            // Not in a tight loop against a database that is down.
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

fn notify(c: &mut PgConn, channel: &str, id: u64) -> Result<(), StoreError> {
    c.query(
        "SELECT pg_notify(?, ?)",
        &[Val::text(channel), Val::Text(id.to_string())],
    )
    .map(|_| ())
}
