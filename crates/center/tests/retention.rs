//! Status heartbeats past their retention leave the event log; decisions and the newest event
//! stay, and no event id is ever handed out twice. On SQLite and on PostgreSQL, through the store
//! (the heartbeats must be dated in the past, which the HTTP API does not allow).

mod common;

use common::*;
use hedge_center::store::{Store, StoreLocation};
use hedge_center_api::model::{AccountStatus, EventKind, PageQuery};
use hedge_domain::{Clock, Side, SystemClock};

const DAY_MS: i64 = 24 * 3600 * 1000;
const ACTOR: &str = "client-1001";

fn status(outbox_pending: u64) -> AccountStatus {
    AccountStatus {
        connected: true,
        outbox_pending,
        ..AccountStatus::default()
    }
}

async fn all_events(store: &Store) -> Vec<(u64, EventKind)> {
    let page = store
        .events(PageQuery {
            limit: Some(1000),
            ..PageQuery::default()
        })
        .await
        .unwrap();
    page.items.iter().map(|e| (e.id.get(), e.kind)).collect()
}

async fn cleanup(location: StoreLocation) {
    if let StoreLocation::Postgres {
        url,
        schema: Some(schema),
    } = location
    {
        drop_schema(&url, &schema).await;
    }
}

/// A fresh store with the client account registered `days` ago and its first heartbeat right
/// after; returns the store, where it is (with its directory), now and the registration time.
async fn registered(
    b: Backend,
    days: i64,
) -> (Store, StoreLocation, Option<tempfile::TempDir>, i64, i64) {
    let (location, dir) = fresh_location(b);
    let store = Store::open(&location).await.unwrap();
    let now = SystemClock.now_ms();
    let old = now - days * DAY_MS;
    store
        .register_account(ACTOR.into(), client_registration(CLIENT, "1"), old)
        .await
        .unwrap();
    beat(&store, 0, old + 1).await;
    (store, location, dir, now, old)
}

async fn beat(store: &Store, outbox_pending: u64, time_ms: i64) {
    store
        .heartbeat(ACTOR.into(), CLIENT, status(outbox_pending), time_ms)
        .await
        .unwrap();
}

async fn old_heartbeats_are_pruned_and_decisions_kept(b: Backend) {
    let (store, location, _dir, now, old) = registered(b, 10).await;
    store
        .report(
            ACTOR.into(),
            open(CLIENT, 7, "EURUSD", Side::Buy, "0.1"),
            old + 2,
        )
        .await
        .unwrap();
    beat(&store, 1, old + 3).await;
    beat(&store, 2, now - 3_600_000).await;
    let before = all_events(&store).await;
    let kinds: Vec<EventKind> = before.iter().map(|(_, k)| *k).collect();
    assert_eq!(
        kinds,
        [
            EventKind::AccountRegistered,
            EventKind::AccountStatus,
            EventKind::PositionOpened,
            EventKind::AccountStatus,
            EventKind::AccountStatus,
        ]
    );

    let cutoff = now - 7 * DAY_MS;
    // Oldest first, at most `limit` at a time.
    assert_eq!(store.prune_status_events(cutoff, 1).await.unwrap(), 1);
    assert_eq!(store.prune_status_events(cutoff, 500).await.unwrap(), 1);
    assert_eq!(store.prune_status_events(cutoff, 500).await.unwrap(), 0);
    let after = all_events(&store).await;
    assert_eq!(
        after,
        vec![before[0], before[2], before[4]],
        "the decisions and the recent heartbeat keep their ids"
    );
    // The position is untouched.
    let p = store
        .position(CLIENT, hedge_domain::PositionId(7))
        .await
        .unwrap()
        .expect("position");
    assert_eq!(p.position.volume, vol("0.1"));
    store.close();
    cleanup(location).await;
}

async fn the_newest_event_is_kept_so_no_id_is_reused(b: Backend) {
    let (store, location, _dir, now, old) = registered(b, 30).await;
    beat(&store, 1, old + 2).await;
    let before = all_events(&store).await;
    assert_eq!(before.len(), 3);
    // The older heartbeat goes; the newest event, a heartbeat too, stays.
    assert_eq!(store.prune_status_events(now, 500).await.unwrap(), 1);
    assert_eq!(store.prune_status_events(now, 500).await.unwrap(), 0);
    assert_eq!(all_events(&store).await, vec![before[0], before[2]]);
    store.close();
    // After a restart the next event still gets a new id.
    let store = Store::open(&location).await.unwrap();
    store
        .report(
            ACTOR.into(),
            open(CLIENT, 8, "EURUSD", Side::Sell, "0.2"),
            now,
        )
        .await
        .unwrap();
    let after = all_events(&store).await;
    assert_eq!(after.len(), 3);
    assert!(
        after[2].0 > before[2].0,
        "a new id after the newest ever handed out: {after:?} after {before:?}"
    );
    assert_eq!(after[2].1, EventKind::PositionOpened);
    store.close();
    cleanup(location).await;
}

both_backends!(
    old_heartbeats_are_pruned_and_decisions_kept,
    the_newest_event_is_kept_so_no_id_is_reused
);
