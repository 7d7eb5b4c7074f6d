//! BMS accounts, contacts, contracts and contract service lines (organization sync).
//!
//! Paths from the BMS v2 OpenAPI document: `POST /v2/crm/accounts` (`AccountPostInputDto`),
//! `GET /v2/crm/accounts/lookup?Filter.Name`, `GET /v2/crm/accounts/{id}/contacts/lookup`,
//! `POST /v2/crm/contacts/summary` (`ContactInputDto`), `GET /v2/finance/contracts/lookup?AccountId`.
//!
//! Contract service-line quantities are switched off ([`SERVICE_LINES_OFF`]): the v2 document has
//! no path to read a contract's service lines or to change a line's units (issue #13, lead 6).

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::BmsConnector;
use crate::connectors::psa_util::{self, parse_id};
use crate::connectors::{ConnectorError, Contact, Contract, Customer, is_ambiguous};

pub const ACCOUNTS_PATH: &str = "/v2/crm/accounts";
pub const ACCOUNTS_LOOKUP_PATH: &str = "/v2/crm/accounts/lookup";
pub const CONTACTS_CREATE_PATH: &str = "/v2/crm/contacts/summary";
pub const CONTRACTS_LOOKUP_PATH: &str = "/v2/finance/contracts/lookup";

/// Why [`BmsConnector`] does not keep contract service-line quantities.
pub const SERVICE_LINES_OFF: &str = "contract service-line quantities are switched off for Kaseya BMS: the BMS API 2.0 \
     OpenAPI document has no endpoint to read a contract's service lines or to change a line's units (only \
     POST /v2/finance/contracts/recurringservices/{contractId}/services, which adds another line); keep the \
     user count on the contract in BMS by hand";

/// `/v2/crm/accounts/{id}/contacts/lookup`.
pub fn account_contacts_path(account: i64) -> String {
    format!("/v2/crm/accounts/{account}/contacts/lookup")
}

/// `AccountPostInputDto` (fields we set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountInput {
    pub account_name: String,
    pub account_type_id: i64,
    pub business_type_id: i64,
    pub account_manager_id: i64,
    pub is_active: bool,
    pub locations: Vec<LocationInput>,
}

/// `AccountLocationInputDto`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LocationInput {
    pub location_name: String,
    pub is_main: bool,
    pub is_active: bool,
    pub addresses: Vec<serde_json::Value>,
}

/// `AccountSummaryOutputDto` (fields we read).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountSummary {
    pub id: i64,
    #[serde(default)]
    pub account_name: Option<String>,
}

/// `ContactInputDto`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContactInput {
    pub first_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    pub account_id: i64,
    pub location_id: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<EmailInput>,
}

/// `EmailInputDto`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EmailInput {
    pub email_address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_type_id: Option<i64>,
    pub is_default: bool,
}

/// `ContactSummaryOutputDto` / `ContactLookupOutputDto` (fields we read).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContactRow {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub email_address: Option<String>,
}

impl ContactRow {
    fn display_name(&self) -> String {
        match &self.name {
            Some(n) if !n.trim().is_empty() => n.trim().to_string(),
            _ => [self.first_name.as_deref(), self.last_name.as_deref()]
                .into_iter()
                .flatten()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// `ContractLookupOutputDto`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContractRow {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub is_default: Option<bool>,
    #[serde(default)]
    pub is_active: Option<bool>,
}

/// First name and (optional) last name of a display name: the last word is the last name.
pub fn split_name(name: &str) -> (String, Option<String>) {
    let name = name.trim();
    match name.rsplit_once(char::is_whitespace) {
        Some((first, last)) if !first.trim().is_empty() => (first.trim().to_string(), Some(last.to_string())),
        _ => (name.to_string(), None),
    }
}

fn id_arg(what: &str, value: &str) -> Result<i64, ConnectorError> {
    parse_id(what, value).map_err(ConnectorError::Rejected)
}

impl BmsConnector {
    /// Accounts whose name is exactly `name` (case-insensitive), via `Filter.Name`.
    async fn accounts_named(&self, name: &str) -> Result<Vec<Customer>, ConnectorError> {
        let query = [("Filter.Name", name.to_string()), ("PageSize", self.opts.page_size.to_string())];
        let rows: Vec<super::wire::Account> =
            self.call(Method::GET, ACCOUNTS_LOOKUP_PATH, &query, None, true).await?.result;
        Ok(rows.into_iter().filter(|a| a.name.trim().eq_ignore_ascii_case(name.trim())).map(Customer::from).collect())
    }

    pub(super) async fn crm_create_account(&self, name: &str) -> Result<Customer, ConnectorError> {
        let need = |v: Option<i64>, key: &str| {
            v.ok_or_else(|| {
                ConnectorError::Config(format!("options.{key}: needed to create BMS accounts (a tenant lookup id)"))
            })
        };
        let input = AccountInput {
            account_name: name.trim().to_string(),
            account_type_id: need(self.opts.account_type_id, "account_type_id")?,
            business_type_id: need(self.opts.business_type_id, "business_type_id")?,
            account_manager_id: need(self.opts.account_manager_id, "account_manager_id")?,
            is_active: true,
            locations: vec![LocationInput {
                location_name: self.opts.location_name.clone(),
                is_main: true,
                is_active: true,
                addresses: Vec::new(),
            }],
        };
        let body = serde_json::to_value(&input).map_err(|e| ConnectorError::Config(e.to_string()))?;
        match self.call::<AccountSummary>(Method::POST, ACCOUNTS_PATH, &[], Some(&body), false).await {
            Ok(p) => {
                Ok(Customer { id: p.result.id.to_string(), name: p.result.account_name.unwrap_or(input.account_name) })
            }
            Err(e) if is_ambiguous(&e) => {
                // The account may exist even though the answer was lost: adopt it if it is unique.
                let found = self.accounts_named(name).await.map_err(|_| e.clone())?;
                match found.as_slice() {
                    [one] => {
                        tracing::info!(account = %one.id, "found the account a failed create made");
                        Ok(one.clone())
                    }
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    pub(super) async fn crm_account_contacts(&self, customer_id: &str) -> Result<Vec<Contact>, ConnectorError> {
        let account = id_arg("customer id", customer_id)?;
        let size = self.opts.page_size;
        let mut out = Vec::new();
        for page in 1..=psa_util::MAX_PAGES {
            let query = [("PageNumber", page.to_string()), ("PageSize", size.to_string())];
            let rows: Vec<ContactRow> =
                self.call(Method::GET, &account_contacts_path(account), &query, None, true).await?.result;
            let n = rows.len();
            out.extend(rows.iter().map(|c| Contact {
                id: c.id.to_string(),
                name: c.display_name(),
                email: c.email_address.clone().filter(|e| !e.trim().is_empty()),
                customer_id: Some(account.to_string()),
            }));
            if (n as u32) < size {
                break;
            }
        }
        Ok(out)
    }

    pub(super) async fn crm_create_contact(
        &self,
        customer_id: &str,
        name: &str,
        email: Option<&str>,
    ) -> Result<String, ConnectorError> {
        let account = id_arg("customer id", customer_id)?;
        let (first, last) = split_name(name);
        if first.is_empty() {
            return Err(ConnectorError::Rejected("a BMS contact needs a name".into()));
        }
        let email = email.map(str::trim).filter(|e| !e.is_empty());
        let input = ContactInput {
            first_name: first,
            last_name: last,
            account_id: account,
            location_id: self.location(account).await?,
            emails: email
                .map(|e| EmailInput {
                    email_address: e.to_string(),
                    email_type_id: self.opts.email_type_id,
                    is_default: true,
                })
                .into_iter()
                .collect(),
        };
        let body = serde_json::to_value(&input).map_err(|e| ConnectorError::Config(e.to_string()))?;
        match self.call::<ContactRow>(Method::POST, CONTACTS_CREATE_PATH, &[], Some(&body), false).await {
            Ok(p) => Ok(p.result.id.to_string()),
            Err(e) if is_ambiguous(&e) && email.is_some() => {
                let found = self.find_contact_in(account, email.unwrap_or_default()).await.map_err(|_| e.clone())?;
                found.ok_or(e)
            }
            Err(e) => Err(e),
        }
    }

    async fn find_contact_in(&self, account: i64, email: &str) -> Result<Option<String>, ConnectorError> {
        use crate::connectors::Connector;
        self.find_contact(Some(&account.to_string()), email).await
    }

    pub(super) async fn finance_contracts(&self, customer_id: &str) -> Result<Vec<Contract>, ConnectorError> {
        let account = id_arg("customer id", customer_id)?;
        let query = [("AccountId", account.to_string()), ("ExcludeExpiredContracts", "true".to_string())];
        let rows: Vec<ContractRow> = self.call(Method::GET, CONTRACTS_LOOKUP_PATH, &query, None, true).await?.result;
        Ok(rows
            .into_iter()
            .map(|c| Contract {
                id: c.id.to_string(),
                name: c.name,
                is_default: c.is_default == Some(true),
                active: c.is_active != Some(false),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_first_and_last() {
        assert_eq!(split_name("Ticket Contact"), ("Ticket".into(), Some("Contact".into())));
        assert_eq!(split_name(" Mary Ann  Smith "), ("Mary Ann".into(), Some("Smith".into())));
        assert_eq!(split_name("Alerts"), ("Alerts".into(), None));
        assert_eq!(split_name(""), (String::new(), None));
    }

    #[test]
    fn inputs_serialize_in_bms_shape() {
        let v = serde_json::to_value(ContactInput {
            first_name: "Ticket".into(),
            last_name: None,
            account_id: 3,
            location_id: 31,
            emails: vec![EmailInput { email_address: "a@b.io".into(), email_type_id: None, is_default: true }],
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"FirstName":"Ticket","AccountId":3,"LocationId":31,"Emails":[{"EmailAddress":"a@b.io","IsDefault":true}]})
        );
        let row: ContactRow =
            serde_json::from_value(serde_json::json!({"Id": 4, "FirstName": "A", "LastName": "B"})).unwrap();
        assert_eq!(row.display_name(), "A B");
    }
}
