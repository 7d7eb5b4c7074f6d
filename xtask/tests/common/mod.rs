//! Facts and helpers shared by the template tests and the store operation test.

#![allow(dead_code)] // each test crate uses a different part

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// IAM actions (and the resource they act on) each `DynamoStore` method issues. `table` is the
/// table ARN, `index/<name>` a GSI. TransactWriteItems is authorized per item action (PutItem for
/// its puts, ConditionCheckItem for its condition checks); there is no IAM action of its own.
/// `tests/iam_store_ops.rs` runs every method on moto_server and compares the operations it sees.
#[rustfmt::skip]
pub const STORE_METHOD_ACTIONS: &[(&str, &[(&str, &str)])] = &[
    // TransactWriteItems of two conditional Puts (task + idempotency key); on a taken key it reads
    // the key and the first task.
    ("create_task", &[("dynamodb:PutItem", "table"), ("dynamodb:GetItem", "table")]),
    ("get_task", &[("dynamodb:GetItem", "table")]),
    // Conditional PutItem on the version; on a failed condition it reads the task to tell
    // Conflict from NotFound.
    ("update_task", &[("dynamodb:PutItem", "table"), ("dynamodb:GetItem", "table")]),
    ("due_for_creation", &[("dynamodb:Query", "index/due")]),
    ("due_for_polling", &[("dynamodb:Query", "index/due")]),
    ("list_tasks", &[("dynamodb:Query", "index/by_state")]),
    ("get_group", &[("dynamodb:GetItem", "table")]),
    // Conditional PutItem; when another task won, reads the winner.
    ("create_group", &[("dynamodb:PutItem", "table"), ("dynamodb:GetItem", "table")]),
    ("release_group", &[("dynamodb:DeleteItem", "table")]),
    ("acquire_lease", &[("dynamodb:PutItem", "table")]),
    ("take_lease", &[("dynamodb:PutItem", "table")]),
    ("renew_lease", &[("dynamodb:UpdateItem", "table")]),
    ("release_lease", &[("dynamodb:DeleteItem", "table")]),
    ("put_mapping", &[("dynamodb:PutItem", "table")]),
    ("get_mapping", &[("dynamodb:GetItem", "table")]),
    ("list_mappings", &[("dynamodb:Query", "table")]),
    ("delete_mapping", &[("dynamodb:DeleteItem", "table")]),
    ("put_user_mapping", &[("dynamodb:PutItem", "table")]),
    ("get_user_mapping", &[("dynamodb:GetItem", "table")]),
    ("list_user_mappings", &[("dynamodb:Query", "table")]),
    ("delete_user_mapping", &[("dynamodb:DeleteItem", "table")]),
    ("put_contact", &[("dynamodb:PutItem", "table")]),
    ("get_contact", &[("dynamodb:GetItem", "table")]),
    // TransactWriteItems of the version-checked task Put and one conditional Put per entry; on a
    // failed condition it reads the task to tell Conflict from NotFound.
    ("update_task_with_deliveries", &[("dynamodb:PutItem", "table"), ("dynamodb:GetItem", "table")]),
    ("get_delivery", &[("dynamodb:GetItem", "table")]),
    // Conditional PutItem on the version; on a failed condition it reads the entry.
    ("update_delivery", &[("dynamodb:PutItem", "table"), ("dynamodb:GetItem", "table")]),
    ("due_deliveries", &[("dynamodb:Query", "index/due")]),
    ("list_deliveries", &[("dynamodb:Query", "index/by_state")]),
    ("get_poll_mark", &[("dynamodb:GetItem", "table")]),
    ("put_poll_mark", &[("dynamodb:PutItem", "table")]),
    ("put_psa_record", &[("dynamodb:PutItem", "table")]),
    ("get_psa_record", &[("dynamodb:GetItem", "table")]),
    ("list_psa_records", &[("dynamodb:Query", "table")]),
    ("put_sync_checkpoint", &[("dynamodb:PutItem", "table")]),
    ("get_sync_checkpoint", &[("dynamodb:GetItem", "table")]),
];

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// The template as JSON, short-form tags turned into their long forms (`!Ref X` → `{"Ref": X}`,
/// `!GetAtt A.B` → `{"Fn::GetAtt": [A, B]}`, `!Sub s` → `{"Fn::Sub": s}`).
pub fn template() -> Value {
    let yaml: serde_norway::Value =
        serde_norway::from_str(&read("infra/template.yaml")).expect("template is valid YAML");
    to_json(yaml)
}

pub fn to_json(v: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else {
                json!(n.as_f64().unwrap())
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(s) => Value::Array(s.into_iter().map(to_json).collect()),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    other => panic!("non-string key {other:?}"),
                };
                out.insert(key, to_json(v));
            }
            Value::Object(out)
        }
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = to_json(t.value);
            match name {
                "Ref" => json!({ "Ref": inner }),
                "GetAtt" => {
                    let s = inner.as_str().expect("!GetAtt takes Resource.Attribute");
                    let (res, attr) = s.split_once('.').expect("!GetAtt takes Resource.Attribute");
                    json!({ "Fn::GetAtt": [res, attr] })
                }
                other => json!({ format!("Fn::{other}"): inner }),
            }
        }
    }
}

/// Evaluates an environment value: `Ref`s from `refs` (resources, parameter overrides), else
/// parameter defaults; `Fn::If` with the given conditions. `None` is `AWS::NoValue`.
pub fn eval(v: &Value, t: &Value, conditions: &BTreeMap<&str, bool>, refs: &BTreeMap<&str, String>) -> Option<String> {
    if let Some(s) = v.as_str() {
        return Some(s.to_string());
    }
    if let Some(r) = v["Ref"].as_str() {
        return match r {
            "AWS::NoValue" => None,
            r if refs.contains_key(r) => Some(refs[r].clone()),
            p => Some(t["Parameters"][p]["Default"].as_str().unwrap_or_else(|| panic!("Ref {p}")).to_string()),
        };
    }
    if let Some([c, yes, no]) = v["Fn::If"].as_array().map(Vec::as_slice) {
        let cond = conditions[c.as_str().unwrap()];
        return eval(if cond { yes } else { no }, t, conditions, refs);
    }
    panic!("cannot evaluate environment value {v}")
}
