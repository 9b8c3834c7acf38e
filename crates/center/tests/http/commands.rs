//! Operator commands for the hedger: close and retry, and the refusals that store nothing.

use crate::common::*;
use hedge_center_api::client::new_action_key;
use hedge_center_api::model::*;
use hedge_domain::Retcode;
use reqwest::Method;
use std::time::Duration;

both_backends!(close_and_retry_commands, command_refusals_store_nothing,);

async fn close_and_retry_commands(b: Backend) {
    let env = Env::start(b).await;
    let mut sub = env.hedge.subscribe(Some(EventId(
        env.admin
            .events(&PageQuery::default())
            .await
            .unwrap()
            .items
            .len() as u64,
    )));
    let (open, failed) = hedged_world(&env).await;
    assert!(env.hedge.pending_commands(HEDGE).await.unwrap().is_empty());

    // close: a pending command with everything the hedger needs, and close-only on that symbol
    let ack = env
        .admin
        .action(
            &new_action_key(),
            &ActionRequest::close_hedge(open.id, "manual unwind"),
        )
        .await
        .unwrap()
        .ack;
    assert!(ack.changed);
    let close = ack.command.clone().unwrap();
    assert_eq!(close.kind, CommandKind::CloseHedge);
    assert_eq!(close.status, CommandStatus::Pending);
    assert_eq!(
        (
            close.hedge_login,
            close.hedge_id,
            close.symbol.as_str(),
            close.account_symbol.as_str()
        ),
        (HEDGE, open.id, "EURUSD", "EURUSD.h")
    );
    assert_eq!(close.plan_item, Some(open.plan_item_id));
    assert_eq!(close.volume, vol("0.3"));
    assert_eq!(
        (close.actor.as_str(), close.reason.as_str()),
        ("ops", "manual unwind")
    );
    assert!(ack.pauses.iter().any(|p| p.login == Some(HEDGE)
        && p.symbol.as_deref() == Some("EURUSD")
        && p.actor == "ops"));
    // a second click while pending returns the same command, stores nothing new
    let again = env
        .admin
        .action(
            &new_action_key(),
            &ActionRequest::close_hedge(open.id, "again"),
        )
        .await
        .unwrap()
        .ack;
    assert!(!again.changed);
    assert_eq!(again.command.as_ref().map(|c| c.id), Some(close.id));
    let pending = env.hedge.pending_commands(HEDGE).await.unwrap();
    assert_eq!(pending, vec![close.clone()]);
    assert_eq!(env.viewer.command(close.id).await.unwrap(), close);

    // the event reaches the stream with the actor
    let issued = loop {
        let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("command_issued on the stream")
            .unwrap()
            .unwrap();
        if e.kind == EventKind::CommandIssued {
            break e;
        }
    };
    assert_eq!((issued.actor.as_str(), issued.login), ("ops", Some(HEDGE)));
    assert!(issued.reason.contains("manual unwind"));
    assert_eq!(issued.data["id"], serde_json::json!(close.id));

    // the hedger reports the result; the same result again is answered the same way
    let done = CommandResult {
        status: CommandStatus::Done,
        retcode: Some(Retcode::DONE),
        message: Some("closed position 501".into()),
    };
    let first = env.hedge.command_result(close.id, &done).await.unwrap();
    assert_eq!(first.status, CommandStatus::Done);
    assert_eq!(first.result_retcode, Some(Retcode::DONE));
    assert_eq!(
        env.hedge.command_result(close.id, &done).await.unwrap(),
        first
    );
    let (status, text) = env
        .raw(
            Method::POST,
            &format!("/v1/commands/{}/result", close.id),
            Some(HEDGE_TOKEN),
            Some(r#"{"status":"done","retcode":10009,"message":"closed position 501"}"#),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    // a different result after the final one is a conflict
    let other = CommandResult {
        status: CommandStatus::Failed,
        retcode: Some(Retcode::REQUOTE),
        message: None,
    };
    assert_eq!(
        env.hedge
            .command_result(close.id, &other)
            .await
            .unwrap_err()
            .status(),
        Some(409)
    );
    assert!(env.hedge.pending_commands(HEDGE).await.unwrap().is_empty());

    // retry of the failed attempt; its failure is recorded too
    let retry = env
        .admin
        .action(
            &new_action_key(),
            &ActionRequest::retry_hedge(failed.id, ""),
        )
        .await
        .unwrap()
        .ack
        .command
        .unwrap();
    assert_eq!(
        (retry.kind, retry.volume),
        (CommandKind::RetryHedge, vol("0.3"))
    );
    let failed_result = env.hedge.command_result(retry.id, &other).await.unwrap();
    assert_eq!(failed_result.status, CommandStatus::Failed);
    let all = env
        .viewer
        .commands(&CommandQuery::default())
        .await
        .unwrap()
        .items;
    assert_eq!(
        all.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![close.id, retry.id]
    );
    let finished = env
        .admin
        .commands(&CommandQuery {
            login: Some(HEDGE),
            status: Some(CommandStatus::Failed),
            ..CommandQuery::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(finished.len(), 1);

    let events = event_kinds(&env).await;
    let count = |k: EventKind| events.iter().filter(|e| e.kind == k).count();
    assert_eq!(count(EventKind::CommandIssued), 2);
    assert_eq!(count(EventKind::CommandDone), 1);
    assert_eq!(count(EventKind::CommandFailed), 1);
    let paused = events.iter().find(|e| e.kind == EventKind::Paused).unwrap();
    assert_eq!(paused.actor, "ops");
    assert!(events
        .iter()
        .filter(|e| e.kind == EventKind::CommandDone)
        .all(|e| e.actor == "hedge-2001"));
    env.finish().await;
}

async fn command_refusals_store_nothing(b: Backend) {
    let env = Env::start(b).await;
    let (open, failed) = hedged_world(&env).await;
    let before = event_kinds(&env).await.len();
    let pauses_before = env.viewer.pauses().await.unwrap();

    let refused = |status: u16, text: &str| (status, text.to_owned());
    let cases: Vec<(Option<&str>, String, u16)> = vec![
        // only operators
        (
            Some(HEDGE_TOKEN),
            format!(r#"{{"action":"close_hedge","hedge_id":{}}}"#, open.id),
            403,
        ),
        (
            Some(VIEWER_TOKEN),
            format!(r#"{{"action":"close_hedge","hedge_id":{}}}"#, open.id),
            403,
        ),
        (
            None,
            format!(r#"{{"action":"close_hedge","hedge_id":{}}}"#, open.id),
            401,
        ),
        // malformed
        (Some(ADMIN_TOKEN), r#"{"action":"close_hedge"}"#.into(), 422),
        (
            Some(ADMIN_TOKEN),
            r#"{"action":"close_hedge","hedge_id":-1}"#.into(),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            r#"{"action":"close_hedge","hedge_id":"x"}"#.into(),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            r#"{"action":"explode","hedge_id":1}"#.into(),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(
                r#"{{"action":"close_hedge","hedge_id":{},"login":5}}"#,
                open.id
            ),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"pause","hedge_id":{}}}"#, open.id),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(
                r#"{{"action":"close_hedge","hedge_id":{},"reason":"{}"}}"#,
                open.id,
                "x".repeat(2000)
            ),
            422,
        ),
        // unknown hedge; closing a failed one; retrying an open one
        (
            Some(ADMIN_TOKEN),
            r#"{"action":"close_hedge","hedge_id":999999}"#.into(),
            404,
        ),
        (
            Some(ADMIN_TOKEN),
            r#"{"action":"retry_hedge","hedge_id":999999}"#.into(),
            404,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"close_hedge","hedge_id":{}}}"#, failed.id),
            409,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"retry_hedge","hedge_id":{}}}"#, open.id),
            409,
        ),
    ];
    for (token, body, want) in cases {
        let key = new_action_key();
        let (status, _, text) = env.raw_action(token, Some(&key), &body).await;
        assert_eq!(refused(status, &text).0, want, "{body}: {text}");
        let error: ApiError = serde_json::from_str(&text).unwrap();
        assert!(!error.message.is_empty());
    }
    // closing a closed hedge
    env.hedge
        .hedge_reduced(
            open.id,
            &HedgeReduce {
                remaining: vol("0"),
                deal: None,
                price: None,
                time_ms: 2,
                reason: "closed".into(),
            },
        )
        .await
        .unwrap();
    let after_close = event_kinds(&env).await.len();
    assert_eq!(after_close, before + 1);
    assert_eq!(
        env.admin
            .action(&new_action_key(), &ActionRequest::close_hedge(open.id, ""))
            .await
            .unwrap_err()
            .status(),
        Some(409)
    );
    assert_eq!(event_kinds(&env).await.len(), after_close);
    assert_eq!(env.viewer.pauses().await.unwrap(), pauses_before);
    assert!(env
        .viewer
        .commands(&CommandQuery::default())
        .await
        .unwrap()
        .items
        .is_empty());

    // results: unknown command, wrong account, pending as a result, bad bodies
    let cmd = env
        .admin
        .action(
            &new_action_key(),
            &ActionRequest::retry_hedge(failed.id, ""),
        )
        .await
        .unwrap()
        .ack
        .command
        .unwrap();
    let events_with_cmd = event_kinds(&env).await.len();
    let result_cases: Vec<(String, Option<&str>, &str, u16)> = vec![
        (
            "/v1/commands/999999/result".into(),
            Some(HEDGE_TOKEN),
            r#"{"status":"done"}"#,
            404,
        ),
        (
            format!("/v1/commands/{}/result", cmd.id),
            Some(CLIENT_TOKEN),
            r#"{"status":"done"}"#,
            403,
        ),
        (
            format!("/v1/commands/{}/result", cmd.id),
            Some(VIEWER_TOKEN),
            r#"{"status":"done"}"#,
            403,
        ),
        (
            format!("/v1/commands/{}/result", cmd.id),
            None,
            r#"{"status":"done"}"#,
            401,
        ),
        (
            format!("/v1/commands/{}/result", cmd.id),
            Some(HEDGE_TOKEN),
            r#"{"status":"pending"}"#,
            422,
        ),
        (
            format!("/v1/commands/{}/result", cmd.id),
            Some(HEDGE_TOKEN),
            r#"{"status":"finished"}"#,
            422,
        ),
        (
            format!("/v1/commands/{}/result", cmd.id),
            Some(HEDGE_TOKEN),
            r#"{"retcode":10009}"#,
            422,
        ),
        (
            format!("/v1/commands/{}/result", cmd.id),
            Some(HEDGE_TOKEN),
            "[]",
            422,
        ),
        (
            format!("/v1/commands/{}/result", cmd.id),
            Some(HEDGE_TOKEN),
            "",
            422,
        ),
        (
            "/v1/commands/abc/result".into(),
            Some(HEDGE_TOKEN),
            r#"{"status":"done"}"#,
            422,
        ),
    ];
    for (path, token, body, want) in result_cases {
        let (status, text) = env.raw(Method::POST, &path, token, Some(body)).await;
        assert_eq!(status, want, "{path} {body}: {text}");
    }
    let long = format!(r#"{{"status":"done","message":"{}"}}"#, "m".repeat(3000));
    let (status, _) = env
        .raw(
            Method::POST,
            &format!("/v1/commands/{}/result", cmd.id),
            Some(HEDGE_TOKEN),
            Some(&long),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(event_kinds(&env).await.len(), events_with_cmd);
    assert_eq!(env.viewer.command(cmd.id).await.unwrap(), cmd);

    // reading commands: another account's hedge token, a client token
    for (path, token, want) in [
        (
            format!("/v1/commands?login={}", HEDGE),
            Some(CLIENT_TOKEN),
            403,
        ),
        ("/v1/commands".to_owned(), Some(CLIENT_TOKEN), 403),
        ("/v1/commands?login=5".to_owned(), Some(HEDGE_TOKEN), 403),
        (
            "/v1/commands?status=nope".to_owned(),
            Some(ADMIN_TOKEN),
            422,
        ),
        (format!("/v1/commands/{}", cmd.id), Some(CLIENT_TOKEN), 403),
        ("/v1/commands/999999".to_owned(), Some(ADMIN_TOKEN), 404),
    ] {
        let (status, text) = env.raw(Method::GET, &path, token, None).await;
        assert_eq!(status, want, "{path}: {text}");
    }
    // a hedge token without login gets its own commands
    let (status, text) = env
        .raw(
            Method::GET,
            "/v1/commands?status=pending",
            Some(HEDGE_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let page: Page<Command> = serde_json::from_str(&text).unwrap();
    assert_eq!(page.items, vec![cmd]);
    env.finish().await;
}
