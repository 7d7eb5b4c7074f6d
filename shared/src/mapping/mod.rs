//! Organization, contact and contract mapping with a sync preview.
//!
//! Upstream organizations (a CSV / JSON list) are matched to the target's customers by name
//! ([`plan::plan_orgs`], pure), shown as a preview (matched / to create / excluded / collisions),
//! then applied ([`apply::Mappings`]): mappings are written to the [`crate::store::Store`] and,
//! with auto-create on, missing customers and their default contacts are created through the
//! [`crate::connectors::Connector`]. Users are matched to contacts by e-mail address the same
//! way ([`users`]). Applying twice creates nothing the second time.

pub mod apply;
mod apply_users;
pub mod plan;
pub mod records;
pub mod scoped_progress;
pub mod source;
pub mod sync;
pub mod ticket_links;
pub mod upstream_push;
pub mod users;

use thiserror::Error;

use crate::connectors::ConnectorError;
use crate::store::StoreError;

pub use crate::config::MappingSettings;
pub use crate::domain::MatchMode;
pub use apply::{ApplyReport, ContractChange, Failure, Included, LineCounts, Mappings, NoProgress, Progress};
pub use apply_users::UserApplyReport;
pub use plan::{OrgPlan, plan_orgs};
pub use source::{Format, SourceError, UpstreamOrg, UpstreamUser, parse_orgs, parse_users};
pub use users::{UserPlan, plan_users};

/// Why a mapping operation failed.
#[derive(Debug, Error)]
pub enum MappingError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Connector(#[from] ConnectorError),
    /// An organization, user, customer or contract that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A request that cannot be carried out as asked.
    #[error("{0}")]
    Invalid(String),
}
