//! The OpenAPI document served at `/openapi.json`.
//!
//! Entry point: [`document`]. The schemas and the list queries' parameters are derived from the
//! API's types (`hedge_center_api::openapi`, the model's `ToSchema` and `IntoParams` derives), so
//! the document follows them; what is said here is only what a type cannot say: each route, its
//! methods, its answers and their meaning. Tests check that every route of the router is
//! described with its methods, nothing else is, and every schema named here exists.

use hedge_center_api::model::{CommandQuery, PageQuery, PositionFilter};
use hedge_center_api::openapi::ApiSchemas;
use serde_json::{json, Map, Value};
use utoipa::openapi::path::ParameterIn;
use utoipa::{IntoParams, OpenApi};

const DESCRIPTION: &str = "Decision center of hedge: client positions, hedges, the hedge plan and \
the event log. All `/v1` endpoints need `Authorization: Bearer <token>`. Volumes and prices are \
JSON numbers read exactly as written; sides are \"buy\"/\"sell\"; times are Unix milliseconds. \
Errors are `ApiError` objects: 422 malformed input (naming the field), 409 contradicts stored \
state, 404 unknown, 401/403 auth, 413 body too large, 503 store unavailable (retry).";

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn list_of(name: &str) -> Value {
    json!({ "type": "array", "items": r(name) })
}

fn body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

fn ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

/// An answer that says whether it repeats a stored one (`Idempotent-Replay`).
fn replayable(description: &str, schema: Value) -> Value {
    let mut answer = ok(description, schema);
    answer["headers"] = json!({ "Idempotent-Replay": {
        "schema": { "type": "string", "enum": ["true", "false"] }
    } });
    answer
}

fn err(description: &str) -> Value {
    ok(description, r("ApiError"))
}

fn id_param(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true,
            "schema": { "type": "integer", "format": "int64", "minimum": 1 } })
}

/// The query parameters of `T`, from its fields.
fn query_of<T: IntoParams>() -> Value {
    json!(T::into_params(|| Some(ParameterIn::Query)))
}

/// An operation's answers; every `/v1` operation may also be refused for its token.
fn answers(pairs: Vec<(&str, Value)>) -> Value {
    let mut m: Map<String, Value> = pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    m.insert("401".into(), err("Missing or unknown bearer token."));
    m.insert("403".into(), err("The token's role may not do this."));
    Value::Object(m)
}

fn op(summary: &str, responses: Vec<(&str, Value)>) -> Value {
    json!({ "summary": summary, "responses": answers(responses) })
}

fn op_with_body(summary: &str, request: &str, responses: Vec<(&str, Value)>) -> Value {
    json!({ "summary": summary, "requestBody": body(r(request)), "responses": answers(responses) })
}

/// Health, metrics and this document: outside `/v1`.
fn service_paths() -> Value {
    json!({
        "/healthz": { "get": { "summary": "Liveness.", "security": [],
            "responses": { "200": ok("Alive.", r("Health")) } } },
        "/readyz": { "get": {
            "summary": "Readiness: the store reads, takes a probe write (rolled back), and its last write did not fail.",
            "security": [],
            "responses": {
                "200": ok("Ready.", r("Health")),
                "503": ok("Store unavailable, or its last write failed (kept until a write commits).", r("Health"))
            } } },
        "/metrics": { "get": {
            "summary": "Prometheus metrics (request latency histograms, plan size, events); any valid token unless the center runs with --public-metrics.",
            "responses": { "200": { "description": "Text exposition format.", "content": { "text/plain": {} } } } } },
        "/openapi.json": { "get": {
            "summary": "This document; any valid token unless the center runs with --public-metrics.",
            "responses": { "200": { "description": "OpenAPI 3 document." } } } }
    })
}

fn account_paths() -> Value {
    json!({
        "/v1/accounts": { "get": op("All accounts.", vec![("200", ok("Accounts by login.", list_of("Account")))]) },
        "/v1/accounts/{login}": {
            "parameters": [id_param("login")],
            "get": op("One account.", vec![("200", ok("The account.", r("Account"))), ("404", err("Not registered."))]),
            "put": op_with_body("Register or update an account (agents: their own, with their role).", "AccountRegistration",
                vec![("200", ok("Stored account.", r("Account"))), ("422", err("Invalid registration."))])
        },
        "/v1/accounts/{login}/status": {
            "parameters": [id_param("login")],
            "post": op_with_body("Heartbeat with the agent's status (up to 8 MiB: a mark per open position).", "AccountStatus",
                vec![("200", ok("Stored account.", r("Account"))), ("404", err("Not registered."))])
        }
    })
}

fn position_paths() -> Value {
    json!({
        "/v1/tumbler/firings": { "post": op_with_body(
            "Record a tumbler firing as a `tumbler_fired` event (tumbler token of that login, or admin). Idempotent by idempotency_key: the same key returns the first answer with `Idempotent-Replay: true`.",
            "TumblerFiring",
            vec![
                ("201", ok("Recorded.", r("FiringAck"))),
                ("200", replayable("Already recorded (replay).", r("FiringAck"))),
                ("403", err("Not this account's tumbler.")),
                ("409", err("The key was used for another request.")),
                ("422", err("Malformed firing.")),
            ]) },
        "/v1/positions/events": { "post": op_with_body(
            "Report a client position event (client token of that login). Idempotent by idempotency_key: the same key returns the first answer with `Idempotent-Replay: true`. Answered once durable.",
            "PositionReport",
            vec![
                ("200", replayable("Stored (or replayed).", r("ReportAck"))),
                ("409", err("Contradicts the stored position, or the key was used for another report.")),
                ("413", err("Body too large.")),
                ("422", err("Malformed report.")),
            ]) },
        "/v1/positions": { "get": {
            "summary": "Client positions, paged.",
            "parameters": query_of::<PositionFilter>(),
            "responses": answers(vec![("200", ok("A page.", r("Page_Position"))), ("422", err("Bad query."))])
        } },
        "/v1/positions/{login}/{position_id}": {
            "parameters": [id_param("login"), id_param("position_id")],
            "get": op("A position with its volume history.", vec![("200", ok("The position.", r("PositionDetail"))), ("404", err("Unknown."))])
        }
    })
}

fn hedge_paths() -> Value {
    json!({
        "/v1/plan/{hedge_login}": {
            "parameters": [id_param("hedge_login")],
            "get": op("The hedge plan of a hedge account (hedge token of that login, or admin).", vec![
                ("200", ok("The plan.", r("HedgePlan"))),
                ("404", err("Hedge account not registered.")),
                ("409", err("Not a hedge account.")),
            ])
        },
        "/v1/hedges": {
            "post": op_with_body("Record an executed plan item; idempotent by (hedge_login, plan_item_id).", "HedgeExecuted", vec![
                ("201", ok("Recorded.", r("Hedge"))),
                ("200", ok("Already recorded (replay).", r("Hedge"))),
                ("409", err("Plan item recorded with another side/symbol.")),
                ("422", err("Malformed.")),
            ]),
            "get": {
                "summary": "Hedges, paged; `open=true` lists only the open and partially closed ones.",
                "parameters": query_of::<PageQuery>(),
                "responses": answers(vec![("200", ok("A page.", r("Page_Hedge")))])
            }
        },
        "/v1/hedges/failed": {
            "post": op_with_body("Record a failed plan item with its retcode (the plan is unchanged).", "HedgeFailed",
                vec![("201", ok("Recorded.", r("Hedge"))), ("422", err("Malformed."))])
        },
        "/v1/hedges/{id}": {
            "parameters": [id_param("id")],
            "get": op("One hedge.", vec![("200", ok("The hedge.", r("Hedge"))), ("404", err("Unknown."))])
        },
        "/v1/hedges/{id}/reduce": {
            "parameters": [id_param("id")],
            "post": op_with_body("Set a hedge's remaining open volume after a (partial) close; idempotent.", "HedgeReduce", vec![
                ("200", ok("The hedge.", r("Hedge"))),
                ("404", err("Unknown.")),
                ("409", err("Would increase the hedge, or it failed.")),
            ])
        }
    })
}

fn event_paths() -> Value {
    json!({
        "/v1/events": { "get": {
            "summary": "The event log, paged, oldest first. Status heartbeats (`account_status`) are kept for the center's status retention (7 days by default); every other event is kept for good. Ids only grow: a pruned heartbeat leaves a gap, never a reused id.",
            "parameters": query_of::<PageQuery>(),
            "responses": answers(vec![("200", ok("A page.", r("Page_Event")))])
        } },
        "/v1/events/stream": { "get": {
            "summary": "Server-sent events: every stored change in id order; resumes after `Last-Event-ID` (header) or `?after=` (an id, or `now`); heartbeat comments keep it alive.",
            "parameters": [
                { "name": "after", "in": "query", "required": false, "schema": { "type": "string" },
                  "description": "Event id to resume after, or `now`." },
                { "name": "plan", "in": "query", "required": false, "schema": { "type": "integer", "format": "int64", "minimum": 0 },
                  "description": "A hedge account the token hedges for: its plan (`event: plan`, `data: <HedgePlan JSON>`, no `id`) goes ahead of each live event that can move it." },
                { "name": "Last-Event-ID", "in": "header", "required": false, "schema": { "type": "string" } }
            ],
            "responses": answers(vec![
                ("200", json!({ "description": "`id: <event id>`, `event: <kind>`, `data: <Event JSON>` frames.",
                                "content": { "text/event-stream": { "schema": r("Event") } } })),
                ("422", err("Bad Last-Event-ID.")),
            ])
        } }
    })
}

fn action_paths() -> Value {
    let mut post_action = op_with_body(
        "Operator actions (admin), recorded with who did it: pause (close-only) / resume per account and/or symbol; close_hedge (also pauses that symbol on that account) / retry_hedge create a command for the hedger (a second request while one is pending returns it, changed=false); set_symbol_map / set_hedge_ratio / clear_override keep overrides that re-registration does not overwrite; set_allocation / clear_allocation choose which hedge accounts cover a scope of client exposure (a client `login`, a canonical `symbol`, both or neither) and in what shares (`weights`: registered hedge accounts, each once, summing to exactly 1), so the plans reduce on one account and add on the other. A field the action does not use is refused. Every action carries the required Idempotency-Key header: the same key with the same action returns the first answer (Idempotent-Replay: true) and changes nothing, even after the command it created has finished; the same key with another action is refused (409). A refused action stores nothing, so its key may be sent again.",
        "ActionRequest",
        vec![
            ("200", replayable("Done (or replayed).", r("ActionAck"))),
            ("404", err("Unknown hedge or account (an allocation's client or hedge account).")),
            ("409", err("Hedge closed (close), not failed (retry), ratio on a non-client account, an allocation naming an account of another role, or the idempotency key was used for another action.")),
            ("422", err("Missing or invalid field (allocation weights not summing to exactly 1, a weight outside (0, 1], a hedge account named twice), or a missing or malformed Idempotency-Key.")),
        ],
    );
    post_action["parameters"] = json!([{ "name": "Idempotency-Key", "in": "header", "required": true,
        "description": "1 to 200 visible ASCII characters: a fresh value per operator action, the same value when resending it.",
        "schema": { "type": "string", "minLength": 1, "maxLength": 200 } }]);
    json!({
        "/v1/actions": { "post": post_action },
        "/v1/pauses": { "get": op("Active pauses.", vec![("200", ok("Pauses.", list_of("Pause")))]) },
        "/v1/allocations": { "get": op("The operator's allocations of client exposure to hedge accounts.", vec![("200", ok("Allocations.", list_of("Allocation")))]) },
        "/v1/commands": { "get": {
            "summary": "Operator commands, paged (admin, viewer, or the hedge token of `login`; a hedge token without `login` gets its own).",
            "parameters": query_of::<CommandQuery>(),
            "responses": answers(vec![("200", ok("A page.", r("Page_Command")))])
        } },
        "/v1/commands/{id}": {
            "parameters": [id_param("id")],
            "get": op("One command.", vec![("200", ok("The command.", r("Command"))), ("404", err("Unknown."))])
        },
        "/v1/commands/{id}/result": {
            "parameters": [id_param("id")],
            "post": op_with_body("The hedger's result for a command (hedge token of its account). The same result again answers 200 with the stored command (`Idempotent-Replay: true`); another result for a finished command is 409.", "CommandResult", vec![
                ("200", ok("The command.", r("Command"))),
                ("404", err("Unknown.")),
                ("409", err("Already finished with another result.")),
                ("422", err("Malformed; status must be done or failed.")),
            ])
        }
    })
}

/// The legacy center's endpoints, served with `--legacy`.
fn legacy_paths() -> Value {
    json!({
        "/new_position/": { "get": {
            "summary": "Legacy (served with --legacy, loopback only, no token): add a position to the netted legacy book. Also without the trailing slash.",
            "security": [],
            "requestBody": body(json!({ "type": "object", "required": ["symbol", "volume", "side"], "properties": {
                "symbol": { "type": "string", "minLength": 1 },
                "volume": { "type": "number", "exclusiveMinimum": 0 },
                "side": { "type": "integer", "enum": [0, 1] } } })),
            "responses": {
                "200": ok("Stored.", json!({ "type": "object", "properties": { "message": { "type": "string", "enum": ["success"] } } })),
                "422": err("Bad input; `field` names it. Nothing stored.")
            }
        } },
        "/all_positions/": { "get": {
            "summary": "Legacy: the netted book as a JSON string holding an object keyed by symbol in first-seen order, e.g. \"{\\\"EURUSD\\\":{\\\"volume\\\":0.3,\\\"side\\\":0}}\". Also without the trailing slash.",
            "security": [],
            "responses": { "200": ok("JSON string.", json!({ "type": "string" })) }
        } }
    })
}

/// The document: the schemas derived from the API's types, and every route.
pub fn document() -> Result<Value, serde_json::Error> {
    let mut doc = serde_json::to_value(ApiSchemas::openapi())?;
    doc["info"] = json!({
        "title": "hedge center",
        "version": env!("CARGO_PKG_VERSION"),
        "description": DESCRIPTION,
    });
    doc["components"]["securitySchemes"] =
        json!({ "bearer": { "type": "http", "scheme": "bearer" } });
    doc["security"] = json!([{ "bearer": [] }]);
    let mut paths = Map::new();
    for group in [
        service_paths(),
        account_paths(),
        position_paths(),
        hedge_paths(),
        event_paths(),
        action_paths(),
        legacy_paths(),
    ] {
        if let Value::Object(group) = group {
            paths.extend(group);
        }
    }
    doc["paths"] = Value::Object(paths);
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every `(path, method)` the router serves, read from its `.route(...)` calls in `api.rs`.
    fn routed() -> BTreeSet<(String, String)> {
        let source = include_str!("api.rs");
        let start = source.find("pub fn router(").expect("the router");
        let end = start + source[start..].find(".merge(").expect("the router's end");
        let mut routes = BTreeSet::new();
        for call in source[start..end].split(".route(").skip(1) {
            let path = call.split('"').nth(1).expect("a quoted path").to_owned();
            for method in ["get", "post", "put", "delete", "patch"] {
                if call.contains(&format!("{method}(")) {
                    routes.insert((path.clone(), method.to_owned()));
                }
            }
        }
        routes
    }

    /// Every `(path, method)` the document describes.
    fn described(doc: &Value) -> BTreeSet<(String, String)> {
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                if method != "parameters" {
                    ops.insert((path.clone(), method.clone()));
                }
            }
        }
        ops
    }

    #[test]
    fn every_route_is_described_with_its_methods_and_nothing_else() {
        let doc = document().unwrap();
        let routed = routed();
        assert!(
            routed.iter().filter(|(p, _)| p.starts_with("/v1/")).count() >= 20,
            "the router was not read: {routed:?}"
        );
        let described = described(&doc);
        let legacy: BTreeSet<(String, String)> =
            [("/new_position/", "get"), ("/all_positions/", "get")]
                .into_iter()
                .map(|(p, m)| (p.to_owned(), m.to_owned()))
                .collect();
        let missing: Vec<_> = routed.difference(&described).collect();
        assert!(
            missing.is_empty(),
            "routes not in the document: {missing:?}"
        );
        let stale: Vec<_> = described
            .difference(&routed)
            .filter(|op| !legacy.contains(op))
            .collect();
        assert!(stale.is_empty(), "documented but not routed: {stale:?}");
        assert!(legacy.is_subset(&described));
    }

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(target)) = m.get("$ref") {
                    out.push(target);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_schema_named_exists_and_comes_from_the_types() {
        let doc = document().unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut named = Vec::new();
        refs(&doc, &mut named);
        assert!(named.len() > 50);
        for target in named {
            let name = target.strip_prefix("#/components/schemas/").unwrap();
            assert!(schemas.contains_key(name), "{target} is not a schema");
        }
        // Derived from the model: a field's doc comment is its description, an optional field is
        // not required, and the domain's types travel as their JSON.
        let report = &schemas["PositionReport"];
        let required: Vec<&str> = report["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(required.contains(&"idempotency_key"));
        assert!(!required.contains(&"price"));
        assert_eq!(report["properties"]["side"], r("Side"));
        assert_eq!(report["properties"]["volume"]["type"], "number");
        assert_eq!(report["properties"]["login"]["type"], "integer");
        assert_eq!(schemas["Side"]["enum"], json!(["buy", "sell"]));
        let kinds = schemas["EventKind"]["enum"].as_array().unwrap();
        assert_eq!(
            kinds.len(),
            hedge_center_api::model::EventKind::ALL.len(),
            "every event kind"
        );
        let positions = &doc["paths"]["/v1/positions"]["get"]["parameters"];
        let names: Vec<&str> = positions
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(names, ["login", "symbol", "status", "after", "limit"]);
    }
}
