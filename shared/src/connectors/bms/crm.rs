//! BMS accounts, contacts, contracts and contract service lines (organization sync).
//!
//! Paths from the BMS v2 OpenAPI document: `POST /v2/crm/accounts` (`AccountPostInputDto`),
//! `GET /v2/crm/accounts/lookup?Filter.Name`, `GET /v2/crm/accounts/{id}/contacts/lookup`,
//! `POST /v2/crm/contacts/summary` (`ContactInputDto`), `GET /v2/finance/contracts/lookup?AccountId`,
//! `GET /v2/admin/finance/services/lookup?Filter.Name`, and
//! `POST /v2/finance/contracts/recurringservices/{contractId}/services` (array of
//! `RecurringServicePostInputDto`).
//!
//! ASSUMPTION: the v2 document has no path to read a contract's service lines or to change one
//! line's units. We use `GET /v2/finance/contracts/recurringservices/{contractId}/services` and
//! `PUT /v2/finance/contracts/recurringservices/{contractId}/services/{serviceLineId}` (body
//! `{Units, EffectiveDate}`), in the style of the documented POST. Verify against a tenant.

use chrono::Utc;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::BmsConnector;
use crate::connectors::psa_util::{self, format_datetime, parse_id, truncate};
use crate::connectors::{ConnectorError, Contact, Contract, Customer, LineChange, ServiceLine, is_ambiguous};

pub const ACCOUNTS_PATH: &str = "/v2/crm/accounts";
pub const ACCOUNTS_LOOKUP_PATH: &str = "/v2/crm/accounts/lookup";
pub const CONTACTS_CREATE_PATH: &str = "/v2/crm/contacts/summary";
pub const CONTRACTS_LOOKUP_PATH: &str = "/v2/finance/contracts/lookup";
pub const SERVICES_LOOKUP_PATH: &str = "/v2/admin/finance/services/lookup";

/// `/v2/crm/accounts/{id}/contacts/lookup`.
pub fn account_contacts_path(account: i64) -> String {
    format!("/v2/crm/accounts/{account}/contacts/lookup")
}

/// `/v2/finance/contracts/recurringservices/{contractId}/services` (POST documented; GET assumed).
pub fn contract_services_path(contract: i64) -> String {
    format!("/v2/finance/contracts/recurringservices/{contract}/services")
}

/// `/v2/finance/contracts/recurringservices/{contractId}/services/{lineId}` (assumed, see module doc).
pub fn contract_service_path(contract: i64, line: i64) -> String {
    format!("/v2/finance/contracts/recurringservices/{contract}/services/{line}")
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

/// `ServiceLookupOutputDto`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceRow {
    pub id: i64,
    pub name: String,
}

/// `RecurringServicePostInputDto` (fields we set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceLineInput {
    pub service_id: i64,
    pub units: u64,
    pub effective_date: String,
}

/// `RecurringServicePostOutputDto` (fields we read).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceLineRow {
    pub id: i64,
    pub service_id: i64,
    #[serde(default)]
    pub units: Option<f64>,
}

impl ServiceLineRow {
    fn to_line(&self, contract: i64) -> ServiceLine {
        let units = self.units.unwrap_or(0.0);
        ServiceLine {
            id: self.id.to_string(),
            contract_id: contract.to_string(),
            service_id: self.service_id.to_string(),
            quantity: if units.is_finite() && units > 0.0 { units.round() as u64 } else { 0 },
        }
    }
}

/// First name and (optional) last name of a display name: the last word is the last name.
pub fn split_name(name: &str) -> (String, Option<String>) {
    let name = name.trim();
    match name.rsplit_once(char::is_whitespace) {
        Some((first, last)) if !first.trim().is_empty() => (first.trim().to_string(), Some(last.to_string())),
        _ => (name.to_string(), None),
    }
}

/// The line to update: `line_id` when the contract still has it, else the contract's line for
/// `service_id`.
pub fn pick_line(lines: &[ServiceLineRow], line_id: Option<i64>, service_id: i64) -> Option<&ServiceLineRow> {
    line_id
        .and_then(|id| lines.iter().find(|l| l.id == id))
        .or_else(|| lines.iter().find(|l| l.service_id == service_id))
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

    /// A catalog service id: given directly, or found by exact (case-insensitive) name.
    async fn service_id(&self, service: &str) -> Result<i64, ConnectorError> {
        let service = service.trim();
        if service.is_empty() {
            return Err(ConnectorError::Config(
                "mapping.default_contract_service: name the BMS service whose contract line carries the user count"
                    .into(),
            ));
        }
        if let Ok(id) = service.parse::<i64>() {
            return Ok(id);
        }
        let query = [("Filter.Name", service.to_string()), ("PageSize", self.opts.page_size.to_string())];
        let rows: Vec<ServiceRow> = self.call(Method::GET, SERVICES_LOOKUP_PATH, &query, None, true).await?.result;
        let hits: Vec<&ServiceRow> = rows.iter().filter(|r| r.name.trim().eq_ignore_ascii_case(service)).collect();
        match hits.as_slice() {
            [one] => Ok(one.id),
            [] => Err(ConnectorError::Config(format!(
                "contract service: BMS has no service named '{}' (create it in Admin > Finance > Services)",
                truncate(service, 60)
            ))),
            _ => Err(ConnectorError::Config(format!(
                "contract service: {} BMS services are named '{}'; give its id instead",
                hits.len(),
                truncate(service, 60)
            ))),
        }
    }

    pub(super) async fn finance_set_quantity(
        &self,
        contract_id: &str,
        line_id: Option<&str>,
        service: &str,
        quantity: u64,
    ) -> Result<(ServiceLine, LineChange), ConnectorError> {
        let contract = id_arg("contract id", contract_id)?;
        let line_id = line_id.and_then(|l| l.trim().parse::<i64>().ok());
        let lines: Vec<ServiceLineRow> =
            self.call(Method::GET, &contract_services_path(contract), &[], None, true).await?.result;
        // The stored line needs no service lookup; otherwise find (or add) the service's line.
        let (existing, service_id) = match line_id.and_then(|id| lines.iter().find(|l| l.id == id)) {
            Some(line) => (Some(line), line.service_id),
            None => {
                let service_id = self.service_id(service).await?;
                (pick_line(&lines, None, service_id), service_id)
            }
        };
        let effective_date = format_datetime(Utc::now());
        if let Some(line) = existing {
            let current = line.to_line(contract);
            if current.quantity == quantity {
                return Ok((current, LineChange::Unchanged));
            }
            let body = serde_json::json!({"Units": quantity, "EffectiveDate": effective_date});
            let updated: ServiceLineRow =
                self.call(Method::PUT, &contract_service_path(contract, line.id), &[], Some(&body), true).await?.result;
            return Ok((updated.to_line(contract), LineChange::Updated));
        }
        let input = [ServiceLineInput { service_id, units: quantity, effective_date }];
        let body = serde_json::to_value(input).map_err(|e| ConnectorError::Config(e.to_string()))?;
        let added: ServiceLineRow =
            self.call(Method::POST, &contract_services_path(contract), &[], Some(&body), false).await?.result;
        Ok((added.to_line(contract), LineChange::Added))
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
    fn the_stored_line_wins_then_the_service() {
        let lines = vec![
            ServiceLineRow { id: 1, service_id: 7, units: Some(3.0) },
            ServiceLineRow { id: 2, service_id: 9, units: None },
        ];
        assert_eq!(pick_line(&lines, Some(2), 7).map(|l| l.id), Some(2));
        assert_eq!(pick_line(&lines, Some(99), 7).map(|l| l.id), Some(1), "a vanished line falls back to the service");
        assert_eq!(pick_line(&lines, None, 9).map(|l| l.id), Some(2));
        assert_eq!(pick_line(&lines, None, 8), None);
        assert_eq!(lines[1].to_line(5).quantity, 0);
        assert_eq!(
            lines[0].to_line(5),
            ServiceLine { id: "1".into(), contract_id: "5".into(), service_id: "7".into(), quantity: 3 }
        );
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
