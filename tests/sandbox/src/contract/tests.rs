use super::*;
use serde_json::json;

fn contract() -> Contract {
    Contract::from_value(
        "demo",
        json!({
            "openapi": "3.0.1",
            "paths": {
                "/items/{id}": {"get": {"parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "format": "int32"}},
                    {"name": "ids", "in": "query", "schema": {"type": "array", "items": {"type": "integer"}}},
                    {"name": "q", "in": "query", "required": true, "schema": {"type": "string"}}
                ], "responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}}}}},
                "/items/search": {"get": {"responses": {"default": {"description": "any"}}}},
                "/items": {"post": {"requestBody": {"required": true, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Item"}},
                    "application/*+json": {"schema": {"$ref": "#/components/schemas/Item"}}
                }}, "responses": {"200": {"description": "ok"}}}},
                "/form": {"post": {"requestBody": {"content": {"multipart/form-data": {"schema": {
                    "type": "object", "required": ["meta"],
                    "properties": {"meta": {"type": "object", "required": ["public"], "properties": {"public": {"type": "boolean"}}},
                                   "n": {"type": "integer"}}}}}}, "responses": {"200": {"description": "ok"}}}}
            },
            "components": {"schemas": {
                "Item": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
                    "name": {"type": "string", "maxLength": 5},
                    "kind": {"type": "string", "enum": ["A", "B"], "nullable": true},
                    "filters": {"type": "array", "items": {"type": "object", "properties": {"value": {"type": "string"}}}},
                    "owner": {"$ref": "#/components/schemas/Owner"},
                    "extra": {"type": "object"}
                }},
                "Owner": {"type": "object", "properties": {"uid": {"type": "string", "format": "uuid"}}}
            }}
        }),
    )
    .unwrap()
}

fn req<'a>(
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    ct: Option<&'a str>,
    body: &'a [u8],
) -> RequestView<'a> {
    RequestView { method, path, query, content_type: ct, body }
}

fn violations(r: Result<usize, Vec<String>>) -> String {
    r.err().unwrap_or_default().join("\n")
}

#[test]
fn paths_methods_and_parameters() {
    let c = contract();
    assert!(c.check_request(&req("GET", "/items/7", Some("q=x&ids=1&ids=2"), None, b"")).is_ok());
    let lit = c.check_request(&req("GET", "/items/search", None, None, b"")).unwrap();
    assert_eq!(c.operation_name(lit), "GET /items/search", "a literal segment beats a parameter");
    assert!(
        violations(c.check_request(&req("GET", "/nowhere", None, None, b""))).contains("no operation for this path")
    );
    assert!(
        violations(c.check_request(&req("DELETE", "/items/7", None, None, b"")))
            .contains("no operation for this method")
    );
    let v = violations(c.check_request(&req("GET", "/items/abc", Some("ids=1,2&zz=1"), None, b"")));
    for want in [
        "path parameter id = 'abc' is not an integer",
        "query parameter ids = '1,2' is not an integer",
        "query parameter 'zz' is not declared",
        "required query parameter 'q' is missing",
    ] {
        assert!(v.contains(want), "{want} in {v}");
    }
    assert!(
        violations(c.check_request(&req("GET", "/items/99999999999", Some("q=x"), None, b"")))
            .contains("does not fit int32")
    );
}

#[test]
fn json_bodies_and_content_types() {
    let c = contract();
    let ok = br#"{"name":"ab","kind":null,"filters":[{"value":"1,2"}],"owner":null,"extra":{"x":[1]}}"#;
    assert!(c.check_request(&req("POST", "/items", None, Some("application/json; charset=utf-8"), ok)).is_ok());
    assert!(c.check_request(&req("POST", "/items", None, Some("application/merge+json"), ok)).is_ok());
    let v = violations(c.check_request(&req("POST", "/items", None, Some("text/plain"), ok)));
    assert!(v.contains("Content-Type 'text/plain' is not accepted"), "{v}");
    assert!(violations(c.check_request(&req("POST", "/items", None, None, b""))).contains("body is required"));
    let bad = br#"{"kind":"C","filters":[{"value":[1,2]}],"owner":{"uid":"nope"},"nme":"x"}"#;
    let v = violations(c.check_request(&req("POST", "/items", None, Some("application/json"), bad)));
    for want in [
        "body.name is required",
        "body.kind = \"C\" is not one of",
        "body.filters[0].value is an array; the contract wants a string",
        "body.owner.uid = 'nope' is not a UUID",
        "body.nme is not a property the contract declares",
    ] {
        assert!(v.contains(want), "{want} in {v}");
    }
    let v =
        violations(c.check_request(&req("POST", "/items", None, Some("application/json"), br#"{"name":"toolong"}"#)));
    assert!(v.contains("at most 5"), "{v}");
    assert!(
        violations(c.check_request(&req("GET", "/items/search", None, Some("application/json"), b"{}")))
            .contains("takes none")
    );
}

#[test]
fn multipart_parts_are_parsed_and_typed() {
    let c = contract();
    let body = "--XX\r\nContent-Disposition: form-data; name=\"meta\"\r\nContent-Type: application/json\r\n\r\n{\"public\":false}\r\n--XX\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\n3\r\n--XX--\r\n";
    assert!(
        c.check_request(&req("POST", "/form", None, Some("multipart/form-data; boundary=XX"), body.as_bytes())).is_ok()
    );
    let body = "--XX\r\nContent-Disposition: form-data; name=\"meta\"\r\n\r\n{}\r\n--XX\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\nthree\r\n--XX--\r\n";
    let v = violations(c.check_request(&req(
        "POST",
        "/form",
        None,
        Some("multipart/form-data; boundary=XX"),
        body.as_bytes(),
    )));
    assert!(
        v.contains("form field meta.public is required") && v.contains("form field n = 'three' is not an integer"),
        "{v}"
    );
    let v = violations(c.check_request(&req("POST", "/form", None, Some("application/json"), b"{}")));
    assert!(v.contains("Content-Type 'application/json' is not accepted"), "{v}");
}

#[test]
fn responses_follow_their_status() {
    let c = contract();
    let op = c.check_request(&req("GET", "/items/7", Some("q=x"), None, b"")).unwrap();
    assert!(c.check_response(op, 200, Some("application/json"), br#"{"name":"a"}"#).is_empty());
    let v = c.check_response(op, 200, Some("application/json"), br#"{"name":5}"#).join("\n");
    assert!(v.contains("GET /items/{id}: response body.name is an integer; the contract wants a string"), "{v}");
    assert!(c.check_response(op, 201, Some("application/json"), b"{}")[0].contains("status 201 is not documented"));
    assert!(
        c.check_response(op, 404, Some("application/json"), b"{}").is_empty(),
        "undocumented errors are not checked"
    );
    assert!(!c.check_response(op, 200, Some("text/html"), b"<p>").is_empty());
}

#[test]
fn every_contract_file_loads() {
    let mut seen = 0;
    for entry in std::fs::read_dir(contracts_dir()).unwrap() {
        let path = entry.unwrap().path();
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else { continue };
        if !["json", "yaml", "yml"].contains(&ext) {
            continue;
        }
        let target = path.file_stem().and_then(|s| s.to_str()).unwrap().to_string();
        let c = Contract::load(&target, &path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(c.operation_count() > 0, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 2, "bms and ninjaone contracts at least");
}
