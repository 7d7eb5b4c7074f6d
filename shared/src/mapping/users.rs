//! The user sync plan: upstream users matched to contacts of their organization's customer by
//! e-mail address (trimmed, case-insensitive).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::source::UpstreamUser;
use crate::connectors::Contact;
use crate::domain::{OrgMapping, UserMapping};

/// A user in a plan list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    /// Normalized address.
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub org_id: Option<String>,
}

impl From<&UpstreamUser> for UserRef {
    fn from(u: &UpstreamUser) -> Self {
        Self { email: UserMapping::key(&u.email), name: u.name.clone(), org_id: u.org_id.clone() }
    }
}

/// A user and the contact it is (or will be) mapped to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMatch {
    pub user: UserRef,
    pub customer_id: String,
    pub contact: Contact,
}

/// A user whose contact will be created in `customer_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreate {
    pub user: UserRef,
    pub customer_id: String,
}

/// An address shared by several contacts of one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCollision {
    pub user: UserRef,
    pub customer_id: String,
    pub contacts: Vec<Contact>,
}

/// How many users land in each list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCounts {
    pub matched: usize,
    pub to_create: usize,
    pub unmatched: usize,
    pub no_customer: usize,
    pub excluded: usize,
    pub already_mapped: usize,
    pub colliding: usize,
}

/// The preview of a user sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPlan {
    pub auto_create: bool,
    pub matched: Vec<UserMatch>,
    pub to_create: Vec<UserCreate>,
    /// No contact and auto-create off: tickets use the customer's default contact.
    pub unmatched: Vec<UserRef>,
    /// The user's organization is not mapped (or excluded, or not given): nothing to match in.
    pub no_customer: Vec<UserRef>,
    pub excluded: Vec<UserRef>,
    pub already_mapped: Vec<UserRef>,
    pub collisions: Vec<UserCollision>,
    pub counts: UserCounts,
}

/// The customer each organization maps to (mapped and not excluded).
pub fn customers_of(orgs: &[OrgMapping]) -> HashMap<String, String> {
    orgs.iter().filter(|m| !m.excluded).filter_map(|m| Some((m.org_id.clone(), m.customer_id.clone()?))).collect()
}

/// Plans a user sync. `contacts` holds the contacts of every customer in `org_customers`' range
/// that users refer to.
pub fn plan_users(
    users: &[UpstreamUser],
    org_customers: &HashMap<String, String>,
    contacts: &HashMap<String, Vec<Contact>>,
    existing: &[UserMapping],
    auto_create: bool,
) -> UserPlan {
    let existing: HashMap<&str, &UserMapping> = existing.iter().map(|m| (m.email.as_str(), m)).collect();
    let mut plan = UserPlan {
        auto_create,
        matched: Vec::new(),
        to_create: Vec::new(),
        unmatched: Vec::new(),
        no_customer: Vec::new(),
        excluded: Vec::new(),
        already_mapped: Vec::new(),
        collisions: Vec::new(),
        counts: UserCounts::default(),
    };
    let mut seen: HashSet<String> = HashSet::new();
    for u in users {
        let r = UserRef::from(u);
        if !seen.insert(r.email.clone()) {
            continue;
        }
        match existing.get(r.email.as_str()) {
            Some(m) if m.excluded => {
                plan.excluded.push(r);
                continue;
            }
            Some(m) if m.contact_id.is_some() => {
                plan.already_mapped.push(r);
                continue;
            }
            _ => {}
        }
        let Some(customer) = r.org_id.as_ref().and_then(|o| org_customers.get(o)) else {
            plan.no_customer.push(r);
            continue;
        };
        let hits: Vec<&Contact> = contacts
            .get(customer)
            .map(|cs| {
                cs.iter().filter(|c| c.email.as_deref().is_some_and(|e| UserMapping::key(e) == r.email)).collect()
            })
            .unwrap_or_default();
        match hits.as_slice() {
            [one] => plan.matched.push(UserMatch { customer_id: customer.clone(), contact: (*one).clone(), user: r }),
            [] if auto_create => plan.to_create.push(UserCreate { user: r, customer_id: customer.clone() }),
            [] => plan.unmatched.push(r),
            many => plan.collisions.push(UserCollision {
                customer_id: customer.clone(),
                contacts: many.iter().map(|c| (*c).clone()).collect(),
                user: r,
            }),
        }
    }
    plan.counts = UserCounts {
        matched: plan.matched.len(),
        to_create: plan.to_create.len(),
        unmatched: plan.unmatched.len(),
        no_customer: plan.no_customer.len(),
        excluded: plan.excluded.len(),
        already_mapped: plan.already_mapped.len(),
        colliding: plan.collisions.len(),
    };
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn user(email: &str, org: Option<&str>) -> UpstreamUser {
        UpstreamUser { email: email.into(), name: None, org_id: org.map(str::to_string) }
    }

    fn contact(id: &str, customer: &str, email: &str) -> Contact {
        Contact { id: id.into(), name: id.into(), email: Some(email.into()), customer_id: Some(customer.into()) }
    }

    #[test]
    fn users_match_contacts_of_their_customer_by_address() {
        let org_customers: HashMap<String, String> = [("o1".to_string(), "100".to_string())].into();
        let contacts: HashMap<String, Vec<Contact>> = [(
            "100".to_string(),
            vec![
                contact("1", "100", "Ada@Example.com"),
                contact("2", "100", "twin@example.com"),
                contact("3", "100", "TWIN@example.com"),
            ],
        )]
        .into();
        let existing = vec![
            UserMapping {
                connection: "c".into(),
                email: "gone@example.com".into(),
                name: None,
                org_id: Some("o1".into()),
                contact_id: None,
                customer_id: None,
                excluded: true,
                updated_at: Utc::now(),
            },
            UserMapping {
                connection: "c".into(),
                email: "done@example.com".into(),
                name: None,
                org_id: Some("o1".into()),
                contact_id: Some("9".into()),
                customer_id: Some("100".into()),
                excluded: false,
                updated_at: Utc::now(),
            },
        ];
        let users = [
            user(" ada@example.com ", Some("o1")),
            user("twin@example.com", Some("o1")),
            user("new@example.com", Some("o1")),
            user("lost@example.com", Some("o2")),
            user("nobody@example.com", None),
            user("GONE@example.com", Some("o1")),
            user("done@example.com", Some("o1")),
        ];
        let p = plan_users(&users, &org_customers, &contacts, &existing, true);
        assert_eq!(p.matched.len(), 1);
        assert_eq!((p.matched[0].user.email.as_str(), p.matched[0].contact.id.as_str()), ("ada@example.com", "1"));
        assert_eq!(p.collisions.len(), 1);
        assert_eq!(p.collisions[0].contacts.len(), 2);
        assert_eq!(p.to_create.iter().map(|c| c.user.email.as_str()).collect::<Vec<_>>(), ["new@example.com"]);
        assert_eq!(
            p.no_customer.iter().map(|u| u.email.as_str()).collect::<Vec<_>>(),
            ["lost@example.com", "nobody@example.com"]
        );
        assert_eq!(p.excluded.iter().map(|u| u.email.as_str()).collect::<Vec<_>>(), ["gone@example.com"]);
        assert_eq!(p.already_mapped.iter().map(|u| u.email.as_str()).collect::<Vec<_>>(), ["done@example.com"]);
        let off = plan_users(&users, &org_customers, &contacts, &existing, false);
        assert_eq!((off.counts.to_create, off.counts.unmatched), (0, 1));
    }
}
