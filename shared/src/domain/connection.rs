//! Per-connection settings that drive ticket content, grouping and status mapping.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::{MappedStatus, Outcome};

/// Which ITSM/PSA a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    Vsa,
    Bms,
    Ninjaone,
    Otrs,
    Rt,
    Generic,
    /// The built-in sandbox desk of the local runner.
    Sandbox,
}

impl ConnectorKind {
    pub const ALL: [ConnectorKind; 7] =
        [Self::Vsa, Self::Bms, Self::Ninjaone, Self::Otrs, Self::Rt, Self::Generic, Self::Sandbox];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vsa => "vsa",
            Self::Bms => "bms",
            Self::Ninjaone => "ninjaone",
            Self::Otrs => "otrs",
            Self::Rt => "rt",
            Self::Generic => "generic",
            Self::Sandbox => "sandbox",
        }
    }
}

/// How alerts are grouped onto tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    /// One ticket per task.
    #[default]
    None,
    /// First alert for a user opens a ticket; later alerts of any type become notes until it closes.
    User,
    /// As `User`, per user and alert type.
    UserAlert,
}

impl Grouping {
    /// The group key for an alert, or `None` when this grouping does not group.
    pub fn key(self, user_email: &str, alert_type: &str) -> Option<String> {
        let user = user_email.trim().to_lowercase();
        match self {
            Self::None => None,
            Self::User => Some(format!("user:{user}")),
            Self::UserAlert => Some(format!("user:{user}|alert:{}", alert_type.trim().to_lowercase())),
        }
    }
}

/// Issue / sub-issue type pair (BMS and similar).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueType {
    #[serde(default)]
    pub issue_type: Option<String>,
    #[serde(default)]
    pub sub_issue_type: Option<String>,
}

/// Values set on every ticket a connection creates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketDefaults {
    #[serde(default)]
    pub ticket_type: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub priority: Option<String>,
    /// Default issue / sub-issue type; empty means none.
    #[serde(default)]
    pub issue: IssueType,
    /// Per-alert-type override of the issue / sub-issue type (the five modes of the product doc
    /// are: none, default issue, default issue + sub-issue, override only, default + override).
    #[serde(default)]
    pub issue_overrides: BTreeMap<String, IssueType>,
    /// Default contract attached when the customer's mapping names none.
    #[serde(default)]
    pub contract: Option<String>,
}

impl TicketDefaults {
    /// Issue type for an alert type: the override if one matches (case-insensitive), else the default.
    pub fn issue_for(&self, alert_type: Option<&str>) -> IssueType {
        if let Some(at) = alert_type {
            let wanted = at.trim().to_lowercase();
            if let Some((_, o)) = self.issue_overrides.iter().find(|(k, _)| k.trim().to_lowercase() == wanted) {
                return o.clone();
            }
        }
        self.issue.clone()
    }
}

/// Maps a target's status names (or stable categories) to Open / Pending / Closed.
///
/// Names are compared case-insensitively. A name not in the table falls back to the category the
/// connector reports (e.g. OTRS `StateType`, RT active/inactive), and otherwise counts as Open.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusMap {
    #[serde(default)]
    pub fulfilled: Vec<String>,
    #[serde(default)]
    pub rejected: Vec<String>,
    #[serde(default)]
    pub pending: Vec<String>,
}

impl StatusMap {
    pub fn map(&self, name: &str, category: Option<MappedStatus>) -> MappedStatus {
        let has = |list: &[String]| list.iter().any(|s| s.eq_ignore_ascii_case(name.trim()));
        if has(&self.fulfilled) {
            MappedStatus::Closed(Outcome::Fulfilled)
        } else if has(&self.rejected) {
            MappedStatus::Closed(Outcome::Rejected)
        } else if has(&self.pending) {
            MappedStatus::Pending
        } else {
            category.unwrap_or(MappedStatus::Open)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_keys_are_normalized_and_distinct_per_mode() {
        assert_eq!(Grouping::None.key("a@b.c", "X"), None);
        assert_eq!(Grouping::User.key(" A@B.c ", "X"), Grouping::User.key("a@b.c", "Y"));
        assert_ne!(Grouping::UserAlert.key("a@b.c", "X"), Grouping::UserAlert.key("a@b.c", "Y"));
        assert_eq!(Grouping::UserAlert.key("A@b.c", "x "), Grouping::UserAlert.key("a@b.c", "X"));
    }

    #[test]
    fn status_map_prefers_table_then_category_then_open() {
        let m = StatusMap {
            fulfilled: vec!["Resolved".into()],
            rejected: vec!["closed unsuccessful".into()],
            pending: vec!["Waiting on customer".into()],
        };
        assert_eq!(m.map("resolved", None), MappedStatus::Closed(Outcome::Fulfilled));
        assert_eq!(m.map("Closed Unsuccessful", None), MappedStatus::Closed(Outcome::Rejected));
        assert_eq!(m.map("waiting on customer", None), MappedStatus::Pending);
        assert_eq!(
            m.map("merged", Some(MappedStatus::Closed(Outcome::Rejected))),
            MappedStatus::Closed(Outcome::Rejected)
        );
        assert_eq!(m.map("In Progress", None), MappedStatus::Open);
    }

    #[test]
    fn issue_type_override_beats_default() {
        let mut d = TicketDefaults::default();
        assert_eq!(d.issue_for(Some("x")), IssueType::default());
        d.issue = IssueType { issue_type: Some("SaaS Alerts".into()), sub_issue_type: None };
        d.issue_overrides.insert(
            "Too Many Downloads".into(),
            IssueType { issue_type: Some("SaaS Alerts".into()), sub_issue_type: Some("Data Leakage".into()) },
        );
        assert_eq!(d.issue_for(Some("too many downloads")).sub_issue_type.as_deref(), Some("Data Leakage"));
        assert_eq!(d.issue_for(Some("Other")).issue_type.as_deref(), Some("SaaS Alerts"));
        assert_eq!(d.issue_for(None).sub_issue_type, None);
    }
}
