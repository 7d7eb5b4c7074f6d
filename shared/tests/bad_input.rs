//! Bad input, property-based: the intake parser and every connector's response parser on
//! arbitrary bytes and JSON. Nothing panics; every intake rejection is a 4xx with a code (and the
//! field when one is to blame); accepted bodies round-trip; template metacharacters in fields are
//! data. Case counts scale with `TB_SOAK_SCALE`; each test writes its counts under
//! `target/reliability/` for the report.

use bridge::connectors::{bms, ninjaone, otrs, vsa};
use bridge::engine::intake::parse_task;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};

fn cases(base: u32) -> u32 {
    let scale = std::env::var("TB_SOAK_SCALE").ok().and_then(|s| s.parse::<u32>().ok()).filter(|n| *n > 0).unwrap_or(1);
    base * scale
}

fn write_counts(class: &str, tried: usize, rejected: usize) {
    let scale = std::env::var("TB_SOAK_SCALE").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(1);
    let v = json!({"suite": "bad_input", "class": class, "route": "-", "scale": scale, "runs": 1, "tasks": tried,
        "errors": rejected, "lost": 0, "duplicates": 0});
    sandbox::report::write(&format!("bad-{class}"), &v);
}

/// Strings an attacker would try in task fields: template syntax, JSON breakers, control chars.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{{ 7*7 }}".to_string()),
        Just("{% for x in range(99999999) %}x{% endfor %}".to_string()),
        Just("{{ secret }}{{ config }}{{ base_url }}".to_string()),
        Just("\"}, \"injected\": true, \"x\": {\"".to_string()),
        Just("\\\"\\u0000\\n".to_string()),
        Just("{# comment #}{%- raw -%}".to_string()),
        Just("\u{202e}\u{0000}\u{feff}\r\n\t".to_string()),
        "[{}%#\"\\\\<>a-z ]{0,40}",
        any::<String>(),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "source",
            "external_id",
            "kind",
            "action",
            "user",
            "application",
            "entitlements",
            "requester",
            "justification",
            "due_at",
            "organization",
            "connection",
            "callback_url",
            "user_email",
            "alert_type",
            "severity",
            "occurred_at",
            "details",
            "id",
            "name",
            "email",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,12}",
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        // serde_json (without its `float_roundtrip` feature) may read a printed f64 back one ULP
        // off; such values are excluded so the round-trip check tests the parser, not that.
        any::<f64>()
            .prop_filter("finite, exact in serde_json", |f| f.is_finite()
                && serde_json::from_str::<f64>(&json!(f).to_string()).ok() == Some(*f))
            .prop_map(|f| json!(f)),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn valid_access() -> Value {
    json!({"source":"saviynt","external_id":"T-1","kind":"access","action":"add_access",
        "user":{"id":"u-1","name":"Ada","email":"ada@example.com"},"application":"Payroll","entitlements":["admin"]})
}

fn valid_alert() -> Value {
    json!({"source":"saas-alerts","external_id":"A-1","kind":"alert","user_email":"u@example.com",
        "alert_type":"Too Many Downloads","severity":"high","details":{"files":1}})
}

/// The contract for any body: no panic; a rejection is a 4xx with a code and a message; an
/// accepted body round-trips through its own serialization.
fn check(body: &[u8], rejected: &AtomicUsize) -> Result<(), TestCaseError> {
    match parse_task(body) {
        Err(e) => {
            rejected.fetch_add(1, Ordering::Relaxed);
            prop_assert!((400..500).contains(&e.status), "status {} for {:?}", e.status, e);
            prop_assert!(!e.code.is_empty() && !e.message.is_empty(), "{e:?}");
            if e.code == "invalid_field" {
                prop_assert!(e.field.is_some() || e.message.contains("body"), "invalid_field without a field: {e:?}");
            }
        }
        Ok(t) => {
            let again = serde_json::to_vec(&t).unwrap();
            let back = parse_task(&again);
            prop_assert_eq!(
                back.as_ref().ok(),
                Some(&t),
                "accepted body does not round-trip: {:?}",
                back.as_ref().err()
            );
        }
    }
    Ok(())
}

#[test]
fn intake_survives_arbitrary_bytes() {
    let rejected = AtomicUsize::new(0);
    let n = cases(512);
    let mut runner = TestRunner::new(Config { cases: n, failure_persistence: None, ..Config::default() });
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        // Valid JSON with a byte flipped to something invalid in UTF-8.
        (0usize..200, prop::sample::select(vec![0xffu8, 0xc0, 0x80, 0xed, 0x00])).prop_map(|(i, b)| {
            let mut v = serde_json::to_vec(&valid_access()).unwrap();
            let i = i % v.len();
            v[i] = b;
            v
        }),
    ];
    runner.run(&bytes, |b| check(&b, &rejected)).unwrap();
    write_counts("intake: arbitrary bytes / invalid UTF-8", n as usize, rejected.load(Ordering::Relaxed));
}

#[test]
fn intake_survives_arbitrary_json() {
    let rejected = AtomicUsize::new(0);
    let n = cases(512);
    let mut runner = TestRunner::new(Config { cases: n, failure_persistence: None, ..Config::default() });
    runner.run(&arb_json(), |v| check(&serde_json::to_vec(&v).unwrap(), &rejected)).unwrap();
    write_counts("intake: arbitrary JSON", n as usize, rejected.load(Ordering::Relaxed));
}

/// One known field of a valid body replaced by an arbitrary value: accepted, or rejected naming
/// that field.
#[test]
fn intake_mutated_field_is_named_in_the_rejection() {
    let rejected = AtomicUsize::new(0);
    let n = cases(512);
    let mut runner = TestRunner::new(Config { cases: n, failure_persistence: None, ..Config::default() });
    let fields = prop::sample::select(vec![
        (false, "source"),
        (false, "external_id"),
        (false, "action"),
        (false, "application"),
        (false, "entitlements"),
        (false, "user"),
        (false, "due_at"),
        (false, "callback_url"),
        (false, "organization"),
        (false, "connection"),
        (true, "user_email"),
        (true, "alert_type"),
        (true, "severity"),
        (true, "occurred_at"),
        (true, "details"),
    ]);
    runner
        .run(&(fields, arb_json()), |((alert, field), value)| {
            let mut body = if alert { valid_alert() } else { valid_access() };
            body[field] = value;
            match parse_task(&serde_json::to_vec(&body).unwrap()) {
                Err(e) => {
                    rejected.fetch_add(1, Ordering::Relaxed);
                    prop_assert!((400..500).contains(&e.status));
                    let named = e.field.as_deref().unwrap_or("");
                    prop_assert!(
                        named == field
                            || named.starts_with(&format!("{field}."))
                            || named.starts_with(&format!("{field}[")),
                        "mutating '{}' was rejected naming '{}': {:?}",
                        field,
                        named,
                        e
                    );
                }
                Ok(t) => check(&serde_json::to_vec(&t).unwrap(), &AtomicUsize::new(0))?,
            }
            Ok(())
        })
        .unwrap();
    write_counts("intake: one field replaced by arbitrary JSON", n as usize, rejected.load(Ordering::Relaxed));
}

/// Template metacharacters and JSON breakers in free-text fields are accepted verbatim.
#[test]
fn intake_keeps_template_metacharacters_as_data() {
    let n = cases(256);
    let mut runner = TestRunner::new(Config { cases: n, failure_persistence: None, ..Config::default() });
    let rejected = AtomicUsize::new(0);
    runner
        .run(&(hostile_string(), hostile_string()), |(app, just)| {
            let mut body = valid_access();
            body["application"] = json!(app);
            body["justification"] = json!(just);
            let raw = serde_json::to_vec(&body).unwrap();
            match parse_task(&raw) {
                Ok(t) => {
                    let bridge::domain::TaskPayload::Access(a) = &t.payload else { panic!("kind changed") };
                    // Surrounding whitespace is trimmed; everything else is kept verbatim.
                    prop_assert_eq!(a.application.as_str(), app.trim());
                    prop_assert_eq!(a.justification.as_deref().unwrap_or(""), just.trim());
                    check(&raw, &rejected)?;
                }
                Err(e) => {
                    // Only length / emptiness limits may refuse them, naming the field.
                    rejected.fetch_add(1, Ordering::Relaxed);
                    prop_assert!(matches!(e.field.as_deref(), Some("application" | "justification")), "{e:?}");
                }
            }
            Ok(())
        })
        .unwrap();
    write_counts("intake: template metacharacters in fields", n as usize, rejected.load(Ordering::Relaxed));
}

#[test]
fn intake_rejects_deep_nesting_huge_numbers_and_unknown_enums_by_name() {
    let mut tried = 0;
    let mut expect = |body: Vec<u8>, field: Option<&str>| {
        tried += 1;
        let e = parse_task(&body).expect_err("must be rejected");
        assert!((400..500).contains(&e.status), "{e:?}");
        if let Some(f) = field {
            assert_eq!(e.field.as_deref(), Some(f), "{e:?}");
        }
    };
    // Deep nesting: beyond the parser's limit and beyond serde_json's own recursion limit.
    for depth in [17, 100, 129, 10_000] {
        let mut body = valid_alert();
        let mut deep = json!(1);
        for _ in 0..depth.min(120) {
            deep = json!([deep]);
        }
        body["details"] = json!({ "x": deep });
        let mut raw = serde_json::to_vec(&body).unwrap();
        if depth > 120 {
            raw = format!(
                "{{\"source\":\"s\",\"kind\":\"alert\",\"details\":{}1{}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            )
            .into_bytes();
        }
        expect(raw, None);
    }
    // Huge numbers where strings are expected, and out-of-range floats.
    let mut b = valid_access();
    b["external_id"] = json!(u64::MAX);
    expect(serde_json::to_vec(&b).unwrap(), Some("external_id"));
    expect(br#"{"source":"s","external_id":"x","kind":"alert","details":{"n":1e400}}"#.to_vec(), None);
    let big: String = "9".repeat(5000);
    // (An integer beyond f64 range is not JSON serde_json accepts: a 400 invalid_json.)
    expect(format!(r#"{{"source":"s","external_id":{big},"kind":"access"}}"#).into_bytes(), None);
    expect(format!(r#"{{"source":"s","external_id":"{big}","kind":"access"}}"#).into_bytes(), Some("external_id"));
    // Unknown enum values name their field.
    for (alert, field, value) in
        [(false, "kind", "delete_all"), (false, "action", "grant_root"), (true, "severity", "apocalyptic")]
    {
        let mut b = if alert { valid_alert() } else { valid_access() };
        b[field] = json!(value);
        expect(serde_json::to_vec(&b).unwrap(), Some(field));
    }
    // Oversized text fields are refused by name.
    let mut b = valid_access();
    b["justification"] = json!("x".repeat(100_000));
    expect(serde_json::to_vec(&b).unwrap(), Some("justification"));
    write_counts("intake: deep nesting, huge numbers, unknown enums, oversized fields", tried, tried);
}

/// Every connector's response parsers on arbitrary bytes and JSON: a typed error or a value,
/// never a panic; derived values (remote status) are computable from whatever parsed.
#[test]
fn connector_response_parsers_never_panic() {
    let n = cases(512);
    let mut runner = TestRunner::new(Config { cases: n, failure_persistence: None, ..Config::default() });
    let errors = AtomicUsize::new(0);
    let inputs = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        // Plausible envelopes with arbitrary contents.
        (arb_json(), arb_json())
            .prop_map(|(a, b)| serde_json::to_vec(&json!({"Success": true, "Result": a, "TotalRecords": b})).unwrap()),
        (arb_json(), arb_json())
            .prop_map(|(a, b)| serde_json::to_vec(&json!({"Error": a, "Ticket": b, "TicketID": a})).unwrap()),
        arb_json()
            .prop_map(|a| serde_json::to_vec(&json!({"ResponseCode": "0", "Result": a, "Status": "OK"})).unwrap()),
        arb_json().prop_map(
            |a| serde_json::to_vec(&json!({"data": a, "metadata": a, "access_token": a, "error": a})).unwrap()
        ),
    ];
    runner
        .run(&inputs, |body| {
            let mut err = 0;
            let mut count = |ok: bool| err += usize::from(!ok);
            // BMS
            count(bms::wire::check_envelope(&body).is_ok());
            if let Ok(p) = bms::wire::parse_envelope::<Vec<bms::wire::Ticket>>(&body) {
                p.result.iter().for_each(|t| drop(t.remote_status()));
            }
            count(bms::wire::parse_envelope::<bms::wire::TokenOutput>(&body).is_ok());
            // NinjaOne
            count(ninjaone::wire::parse_token(&body).is_ok());
            let _ = ninjaone::wire::api_error(&body);
            if let Ok(t) = ninjaone::wire::parse_body::<ninjaone::wire::Ticket>(&body) {
                drop(t.remote_status(&ninjaone::wire::Catalogue::new(Vec::new())));
            }
            if let Ok(list) = ninjaone::wire::parse_body::<Vec<ninjaone::wire::Status>>(&body) {
                let cat = ninjaone::wire::Catalogue::new(list);
                let _ = cat.id_by_name("Closed");
            }
            count(ninjaone::wire::parse_body::<ninjaone::wire::BoardPage>(&body).is_ok());
            // OTRS
            count(otrs::wire::parse_reply::<otrs::wire::SessionReply>(&body).is_ok());
            count(otrs::wire::parse_reply::<otrs::wire::TicketReply>(&body).is_ok());
            if let Ok(otrs::wire::Reply::Err(e)) = otrs::wire::parse_reply::<otrs::wire::GetReply>(&body) {
                drop(e.to_error());
            }
            // VSA
            if let Ok(p) = vsa::wire::parse_envelope::<Vec<vsa::wire::Ticket>>(&body) {
                p.result.iter().for_each(|t| drop(t.remote_status()));
            }
            if let Ok(p) = vsa::wire::parse_envelope::<vsa::wire::AuthResult>(&body) {
                let _ = p.result.expires_at(chrono::Utc::now(), chrono::Duration::hours(1));
            }
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                count(vsa::wire::created_ticket(&v).is_ok());
            }
            errors.fetch_add(err, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    write_counts("connector response parsers (BMS, NinjaOne, OTRS, VSA)", n as usize, errors.load(Ordering::Relaxed));
}
