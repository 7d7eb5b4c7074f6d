//! Organization sync against a store and a connector: preview, apply, and the manual operations
//! (match, exclude, include, contract).

use std::collections::HashMap;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::plan::{OrgMatch, OrgPlan, OrgRef, plan_orgs};
use super::source::UpstreamOrg;
use super::{MappingError, MappingSettings};
use crate::connectors::{Connector, ConnectorError, Contract, Customer, LineChange};
use crate::domain::OrgMapping;
use crate::store::Store;

/// Progress of a long run (the CLI draws a bar; the API ignores it).
pub trait Progress: Send + Sync {
    /// A new phase of `total` steps.
    fn begin(&self, _total: u64, _message: &str) {}
    /// One step done.
    fn advance(&self) {}
    fn finish(&self) {}
}

/// No progress display.
pub struct NoProgress;

impl Progress for NoProgress {}

/// Something that failed for one organization or user; the run goes on with the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Organization id or user address.
    pub item: String,
    /// `map`, `create_customer`, `contact`, `service_line`, `create_contact`.
    pub step: String,
    pub message: String,
}

/// Contract service lines touched by an apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineCounts {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
}

impl LineCounts {
    fn add(&mut self, c: LineChange) {
        match c {
            LineChange::Added => self.added += 1,
            LineChange::Updated => self.updated += 1,
            LineChange::Unchanged => self.unchanged += 1,
        }
    }
}

/// What an organization apply did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// The plan that was carried out (computed at the start of the run).
    pub plan: OrgPlan,
    /// Mappings written for matched organizations.
    pub mapped: usize,
    /// Customers created, with their organization.
    pub created: Vec<OrgMatch>,
    pub contacts_created: usize,
    /// Existing default contacts found and set on mappings.
    pub contacts_linked: usize,
    pub service_lines: LineCounts,
    pub failures: Vec<Failure>,
}

/// Result of taking an organization off the excluded list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Included {
    /// It had a customer: the mapping is active again.
    Restored { mapping: OrgMapping },
    /// It had none: it is unmapped again (matched or created on the next apply).
    Unmapped { org_id: String },
}

/// A change to an organization's contract settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractChange {
    /// The contract attached to the customer's tickets; `None` clears it (and the service line).
    #[serde(default)]
    pub contract_id: Option<String>,
    /// `true`: keep a service line with the user count on the contract; `false`: forget it;
    /// absent: unchanged.
    #[serde(default)]
    pub service: Option<bool>,
    /// Catalog service (id or name) for the line; default `mapping.default_contract_service`.
    #[serde(default)]
    pub service_name: Option<String>,
    /// User count to bill now (later applies update it from the organization list).
    #[serde(default)]
    pub users: Option<u64>,
}

/// Mapping operations of one connection.
pub struct Mappings<'a> {
    pub(super) connection: String,
    pub(super) store: &'a dyn Store,
    pub(super) connector: &'a dyn Connector,
    pub(super) settings: MappingSettings,
    pub(super) progress: &'a dyn Progress,
}

impl<'a> Mappings<'a> {
    pub fn new(
        connection: &str,
        store: &'a dyn Store,
        connector: &'a dyn Connector,
        settings: MappingSettings,
    ) -> Self {
        Self { connection: connection.to_string(), store, connector, settings, progress: &NoProgress }
    }

    /// Reports progress of long runs to `progress`.
    pub fn with_progress(mut self, progress: &'a dyn Progress) -> Self {
        self.progress = progress;
        self
    }

    pub fn settings(&self) -> &MappingSettings {
        &self.settings
    }

    /// Every mapping of the connection (mapped and excluded), by organization id.
    pub async fn list(&self) -> Result<Vec<OrgMapping>, MappingError> {
        let mut all = self.store.list_mappings(&self.connection).await?;
        all.sort_by(|a, b| a.org_id.cmp(&b.org_id));
        Ok(all)
    }

    /// What [`Mappings::apply`] would do now. Reads only.
    pub async fn preview(&self, orgs: &[UpstreamOrg]) -> Result<OrgPlan, MappingError> {
        let customers = self.connector.list_customers().await?;
        let mappings = self.store.list_mappings(&self.connection).await?;
        Ok(plan_orgs(orgs, &customers, &mappings, self.settings.match_mode, self.settings.auto_create))
    }

    /// Writes the mappings of the plan and, with auto-create, creates missing customers and their
    /// default contacts; then fills missing default contacts and updates contract service line
    /// quantities from the organizations' user counts. Re-running creates nothing new: created
    /// customers are mapped at once, and a customer that exists by name is matched, not created.
    pub async fn apply(&self, orgs: &[UpstreamOrg]) -> Result<ApplyReport, MappingError> {
        let plan = self.preview(orgs).await?;
        let by_id: HashMap<&str, &UpstreamOrg> = orgs.iter().map(|o| (o.id.as_str(), o)).collect();
        let mut report = ApplyReport {
            plan: plan.clone(),
            mapped: 0,
            created: Vec::new(),
            contacts_created: 0,
            contacts_linked: 0,
            service_lines: LineCounts::default(),
            failures: Vec::new(),
        };
        let steps = plan.matched.len() + plan.to_create.len();
        self.progress.begin(steps as u64, "mapping organizations");
        for m in &plan.matched {
            if let Some(org) = by_id.get(m.org.id.as_str()) {
                self.map_matched(org, &m.customer, &mut report).await?;
            }
            self.progress.advance();
        }
        let mut unsupported: Option<String> = None;
        for c in &plan.to_create {
            self.progress.advance();
            let Some(org) = by_id.get(c.org.id.as_str()) else {
                continue;
            };
            if let Some(why) = &unsupported {
                report.failures.push(failure(&org.id, "create_customer", why.clone()));
                continue;
            }
            if let Err(e) = self.create_for(org, &mut report).await {
                if let MappingError::Connector(ConnectorError::Unsupported(m)) = &e {
                    unsupported = Some(m.clone());
                }
                match e {
                    MappingError::Store(s) => return Err(MappingError::Store(s)),
                    other => report.failures.push(failure(&org.id, "create_customer", other.to_string())),
                }
            }
        }
        self.progress.finish();
        self.repair_contacts(&by_id, &mut report).await?;
        self.sync_service_lines(&by_id, &mut report).await?;
        Ok(report)
    }

    async fn map_matched(
        &self,
        org: &UpstreamOrg,
        customer: &Customer,
        report: &mut ApplyReport,
    ) -> Result<(), MappingError> {
        // Someone may have mapped or excluded it since the plan was made.
        if self.store.get_mapping(&self.connection, &org.id).await?.is_some() {
            return Ok(());
        }
        let contact_id = match self.default_contact(&customer.id, org, self.settings.auto_create, report).await {
            Ok(c) => c,
            Err(e) => {
                report.failures.push(failure(&org.id, "contact", e.to_string()));
                None
            }
        };
        self.store.put_mapping(&new_mapping(&self.connection, org, customer, contact_id)).await?;
        report.mapped += 1;
        Ok(())
    }

    /// Creates the customer and its default contact, mapping the organization right after each
    /// write so that an interrupted run never creates the customer twice.
    async fn create_for(&self, org: &UpstreamOrg, report: &mut ApplyReport) -> Result<(), MappingError> {
        if self.store.get_mapping(&self.connection, &org.id).await?.is_some() {
            return Ok(());
        }
        let customer = self.connector.create_customer(&org.name).await?;
        let mut mapping = new_mapping(&self.connection, org, &customer, None);
        self.store.put_mapping(&mapping).await?;
        report.created.push(OrgMatch { org: OrgRef::from(org), customer: customer.clone() });
        let name = org.contact_name.clone().unwrap_or_else(|| self.settings.default_contact_name.clone());
        match self.connector.create_contact(&customer.id, &name, org.contact_email.as_deref()).await {
            Ok(id) => {
                report.contacts_created += 1;
                mapping.contact_id = Some(id);
                mapping.updated_at = Utc::now();
                self.store.put_mapping(&mapping).await?;
            }
            Err(e) => report.failures.push(failure(&org.id, "contact", e.to_string())),
        }
        Ok(())
    }

    /// The default ticket contact the organization names (by address, else by name) in
    /// `customer`; created when missing and `create` is set. `None` when it names none.
    async fn default_contact(
        &self,
        customer: &str,
        org: &UpstreamOrg,
        create: bool,
        report: &mut ApplyReport,
    ) -> Result<Option<String>, ConnectorError> {
        let (email, name) = (org.contact_email.as_deref(), org.contact_name.as_deref());
        if email.is_none() && name.is_none() {
            return Ok(None);
        }
        let found = match (email, name) {
            (Some(e), _) => self.connector.find_contact(Some(customer), e).await?,
            (None, Some(n)) => match self.connector.list_contacts(customer).await {
                Ok(all) => {
                    let hits: Vec<_> = all.iter().filter(|c| c.name.trim().eq_ignore_ascii_case(n.trim())).collect();
                    match hits.as_slice() {
                        [one] => Some(one.id.clone()),
                        [] => None,
                        _ => {
                            return Err(ConnectorError::Rejected(format!(
                                "{} contacts of customer {customer} are named '{n}'",
                                hits.len()
                            )));
                        }
                    }
                }
                Err(ConnectorError::Unsupported(_)) => None,
                Err(e) => return Err(e),
            },
            (None, None) => None,
        };
        if let Some(id) = found {
            report.contacts_linked += 1;
            return Ok(Some(id));
        }
        if !create {
            return Ok(None);
        }
        let name = name.map(str::to_string).unwrap_or_else(|| self.settings.default_contact_name.clone());
        let id = self.connector.create_contact(customer, &name, email).await?;
        report.contacts_created += 1;
        Ok(Some(id))
    }

    /// Mapped organizations that name a default contact but have none yet get it (found, or
    /// created with auto-create) — e.g. after a run interrupted between customer and contact.
    async fn repair_contacts(
        &self,
        by_id: &HashMap<&str, &UpstreamOrg>,
        report: &mut ApplyReport,
    ) -> Result<(), MappingError> {
        let todo: Vec<OrgMapping> = self
            .store
            .list_mappings(&self.connection)
            .await?
            .into_iter()
            .filter(|m| !m.excluded && m.customer_id.is_some() && m.contact_id.is_none())
            .filter(|m| {
                by_id.get(m.org_id.as_str()).is_some_and(|o| o.contact_email.is_some() || o.contact_name.is_some())
            })
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        self.progress.begin(todo.len() as u64, "default contacts");
        for mut m in todo {
            self.progress.advance();
            let (Some(org), Some(customer)) = (by_id.get(m.org_id.as_str()), m.customer_id.clone()) else {
                continue;
            };
            match self.default_contact(&customer, org, self.settings.auto_create, report).await {
                Ok(Some(id)) => {
                    m.contact_id = Some(id);
                    m.updated_at = Utc::now();
                    self.store.put_mapping(&m).await?;
                }
                Ok(None) => {}
                Err(e) => report.failures.push(failure(&m.org_id, "contact", e.to_string())),
            }
        }
        self.progress.finish();
        Ok(())
    }

    /// Sets the quantity of each mapped contract service line to the organization's user count.
    async fn sync_service_lines(
        &self,
        by_id: &HashMap<&str, &UpstreamOrg>,
        report: &mut ApplyReport,
    ) -> Result<(), MappingError> {
        let todo: Vec<(OrgMapping, u64)> = self
            .store
            .list_mappings(&self.connection)
            .await?
            .into_iter()
            .filter(|m| !m.excluded && m.contract_id.is_some() && m.contract_service_id.is_some())
            .filter_map(|m| {
                let users = by_id.get(m.org_id.as_str())?.user_count?;
                Some((m, users))
            })
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        self.progress.begin(todo.len() as u64, "contract user counts");
        let service = self.settings.default_contract_service.clone().unwrap_or_default();
        for (mut m, users) in todo {
            self.progress.advance();
            let contract = m.contract_id.clone().unwrap_or_default();
            match self
                .connector
                .set_service_quantity(&contract, m.contract_service_id.as_deref(), &service, users)
                .await
            {
                Ok((line, change)) => {
                    report.service_lines.add(change);
                    if m.contract_service_id.as_deref() != Some(line.id.as_str()) {
                        m.contract_service_id = Some(line.id);
                        m.updated_at = Utc::now();
                        self.store.put_mapping(&m).await?;
                    }
                }
                Err(e) => report.failures.push(failure(&m.org_id, "service_line", e.to_string())),
            }
        }
        self.progress.finish();
        Ok(())
    }

    /// Maps `org_id` to `customer_id` by hand (the customer must exist in the target). Contact and
    /// contract settings are kept when the customer does not change.
    pub async fn match_org(
        &self,
        org_id: &str,
        customer_id: &str,
        org_name: Option<&str>,
        contact_id: Option<&str>,
    ) -> Result<OrgMapping, MappingError> {
        let org_id = non_empty("org_id", org_id)?;
        let customers = self.connector.list_customers().await?;
        let customer = customers.iter().find(|c| c.id == customer_id.trim()).ok_or_else(|| {
            MappingError::NotFound(format!("connection '{}' has no customer '{}'", self.connection, clip(customer_id)))
        })?;
        if let Some(contact) = contact_id {
            self.check_contact(&customer.id, contact).await?;
        }
        let existing = self.store.get_mapping(&self.connection, org_id).await?;
        let same = existing.as_ref().is_some_and(|m| m.customer_id.as_deref() == Some(customer.id.as_str()));
        let keep = |f: fn(&OrgMapping) -> Option<String>| {
            if same { existing.as_ref().and_then(f) } else { None }
        };
        let mapping = OrgMapping {
            connection: self.connection.clone(),
            org_id: org_id.to_string(),
            org_name: org_name.map(str::to_string).or_else(|| existing.as_ref().and_then(|m| m.org_name.clone())),
            customer_id: Some(customer.id.clone()),
            customer_name: Some(customer.name.clone()),
            contact_id: contact_id.map(str::to_string).or_else(|| keep(|m| m.contact_id.clone())),
            contract_id: keep(|m| m.contract_id.clone()),
            contract_service_id: keep(|m| m.contract_service_id.clone()),
            excluded: false,
            updated_at: Utc::now(),
        };
        self.store.put_mapping(&mapping).await?;
        Ok(mapping)
    }

    async fn check_contact(&self, customer: &str, contact: &str) -> Result<(), MappingError> {
        match self.connector.list_contacts(customer).await {
            Ok(all) if all.iter().any(|c| c.id == contact.trim()) => Ok(()),
            Ok(_) => Err(MappingError::NotFound(format!("customer {customer} has no contact '{}'", clip(contact)))),
            Err(ConnectorError::Unsupported(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Puts an organization on the excluded list (its tickets go to the catch-all). A mapped
    /// organization keeps its customer so that [`Mappings::include`] restores it.
    pub async fn exclude(&self, org_id: &str, org_name: Option<&str>) -> Result<OrgMapping, MappingError> {
        let org_id = non_empty("org_id", org_id)?;
        let mapping = match self.store.get_mapping(&self.connection, org_id).await? {
            Some(mut m) => {
                m.excluded = true;
                if org_name.is_some() {
                    m.org_name = org_name.map(str::to_string);
                }
                m.updated_at = Utc::now();
                m
            }
            None => OrgMapping {
                connection: self.connection.clone(),
                org_id: org_id.to_string(),
                org_name: org_name.map(str::to_string),
                customer_id: None,
                customer_name: None,
                contact_id: None,
                contract_id: None,
                contract_service_id: None,
                excluded: true,
                updated_at: Utc::now(),
            },
        };
        self.store.put_mapping(&mapping).await?;
        Ok(mapping)
    }

    /// Takes an organization off the excluded list.
    pub async fn include(&self, org_id: &str) -> Result<Included, MappingError> {
        match self.store.get_mapping(&self.connection, org_id.trim()).await? {
            Some(mut m) if m.excluded => {
                if m.customer_id.is_some() {
                    m.excluded = false;
                    m.updated_at = Utc::now();
                    self.store.put_mapping(&m).await?;
                    Ok(Included::Restored { mapping: m })
                } else {
                    self.store.delete_mapping(&self.connection, &m.org_id).await?;
                    Ok(Included::Unmapped { org_id: m.org_id })
                }
            }
            _ => Err(MappingError::NotFound(format!("organization '{}' is not on the excluded list", clip(org_id)))),
        }
    }

    /// Contracts of the customer an organization is mapped to.
    pub async fn contracts(&self, org_id: &str) -> Result<Vec<Contract>, MappingError> {
        let m = self.mapped(org_id).await?;
        Ok(self.connector.list_contracts(m.customer_id.as_deref().unwrap_or_default()).await?)
    }

    async fn mapped(&self, org_id: &str) -> Result<OrgMapping, MappingError> {
        match self.store.get_mapping(&self.connection, org_id.trim()).await? {
            Some(m) if !m.excluded && m.customer_id.is_some() => Ok(m),
            Some(_) => {
                Err(MappingError::Invalid(format!("organization '{}' is excluded or has no customer", clip(org_id))))
            }
            None => Err(MappingError::NotFound(format!("organization '{}' is not mapped", clip(org_id)))),
        }
    }

    /// Sets the contract attached to an organization's tickets and, optionally, the contract
    /// service line that bills its user count.
    pub async fn set_contract(&self, org_id: &str, change: &ContractChange) -> Result<OrgMapping, MappingError> {
        let mut m = self.mapped(org_id).await?;
        let customer = m.customer_id.clone().unwrap_or_default();
        let contract = change.contract_id.as_deref().map(str::trim).filter(|c| !c.is_empty());
        if let Some(c) = contract {
            match self.connector.list_contracts(&customer).await {
                Ok(all) if all.iter().any(|x| x.id == c) => {}
                Ok(all) => {
                    let known: Vec<String> = all.iter().map(|x| format!("{} ({})", x.id, x.name)).collect();
                    return Err(MappingError::NotFound(format!(
                        "customer {customer} has no contract '{}' (contracts: {})",
                        clip(c),
                        if known.is_empty() { "none".into() } else { known.join(", ") }
                    )));
                }
                Err(ConnectorError::Unsupported(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let same_contract = m.contract_id.as_deref() == contract;
        m.contract_id = contract.map(str::to_string);
        if !same_contract || contract.is_none() || change.service == Some(false) {
            m.contract_service_id = None;
        }
        if let (Some(c), Some(true)) = (contract, change.service) {
            let service =
                change.service_name.clone().or_else(|| self.settings.default_contract_service.clone()).ok_or_else(
                    || {
                        MappingError::Invalid(
                            "no contract service: give one or set mapping.default_contract_service".into(),
                        )
                    },
                )?;
            let (line, _) = self
                .connector
                .set_service_quantity(c, m.contract_service_id.as_deref(), &service, change.users.unwrap_or(0))
                .await?;
            m.contract_service_id = Some(line.id);
        }
        m.updated_at = Utc::now();
        self.store.put_mapping(&m).await?;
        Ok(m)
    }
}

fn new_mapping(connection: &str, org: &UpstreamOrg, customer: &Customer, contact_id: Option<String>) -> OrgMapping {
    OrgMapping {
        connection: connection.to_string(),
        org_id: org.id.clone(),
        org_name: Some(org.name.clone()),
        customer_id: Some(customer.id.clone()),
        customer_name: Some(customer.name.clone()),
        contact_id,
        contract_id: None,
        contract_service_id: None,
        excluded: false,
        updated_at: Utc::now(),
    }
}

pub(super) fn failure(item: &str, step: &str, message: String) -> Failure {
    Failure { item: item.to_string(), step: step.to_string(), message }
}

pub(super) fn clip(s: &str) -> String {
    s.trim().chars().take(80).collect()
}

pub(super) fn non_empty<'s>(field: &str, v: &'s str) -> Result<&'s str, MappingError> {
    let v = v.trim();
    if v.is_empty() { Err(MappingError::Invalid(format!("{field} must not be empty"))) } else { Ok(v) }
}
