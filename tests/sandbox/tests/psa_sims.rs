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

#[tokio::test]
async fn vsa_refuses_top_above_100_and_names_for_ids() {
    let sim = Vsa::spawn(VsaConfig::default()).await.unwrap();
    let c = Client::new();
    let url = sim.base_url().to_string();
    let cfg = sim.config().clone();
    let r: Value = c
        .get(format!("{url}/api/v1.0/auth"))
        .basic_auth(&cfg.username, Some(&cfg.pat))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
