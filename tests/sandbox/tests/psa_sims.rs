//! The PSA simulators at the wire level: auth, paging limits and error envelopes.

use reqwest::{Client, StatusCode};
use sandbox::bms::{Bms, BmsConfig};
use sandbox::ninjaone::{NinjaConfig, NinjaOne};
use sandbox::otrs::{Otrs, OtrsConfig};
use sandbox::vsa::{Vsa, VsaConfig};
use serde_json::{Value, json};

#[tokio::test]
async fn bms_login_envelopes_and_page_size_cap() {
    let sim = Bms::spawn(BmsConfig { max_page_size: 5, ..BmsConfig::default() }).await.unwrap();
    sim.add_customer("100", "Acme");
    let c = Client::new();
    let url = sim.base_url().to_string();
    let cfg = sim.config().clone();
    let form = |tenant: &str, pw: &str| {
        reqwest::multipart::Form::new()
            .text("GrantType", "password")
            .text("UserName", cfg.username.clone())
            .text("Password", pw.to_string())
            .text("Tenant", tenant.to_string())
    };
    let r =
        c.post(format!("{url}/v2/security/authenticate")).multipart(form("Nope", &cfg.password)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["Success"], false);
    assert!(body["Error"]["Message"].as_str().unwrap().contains("Tenant"));
    let r = c.post(format!("{url}/v2/security/authenticate")).multipart(form(&cfg.tenant, "bad")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r: Value = c
        .post(format!("{url}/v2/security/authenticate"))
        .multipart(form(&cfg.tenant, &cfg.password))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = r["Result"]["AccessToken"].as_str().unwrap().to_string();
    // Required fields are enforced: by the vendor contract (answered and recorded) and, with
    // contract checks off, by the simulator itself.
    let partial =
        || c.post(format!("{url}/v2/servicedesk/tickets")).bearer_auth(&token).json(&json!({"Title": "t"})).send();
    let r = partial().await.unwrap();
    assert_eq!(r.status().as_u16(), sandbox::contract::VIOLATION_STATUS);
    assert!(r.headers().contains_key(sandbox::contract::VIOLATION_HEADER));
    let body: Value = r.json().await.unwrap();
    assert!(body["violations"].to_string().contains("body.AccountId is required but missing"), "{body}");
    let taken = sim.take_contract_violations();
    assert_eq!(taken.len(), 8, "each missing required field is named: {taken:?}");
    sim.set_contract_checks(false);
    assert_eq!(partial().await.unwrap().status(), StatusCode::BAD_REQUEST);
    sim.set_contract_checks(true);
    // JSON endpoints refuse another Content-Type, as ASP.NET does (415).
    let r = c
        .post(format!("{url}/v2/servicedesk/tickets/search"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(r#"{"PageNumber":1,"PageSize":5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), sandbox::contract::VIOLATION_STATUS);
    assert!(sim.take_contract_violations()[0].contains("Content-Type 'text/plain' is not accepted"));
    sim.set_contract_checks(false);
    let r = c
        .post(format!("{url}/v2/servicedesk/tickets/search"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(r#"{"PageNumber":1,"PageSize":5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    sim.set_contract_checks(true);
    for i in 0..7 {
        let t = json!({"Title": format!("t{i}"), "Details": "d", "AccountId": 100, "LocationId": 1001, "StatusId": 1,
                       "PriorityId": 2, "TypeId": 1, "SourceId": 8, "OpenDate": "2025-01-01T00:00:00Z"});
        let r: Value = c
            .post(format!("{url}/v2/servicedesk/tickets"))
            .bearer_auth(&token)
            .json(&t)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["Success"], true, "{r}");
    }
    let r: Value = c
        .post(format!("{url}/v2/servicedesk/tickets/search"))
        .bearer_auth(&token)
        .json(&json!({"PageNumber": 1, "PageSize": 100, "Filter": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["Result"].as_array().unwrap().len(), 5, "page size capped");
    assert_eq!(r["TotalRecords"], 7);
    // No token: 401 envelope.
    let r = c.get(format!("{url}/v2/servicedesk/tickets/5001")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// The VSA simulator's answer to a login with its configured user and PAT.
async fn vsa_auth(sim: &Vsa, c: &Client) -> Value {
    let cfg = sim.config();
    c.get(format!("{}/api/v1.0/auth", sim.base_url()))
        .basic_auth(&cfg.username, Some(&cfg.pat))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn vsa_refuses_top_above_100_and_names_for_ids() {
    let sim = Vsa::spawn(VsaConfig::default()).await.unwrap();
    // This test sends shapes the vendor refuses on purpose: the simulator's own refusal is under test.
    sim.set_contract_checks(false);
    let c = Client::new();
    let url = sim.base_url().to_string();
    let cfg = sim.config().clone();
    let r = vsa_auth(&sim, &c).await;
    let token = r["Result"]["Token"].as_str().unwrap().to_string();
    assert!(r["Result"]["SessionExpiration"].as_str().is_some());
    let list = format!("{url}/api/v1.0/automation/servicedesks/1001/tickets");
    let r = c.get(&list).bearer_auth(&token).query(&[("$top", "101")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c.get(&list).bearer_auth(&token).query(&[("$filter", "Status like 'x'")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let create = format!("{url}/api/v1.0/automation/servicedesktickets/1001/ticket");
    let r =
        c.post(&create).bearer_auth(&token).json(&json!({"Summary": "s", "Priority": "High"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = r.json().await.unwrap();
    assert!(body["Error"].as_str().unwrap().contains("correct format"));
    let r: Value = c
        .post(&create)
        .bearer_auth(&token)
        .json(&json!({"Summary": "s", "Priority": 13}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["ResponseCode"], 0);
    let r = c.get(format!("{url}/api/v1.0/auth")).basic_auth(&cfg.username, Some("wrong")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// What VSA's OData layer refuses: unsuffixed ids beyond Int32, fields outside the list model,
/// and POST bodies that are not JSON. The suffixed literal and the `Summary` field pass.
#[tokio::test]
async fn vsa_refuses_int32_overflow_unknown_filter_fields_and_non_json_bodies() {
    let sim = Vsa::spawn(VsaConfig::default()).await.unwrap();
    // This test sends shapes the vendor refuses on purpose: the simulator's own refusal is under test.
    sim.set_contract_checks(false);
    let c = Client::new();
    let url = sim.base_url().to_string();
    let token = vsa_auth(&sim, &c).await["Result"]["Token"].as_str().unwrap().to_string();
    let create = format!("{url}/api/v1.0/automation/servicedesktickets/1001/ticket");
    let made: Value = c
        .post(&create)
        .bearer_auth(&token)
        .json(&json!({"Summary": "Disk full [tb-K1]", "Description": "d", "Priority": 13}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = made["Result"]["ServiceDeskTicketId"].as_u64().unwrap();
    assert!(id > i32::MAX as u64, "VSA ids overflow Int32: {id}");
    let list = format!("{url}/api/v1.0/automation/servicedesks/1001/tickets");
    let filter = |f: String| c.get(&list).bearer_auth(&token).query(&[("$filter", f)]).send();
    let r = filter(format!("ServiceDeskTicketId eq {id}")).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    let want = format!("Unrecognized 'Edm.Int32' literal '{id}' at '23' in 'ServiceDeskTicketId eq {id}'.");
    assert!(body["Message"].as_str().unwrap().ends_with(&want), "{body}");
    let r: Value = filter(format!("ServiceDeskTicketId eq {id}M")).await.unwrap().json().await.unwrap();
    assert_eq!(r["Result"][0]["ServiceDeskTicketId"].as_u64(), Some(id));
    assert!(r["Result"][0].get("Description").is_none(), "the list model has no Description");
    assert_eq!(r["Result"][0]["TicketStatus"], "Open");
    let r = filter("substringof('tb-K1',Description)".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(body["Message"].as_str().unwrap().contains("property named 'Description'"), "{body}");
    let r: Value = filter("substringof('tb-K1',Summary)".into()).await.unwrap().json().await.unwrap();
    assert_eq!(r["TotalRecords"], 1);
    let r = c.post(&create).bearer_auth(&token).body(r#"{"Summary":"s","Priority":13}"#).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let notes = format!("{url}/api/v1.0/automation/servicedesktickets/{id}/notes");
    let r = c
        .post(&notes)
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(r#"{"Text":"x","Hidden":true,"SystemFlag":false}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(sim.find_ticket(&id.to_string()).unwrap().notes.len(), 0, "nothing stored");
}

/// A NinjaOne access token from the simulator.
async fn ninja_token(sim: &NinjaOne, c: &Client) -> String {
    let cfg = sim.config();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", cfg.client_id.as_str()),
        ("client_secret", cfg.client_secret.as_str()),
        ("scope", "monitoring management"),
    ];
    let r: Value =
        c.post(format!("{}/ws/oauth/token", sim.base_url())).form(&form).send().await.unwrap().json().await.unwrap();
    r["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn ninjaone_board_filters_take_string_values_only() {
    let sim = NinjaOne::spawn(NinjaConfig::default()).await.unwrap();
    sim.add_customer("2", "Acme");
    let c = Client::new();
    let token = ninja_token(&sim, &c).await;
    for i in 0..3 {
        let t = json!({"clientId": 2, "ticketFormId": 1, "subject": format!("s{i}"), "description": {"public": false, "body": "b"}, "status": "1000"});
        let r = c
            .post(format!("{}/v2/ticketing/ticket", sim.base_url()))
            .bearer_auth(&token)
            .json(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let run = |value: Value| {
        let body = json!({"filters": [{"field": "id", "operator": "in", "value": value}], "pageSize": 10});
        c.post(format!("{}/v2/ticketing/trigger/board/2/run", sim.base_url())).bearer_auth(&token).json(&body).send()
    };
    let r: Value = run(json!("101,103")).await.unwrap().json().await.unwrap();
    let ids: Vec<i64> = r["data"].as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [101, 103]);
    // The integer array is refused: by the vendor contract, and by the simulator itself.
    let r = run(json!([101, 103])).await.unwrap();
    assert_eq!(r.status().as_u16(), sandbox::contract::VIOLATION_STATUS);
    let taken = sim.take_contract_violations();
    assert!(taken[0].contains("body.filters[0].value is an array; the contract wants a string"), "{taken:?}");
    sim.set_contract_checks(false);
    let r = run(json!([101, 103])).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("must be a string"));
    let r = c
        .post(format!("{}/v2/ticketing/trigger/board/2/run", sim.base_url()))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn an_untaken_contract_violation_fails_the_test_when_the_simulator_is_dropped() {
    let sim = NinjaOne::spawn(NinjaConfig::default()).await.unwrap();
    let r = Client::new().get(format!("{}/v2/ticketing/no-such-operation", sim.base_url())).send().await.unwrap();
    // Not routed by the simulator: nothing to check, nothing recorded.
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(sim.contract_violations().is_empty());
    let r = Client::new().get(format!("{}/v2/organizations?pageSize=ten", sim.base_url())).send().await.unwrap();
    assert_eq!(r.status().as_u16(), sandbox::contract::VIOLATION_STATUS);
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(sim)));
    let msg = dropped.err().and_then(|p| p.downcast_ref::<String>().cloned()).expect("dropping panics");
    assert!(msg.contains("1 vendor contract violation(s) at the ninjaone simulator"), "{msg}");
    assert!(msg.contains("query parameter pageSize = 'ten' is not an integer"), "{msg}");
}

#[tokio::test]
async fn ninjaone_counts_replayed_refresh_tokens() {
    let sim = NinjaOne::spawn(NinjaConfig::default()).await.unwrap();
    let c = Client::new();
    let cfg = sim.config().clone();
    let rt = sim.grant_refresh_token();
    let exchange = |rt: String| {
        let form = vec![
            ("grant_type".to_string(), "refresh_token".to_string()),
            ("client_id".to_string(), cfg.client_id.clone()),
            ("client_secret".to_string(), cfg.client_secret.clone()),
            ("refresh_token".to_string(), rt),
        ];
        c.post(format!("{}/ws/oauth/token", sim.base_url())).form(&form).send()
    };
    let r: Value = exchange(rt.clone()).await.unwrap().json().await.unwrap();
    let next = r["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(next, rt);
    let r = exchange(rt).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(sim.refresh_replays(), 1);
    assert_eq!(exchange(next).await.unwrap().status(), StatusCode::OK);
    assert_eq!(sim.refresh_replays(), 1);
}

#[tokio::test]
async fn otrs_answers_errors_with_http_200() {
    let sim = Otrs::spawn(OtrsConfig::default()).await.unwrap();
    // This test sends shapes the vendor refuses on purpose: the simulator's own refusal is under test.
    sim.set_contract_checks(false);
    let c = Client::new();
    let base = format!("{}{}", sim.base_url(), sim.config().service_path());
    let r = c.get(format!("{base}/Ticket/1")).query(&[("SessionID", "nope")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["Error"]["ErrorCode"], "TicketGet.AuthFail");
    let r: Value = c
        .post(format!("{base}/Session"))
        .json(&json!({"UserLogin": "x", "Password": "y"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["Error"]["ErrorCode"], "SessionCreate.AuthFail");
    let cfg = sim.config().clone();
    let r: Value = c
        .post(format!("{base}/Session"))
        .json(&json!({"UserLogin": cfg.user, "Password": cfg.password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = r["SessionID"].as_str().unwrap().to_string();
    let r: Value = c
        .post(format!("{base}/Ticket"))
        .json(&json!({"SessionID": sid, "Ticket": {"Title": "t"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["Error"]["ErrorCode"], "TicketCreate.MissingParameter");
    let r: Value = c
        .get(format!("{base}/Ticket"))
        .query(&[("SessionID", sid.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r, json!({}), "an empty search is an empty object");
}

/// Znuny's search behaviour: the article index lags and keeps only the first WordCountMax words;
/// dynamic fields must exist to be set and are searched only as an object of operators.
#[tokio::test]
async fn otrs_article_index_lags_and_truncates_and_dynamic_fields_must_exist() {
    let c = Client::new();
    let session = |base: String, cfg: OtrsConfig| {
        let c = c.clone();
        async move {
            let r: Value = c
                .post(format!("{base}/Session"))
                .json(&json!({"UserLogin": cfg.user, "Password": cfg.password}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r["SessionID"].as_str().unwrap().to_string()
        }
    };
    let words: Vec<String> = (0..8).map(|i| format!("word{i}")).collect();
    let ticket = |sid: &str, df: &str| {
        json!({
            "SessionID": sid,
            "Ticket": {"Title": "t", "Queue": "Raw", "State": "new", "Priority": "3 normal", "CustomerUser": "a@b.c"},
            "Article": {"Subject": "s", "Body": words.join(" "), "ContentType": "text/plain; charset=utf8"},
            "DynamicField": [{"Name": df, "Value": "K1"}],
        })
    };
    for (delay, max, near, far) in [(60, 1000, false, false), (0, 5, true, false), (0, 1000, true, true)] {
        let cfg = OtrsConfig {
            search_index_delay: std::time::Duration::from_secs(delay),
            word_count_max: max,
            ..OtrsConfig::default()
        };
        let sim = Otrs::spawn(cfg.clone()).await.unwrap();
        // This test sends shapes the vendor refuses on purpose: the simulator's own refusal is under test.
        sim.set_contract_checks(false);
        let base = format!("{}{}", sim.base_url(), cfg.service_path());
        let sid = session(base.clone(), cfg.clone()).await;
        let made: Value = c
            .post(format!("{base}/Ticket"))
            .json(&ticket(&sid, "TicketBridgeRef"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(made["TicketID"].is_string(), "{made}");
        let found = |word: &str| {
            c.post(format!("{base}/TicketSearch")).json(&json!({"SessionID": sid, "MIMEBase_Body": word})).send()
        };
        let hit = |v: Value| v.get("TicketID").is_some();
        assert_eq!(hit(found("word1").await.unwrap().json().await.unwrap()), near, "delay {delay}, max {max}");
        assert_eq!(hit(found("word7").await.unwrap().json().await.unwrap()), far, "delay {delay}, max {max}");
        // The dynamic field is found at once, whatever the index does.
        let r: Value = c
            .post(format!("{base}/TicketSearch"))
            .json(&json!({"SessionID": sid, "DynamicField_TicketBridgeRef": {"Equals": "K1"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["TicketID"], json!([made["TicketID"]]));
        let r: Value = c
            .post(format!("{base}/TicketSearch"))
            .json(&json!({"SessionID": sid, "DynamicField_TicketBridgeRef": {"Equals": "K2"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r, json!({}));
        // Unknown fields, and query-string values (never an object), are ignored: everything matches.
        let q = json!({"SessionID": sid, "DynamicField_Nope": {"Equals": "K2"}});
        let r: Value = c.post(format!("{base}/TicketSearch")).json(&q).send().await.unwrap().json().await.unwrap();
        assert_eq!(r["TicketID"], json!([made["TicketID"]]));
        let r: Value = c
            .get(format!("{base}/Ticket"))
            .query(&[("SessionID", sid.as_str()), ("DynamicField_TicketBridgeRef", "K2")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["TicketID"], json!([made["TicketID"]]));
        // An unknown field on create is refused before anything exists; so is a non-JSON body.
        let r: Value =
            c.post(format!("{base}/Ticket")).json(&ticket(&sid, "Nope")).send().await.unwrap().json().await.unwrap();
        assert_eq!(r["Error"]["ErrorCode"], "TicketCreate.InvalidParameter");
        assert!(r["Error"]["ErrorMessage"].as_str().unwrap().contains("DynamicField->Name"));
        let r = c
            .post(format!("{base}/Ticket"))
            .header("content-type", "text/plain")
            .body(ticket(&sid, "TicketBridgeRef").to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(sim.tickets().len(), 1);
        // TicketGet lists the ticket's dynamic fields on request.
        let id = made["TicketID"].as_str().unwrap();
        let r: Value = c
            .get(format!("{base}/Ticket/{id}"))
            .query(&[("SessionID", sid.as_str()), ("DynamicFields", "1")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["Ticket"][0]["DynamicField"], json!([{"Name": "TicketBridgeRef", "Value": "K1"}]));
    }
}
