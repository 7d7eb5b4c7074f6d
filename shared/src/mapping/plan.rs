//! The organization sync plan: what applying would do, computed without side effects.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::source::UpstreamOrg;
use crate::connectors::Customer;
use crate::domain::MatchMode;
use crate::domain::OrgMapping;

/// An organization in a plan list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRef {
    pub id: String,
    pub name: String,
}

impl From<&UpstreamOrg> for OrgRef {
    fn from(o: &UpstreamOrg) -> Self {
        Self { id: o.id.clone(), name: o.name.clone() }
    }
}

/// An organization and the customer it is (or will be) mapped to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgMatch {
    pub org: OrgRef,
    pub customer: Customer,
}

/// An organization whose customer will be created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgCreate {
    pub org: OrgRef,
    /// Customers whose name matches only when normalized (a hint to match by hand instead).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub similar: Vec<Customer>,
}

/// An organization mapped earlier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgMapped {
    pub org: OrgRef,
    pub customer_id: String,
    #[serde(default)]
    pub customer_name: Option<String>,
}

/// Which side of the match is ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollisionKind {
    /// Several customers carry the organization's name.
    Customers,
    /// Several organizations would map to (or create) one customer name.
    Organizations,
}

/// A name that matches ambiguously. Never resolved by guessing: match by hand or rename.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collision {
    pub kind: CollisionKind,
    /// The name as compared (normalized in normalized mode).
    pub key: String,
    pub orgs: Vec<OrgRef>,
    pub customers: Vec<Customer>,
}

/// How many organizations land in each list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanCounts {
    pub matched: usize,
    pub to_create: usize,
    pub unmatched: usize,
    pub excluded: usize,
    pub already_mapped: usize,
    pub stale: usize,
    /// Organizations involved in collisions.
    pub colliding: usize,
}

/// The preview of an organization sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgPlan {
    #[serde(rename = "match")]
    pub mode: MatchMode,
    pub auto_create: bool,
    /// Will be mapped to an existing customer with the same name.
    pub matched: Vec<OrgMatch>,
    /// Will be created in the target (auto-create on).
    pub to_create: Vec<OrgCreate>,
    /// No customer and auto-create off: tickets go to the catch-all.
    pub unmatched: Vec<OrgRef>,
    /// On the excluded list: tickets go to the catch-all; never matched or created.
    pub excluded: Vec<OrgRef>,
    /// Mapped before; left as they are.
    pub already_mapped: Vec<OrgMapped>,
    /// Mapped to a customer the target no longer lists.
    pub stale: Vec<OrgMapped>,
    pub collisions: Vec<Collision>,
    pub counts: PlanCounts,
}

/// Plans an organization sync: existing mappings first (excluded, already mapped, stale), then a
/// name match against `customers` under `mode`. A name matching several customers, or several
/// organizations matching (or creating) one name, is a collision and left alone.
pub fn plan_orgs(
    orgs: &[UpstreamOrg],
    customers: &[Customer],
    mappings: &[OrgMapping],
    mode: MatchMode,
    auto_create: bool,
) -> OrgPlan {
    let ids: HashSet<&str> = customers.iter().map(|c| c.id.as_str()).collect();
    let mut by_key: HashMap<String, Vec<&Customer>> = HashMap::new();
    let mut by_loose: HashMap<String, Vec<&Customer>> = HashMap::new();
    for c in customers {
        if let Some(k) = mode.key(&c.name) {
            by_key.entry(k).or_default().push(c);
        }
        if let Some(k) = MatchMode::Normalized.key(&c.name) {
            by_loose.entry(k).or_default().push(c);
        }
    }
    let existing: HashMap<&str, &OrgMapping> = mappings.iter().map(|m| (m.org_id.as_str(), m)).collect();
    let mut plan = OrgPlan {
        mode,
        auto_create,
        matched: Vec::new(),
        to_create: Vec::new(),
        unmatched: Vec::new(),
        excluded: Vec::new(),
        already_mapped: Vec::new(),
        stale: Vec::new(),
        collisions: Vec::new(),
        counts: PlanCounts::default(),
    };
    // Tentative matches by customer id, and tentative creations by name key, in input order.
    let mut matches: BTreeMap<String, Vec<(usize, &Customer)>> = BTreeMap::new();
    let mut creates: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut order: Vec<(usize, Tentative)> = Vec::new();
    for (i, org) in orgs.iter().enumerate() {
        let r = OrgRef::from(org);
        match existing.get(org.id.as_str()) {
            Some(m) if m.excluded => {
                plan.excluded.push(r);
                continue;
            }
            Some(m) if m.customer_id.is_some() => {
                let customer_id = m.customer_id.clone().unwrap_or_default();
                let entry = OrgMapped { org: r, customer_name: m.customer_name.clone(), customer_id };
                if ids.contains(entry.customer_id.as_str()) {
                    plan.already_mapped.push(entry);
                } else {
                    plan.stale.push(entry);
                }
                continue;
            }
            _ => {}
        }
        let Some(key) = mode.key(&org.name) else {
            order.push((i, Tentative::Unmatched));
            continue;
        };
        match by_key.get(&key).map(Vec::as_slice) {
            Some([one]) => {
                matches.entry(one.id.clone()).or_default().push((i, one));
                order.push((i, Tentative::Match));
            }
            Some(many) if many.len() > 1 => plan.collisions.push(Collision {
                kind: CollisionKind::Customers,
                key,
                orgs: vec![r],
                customers: many.iter().map(|c| (*c).clone()).collect(),
            }),
            _ => {
                creates.entry(key).or_default().push(i);
                order.push((i, Tentative::Create));
            }
        }
    }
    // Several organizations on one customer, or one new name: report, do nothing.
    let mut colliding: HashSet<usize> = HashSet::new();
    for (customer_id, hits) in &matches {
        if hits.len() > 1 {
            colliding.extend(hits.iter().map(|(i, _)| *i));
            plan.collisions.push(Collision {
                kind: CollisionKind::Organizations,
                key: mode.key(&hits[0].1.name).unwrap_or_else(|| customer_id.clone()),
                orgs: hits.iter().map(|(i, _)| OrgRef::from(&orgs[*i])).collect(),
                customers: vec![hits[0].1.clone()],
            });
        }
    }
    if auto_create {
        for (key, hits) in &creates {
            if hits.len() > 1 {
                colliding.extend(hits.iter().copied());
                plan.collisions.push(Collision {
                    kind: CollisionKind::Organizations,
                    key: key.clone(),
                    orgs: hits.iter().map(|i| OrgRef::from(&orgs[*i])).collect(),
                    customers: Vec::new(),
                });
            }
        }
    }
    let customer_of: HashMap<usize, &Customer> = matches.values().flatten().map(|(i, c)| (*i, *c)).collect();
    for (i, t) in order {
        if colliding.contains(&i) {
            continue;
        }
        let org = &orgs[i];
        match t {
            Tentative::Match => {
                if let Some(c) = customer_of.get(&i) {
                    plan.matched.push(OrgMatch { org: org.into(), customer: (*c).clone() });
                }
            }
            Tentative::Create if auto_create => {
                let similar = MatchMode::Normalized
                    .key(&org.name)
                    .and_then(|k| by_loose.get(&k))
                    .map(|cs| cs.iter().map(|c| (*c).clone()).collect())
                    .unwrap_or_default();
                plan.to_create.push(OrgCreate { org: org.into(), similar });
            }
            Tentative::Create | Tentative::Unmatched => plan.unmatched.push(org.into()),
        }
    }
    plan.counts = PlanCounts {
        matched: plan.matched.len(),
        to_create: plan.to_create.len(),
        unmatched: plan.unmatched.len(),
        excluded: plan.excluded.len(),
        already_mapped: plan.already_mapped.len(),
        stale: plan.stale.len(),
        colliding: plan.collisions.iter().map(|c| c.orgs.len()).sum(),
    };
    plan
}

#[derive(Debug, Clone, Copy)]
enum Tentative {
    Match,
    Create,
    Unmatched,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use proptest::prelude::*;

    fn org(id: &str, name: &str) -> UpstreamOrg {
        UpstreamOrg { id: id.into(), name: name.into(), contact_name: None, contact_email: None, user_count: None }
    }

    fn cust(id: &str, name: &str) -> Customer {
        Customer { id: id.into(), name: name.into() }
    }

    fn mapping(org: &str, customer: Option<&str>, excluded: bool) -> OrgMapping {
        OrgMapping {
            connection: "c".into(),
            org_id: org.into(),
            org_name: None,
            customer_id: customer.map(str::to_string),
            customer_name: None,
            contact_id: None,
            contract_id: None,
            contract_service_id: None,
            excluded,
            updated_at: Utc::now(),
        }
    }

    fn ids(v: &[OrgRef]) -> Vec<&str> {
        v.iter().map(|o| o.id.as_str()).collect()
    }

    #[test]
    fn exact_and_normalized_matching() {
        let customers = [cust("1", "Acme Inc"), cust("2", "Globex"), cust("3", "Initech")];
        let orgs = [org("a", "Acme Inc"), org("b", "ACME, Inc."), org("g", "globex"), org("n", "Newco")];
        let exact = plan_orgs(&orgs[..], &customers, &[], MatchMode::Exact, true);
        assert_eq!(
            exact.matched.iter().map(|m| (m.org.id.as_str(), m.customer.id.as_str())).collect::<Vec<_>>(),
            [("a", "1")]
        );
        assert_eq!(exact.to_create.iter().map(|c| c.org.id.as_str()).collect::<Vec<_>>(), ["b", "g", "n"]);
        assert_eq!(exact.to_create[0].similar, vec![cust("1", "Acme Inc")], "a near miss is pointed out");
        assert!(exact.to_create[2].similar.is_empty());
        // Normalized: "Acme Inc" and "ACME, Inc." both want customer 1: ambiguous, left alone.
        let loose = plan_orgs(&orgs[..], &customers, &[], MatchMode::Normalized, true);
        assert_eq!(loose.matched.iter().map(|m| m.org.id.as_str()).collect::<Vec<_>>(), ["g"]);
        assert_eq!(loose.collisions.len(), 1);
        assert_eq!(loose.collisions[0].kind, CollisionKind::Organizations);
        assert_eq!(ids(&loose.collisions[0].orgs), ["a", "b"]);
        assert_eq!(loose.counts.colliding, 2);
        assert_eq!(loose.to_create.iter().map(|c| c.org.id.as_str()).collect::<Vec<_>>(), ["n"]);
    }

    #[test]
    fn two_customers_with_one_name_are_a_collision_never_a_guess() {
        let customers = [cust("1", "Twin Co"), cust("2", "Twin Co"), cust("3", "Solo")];
        let plan = plan_orgs(&[org("t", "Twin Co"), org("s", "Solo")], &customers, &[], MatchMode::Exact, true);
        assert_eq!(plan.collisions.len(), 1);
        let c = &plan.collisions[0];
        assert_eq!((c.kind, c.key.as_str()), (CollisionKind::Customers, "Twin Co"));
        assert_eq!(c.customers.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(plan.counts, PlanCounts { matched: 1, colliding: 1, ..Default::default() });
        assert!(plan.to_create.is_empty(), "a colliding name is not created either");
    }

    #[test]
    fn existing_mappings_win_and_auto_create_off_leaves_orgs_unmatched() {
        let customers = [cust("1", "Acme"), cust("2", "Globex")];
        let orgs =
            [org("a", "Acme"), org("x", "Excluded Co"), org("g", "Renamed Globex"), org("s", "Stale"), org("n", "New")];
        let mappings =
            [mapping("x", Some("1"), true), mapping("g", Some("2"), false), mapping("s", Some("999"), false)];
        let plan = plan_orgs(&orgs, &customers, &mappings, MatchMode::Exact, false);
        assert_eq!(ids(&plan.excluded), ["x"]);
        assert_eq!(plan.already_mapped.iter().map(|m| m.org.id.as_str()).collect::<Vec<_>>(), ["g"]);
        assert_eq!(plan.stale.iter().map(|m| m.org.id.as_str()).collect::<Vec<_>>(), ["s"]);
        assert_eq!(plan.matched.len(), 1);
        assert!(plan.to_create.is_empty());
        assert_eq!(ids(&plan.unmatched), ["n"]);
        // Duplicate new names are only a collision when they would be created.
        let dup = [org("p", "Same"), org("q", "Same")];
        assert_eq!(plan_orgs(&dup, &[], &[], MatchMode::Exact, false).counts.unmatched, 2);
        let p = plan_orgs(&dup, &[], &[], MatchMode::Exact, true);
        assert_eq!((p.counts.to_create, p.counts.colliding), (0, 2));
    }

    fn arb_name() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "Acme",
            "acme",
            "ACME, Inc",
            "Acme Inc",
            "Globex",
            "globex ",
            "Initech",
            "Umbrella",
            "Hooli",
            "!!",
        ])
        .prop_map(str::to_string)
    }

    proptest! {
        /// Every organization lands in exactly one list (collisions count their organizations).
        #[test]
        fn lists_partition_the_organizations(
            names in prop::collection::vec(arb_name(), 0..12),
            cnames in prop::collection::vec(arb_name(), 0..8),
            loose in any::<bool>(),
            auto in any::<bool>(),
        ) {
            let orgs: Vec<UpstreamOrg> = names.iter().enumerate().map(|(i, n)| org(&format!("o{i}"), n)).collect();
            let customers: Vec<Customer> = cnames.iter().enumerate().map(|(i, n)| cust(&format!("c{i}"), n)).collect();
            let mode = if loose { MatchMode::Normalized } else { MatchMode::Exact };
            let p = plan_orgs(&orgs, &customers, &[], mode, auto);
            let c = p.counts;
            prop_assert_eq!(c.matched + c.to_create + c.unmatched + c.excluded + c.already_mapped + c.stale + c.colliding, orgs.len());
            let mut seen: Vec<&str> = p.matched.iter().map(|m| m.org.id.as_str())
                .chain(p.to_create.iter().map(|m| m.org.id.as_str()))
                .chain(p.unmatched.iter().map(|m| m.id.as_str()))
                .chain(p.collisions.iter().flat_map(|c| c.orgs.iter().map(|o| o.id.as_str())))
                .collect();
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len(), orgs.len());
        }

        /// Applying a plan (mapping matches, creating customers) and planning again finds nothing
        /// left to match or create.
        #[test]
        fn replanning_after_apply_is_a_no_op(
            names in prop::collection::vec(arb_name(), 0..12),
            cnames in prop::collection::vec(arb_name(), 0..8),
            loose in any::<bool>(),
        ) {
            let orgs: Vec<UpstreamOrg> = names.iter().enumerate().map(|(i, n)| org(&format!("o{i}"), n)).collect();
            let mut customers: Vec<Customer> = cnames.iter().enumerate().map(|(i, n)| cust(&format!("c{i}"), n)).collect();
            let mode = if loose { MatchMode::Normalized } else { MatchMode::Exact };
            let p = plan_orgs(&orgs, &customers, &[], mode, true);
            let mut mappings: Vec<OrgMapping> = p.matched.iter().map(|m| mapping(&m.org.id, Some(&m.customer.id), false)).collect();
            for (i, c) in p.to_create.iter().enumerate() {
                let id = format!("new{i}");
                customers.push(cust(&id, &c.org.name));
                mappings.push(mapping(&c.org.id, Some(&id), false));
            }
            let again = plan_orgs(&orgs, &customers, &mappings, mode, true);
            prop_assert_eq!(again.counts.matched, 0);
            prop_assert_eq!(again.counts.to_create, 0);
            prop_assert_eq!(again.counts.already_mapped, p.counts.matched + p.counts.to_create);
        }
    }
}
