//! `ticket-bridge mappings …`: organization and contact mapping against the local engine
//! (config file, SQLite store, secrets file). Long runs draw a progress bar on stderr; results
//! are a summary table, or JSON with `--output json`.

use anyhow::{Context, Result, bail};
use bridge::mapping::plan::{Collision, CollisionKind, OrgPlan};
use bridge::mapping::users::UserPlan;
use bridge::mapping::{
    ApplyReport, ContractChange, Failure, Format, Included, MappingError, Mappings, MatchMode, Progress,
    UserApplyReport, parse_orgs, parse_users,
};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Options shared by every `mappings` command.
#[derive(Args)]
pub struct MappingsArgs {
    /// Connection to map (default: the only one, or settings.default_connection).
    #[arg(long, global = true)]
    connection: Option<String>,
    /// table (default) or json.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    cmd: MappingsCmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Overrides of `[connections.X.mapping]` for one run.
#[derive(Args, Clone)]
pub struct SyncOpts {
    /// exact (identical names) or normalized (ignoring case, whitespace, punctuation).
    #[arg(long = "match", value_parser = parse_mode)]
    mode: Option<MatchMode>,
    /// Create unmatched customers (with a default contact) / unmatched contacts.
    #[arg(long, conflicts_with = "no_auto_create")]
    auto_create: bool,
    #[arg(long)]
    no_auto_create: bool,
}

fn parse_mode(s: &str) -> Result<MatchMode, String> {
    MatchMode::parse(s).ok_or_else(|| format!("'{s}': expected exact or normalized"))
}

#[derive(Subcommand)]
pub enum MappingsCmd {
    /// Show what `apply` would do: matched, to be created, excluded, collisions.
    Preview {
        /// Upstream organizations: CSV (id,name[,contact_name,contact_email,user_count]) or JSON.
        #[arg(long)]
        orgs: PathBuf,
        #[command(flatten)]
        sync: SyncOpts,
    },
    /// Write the mappings; with auto-create, create missing customers and default contacts.
    Apply {
        #[arg(long)]
        orgs: PathBuf,
        #[command(flatten)]
        sync: SyncOpts,
    },
    /// Map an organization to a customer by hand.
    Match {
        org: String,
        customer: String,
        #[arg(long)]
        org_name: Option<String>,
        /// Default ticket contact (a contact id of the customer).
        #[arg(long)]
        contact: Option<String>,
    },
    /// Put an organization on the excluded list (its tickets go to the catch-all).
    Exclude {
        org: String,
        #[arg(long)]
        org_name: Option<String>,
    },
    /// Take an organization off the excluded list.
    Include { org: String },
    /// List the mappings (mapped and excluded).
    List,
    /// Set the contract attached to an organization's tickets (omit CONTRACT to clear it).
    Contract {
        org: String,
        contract: Option<String>,
        /// Keep a contract service line whose quantity is the organization's user count.
        #[arg(long, conflicts_with = "no_service")]
        service: bool,
        /// Stop maintaining the service line.
        #[arg(long)]
        no_service: bool,
        /// Catalog service for the line (default: mapping.default_contract_service).
        #[arg(long)]
        service_name: Option<String>,
        /// User count to set now.
        #[arg(long)]
        users: Option<u64>,
    },
    /// List the contracts of the customer an organization is mapped to.
    Contracts { org: String },
    /// The same for users / contacts, by e-mail address.
    Contacts {
        #[command(subcommand)]
        cmd: ContactsCmd,
    },
    /// Run the continuous PSA sync now (or continue an interrupted run).
    Sync,
    /// The sync's checkpoint and the last run's counts.
    Status,
    /// The records the sync read (customers, contacts, locations, assets): list, preview, apply.
    Records {
        #[command(subcommand)]
        cmd: crate::sync_cmd::RecordsCmd,
    },
}

#[derive(Subcommand)]
pub enum ContactsCmd {
    /// Show what `contacts apply` would do.
    Preview {
        /// Upstream users: CSV (email[,name,org_id]) or JSON.
        #[arg(long)]
        users: PathBuf,
        #[command(flatten)]
        sync: SyncOpts,
    },
    /// Write user → contact mappings; with auto-create, create missing contacts.
    Apply {
        #[arg(long)]
        users: PathBuf,
        #[command(flatten)]
        sync: SyncOpts,
    },
    /// Map an address to a contact by hand.
    Match {
        email: String,
        contact: String,
        /// Check the contact against this customer's contacts.
        #[arg(long)]
        customer: Option<String>,
    },
    /// Put a user on the excluded list (tickets use the customer's default contact).
    Exclude { email: String },
    /// Take a user off the excluded list.
    Include { email: String },
    /// List user mappings.
    List,
}

/// An indicatif bar on stderr (hidden when stderr is not a terminal).
struct Bar(Mutex<Option<ProgressBar>>);

impl Progress for Bar {
    fn begin(&self, total: u64, message: &str) {
        let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{msg:24} [{bar:40}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        pb.set_style(style);
        pb.set_message(message.to_string());
        if let Some(old) = self.0.lock().unwrap_or_else(|p| p.into_inner()).replace(pb) {
            old.finish_and_clear();
        }
    }
    fn advance(&self) {
        if let Some(pb) = self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            pb.inc(1);
        }
    }
    fn finish(&self) {
        if let Some(pb) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            pb.finish_and_clear();
        }
    }
}

pub async fn run(config: Option<&Path>, data_dir: &Path, args: MappingsArgs) -> Result<()> {
    let local = crate::local::build(config, data_dir).await?;
    let engine = &local.engine;
    let (conn, cfg) = engine.config.route(args.connection.as_deref()).map_err(anyhow::Error::msg)?;
    let connector = engine.connectors.get(conn).with_context(|| format!("connection '{conn}' has no connector"))?;
    let bar = Bar(Mutex::new(None));
    let base = cfg.mapping.clone();
    let mappings = |sync: Option<&SyncOpts>| {
        let mut s = base.clone();
        if let Some(o) = sync {
            if let Some(m) = o.mode {
                s.match_mode = m;
            }
            if o.auto_create {
                s.auto_create = true;
            }
            if o.no_auto_create {
                s.auto_create = false;
            }
        }
        Mappings::new(conn, engine.store.as_ref(), connector.as_ref(), s).with_progress(&bar)
    };
    let out = args.output;
    match args.cmd {
        MappingsCmd::Preview { orgs, sync } => {
            let list = read_list(&orgs, parse_orgs)?;
            let plan = mappings(Some(&sync)).preview(&list).await.map_err(fail)?;
            emit(out, &plan, || print_plan(conn, &plan))
        }
        MappingsCmd::Apply { orgs, sync } => {
            let list = read_list(&orgs, parse_orgs)?;
            let report = mappings(Some(&sync)).apply(&list).await.map_err(fail)?;
            emit(out, &report, || print_apply(conn, &report))?;
            check_failures(&report.failures)
        }
        MappingsCmd::Match { org, customer, org_name, contact } => {
            let m = mappings(None)
                .match_org(&org, &customer, org_name.as_deref(), contact.as_deref())
                .await
                .map_err(fail)?;
            emit(out, &m, || println!("{org} -> customer {} ({})", customer, m.customer_name.as_deref().unwrap_or("?")))
        }
        MappingsCmd::Exclude { org, org_name } => {
            let m = mappings(None).exclude(&org, org_name.as_deref()).await.map_err(fail)?;
            emit(out, &m, || println!("{org} excluded (tickets go to the catch-all)"))
        }
        MappingsCmd::Include { org } => {
            let r = mappings(None).include(&org).await.map_err(fail)?;
            emit(out, &r, || match &r {
                Included::Restored { mapping } => {
                    println!("{org} included again -> customer {}", mapping.customer_id.as_deref().unwrap_or("?"))
                }
                Included::Unmapped { .. } => {
                    println!("{org} removed from the excluded list (unmapped; the next apply matches or creates it)")
                }
            })
        }
        MappingsCmd::List => {
            let all = mappings(None).list().await.map_err(fail)?;
            emit(out, &all, || {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|m| {
                        vec![
                            m.org_id.clone(),
                            opt(&m.org_name),
                            if m.excluded { "excluded".into() } else { "mapped".into() },
                            format!(
                                "{} {}",
                                opt(&m.customer_id),
                                m.customer_name.as_deref().map(|n| format!("({n})")).unwrap_or_default()
                            ),
                            opt(&m.contact_id),
                            opt(&m.contract_id),
                            opt(&m.contract_service_id),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["org", "name", "state", "customer", "contact", "contract", "service line"], &rows)
                );
                println!("{} mappings ({} excluded)", all.len(), all.iter().filter(|m| m.excluded).count());
            })
        }
        MappingsCmd::Contract { org, contract, service, no_service, service_name, users } => {
            let change = ContractChange {
                contract_id: contract,
                service: if service {
                    Some(true)
                } else if no_service {
                    Some(false)
                } else {
                    None
                },
                service_name,
                users,
            };
            let m = mappings(None).set_contract(&org, &change).await.map_err(fail)?;
            emit(out, &m, || {
                println!("{org}: contract {} service line {}", opt(&m.contract_id), opt(&m.contract_service_id));
            })
        }
        MappingsCmd::Contracts { org } => {
            let all = mappings(None).contracts(&org).await.map_err(fail)?;
            emit(out, &all, || {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|c| vec![c.id.clone(), c.name.clone(), yes_no(c.is_default), yes_no(c.active)])
                    .collect();
                print!("{}", table(&["id", "name", "default", "active"], &rows));
            })
        }
        MappingsCmd::Contacts { cmd } => contacts(cmd, out, conn, &mappings).await,
        MappingsCmd::Sync => crate::sync_cmd::sync(engine, conn, out).await,
        MappingsCmd::Status => crate::sync_cmd::status(engine, conn, out).await,
        MappingsCmd::Records { cmd } => crate::sync_cmd::records(engine, conn, out, cmd).await,
    }
}

async fn contacts<'a>(
    cmd: ContactsCmd,
    out: Output,
    conn: &str,
    mappings: &impl Fn(Option<&SyncOpts>) -> Mappings<'a>,
) -> Result<()> {
    match cmd {
        ContactsCmd::Preview { users, sync } => {
            let list = read_list(&users, parse_users)?;
            let plan = mappings(Some(&sync)).preview_users(&list).await.map_err(fail)?;
            emit(out, &plan, || print_user_plan(conn, &plan))
        }
        ContactsCmd::Apply { users, sync } => {
            let list = read_list(&users, parse_users)?;
            let report = mappings(Some(&sync)).apply_users(&list).await.map_err(fail)?;
            emit(out, &report, || print_user_apply(conn, &report))?;
            check_failures(&report.failures)
        }
        ContactsCmd::Match { email, contact, customer } => {
            let m = mappings(None).match_user(&email, &contact, customer.as_deref()).await.map_err(fail)?;
            emit(out, &m, || println!("{} -> contact {contact}", m.email))
        }
        ContactsCmd::Exclude { email } => {
            let m = mappings(None).exclude_user(&email).await.map_err(fail)?;
            emit(out, &m, || println!("{} excluded (tickets use the customer's default contact)", m.email))
        }
        ContactsCmd::Include { email } => {
            let m = mappings(None).include_user(&email).await.map_err(fail)?;
            emit(out, &m, || match &m {
                Some(m) => println!("{} included again -> contact {}", m.email, opt(&m.contact_id)),
                None => println!("{email} removed from the excluded list"),
            })
        }
        ContactsCmd::List => {
            let all = mappings(None).list_users().await.map_err(fail)?;
            emit(out, &all, || {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|m| {
                        let state = if m.excluded { "excluded" } else { "mapped" };
                        vec![
                            m.email.clone(),
                            opt(&m.name),
                            state.into(),
                            opt(&m.org_id),
                            opt(&m.customer_id),
                            opt(&m.contact_id),
                        ]
                    })
                    .collect();
                print!("{}", table(&["email", "name", "state", "org", "customer", "contact"], &rows));
            })
        }
    }
}

fn fail(e: MappingError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn read_list<T>(
    path: &Path,
    parse: fn(&str, Format) -> Result<Vec<T>, bridge::mapping::SourceError>,
) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text, Format::for_file(path, &text)).with_context(|| format!("{}", path.display()))
}

fn emit<T: Serialize>(out: Output, value: &T, human: impl FnOnce()) -> Result<()> {
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Table => human(),
    }
    Ok(())
}

fn check_failures(failures: &[Failure]) -> Result<()> {
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("{} item(s) failed; see above (re-running apply retries them)", failures.len())
    }
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

fn yes_no(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}

/// A plain text table with a header rule.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", parts.join("  ").trim_end())
    };
    let mut s = line(headers.to_vec());
    s.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(String::as_str).collect()));
    for r in rows {
        s.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    s
}

fn section(title: &str, rows: &[Vec<String>], headers: &[&str]) {
    if rows.is_empty() {
        return;
    }
    println!("\n{title} ({}):", rows.len());
    print!("{}", table(headers, rows));
}

fn collision_rows(collisions: &[Collision]) -> Vec<Vec<String>> {
    collisions
        .iter()
        .map(|c| {
            let kind = match c.kind {
                CollisionKind::Customers => "several customers",
                CollisionKind::Organizations => "several organizations",
            };
            let orgs: Vec<String> = c.orgs.iter().map(|o| format!("{} ({})", o.id, o.name)).collect();
            let customers: Vec<String> = c.customers.iter().map(|x| format!("{} ({})", x.id, x.name)).collect();
            vec![
                c.key.clone(),
                kind.into(),
                orgs.join(", "),
                if customers.is_empty() { "-".into() } else { customers.join(", ") },
            ]
        })
        .collect()
}

fn print_plan(conn: &str, p: &OrgPlan) {
    println!(
        "Organization sync preview for '{conn}' (match: {}, auto-create: {})",
        p.mode.as_str(),
        if p.auto_create { "on" } else { "off" }
    );
    let pair = |id: &str, name: &str, cid: &str, cname: &str| {
        vec![id.to_string(), name.to_string(), format!("{cid} ({cname})")]
    };
    section(
        "Will be matched",
        &p.matched.iter().map(|m| pair(&m.org.id, &m.org.name, &m.customer.id, &m.customer.name)).collect::<Vec<_>>(),
        &["org", "name", "customer"],
    );
    section(
        "Will be created",
        &p.to_create
            .iter()
            .map(|c| {
                let similar: Vec<String> = c.similar.iter().map(|s| format!("{} ({})", s.id, s.name)).collect();
                vec![c.org.id.clone(), c.org.name.clone(), similar.join(", ")]
            })
            .collect::<Vec<_>>(),
        &["org", "name", "similar existing customers"],
    );
    section(
        "Excluded",
        &p.excluded.iter().map(|o| vec![o.id.clone(), o.name.clone()]).collect::<Vec<_>>(),
        &["org", "name"],
    );
    section(
        "Name collisions (not matched; use `mappings match`)",
        &collision_rows(&p.collisions),
        &["name", "ambiguity", "organizations", "customers"],
    );
    section(
        "Unmatched (catch-all)",
        &p.unmatched.iter().map(|o| vec![o.id.clone(), o.name.clone()]).collect::<Vec<_>>(),
        &["org", "name"],
    );
    section(
        "Mapped to a customer that no longer exists",
        &p.stale.iter().map(|m| vec![m.org.id.clone(), m.org.name.clone(), m.customer_id.clone()]).collect::<Vec<_>>(),
        &["org", "name", "customer"],
    );
    let c = &p.counts;
    println!();
    print!(
        "{}",
        table(
            &["will be matched", "will be created", "excluded", "collisions", "unmatched", "already mapped", "stale"],
            &[[c.matched, c.to_create, c.excluded, c.colliding, c.unmatched, c.already_mapped, c.stale]
                .iter()
                .map(|n| n.to_string())
                .collect()],
        )
    );
}

fn print_failures(failures: &[Failure]) {
    section(
        "Failures",
        &failures.iter().map(|f| vec![f.item.clone(), f.step.clone(), f.message.clone()]).collect::<Vec<_>>(),
        &["item", "step", "error"],
    );
}

fn print_apply(conn: &str, r: &ApplyReport) {
    println!("Organization sync applied to '{conn}'");
    section(
        "Customers created",
        &r.created
            .iter()
            .map(|m| vec![m.org.id.clone(), m.customer.id.clone(), m.customer.name.clone()])
            .collect::<Vec<_>>(),
        &["org", "customer", "name"],
    );
    section(
        "Name collisions (left alone)",
        &collision_rows(&r.plan.collisions),
        &["name", "ambiguity", "organizations", "customers"],
    );
    print_failures(&r.failures);
    println!();
    let l = &r.service_lines;
    print!(
        "{}",
        table(
            &[
                "matched",
                "created",
                "contacts created",
                "contacts linked",
                "excluded",
                "collisions",
                "already mapped",
                "service lines (added/updated/same)",
                "failures"
            ],
            &[vec![
                r.mapped.to_string(),
                r.created.len().to_string(),
                r.contacts_created.to_string(),
                r.contacts_linked.to_string(),
                r.plan.counts.excluded.to_string(),
                r.plan.counts.colliding.to_string(),
                r.plan.counts.already_mapped.to_string(),
                format!("{}/{}/{}", l.added, l.updated, l.unchanged),
                r.failures.len().to_string(),
            ]],
        )
    );
}

fn print_user_plan(conn: &str, p: &UserPlan) {
    println!("Contact sync preview for '{conn}' (auto-create: {})", if p.auto_create { "on" } else { "off" });
    section(
        "Will be matched",
        &p.matched
            .iter()
            .map(|m| {
                vec![m.user.email.clone(), m.customer_id.clone(), format!("{} ({})", m.contact.id, m.contact.name)]
            })
            .collect::<Vec<_>>(),
        &["email", "customer", "contact"],
    );
    section(
        "Will be created",
        &p.to_create.iter().map(|c| vec![c.user.email.clone(), c.customer_id.clone()]).collect::<Vec<_>>(),
        &["email", "customer"],
    );
    section("Excluded", &p.excluded.iter().map(|u| vec![u.email.clone()]).collect::<Vec<_>>(), &["email"]);
    section(
        "Address collisions (not matched)",
        &p.collisions
            .iter()
            .map(|c| {
                vec![
                    c.user.email.clone(),
                    c.customer_id.clone(),
                    c.contacts.iter().map(|x| x.id.clone()).collect::<Vec<_>>().join(", "),
                ]
            })
            .collect::<Vec<_>>(),
        &["email", "customer", "contacts"],
    );
    section(
        "Organization not mapped",
        &p.no_customer.iter().map(|u| vec![u.email.clone(), u.org_id.clone().unwrap_or_default()]).collect::<Vec<_>>(),
        &["email", "org"],
    );
    let c = &p.counts;
    println!();
    print!(
        "{}",
        table(
            &[
                "will be matched",
                "will be created",
                "excluded",
                "collisions",
                "unmatched",
                "no customer",
                "already mapped"
            ],
            &[[c.matched, c.to_create, c.excluded, c.colliding, c.unmatched, c.no_customer, c.already_mapped]
                .iter()
                .map(|n| n.to_string())
                .collect()],
        )
    );
}

fn print_user_apply(conn: &str, r: &UserApplyReport) {
    println!("Contact sync applied to '{conn}'");
    print_failures(&r.failures);
    println!();
    print!(
        "{}",
        table(
            &["matched", "contacts created", "excluded", "collisions", "already mapped", "failures"],
            &[vec![
                r.mapped.to_string(),
                r.contacts_created.to_string(),
                r.plan.counts.excluded.to_string(),
                r.plan.counts.colliding.to_string(),
                r.plan.counts.already_mapped.to_string(),
                r.failures.len().to_string(),
            ]],
        )
    );
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn table_pads_columns_to_the_widest_cell() {
        let t = table(&["a", "long header"], &[vec!["wide cell".into(), "x".into()]]);
        assert_eq!(t, "a          long header\n---------  -----------\nwide cell  x\n");
    }
}
