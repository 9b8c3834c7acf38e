//! Operator actions: pauses, idempotency keys and overrides.

use crate::common::*;
use hedge_center_api::client::new_action_key;
use hedge_center_api::model::*;
use hedge_domain::{Retcode, Side};

both_backends!(
    pauses_are_close_only,
    operator_actions_act_once_per_key,
    operator_overrides,
);

async fn pauses_are_close_only(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    env.client
        .report_position(&open(CLIENT, 1, "EURUSD", Side::Buy, "0.3"))
        .await
        .unwrap();
    let pause = ActionRequest {
        login: Some(HEDGE),
        symbol: Some("EURUSD".into()),
        reason: "news".into(),
        ..ActionRequest::new(ActionKind::Pause)
    };
    assert_eq!(
        env.hedge
            .action(&new_action_key(), &pause)
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );
    let ack = env
        .admin
        .action(&new_action_key(), &pause)
        .await
        .unwrap()
        .ack;
    assert!(ack.changed);
    assert_eq!(ack.pauses.len(), 1);
    assert!(
        !env.admin
            .action(&new_action_key(), &pause)
            .await
            .unwrap()
            .ack
            .changed
    );
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    assert!(plan.items.is_empty());
    assert_eq!(plan.residuals[0].reason, ResidualReason::Paused);
    let pauses = env.viewer.pauses().await.unwrap();
    assert_eq!(pauses[0].actor, "ops");
    let resume = ActionRequest {
        action: ActionKind::Resume,
        ..pause.clone()
    };
    assert!(
        env.admin
            .action(&new_action_key(), &resume)
            .await
            .unwrap()
            .ack
            .changed
    );
    assert_eq!(env.hedge.plan(HEDGE).await.unwrap().items.len(), 1);
    let events = env
        .viewer
        .events(&PageQuery::default())
        .await
        .unwrap()
        .items;
    let paused = events.iter().find(|e| e.kind == EventKind::Paused).unwrap();
    assert_eq!(paused.actor, "ops");
    assert!(paused.reason.contains("news"));
    assert!(events.iter().any(|e| e.kind == EventKind::Resumed));
    env.finish().await;
}

async fn operator_actions_act_once_per_key(b: Backend) {
    let env = Env::start(b).await;
    let (open, failed) = hedged_world(&env).await;
    let close = ActionRequest::close_hedge(open.id, "unwind");
    let close_body = serde_json::to_string(&close).unwrap();

    // no key, or a malformed one: refused before anything is stored
    let before = event_kinds(&env).await.len();
    let too_long = "k".repeat(201);
    for key in [None, Some(""), Some("two words"), Some(too_long.as_str())] {
        let (status, _, text) = env.raw_action(Some(ADMIN_TOKEN), key, &close_body).await;
        assert_eq!(status, 422, "{key:?}: {text}");
        let error: ApiError = serde_json::from_str(&text).unwrap();
        assert_eq!(error.field.as_deref(), Some("Idempotency-Key"), "{key:?}");
    }
    assert_eq!(event_kinds(&env).await.len(), before);
    assert!(all_commands(&env).await.is_empty());

    // the same key twice: one command, the second answer is the first one, marked as a replay
    let key = new_action_key();
    let first = env.admin.action(&key, &close).await.unwrap();
    assert!(!first.replayed);
    assert!(first.ack.changed);
    let command = first.ack.command.clone().unwrap();
    let after_first = event_kinds(&env).await.len();
    let again = env.admin.action(&key, &close).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.ack, first.ack);
    assert_eq!(event_kinds(&env).await.len(), after_first);
    assert_eq!(all_commands(&env).await, vec![command.clone()]);

    // the same key with another action is refused and changes nothing
    let pauses = env.viewer.pauses().await.unwrap();
    for other in [
        ActionRequest::close_hedge(open.id, "another reason"),
        ActionRequest::retry_hedge(failed.id, "unwind"),
        ActionRequest::new(ActionKind::Pause),
    ] {
        let err = env.admin.action(&key, &other).await.unwrap_err();
        assert_eq!(err.status(), Some(409), "{other:?}");
        assert!(err.to_string().contains("different action"), "{err}");
    }
    assert_eq!(event_kinds(&env).await.len(), after_first);
    assert_eq!(env.viewer.pauses().await.unwrap(), pauses);
    assert_eq!(all_commands(&env).await, vec![command.clone()]);

    // resent after the hedger finished the command: still the first answer, no second close
    env.hedge
        .command_result(
            command.id,
            &CommandResult {
                status: CommandStatus::Done,
                retcode: Some(Retcode::DONE),
                message: None,
            },
        )
        .await
        .unwrap();
    let after_done = event_kinds(&env).await.len();
    let late = env.admin.action(&key, &close).await.unwrap();
    assert!(late.replayed);
    assert_eq!(late.ack, first.ack);
    assert_eq!(event_kinds(&env).await.len(), after_done);
    let commands = all_commands(&env).await;
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].status, CommandStatus::Done);
    // a new key is a new operator decision: it does issue a second close
    let fresh = env.admin.action(&new_action_key(), &close).await.unwrap();
    assert!(!fresh.replayed);
    assert_ne!(fresh.ack.command.as_ref().unwrap().id, command.id);
    assert_eq!(all_commands(&env).await.len(), 2);

    // concurrent duplicates: stored once, every answer the same
    let retry = ActionRequest::retry_hedge(failed.id, "broker fixed");
    let key = new_action_key();
    let before = event_kinds(&env).await.len();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let admin = env.admin.clone();
            let (key, retry) = (key.clone(), retry.clone());
            tokio::spawn(async move { admin.action(&key, &retry).await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| !o.replayed).count(), 1);
    assert!(outcomes.iter().all(|o| o.ack == outcomes[0].ack));
    assert!(outcomes[0].ack.changed);
    assert_eq!(event_kinds(&env).await.len(), before + 1);
    let retries = all_commands(&env)
        .await
        .into_iter()
        .filter(|c| c.kind == CommandKind::RetryHedge)
        .count();
    assert_eq!(retries, 1);

    // a replayed pause after a resume does not pause again
    let pause = ActionRequest {
        login: Some(CLIENT),
        ..ActionRequest::new(ActionKind::Pause)
    };
    let resume = ActionRequest {
        action: ActionKind::Resume,
        ..pause.clone()
    };
    let pause_key = new_action_key();
    let paused = env.admin.action(&pause_key, &pause).await.unwrap();
    assert!(paused.ack.changed);
    let resumed = env.admin.action(&new_action_key(), &resume).await.unwrap();
    assert!(resumed.ack.changed);
    let pauses = env.viewer.pauses().await.unwrap();
    let replay = env.admin.action(&pause_key, &pause).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.ack, paused.ack);
    assert_eq!(env.viewer.pauses().await.unwrap(), pauses);
    assert!(!pauses.iter().any(|p| p.login == Some(CLIENT)));

    // a refused action stores nothing under its key: the same key may be sent again
    let key = new_action_key();
    let (status, _, _) = env
        .raw_action(
            Some(ADMIN_TOKEN),
            Some(&key),
            r#"{"action":"close_hedge","hedge_id":999999}"#,
        )
        .await;
    assert_eq!(status, 404);
    let (status, replayed, text) = env
        .raw_action(
            Some(ADMIN_TOKEN),
            Some(&key),
            &serde_json::to_string(&ActionRequest::new(ActionKind::Pause)).unwrap(),
        )
        .await;
    assert_eq!((status, replayed), (200, false), "{text}");
    env.finish().await;
}

async fn operator_overrides(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    env.client
        .report_position(&open(CLIENT, 1, "EURUSD", Side::Buy, "0.4"))
        .await
        .unwrap();
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    assert_eq!(
        (plan.items[0].volume, plan.items[0].account_symbol.as_str()),
        (vol("0.4"), "EURUSD.h")
    );

    // ratio override on the client: the plan follows, the registration keeps the agent's value
    let ack = env
        .admin
        .action(
            &new_action_key(),
            &ActionRequest {
                login: Some(CLIENT),
                hedge_ratio: Some(dec("0.5")),
                reason: "halve".into(),
                ..ActionRequest::new(ActionKind::SetHedgeRatio)
            },
        )
        .await
        .unwrap()
        .ack;
    assert!(ack.changed);
    let account = ack.account.unwrap();
    assert_eq!(account.registration.hedge_ratio, dec("1"));
    assert_eq!(account.overrides.hedge_ratio, Some(dec("0.5")));
    assert_eq!(
        env.hedge.plan(HEDGE).await.unwrap().items[0].volume,
        vol("0.2")
    );
    // the string form of the contract is accepted too
    let (status, _, text) = env
        .raw_action(
            Some(ADMIN_TOKEN),
            Some(&new_action_key()),
            &format!(r#"{{"action":"set_hedge_ratio","login":{CLIENT},"hedge_ratio":"0.5"}}"#),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let same: ActionAck = serde_json::from_str(&text).unwrap();
    assert!(!same.changed);

    // symbol map override on the hedge account: the plan names the symbol the new way
    let map = hedge_domain::SymbolMap::from_affix("-ECN");
    env.admin
        .action(
            &new_action_key(),
            &ActionRequest {
                login: Some(HEDGE),
                symbol_map: Some(map.clone()),
                ..ActionRequest::new(ActionKind::SetSymbolMap)
            },
        )
        .await
        .unwrap();
    // re-registration by the agent does not overwrite the overrides
    env.hedge
        .register_account(&hedge_registration())
        .await
        .unwrap();
    env.client
        .register_account(&client_registration(CLIENT, "1"))
        .await
        .unwrap();
    let hedge = env.viewer.account(HEDGE).await.unwrap();
    assert_eq!(
        hedge.registration.symbol_map,
        hedge_registration().symbol_map
    );
    assert_eq!(hedge.overrides.symbol_map, Some(map));
    // the hedge account sent no spec under the overridden name, so the plan says so
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    assert!(plan.items.is_empty());
    assert_eq!(plan.residuals[0].account_symbol, "EURUSD-ECN");
    assert_eq!(plan.residuals[0].reason, ResidualReason::NoSymbolSpec);
    assert_eq!(plan.residuals[0].unhedged, vol("0.2"));
    let listed = env.viewer.accounts().await.unwrap();
    assert!(listed
        .iter()
        .any(|a| a.overrides.hedge_ratio == Some(dec("0.5"))));

    // refusals: nothing stored
    let events_before = event_kinds(&env).await.len();
    for (token, body, want) in [
        (
            Some(HEDGE_TOKEN),
            format!(r#"{{"action":"set_hedge_ratio","login":{CLIENT},"hedge_ratio":2}}"#),
            403,
        ),
        (
            Some(VIEWER_TOKEN),
            format!(r#"{{"action":"clear_override","login":{CLIENT},"field":"hedge_ratio"}}"#),
            403,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"set_hedge_ratio","login":{CLIENT},"hedge_ratio":0}}"#),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"set_hedge_ratio","login":{CLIENT},"hedge_ratio":-1}}"#),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"set_hedge_ratio","login":{CLIENT},"hedge_ratio":1001}}"#),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"set_hedge_ratio","login":{CLIENT},"hedge_ratio":"abc"}}"#),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"set_hedge_ratio","login":{CLIENT}}}"#),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            r#"{"action":"set_hedge_ratio","hedge_ratio":2}"#.to_owned(),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            r#"{"action":"set_hedge_ratio","login":777,"hedge_ratio":2}"#.to_owned(),
            404,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"set_hedge_ratio","login":{HEDGE},"hedge_ratio":2}}"#),
            409,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"set_symbol_map","login":{HEDGE}}}"#),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(
                r#"{{"action":"set_symbol_map","login":{HEDGE},"symbol_map":{{"suffix":"a b"}}}}"#
            ),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(
                r#"{{"action":"set_symbol_map","login":{HEDGE},"symbol_map":{{"explicit":{{"GOLD":"XAUUSD","XAU":"XAUUSD"}}}}}}"#
            ),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(
                r#"{{"action":"set_symbol_map","login":{HEDGE},"symbol_map":{{"explicit":{{"":"XAUUSD"}}}}}}"#
            ),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"set_symbol_map","login":{HEDGE},"symbol_map":"x"}}"#),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(
                r#"{{"action":"set_symbol_map","login":{HEDGE},"symbol_map":{{}},"hedge_ratio":1}}"#
            ),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"clear_override","login":{HEDGE}}}"#),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"clear_override","login":{HEDGE},"field":"color"}}"#),
            422,
        ),
    ] {
        let key = new_action_key();
        let (status, _, text) = env.raw_action(token, Some(&key), &body).await;
        assert_eq!(status, want, "{body}: {text}");
    }
    assert_eq!(event_kinds(&env).await.len(), events_before);
    assert_eq!(
        env.hedge.plan(HEDGE).await.unwrap().residuals[0].account_symbol,
        "EURUSD-ECN"
    );

    // clearing: back to the agent's values; clearing again changes nothing
    let clear = |login, field| ActionRequest {
        login: Some(login),
        field: Some(field),
        ..ActionRequest::new(ActionKind::ClearOverride)
    };
    assert!(
        env.admin
            .action(&new_action_key(), &clear(CLIENT, OverrideField::HedgeRatio))
            .await
            .unwrap()
            .ack
            .changed
    );
    assert!(
        env.admin
            .action(&new_action_key(), &clear(HEDGE, OverrideField::SymbolMap))
            .await
            .unwrap()
            .ack
            .changed
    );
    assert!(
        !env.admin
            .action(&new_action_key(), &clear(HEDGE, OverrideField::SymbolMap))
            .await
            .unwrap()
            .ack
            .changed
    );
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    assert_eq!(
        (plan.items[0].volume, plan.items[0].account_symbol.as_str()),
        (vol("0.4"), "EURUSD.h")
    );
    let events = event_kinds(&env).await;
    let set = events
        .iter()
        .filter(|e| e.kind == EventKind::OverrideSet)
        .count();
    let cleared: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::OverrideCleared)
        .collect();
    assert_eq!((set, cleared.len()), (2, 2));
    assert!(cleared.iter().all(|e| e.actor == "ops"));
    assert!(env
        .viewer
        .account(HEDGE)
        .await
        .unwrap()
        .overrides
        .is_empty());
    env.finish().await;
}
