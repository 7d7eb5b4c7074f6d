//! OTRS / Znuny GenericTicketConnectorREST wire format: configurable routes, the
//! HTTP-200-with-`Error` envelope, tickets and StateType categories.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::connectors::psa_util::truncate;
use crate::connectors::{ConnectorError, RemoteStatus};
use crate::domain::{MappedStatus, Outcome};

/// Default path from the host to the web services.
pub const DEFAULT_PREFIX: &str = "/otrs/nph-genericinterface.pl";
/// Name of the sample web service.
pub const DEFAULT_WEBSERVICE: &str = "GenericTicketConnectorREST";

/// Default ticket dynamic field holding the correlation key.
pub const DEFAULT_DYNAMIC_FIELD: &str = "TicketBridgeRef";

/// Whether `name` can be a Znuny dynamic field name (letters and digits; TicketSearch only
/// recognises `DynamicField_<[a-zA-Z0-9]+>`).
pub fn valid_field_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 200 && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `DynamicField` entry of TicketCreate: `[{"Name": name, "Value": key}]`.
pub fn dynamic_field_value(name: &str, key: &str) -> serde_json::Value {
    serde_json::json!([{ "Name": name, "Value": key }])
}

/// TicketSearch body finding tickets whose dynamic field equals `value` exactly.
pub fn dynamic_field_search(name: &str, value: &str, limit: usize) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    body.insert(format!("DynamicField_{name}"), serde_json::json!({ "Equals": value }));
    body.insert("Limit".into(), serde_json::Value::String(limit.to_string()));
    serde_json::Value::Object(body)
}

/// Routes of the web service (configurable per install; defaults = the sample YAML plus a
/// POST route for TicketSearch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Routes {
    pub session_create: String,
    pub ticket_create: String,
    /// `:TicketID` is replaced by one id or a comma list.
    pub ticket_get: String,
    pub ticket_search: String,
    /// Must be `POST`: the dynamic-field search is a JSON object, and Znuny's REST transport
    /// reads no body on GET (`Kernel/GenericInterface/Transport/HTTP/REST.pm`).
    pub ticket_search_method: String,
    pub ticket_update: String,
}

impl Default for Routes {
    fn default() -> Self {
        Self {
            session_create: "/Session".into(),
            ticket_create: "/Ticket".into(),
            ticket_get: "/Ticket/:TicketID".into(),
            // Not in the sample web service (which maps TicketSearch to GET /Ticket only): the
            // administrator adds this route; `check` says so when it is missing.
            ticket_search: "/TicketSearch".into(),
            ticket_search_method: "POST".into(),
            ticket_update: "/Ticket/:TicketID".into(),
        }
    }
}

impl Routes {
    /// `ticket_get` for these ids (comma list).
    pub fn get(&self, ids: &[String]) -> Result<String, ConnectorError> {
        for id in ids {
            check_id(id)?;
        }
        Ok(self.ticket_get.replace(":TicketID", &ids.join(",")))
    }

    pub fn update(&self, id: &str) -> Result<String, ConnectorError> {
        check_id(id)?;
        Ok(self.ticket_update.replace(":TicketID", id))
    }
}

fn check_id(id: &str) -> Result<(), ConnectorError> {
    // OTRS accepts `[1-9][0-9]*` only.
    if id.is_empty() || id.starts_with('0') || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConnectorError::Rejected(format!("OTRS TicketID must be numeric, got '{}'", truncate(id, 40))));
    }
    Ok(())
}

/// The web service base: the URL as given when it already points into
/// `nph-genericinterface.pl`, else `<url><prefix>/Webservice/<name>`.
pub fn service_base(base_url: &str, prefix: &str, webservice: &str) -> String {
    let base = base_url.trim_end_matches('/');
    if base.contains("nph-genericinterface.pl") {
        return base.to_string();
    }
    format!("{base}/{}/Webservice/{webservice}", prefix.trim_matches('/'))
}

/// `{"Error":{"ErrorCode","ErrorMessage"}}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct OpError {
    #[serde(default)]
    pub error_code: String,
    #[serde(default)]
    pub error_message: String,
}

impl OpError {
    /// Session or credential failure: the caller may open one new session and retry.
    pub fn is_auth_fail(&self) -> bool {
        self.error_code.ends_with(".AuthFail") || self.error_code.ends_with(".InvalidSessionID")
    }

    pub fn to_error(&self) -> ConnectorError {
        let msg = truncate(&format!("OTRS {}: {}", self.error_code, self.error_message), 300);
        let code = self.error_code.as_str();
        let lower = self.error_message.to_ascii_lowercase();
        if self.is_auth_fail() {
            ConnectorError::Unauthorized(msg)
        } else if code.ends_with(".AccessDenied") {
            // TicketGet answers AccessDenied for ids that do not exist, too.
            ConnectorError::Forbidden(msg)
        } else if code.ends_with(".NotValidTicketID")
            || code.ends_with(".NotTicketData")
            || code.ends_with(".NotFound")
            || lower.contains("no such")
        {
            ConnectorError::NotFound(msg)
        } else if code.ends_with(".MissingParameter")
            || code.ends_with(".InvalidParameter")
            || code.ends_with(".WrongStructure")
        {
            ConnectorError::Rejected(msg)
        } else {
            ConnectorError::Server(msg)
        }
    }
}

/// What an operation's JSON body means.
#[derive(Debug)]
pub enum Reply<T> {
    Ok(T),
    /// HTTP 200 with an `Error` object.
    Err(OpError),
}

/// Parses an operation response, detecting the 200-with-`Error` envelope.
pub fn parse_reply<T: DeserializeOwned>(body: &[u8]) -> Result<Reply<T>, ConnectorError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ConnectorError::Malformed(format!("OTRS response is not JSON: {e}")))?;
    if let Some(err) = v.get("Error").filter(|e| e.is_object()) {
        let e: OpError = serde_json::from_value(err.clone())
            .map_err(|e| ConnectorError::Malformed(format!("OTRS Error object: {e}")))?;
        return Ok(Reply::Err(e));
    }
    serde_json::from_value(v).map(Reply::Ok).map_err(|e| ConnectorError::Malformed(format!("OTRS response: {e}")))
}

/// `SessionCreate` response.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SessionReply {
    #[serde(rename = "SessionID")]
    pub session_id: String,
}

/// A string or number id, as text.
fn de_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::String(s) => Ok(s),
        _ => Err(serde::de::Error::custom("id is neither a string nor a number")),
    }
}

fn de_opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        _ => Ok(None),
    }
}

/// `TicketCreate` / `TicketUpdate` response.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TicketReply {
    #[serde(rename = "TicketID", deserialize_with = "de_id")]
    pub ticket_id: String,
    #[serde(rename = "TicketNumber", default, deserialize_with = "de_opt_id")]
    pub ticket_number: Option<String>,
    #[serde(rename = "ArticleID", default, deserialize_with = "de_opt_id")]
    pub article_id: Option<String>,
}

/// A ticket from `TicketGet`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Ticket {
    #[serde(rename = "TicketID", deserialize_with = "de_id")]
    pub ticket_id: String,
    #[serde(default, deserialize_with = "de_opt_id")]
    pub ticket_number: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub state_type: Option<String>,
    /// Last change (`YYYY-MM-DD HH:MM:SS`, the system time zone: UTC by default).
    #[serde(default)]
    pub changed: Option<String>,
    /// Ticket dynamic fields, when asked for (`DynamicFields=1`).
    #[serde(default, rename = "DynamicField", deserialize_with = "de_fields")]
    pub dynamic_fields: Vec<FieldValue>,
    /// Articles, when asked for (`AllArticles=1`), oldest first.
    #[serde(default, rename = "Article", deserialize_with = "de_articles")]
    pub articles: Vec<ArticleOut>,
}

/// An article as `TicketGet` returns it (fields we read).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
pub struct ArticleOut {
    #[serde(rename = "ArticleID", default, deserialize_with = "de_opt_id")]
    pub article_id: Option<String>,
    #[serde(rename = "Body", default)]
    pub body: Option<String>,
}

/// One `{Name, Value}` of a ticket's `DynamicField` list (`Value` may be a string, a list or null).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
pub struct FieldValue {
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "Value", default)]
    pub value: serde_json::Value,
}

impl FieldValue {
    /// Whether the value is exactly `want` (or a list holding it).
    pub fn is(&self, want: &str) -> bool {
        match &self.value {
            serde_json::Value::String(s) => s == want,
            serde_json::Value::Array(a) => a.iter().any(|v| v.as_str() == Some(want)),
            _ => false,
        }
    }
}

impl Ticket {
    /// Whether dynamic field `name` holds exactly `value`.
    pub fn field_is(&self, name: &str, value: &str) -> bool {
        self.dynamic_fields.iter().any(|f| f.name == name && f.is(value))
    }
}

/// `DynamicField` may be a list or (one field) an object.
fn de_fields<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FieldValue>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(v @ serde_json::Value::Array(_)) => serde_json::from_value(v).map_err(serde::de::Error::custom),
        Some(v) => serde_json::from_value(v).map(|f| vec![f]).map_err(serde::de::Error::custom),
    }
}

/// `Article` may be a list or (one article) an object.
fn de_articles<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ArticleOut>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(v @ serde_json::Value::Array(_)) => serde_json::from_value(v).map_err(serde::de::Error::custom),
        Some(v) => serde_json::from_value(v).map(|a| vec![a]).map_err(serde::de::Error::custom),
    }
}

impl Ticket {
    pub fn remote_status(&self) -> RemoteStatus {
        let name = self.state.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "unknown".into());
        let category = self.state_type.as_deref().and_then(|t| state_category(t, &name));
        RemoteStatus { ticket_id: self.ticket_id.clone(), name, category }
    }
}

/// Category from `StateType` (the stable class) and the state name: `closed` is fulfilled unless
/// the name says unsuccessful; `removed` / `merged` are rejected; `pending*` is pending.
pub fn state_category(state_type: &str, state: &str) -> Option<MappedStatus> {
    let t = state_type.trim().to_ascii_lowercase();
    let s = state.trim().to_ascii_lowercase();
    match t.as_str() {
        "closed" if s.contains("unsuccessful") => Some(MappedStatus::Closed(Outcome::Rejected)),
        "closed" => Some(MappedStatus::Closed(Outcome::Fulfilled)),
        "removed" | "merged" => Some(MappedStatus::Closed(Outcome::Rejected)),
        _ if t.starts_with("pending") => Some(MappedStatus::Pending),
        "new" | "open" => Some(MappedStatus::Open),
        _ => None,
    }
}

/// `TicketGet` response (`{"Ticket":[...]}`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
pub struct GetReply {
    #[serde(rename = "Ticket", default)]
    pub tickets: Vec<Ticket>,
}

/// `TicketSearch` response: `{"TicketID":[..]}`, a single id, or `{}` for none.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchReply {
    pub ids: Vec<String>,
}

impl<'de> Deserialize<'de> for SearchReply {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let ids = match v.get("TicketID") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|x| match x {
                    serde_json::Value::Number(n) => Ok(n.to_string()),
                    serde_json::Value::String(s) => Ok(s.clone()),
                    _ => Err(serde::de::Error::custom("TicketID entry is neither string nor number")),
                })
                .collect::<Result<_, _>>()?,
            Some(serde_json::Value::Number(n)) => vec![n.to_string()],
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(_) => return Err(serde::de::Error::custom("TicketID has an unexpected type")),
        };
        Ok(Self { ids })
    }
}

/// `Ticket` part of `TicketCreate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct NewTicket {
    pub title: String,
    pub queue: String,
    pub state: String,
    pub priority: String,
    pub customer_user: String,
    #[serde(default, rename = "CustomerID", skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, rename = "Type", skip_serializing_if = "Option::is_none")]
    pub ticket_type: Option<String>,
    /// Agent login (TicketCreate validates it: an unknown or invalid agent is InvalidParameter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Responsible agent login (validated like `Owner`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responsible: Option<String>,
}

/// An internal note article.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Article {
    pub communication_channel: String,
    pub is_visible_for_customer: u8,
    pub sender_type: String,
    pub subject: String,
    pub body: String,
    pub content_type: String,
}

impl Article {
    /// An internal (agent-only) note.
    pub fn internal(subject: &str, body: &str) -> Self {
        Self {
            communication_channel: "Internal".into(),
            is_visible_for_customer: 0,
            sender_type: "agent".into(),
            subject: subject.chars().take(250).collect(),
            body: body.to_string(),
            content_type: "text/plain; charset=utf8".into(),
        }
    }
}

/// `TicketCreate` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateBody {
    #[serde(rename = "SessionID")]
    pub session_id: String,
    #[serde(rename = "Ticket")]
    pub ticket: NewTicket,
    #[serde(rename = "Article")]
    pub article: Article,
}

/// `TicketUpdate` body carrying only an article (= add a note).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteBody {
    #[serde(rename = "SessionID")]
    pub session_id: String,
    #[serde(rename = "Article")]
    pub article: Article,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_on_200_is_detected_and_classified() {
        let r = parse_reply::<TicketReply>(
            br#"{"Error":{"ErrorCode":"TicketCreate.AuthFail","ErrorMessage":"TicketCreate: Authorization failing!"}}"#,
        )
        .unwrap();
        let Reply::Err(e) = r else { panic!("expected error") };
        assert!(e.is_auth_fail());
        assert!(matches!(e.to_error(), ConnectorError::Unauthorized(_)));
        let Reply::Err(e) = parse_reply::<TicketReply>(
            br#"{"Error":{"ErrorCode":"TicketCreate.MissingParameter","ErrorMessage":"Ticket->Queue required"}}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert!(!e.is_auth_fail());
        assert!(matches!(e.to_error(), ConnectorError::Rejected(_)));
        let Reply::Err(e) =
            parse_reply::<GetReply>(br#"{"Error":{"ErrorCode":"TicketGet.AccessDenied","ErrorMessage":"denied"}}"#)
                .unwrap()
        else {
            panic!()
        };
        assert!(matches!(e.to_error(), ConnectorError::Forbidden(_)));
        let Reply::Ok(t) =
            parse_reply::<TicketReply>(br#"{"TicketID":"12","TicketNumber":"2025010110000012","ArticleID":34}"#)
                .unwrap()
        else {
            panic!()
        };
        assert_eq!((t.ticket_id.as_str(), t.article_id.as_deref()), ("12", Some("34")));
        assert!(matches!(parse_reply::<TicketReply>(b"<html>").unwrap_err(), ConnectorError::Malformed(_)));
        assert!(matches!(
            parse_reply::<TicketReply>(br#"{"TicketNumber":"1"}"#).unwrap_err(),
            ConnectorError::Malformed(_)
        ));
    }

    #[test]
    fn state_types_map_to_categories() {
        use MappedStatus::*;
        assert_eq!(state_category("closed", "closed successful"), Some(Closed(Outcome::Fulfilled)));
        assert_eq!(state_category("closed", "closed unsuccessful"), Some(Closed(Outcome::Rejected)));
        assert_eq!(state_category("closed", "resolved"), Some(Closed(Outcome::Fulfilled)));
        assert_eq!(state_category("merged", "merged"), Some(Closed(Outcome::Rejected)));
        assert_eq!(state_category("removed", "removed"), Some(Closed(Outcome::Rejected)));
        assert_eq!(state_category("pending reminder", "pending reminder"), Some(Pending));
        assert_eq!(state_category("pending auto", "pending auto close+"), Some(Pending));
        assert_eq!(state_category("open", "open"), Some(Open));
        assert_eq!(state_category("strange", "x"), None);
    }

    #[test]
    fn ticket_get_and_search_replies() {
        let Reply::Ok(g) = parse_reply::<GetReply>(
            br#"{"Ticket":[{"TicketID":"1","TicketNumber":"2025","State":"closed successful","StateType":"closed","Title":"t"},{"TicketID":2,"State":"open","StateType":"open"}]}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(g.tickets.len(), 2);
        assert_eq!(g.tickets[0].remote_status().category, Some(MappedStatus::Closed(Outcome::Fulfilled)));
        assert_eq!(g.tickets[1].remote_status().name, "open");
        for (body, want) in [
            (&br#"{"TicketID":["3","4"]}"#[..], vec!["3", "4"]),
            (br#"{"TicketID":[5]}"#, vec!["5"]),
            (br#"{"TicketID":"6"}"#, vec!["6"]),
            (br#"{}"#, vec![]),
        ] {
            let Reply::Ok(s) = parse_reply::<SearchReply>(body).unwrap() else { panic!() };
            assert_eq!(s.ids, want);
        }
    }

    #[test]
    fn routes_and_base() {
        let r = Routes::default();
        assert_eq!(r.get(&["1".into(), "2".into()]).unwrap(), "/Ticket/1,2");
        assert!(r.get(&["1;DROP".into()]).is_err());
        assert!(r.get(&["0".into()]).is_err());
        assert_eq!(r.update("5").unwrap(), "/Ticket/5");
        assert_eq!(
            service_base("https://h.example/", DEFAULT_PREFIX, DEFAULT_WEBSERVICE),
            "https://h.example/otrs/nph-genericinterface.pl/Webservice/GenericTicketConnectorREST"
        );
        assert_eq!(
            service_base("https://h/znuny/nph-genericinterface.pl/Webservice/X/", DEFAULT_PREFIX, "Y"),
            "https://h/znuny/nph-genericinterface.pl/Webservice/X"
        );
        let custom: Routes =
            toml::from_str("ticket_search = \"/TicketSearch\"\nticket_search_method = \"POST\"").unwrap();
        assert_eq!((custom.ticket_search.as_str(), custom.session_create.as_str()), ("/TicketSearch", "/Session"));
    }

    #[test]
    fn dynamic_field_shapes() {
        assert!(valid_field_name("TicketBridgeRef"));
        assert!(!valid_field_name("Ticket_Bridge") && !valid_field_name("") && !valid_field_name("a b"));
        assert_eq!(
            dynamic_field_search("TicketBridgeRef", "01JK", 20),
            serde_json::json!({"DynamicField_TicketBridgeRef": {"Equals": "01JK"}, "Limit": "20"})
        );
        assert_eq!(dynamic_field_value("X", "k"), serde_json::json!([{"Name": "X", "Value": "k"}]));
        let Reply::Ok(g) = parse_reply::<GetReply>(
            br#"{"Ticket":[{"TicketID":"1","DynamicField":[{"Name":"TicketBridgeRef","Value":"01JK"},{"Name":"Other","Value":null}]},{"TicketID":"2","DynamicField":{"Name":"TicketBridgeRef","Value":["01JKX"]}}]}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert!(g.tickets[0].field_is("TicketBridgeRef", "01JK"));
        assert!(!g.tickets[0].field_is("TicketBridgeRef", "01J"), "exact, not a prefix");
        assert!(!g.tickets[1].field_is("TicketBridgeRef", "01JK"));
        assert!(g.tickets[1].field_is("TicketBridgeRef", "01JKX"));
    }

    #[test]
    fn create_body_shape() {
        let b = CreateBody {
            session_id: "s".into(),
            ticket: NewTicket {
                title: "t".into(),
                queue: "Raw".into(),
                state: "new".into(),
                priority: "3 normal".into(),
                customer_user: "a@b.c".into(),
                ..Default::default()
            },
            article: Article::internal("t", "body"),
        };
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["SessionID"], "s");
        assert_eq!(v["Ticket"]["CustomerUser"], "a@b.c");
        assert!(v["Ticket"].get("CustomerID").is_none());
        assert_eq!(v["Article"]["CommunicationChannel"], "Internal");
        assert_eq!(v["Article"]["IsVisibleForCustomer"], 0);
    }
}
