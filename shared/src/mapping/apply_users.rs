//! User (contact) sync: preview, apply and the manual operations, by e-mail address.

use std::collections::{BTreeSet, HashMap};

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::MappingError;
use super::apply::{Failure, Mappings, clip, failure};
use super::source::UpstreamUser;
use super::users::{UserPlan, customers_of, plan_users};
use crate::connectors::Contact;
use crate::domain::UserMapping;

/// What a user apply did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserApplyReport {
    pub plan: UserPlan,
    /// Mappings written for matched users.
    pub mapped: usize,
    pub contacts_created: usize,
    pub failures: Vec<Failure>,
}

impl Mappings<'_> {
    /// Every user mapping of the connection, by address.
    pub async fn list_users(&self) -> Result<Vec<UserMapping>, MappingError> {
        let mut all = self.store.list_user_mappings(&self.connection).await?;
        all.sort_by(|a, b| a.email.cmp(&b.email));
        Ok(all)
    }

    /// What [`Mappings::apply_users`] would do now: reads the contacts of every mapped customer
    /// the users belong to (one listing per customer).
    pub async fn preview_users(&self, users: &[UpstreamUser]) -> Result<UserPlan, MappingError> {
        let orgs = customers_of(&self.store.list_mappings(&self.connection).await?);
        let existing = self.store.list_user_mappings(&self.connection).await?;
        let done: BTreeSet<&str> =
            existing.iter().filter(|m| m.excluded || m.contact_id.is_some()).map(|m| m.email.as_str()).collect();
        let wanted: BTreeSet<&String> = users
            .iter()
            .filter(|u| !done.contains(UserMapping::key(&u.email).as_str()))
            .filter_map(|u| orgs.get(u.org_id.as_ref()?))
            .collect();
        self.progress.begin(wanted.len() as u64, "reading contacts");
        let mut contacts: HashMap<String, Vec<Contact>> = HashMap::new();
        for customer in wanted {
            contacts.insert(customer.clone(), self.connector.list_contacts(customer).await?);
            self.progress.advance();
        }
        self.progress.finish();
        Ok(plan_users(users, &orgs, &contacts, &existing, self.settings.auto_create))
    }

    /// Writes the user mappings of the plan and, with auto-create, creates missing contacts.
    pub async fn apply_users(&self, users: &[UpstreamUser]) -> Result<UserApplyReport, MappingError> {
        let plan = self.preview_users(users).await?;
        let by_email: HashMap<String, &UpstreamUser> = users.iter().map(|u| (UserMapping::key(&u.email), u)).collect();
        let mut report = UserApplyReport { plan: plan.clone(), mapped: 0, contacts_created: 0, failures: Vec::new() };
        self.progress.begin((plan.matched.len() + plan.to_create.len()) as u64, "mapping users");
        for m in &plan.matched {
            self.progress.advance();
            let mapping = user_mapping(
                &self.connection,
                &m.user.email,
                by_email.get(&m.user.email),
                Some(&m.contact.id),
                &m.customer_id,
            );
            self.store.put_user_mapping(&mapping).await?;
            report.mapped += 1;
        }
        for c in &plan.to_create {
            self.progress.advance();
            let user = by_email.get(&c.user.email);
            if self
                .store
                .get_user_mapping(&self.connection, &c.user.email)
                .await?
                .is_some_and(|m| m.contact_id.is_some() || m.excluded)
            {
                continue;
            }
            let name = user.and_then(|u| u.name.clone()).unwrap_or_else(|| c.user.email.clone());
            match self.connector.create_contact(&c.customer_id, &name, Some(&c.user.email)).await {
                Ok(id) => {
                    report.contacts_created += 1;
                    let mapping = user_mapping(&self.connection, &c.user.email, user, Some(&id), &c.customer_id);
                    self.store.put_user_mapping(&mapping).await?;
                }
                Err(e) => report.failures.push(failure(&c.user.email, "create_contact", e.to_string())),
            }
        }
        self.progress.finish();
        Ok(report)
    }

    /// Maps an address to a contact by hand (checked against the customer's contacts when given).
    pub async fn match_user(
        &self,
        email: &str,
        contact_id: &str,
        customer_id: Option<&str>,
    ) -> Result<UserMapping, MappingError> {
        let key = address(email)?;
        let contact_id = super::apply::non_empty("contact_id", contact_id)?;
        if let Some(customer) = customer_id {
            let contacts = self.connector.list_contacts(customer).await?;
            if !contacts.iter().any(|c| c.id == contact_id) {
                return Err(MappingError::NotFound(format!(
                    "customer {} has no contact '{}'",
                    clip(customer),
                    clip(contact_id)
                )));
            }
        }
        let existing = self.store.get_user_mapping(&self.connection, &key).await?;
        let mapping = UserMapping {
            connection: self.connection.clone(),
            email: key,
            name: existing.as_ref().and_then(|m| m.name.clone()),
            org_id: existing.as_ref().and_then(|m| m.org_id.clone()),
            contact_id: Some(contact_id.to_string()),
            customer_id: customer_id.map(str::to_string),
            excluded: false,
            updated_at: Utc::now(),
        };
        self.store.put_user_mapping(&mapping).await?;
        Ok(mapping)
    }

    /// Puts a user on the excluded list (tickets use the customer's default contact; never created).
    pub async fn exclude_user(&self, email: &str) -> Result<UserMapping, MappingError> {
        let key = address(email)?;
        let mut m = self.store.get_user_mapping(&self.connection, &key).await?.unwrap_or(UserMapping {
            connection: self.connection.clone(),
            email: key,
            name: None,
            org_id: None,
            contact_id: None,
            customer_id: None,
            excluded: true,
            updated_at: Utc::now(),
        });
        m.excluded = true;
        m.updated_at = Utc::now();
        self.store.put_user_mapping(&m).await?;
        Ok(m)
    }

    /// Takes a user off the excluded list: a mapped user's contact is used again; an unmapped
    /// one is forgotten (matched or created on the next apply). `None` when it had no contact.
    pub async fn include_user(&self, email: &str) -> Result<Option<UserMapping>, MappingError> {
        let key = address(email)?;
        match self.store.get_user_mapping(&self.connection, &key).await? {
            Some(mut m) if m.excluded => {
                if m.contact_id.is_some() {
                    m.excluded = false;
                    m.updated_at = Utc::now();
                    self.store.put_user_mapping(&m).await?;
                    Ok(Some(m))
                } else {
                    self.store.delete_user_mapping(&self.connection, &key).await?;
                    Ok(None)
                }
            }
            _ => Err(MappingError::NotFound(format!("user '{}' is not on the excluded list", clip(email)))),
        }
    }
}

fn address(email: &str) -> Result<String, MappingError> {
    let key = UserMapping::key(email);
    if key.contains('@') && !key.starts_with('@') && !key.ends_with('@') {
        Ok(key)
    } else {
        Err(MappingError::Invalid(format!("'{}' is not an e-mail address", clip(email))))
    }
}

fn user_mapping(
    connection: &str,
    email: &str,
    user: Option<&&UpstreamUser>,
    contact: Option<&str>,
    customer: &str,
) -> UserMapping {
    UserMapping {
        connection: connection.to_string(),
        email: email.to_string(),
        name: user.and_then(|u| u.name.clone()),
        org_id: user.and_then(|u| u.org_id.clone()),
        contact_id: contact.map(str::to_string),
        customer_id: Some(customer.to_string()),
        excluded: false,
        updated_at: Utc::now(),
    }
}
