//! The OpenAPI 3 document served at `/openapi.json`, written by hand next to [`hedge_center_api::model`]; a
//! test checks that every route of the router is described.

use serde_json::{json, Value};

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

fn ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn err(description: &str) -> Value {
    ok(description, r("ApiError"))
}

fn login_param(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": "integer", "format": "int64", "minimum": 1 } })
}

fn query_param(name: &str, schema: Value, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description })
}

fn page_of(item: &str) -> Value {
    json!({
        "type": "object", "required": ["items"],
        "properties": {
            "items": { "type": "array", "items": r(item) },
            "next_after": { "type": "integer", "format": "int64", "description": "Cursor of the next page; absent on the last page." }
        }
    })
}

fn enum_of(values: &[&str]) -> Value {
    json!({ "type": "string", "enum": values })
}

fn num(description: &str) -> Value {
    json!({ "type": "number", "description": description })
}

fn int(description: &str) -> Value {
    json!({ "type": "integer", "format": "int64", "description": description })
}

fn text(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

/// The document.
pub fn document() -> Value {
    let auth_errors = |mut responses: serde_json::Map<String, Value>| {
        responses.insert("401".into(), err("Missing or unknown bearer token."));
        responses.insert("403".into(), err("The token's role may not do this."));
        Value::Object(responses)
    };
    let resp = |pairs: Vec<(&str, Value)>| {
        let mut m = serde_json::Map::new();
        for (k, v) in pairs {
            m.insert(k.to_owned(), v);
        }
        auth_errors(m)
    };
    let page_params = vec![
        query_param(
            "login",
            json!({ "type": "integer", "format": "int64" }),
            "Only this account.",
        ),
        query_param(
            "symbol",
            json!({ "type": "string" }),
            "Only this canonical symbol.",
        ),
        query_param(
            "after",
            json!({ "type": "integer", "format": "int64" }),
            "Cursor: items after this one.",
        ),
        query_param(
            "limit",
            json!({ "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 }),
            "Page size.",
        ),
    ];
    let mut hedge_params = page_params.clone();
    hedge_params.push(query_param(
        "open",
        json!({ "type": "boolean" }),
        "true: only open and partially closed hedges.",
    ));
    let mut position_params = page_params.clone();
    position_params.push(query_param(
        "status",
        enum_of(&["open", "partially_closed", "closed"]),
        "Only positions in this status.",
    ));

    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "hedge center",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Decision center of hedge: client positions, hedges, the hedge plan and the event log. All `/v1` endpoints need `Authorization: Bearer <token>`. Volumes and prices are JSON numbers read exactly as written; sides are \"buy\"/\"sell\"; times are Unix milliseconds. Errors are `ApiError` objects: 422 malformed input (naming the field), 409 contradicts stored state, 404 unknown, 401/403 auth, 413 body too large, 503 store unavailable (retry)."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "ApiError": {
                    "type": "object", "required": ["error", "message"],
                    "properties": {
                        "error": enum_of(&["invalid", "conflict", "not_found", "unauthorized", "forbidden", "too_large", "unavailable", "internal"]),
                        "message": text("What is wrong, in words."),
                        "field": text("The offending field, when one is to blame.")
                    }
                },
                "Health": { "type": "object", "properties": { "status": text(""), "store": enum_of(&["sqlite", "postgres"]), "legacy": { "type": "boolean" } } },
                "SymbolSpec": {
                    "type": "object",
                    "required": ["name", "digits", "point", "tick_size", "tick_value", "contract_size", "volume_min", "volume_step", "volume_max", "filling", "trade_mode"],
                    "properties": {
                        "name": text("The account's name of the symbol."), "digits": { "type": "integer" }, "point": num(""), "tick_size": num(""),
                        "tick_value": num(""), "contract_size": { "description": "Decimal (number or string)." }, "volume_min": num(""), "volume_step": num(""),
                        "volume_max": num(""), "filling": { "type": "object", "properties": { "fok": { "type": "boolean" }, "ioc": { "type": "boolean" }, "return": { "type": "boolean" }, "boc": { "type": "boolean" } } },
                        "stops_level": { "type": "integer" }, "trade_mode": { "type": "integer", "description": "SYMBOL_TRADE_MODE code." }, "margin_per_lot": num("")
                    }
                },
                "SymbolMap": { "type": "object", "properties": { "prefix": text(""), "suffix": text(""), "explicit": { "type": "object", "additionalProperties": { "type": "string" }, "description": "Account name -> canonical name." } } },
                "AccountRegistration": {
                    "type": "object", "required": ["login", "role", "margin_mode"],
                    "properties": {
                        "login": int("MT5 account number."), "role": enum_of(&["client", "hedge", "tumbler"]),
                        "server": text(""), "company": text(""),
                        "margin_mode": { "type": "integer", "enum": [0, 1, 2], "description": "0 netting, 1 exchange, 2 hedging." },
                        "symbol_map": r("SymbolMap"),
                        "hedge_ratio": num("Client accounts: volume factor in the plan (default 1)."),
                        "hedge_login": int("Client accounts: the hedge account covering them; absent = every hedge account."),
                        "symbols": { "type": "array", "items": r("SymbolSpec") },
                        "currency": text("")
                    }
                },
                "AccountStatus": {
                    "type": "object", "required": ["connected"],
                    "properties": {
                        "connected": { "type": "boolean" }, "last_event_ms": int(""), "outbox_pending": int("Reports waiting in the agent's outbox."), "dead_letters": int("Reports the center refused for good, kept by the agent across restarts."), "dead_letter_reason": { "type": "string" },
                        "breakers": { "type": "object", "additionalProperties": enum_of(&["closed", "open", "half_open"]) },
                        "message": text(""),
                        "account": r("AccountMoney"),
                        "marks": { "type": "array", "description": "Latest marks of the open positions; the center keeps the latest per position and serves them on /v1/positions; the account_status event carries the marks that changed as data.marks. Absent or empty: the stored marks stay.", "items": r("PositionMark") },
                        "reconciliation": r("Reconciliation"),
                        "center_check": r("Reconciliation")
                    }
                },
                "AccountMoney": {
                    "type": "object", "required": ["balance", "equity", "margin", "margin_free", "profit"],
                    "properties": { "balance": num(""), "equity": num(""), "margin": num(""), "margin_free": num(""), "profit": num("Floating P/L."), "currency": text("") }
                },
                "PositionMark": {
                    "type": "object", "required": ["position_id", "price_current"],
                    "properties": { "position_id": int(""), "price_current": num(""), "swap": num(""), "profit": num(""), "commission": num("") }
                },
                "Reconciliation": {
                    "type": "object", "required": ["ok", "checked_ms"],
                    "properties": { "ok": { "type": "boolean", "description": "Netting: the ledger's net per symbol equals the terminal's; hedging: always true." }, "detail": text("What disagrees."), "checked_ms": int("") }
                },
                "AccountOverrides": {
                    "type": "object",
                    "properties": { "symbol_map": { "type": "object" }, "hedge_ratio": num("") }
                },
                "Account": {
                    "allOf": [r("AccountRegistration"), { "type": "object", "properties": { "registered_ms": int(""), "last_seen_ms": int(""), "status": r("AccountStatus"), "overrides": r("AccountOverrides") } }]
                },
                "PositionReport": {
                    "type": "object", "required": ["kind", "login", "position_id", "symbol", "side", "volume", "time_ms", "seq", "idempotency_key"],
                    "properties": {
                        "kind": enum_of(&["open", "increase", "partial_close", "close", "modify", "reverse"]),
                        "login": int(""), "position_id": int(""), "symbol": text("Canonical symbol."), "account_symbol": text("The account's name of the symbol."),
                        "side": enum_of(&["buy", "sell"]), "volume": num("Remaining volume after the event (0 for close)."),
                        "price": num(""), "sl": num(""), "tp": num(""), "time_ms": int(""), "magic": int(""),
                        "comment": text("open, increase, modify: the position's comment (entry comment); partial_close, close: the comment of the deal that reduced or closed it (exit comment)."),
                        "seq": int("Strictly increasing per position."), "idempotency_key": text("`login:position_id:seq`.")
                    }
                },
                "TumblerFiring": {
                    "type": "object", "required": ["login", "position_id", "symbol", "side", "volume", "magic", "time_ms", "killed", "dry_run", "reaction_us", "idempotency_key"],
                    "properties": {
                        "login": int(""), "position_id": int("The new position that fired the tumbler."), "symbol": text("As on the account."), "side": enum_of(&["buy", "sell"]),
                        "volume": num(""), "magic": int(""), "time_ms": int("When the terminal saw the position open."),
                        "killed": { "type": "array", "items": text("`name:pid`."), "maxItems": 64 }, "dry_run": { "type": "boolean" },
                        "reaction_us": int("From the transaction received to the last kill issued."), "idempotency_key": text("At most 200 bytes; agents use `tumbler:{login}:{position_id}`.")
                    }
                },
                "FiringAck": {
                    "type": "object", "required": ["event_id", "idempotency_key"],
                    "properties": { "event_id": int("The `tumbler_fired` event."), "idempotency_key": text("") }
                },
                "ReportAck": {
                    "type": "object", "required": ["event_id", "idempotency_key", "status", "volume"],
                    "properties": { "event_id": int(""), "idempotency_key": text(""), "status": enum_of(&["open", "partially_closed", "closed"]), "volume": num("") }
                },
                "Position": {
                    "type": "object",
                    "properties": {
                        "login": int(""), "position_id": int(""), "symbol": text(""), "account_symbol": text(""), "side": enum_of(&["buy", "sell"]),
                        "volume": num(""), "max_volume": num(""), "price": num(""), "sl": num(""), "tp": num(""), "magic": int(""), "comment": text("Entry comment."),
                        "exit_comment": text("Comment of the deal that last reduced or closed the position."),
                        "status": enum_of(&["open", "partially_closed", "closed"]), "opened_ms": int(""), "updated_ms": int(""), "last_seq": int(""), "last_event_id": int(""),
                        "price_current": num("From the latest mark (open positions)."), "swap": num(""), "profit": num(""), "commission": num("")
                    }
                },
                "PositionDetail": {
                    "type": "object",
                    "properties": {
                        "position": r("Position"),
                        "history": { "type": "array", "items": { "type": "object", "properties": { "event_id": int(""), "kind": text(""), "side": enum_of(&["buy", "sell"]), "volume": num(""), "time_ms": int("") } } }
                    }
                },
                "PlanItem": {
                    "type": "object",
                    "properties": {
                        "id": int("Stable while the symbol's exposure and hedges do not change; put it in the order's magic/comment."),
                        "symbol": text("Canonical."), "account_symbol": text("Hedge account's name."), "side": enum_of(&["buy", "sell"]),
                        "volume": num("Rounded to the step, clamped to min/max."), "action": enum_of(&["open", "reduce"]),
                        "exposure": num("Signed client exposure x ratio."), "hedged": num("Signed open hedge volume."),
                        "unhedged": num("exposure + hedged."), "residual": num("Uncovered after this order.")
                    }
                },
                "PlanResidual": {
                    "type": "object",
                    "properties": {
                        "symbol": text(""), "account_symbol": text(""), "exposure": num(""), "hedged": num(""), "unhedged": num(""),
                        "reason": enum_of(&["below_min", "paused", "no_symbol_spec", "bad_symbol_spec"])
                    }
                },
                "HedgePlan": {
                    "type": "object",
                    "properties": { "hedge_login": int(""), "as_of_event_id": int(""), "items": { "type": "array", "items": r("PlanItem") }, "residuals": { "type": "array", "items": r("PlanResidual") } }
                },
                "HedgeExecuted": {
                    "type": "object", "required": ["plan_item_id", "hedge_login", "symbol", "side", "volume", "time_ms"],
                    "properties": {
                        "plan_item_id": int(""), "hedge_login": int(""), "symbol": text("Canonical."), "side": enum_of(&["buy", "sell"]), "volume": num("Filled volume."),
                        "order": int(""), "deal": int(""), "position_id": int(""), "price": num(""), "latency_us": int(""), "slippage": num(""), "time_ms": int("")
                    }
                },
                "HedgeFailed": {
                    "type": "object", "required": ["plan_item_id", "hedge_login", "symbol", "side", "volume", "retcode", "time_ms"],
                    "properties": { "plan_item_id": int(""), "hedge_login": int(""), "symbol": text(""), "side": enum_of(&["buy", "sell"]), "volume": num(""), "retcode": { "type": "integer" }, "message": text(""), "time_ms": int("") }
                },
                "HedgeReduce": {
                    "type": "object", "required": ["remaining", "time_ms"],
                    "properties": { "remaining": num("Remaining open volume; 0 closes."), "deal": int(""), "price": num(""), "time_ms": int(""), "reason": text("") }
                },
                "Hedge": {
                    "type": "object",
                    "properties": {
                        "id": int(""), "plan_item_id": int(""), "hedge_login": int(""), "symbol": text(""), "account_symbol": text(""), "side": enum_of(&["buy", "sell"]),
                        "volume": num(""), "open_volume": num(""), "order": int(""), "deal": int(""), "position_id": int(""), "price": num(""), "latency_us": int(""),
                        "slippage": num(""), "status": enum_of(&["open", "partially_closed", "closed", "failed"]), "retcode": { "type": "integer" }, "message": text(""),
                        "created_ms": int(""), "updated_ms": int(""), "event_id": int(""),
                        "mark": { "type": "object", "description": "Open hedges on GET /v1/hedges: the hedge account's latest mark of the hedge's position {position_id, price_current, swap, profit, commission} from the hedger's heartbeat; absent when none was reported." }
                    }
                },
                "ActionRequest": {
                    "type": "object", "required": ["action"],
                    "properties": {
                        "action": enum_of(&["pause", "resume", "close_hedge", "retry_hedge", "set_symbol_map", "set_hedge_ratio", "clear_override"]),
                        "login": int("pause/resume: scope account (absent = all); overrides: the account."), "symbol": text("pause/resume: scope canonical symbol (absent = all)."), "reason": text(""),
                        "hedge_id": int("close_hedge/retry_hedge."), "symbol_map": { "type": "object", "description": "set_symbol_map: {prefix, suffix, explicit}." },
                        "hedge_ratio": num("set_hedge_ratio (client accounts); a number or a decimal string."), "field": enum_of(&["symbol_map", "hedge_ratio"])
                    }
                },
                "Command": {
                    "type": "object",
                    "properties": {
                        "id": int(""), "hedge_login": int(""), "kind": enum_of(&["close_hedge", "retry_hedge"]), "hedge_id": int(""), "symbol": text("Canonical."), "account_symbol": text(""),
                        "plan_item": int(""), "volume": num(""), "status": enum_of(&["pending", "done", "failed"]), "actor": text("Token name that issued it."), "reason": text(""),
                        "result_retcode": { "type": "integer" }, "result_message": text(""), "created_ms": int(""), "updated_ms": int("")
                    }
                },
                "CommandResult": {
                    "type": "object", "required": ["status"],
                    "properties": { "status": enum_of(&["done", "failed"]), "retcode": { "type": "integer" }, "message": text("") }
                },
                "Pause": { "type": "object", "properties": { "login": int(""), "symbol": text(""), "actor": text(""), "reason": text(""), "since_ms": int(""), "event_id": int("") } },
                "ActionAck": { "type": "object", "properties": { "event_id": int(""), "changed": { "type": "boolean" }, "pauses": { "type": "array", "items": r("Pause") }, "command": r("Command"), "account": r("Account") } },
                "Event": {
                    "type": "object",
                    "properties": {
                        "id": int("Increasing; the SSE id."),
                        "time_ms": int(""),
                        "kind": enum_of(&hedge_center_api::model::EventKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>()),
                        "login": int(""), "symbol": text(""), "actor": text("Token name that caused it."), "reason": text("Why, in words."),
                        "data": { "type": "object", "description": "The stored object after the change." }
                    }
                },
                "PagePosition": page_of("Position"),
                "PageHedge": page_of("Hedge"),
                "PageEvent": page_of("Event"),
                "PageCommand": page_of("Command")
            }
        },
        "security": [{ "bearer": [] }],
        "paths": {
            "/healthz": { "get": { "summary": "Liveness.", "security": [], "responses": { "200": ok("Alive.", r("Health")) } } },
            "/readyz": { "get": { "summary": "Readiness: the store reads, takes a probe write (rolled back), and its last write did not fail.", "security": [], "responses": { "200": ok("Ready.", r("Health")), "503": ok("Store unavailable, or its last write failed (kept until a write commits).", r("Health")) } } },
            "/metrics": { "get": { "summary": "Prometheus metrics (request latency histograms, plan size, events); any valid token unless the center runs with --public-metrics.", "responses": { "200": { "description": "Text exposition format.", "content": { "text/plain": {} } } } } },
            "/openapi.json": { "get": { "summary": "This document; any valid token unless the center runs with --public-metrics.", "responses": { "200": { "description": "OpenAPI 3 document." } } } },
            "/v1/accounts": { "get": { "summary": "All accounts.", "responses": resp(vec![("200", ok("Accounts by login.", json!({ "type": "array", "items": r("Account") })))]) } },
            "/v1/accounts/{login}": {
                "parameters": [login_param("login")],
                "get": { "summary": "One account.", "responses": resp(vec![("200", ok("The account.", r("Account"))), ("404", err("Not registered."))]) },
                "put": { "summary": "Register or update an account (agents: their own, with their role).", "requestBody": body(r("AccountRegistration")), "responses": resp(vec![("200", ok("Stored account.", r("Account"))), ("422", err("Invalid registration."))]) }
            },
            "/v1/accounts/{login}/status": {
                "parameters": [login_param("login")],
                "post": { "summary": "Heartbeat with the agent's status (up to 8 MiB: a mark per open position).", "requestBody": body(r("AccountStatus")), "responses": resp(vec![("200", ok("Stored account.", r("Account"))), ("404", err("Not registered."))]) }
            },
            "/v1/tumbler/firings": {
                "post": {
                    "summary": "Record a tumbler firing as a `tumbler_fired` event (tumbler token of that login, or admin). Idempotent by idempotency_key: the same key returns the first answer with `Idempotent-Replay: true`.",
                    "requestBody": body(r("TumblerFiring")),
                    "responses": resp(vec![
                        ("201", ok("Recorded.", r("FiringAck"))),
                        ("200", json!({ "description": "Already recorded (replay).", "headers": { "Idempotent-Replay": { "schema": { "type": "string", "enum": ["true", "false"] } } }, "content": { "application/json": { "schema": r("FiringAck") } } })),
                        ("403", err("Not this account's tumbler.")),
                        ("409", err("The key was used for another request.")),
                        ("422", err("Malformed firing."))
                    ])
                }
            },
            "/v1/positions/events": {
                "post": {
                    "summary": "Report a client position event (client token of that login). Idempotent by idempotency_key: the same key returns the first answer with `Idempotent-Replay: true`. Answered once durable.",
                    "requestBody": body(r("PositionReport")),
                    "responses": resp(vec![
                        ("200", json!({ "description": "Stored (or replayed).", "headers": { "Idempotent-Replay": { "schema": { "type": "string", "enum": ["true", "false"] } } }, "content": { "application/json": { "schema": r("ReportAck") } } })),
                        ("409", err("Contradicts the stored position, or the key was used for another report.")),
                        ("413", err("Body too large.")),
                        ("422", err("Malformed report."))
                    ])
                }
            },
            "/v1/positions": { "get": { "summary": "Client positions, paged.", "parameters": position_params, "responses": resp(vec![("200", ok("A page.", r("PagePosition"))), ("422", err("Bad query."))]) } },
            "/v1/positions/{login}/{position_id}": {
                "parameters": [login_param("login"), login_param("position_id")],
                "get": { "summary": "A position with its volume history.", "responses": resp(vec![("200", ok("The position.", r("PositionDetail"))), ("404", err("Unknown."))]) }
            },
            "/v1/plan/{hedge_login}": {
                "parameters": [login_param("hedge_login")],
                "get": { "summary": "The hedge plan of a hedge account (hedge token of that login, or admin).", "responses": resp(vec![("200", ok("The plan.", r("HedgePlan"))), ("404", err("Hedge account not registered.")), ("409", err("Not a hedge account."))]) }
            },
            "/v1/hedges": {
                "post": { "summary": "Record an executed plan item; idempotent by (hedge_login, plan_item_id).", "requestBody": body(r("HedgeExecuted")), "responses": resp(vec![("201", ok("Recorded.", r("Hedge"))), ("200", ok("Already recorded (replay).", r("Hedge"))), ("409", err("Plan item recorded with another side/symbol.")), ("422", err("Malformed."))]) },
                "get": { "summary": "Hedges, paged.", "parameters": hedge_params, "responses": resp(vec![("200", ok("A page.", r("PageHedge")))]) }
            },
            "/v1/hedges/failed": {
                "post": { "summary": "Record a failed plan item with its retcode (the plan is unchanged).", "requestBody": body(r("HedgeFailed")), "responses": resp(vec![("201", ok("Recorded.", r("Hedge"))), ("422", err("Malformed."))]) }
            },
            "/v1/hedges/{id}": {
                "parameters": [login_param("id")],
                "get": { "summary": "One hedge.", "responses": resp(vec![("200", ok("The hedge.", r("Hedge"))), ("404", err("Unknown."))]) }
            },
            "/v1/hedges/{id}/reduce": {
                "parameters": [login_param("id")],
                "post": { "summary": "Set a hedge's remaining open volume after a (partial) close; idempotent.", "requestBody": body(r("HedgeReduce")), "responses": resp(vec![("200", ok("The hedge.", r("Hedge"))), ("404", err("Unknown.")), ("409", err("Would increase the hedge, or it failed."))]) }
            },
            "/v1/events": { "get": { "summary": "The event log, paged, oldest first. Status heartbeats (`account_status`) are kept for the center's status retention (7 days by default); every other event is kept for good. Ids only grow: a pruned heartbeat leaves a gap, never a reused id.", "parameters": page_params, "responses": resp(vec![("200", ok("A page.", r("PageEvent")))]) } },
            "/v1/events/stream": {
                "get": {
                    "summary": "Server-sent events: every stored change in id order; resumes after `Last-Event-ID` (header) or `?after=` (an id, or `now`); heartbeat comments keep it alive.",
                    "parameters": [
                        query_param("after", json!({ "type": "string" }), "Event id to resume after, or `now`."),
                        { "name": "Last-Event-ID", "in": "header", "required": false, "schema": { "type": "string" } }
                    ],
                    "responses": resp(vec![("200", { json!({ "description": "`id: <event id>`, `event: <kind>`, `data: <Event JSON>` frames.", "content": { "text/event-stream": { "schema": r("Event") } } }) }), ("422", err("Bad Last-Event-ID."))])
                }
            },
            "/v1/actions": { "post": {
                "summary": "Operator actions (admin), recorded with who did it: pause (close-only) / resume per account and/or symbol; close_hedge (also pauses that symbol on that account) / retry_hedge create a command for the hedger (a second request while one is pending returns it, changed=false); set_symbol_map / set_hedge_ratio / clear_override keep overrides that re-registration does not overwrite. A field the action does not use is refused. Every action carries the required Idempotency-Key header: the same key with the same action returns the first answer (Idempotent-Replay: true) and changes nothing, even after the command it created has finished; the same key with another action is refused (409). A refused action stores nothing, so its key may be sent again.",
                "parameters": [{ "name": "Idempotency-Key", "in": "header", "required": true, "description": "1 to 200 visible ASCII characters: a fresh value per operator action, the same value when resending it.", "schema": { "type": "string", "minLength": 1, "maxLength": 200 } }],
                "requestBody": body(r("ActionRequest")),
                "responses": resp(vec![
                    ("200", json!({ "description": "Done (or replayed).", "headers": { "Idempotent-Replay": { "schema": { "type": "string", "enum": ["true", "false"] } } }, "content": { "application/json": { "schema": r("ActionAck") } } })),
                    ("404", err("Unknown hedge or account.")),
                    ("409", err("Hedge closed (close), not failed (retry), ratio on a non-client account, or the idempotency key was used for another action.")),
                    ("422", err("Missing or invalid field, or a missing or malformed Idempotency-Key.")),
                ])
            } },
            "/v1/commands": { "get": { "summary": "Operator commands, paged (admin, viewer, or the hedge token of `login`; a hedge token without `login` gets its own).", "parameters": [query_param("login", json!({ "type": "integer" }), "Hedge account."), query_param("status", enum_of(&["pending", "done", "failed"]), ""), query_param("after", json!({ "type": "integer" }), "Cursor."), query_param("limit", json!({ "type": "integer" }), "1..=1000.")], "responses": resp(vec![("200", ok("A page.", r("PageCommand")))]) } },
            "/v1/commands/{id}": {
                "parameters": [login_param("id")],
                "get": { "summary": "One command.", "responses": resp(vec![("200", ok("The command.", r("Command"))), ("404", err("Unknown."))]) }
            },
            "/v1/commands/{id}/result": {
                "parameters": [login_param("id")],
                "post": { "summary": "The hedger's result for a command (hedge token of its account). The same result again answers 200 with the stored command (`Idempotent-Replay: true`); another result for a finished command is 409.", "requestBody": body(r("CommandResult")), "responses": resp(vec![("200", ok("The command.", r("Command"))), ("404", err("Unknown.")), ("409", err("Already finished with another result.")), ("422", err("Malformed; status must be done or failed."))]) }
            },
            "/v1/pauses": { "get": { "summary": "Active pauses.", "responses": resp(vec![("200", ok("Pauses.", json!({ "type": "array", "items": r("Pause") })))]) } },
            "/new_position/": {
                "get": {
                    "summary": "Legacy (served with --legacy, loopback only, no token): add a position to the netted legacy book. Also without the trailing slash.",
                    "security": [],
                    "requestBody": body(json!({ "type": "object", "required": ["symbol", "volume", "side"], "properties": { "symbol": { "type": "string", "minLength": 1 }, "volume": { "type": "number", "exclusiveMinimum": 0 }, "side": { "type": "integer", "enum": [0, 1] } } })),
                    "responses": { "200": ok("Stored.", json!({ "type": "object", "properties": { "message": { "type": "string", "enum": ["success"] } } })), "422": err("Bad input; `field` names it. Nothing stored.") }
                }
            },
            "/all_positions/": {
                "get": {
                    "summary": "Legacy: the netted book as a JSON string holding an object keyed by symbol in first-seen order, e.g. \"{\\\"EURUSD\\\":{\\\"volume\\\":0.3,\\\"side\\\":0}}\". Also without the trailing slash.",
                    "security": [],
                    "responses": { "200": ok("JSON string.", json!({ "type": "string" })) }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_described() {
        let doc = super::document();
        let source = include_str!("api.rs");
        for line in source.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix(".route(\"") {
                let path = rest.split('"').next().unwrap_or_default();
                assert!(
                    doc["paths"].get(path).is_some(),
                    "route {path} is not in the OpenAPI document"
                );
            }
        }
        for path in ["/new_position/", "/all_positions/"] {
            assert!(doc["paths"].get(path).is_some());
        }
    }
}
