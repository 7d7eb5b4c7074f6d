//! Name keys for matching organizations to customers.

use serde::{Deserialize, Serialize};

/// How names are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchMode {
    /// Identical names only.
    #[default]
    Exact,
    /// Ignoring case, whitespace and punctuation ("ACME, Inc." = "Acme Inc").
    Normalized,
}

impl MatchMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "exact" => Some(Self::Exact),
            "normalized" | "normalised" | "loose" => Some(Self::Normalized),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Normalized => "normalized",
        }
    }

    /// The comparison key of `name`; `None` when the name has nothing to compare (empty, or
    /// only punctuation in normalized mode), which never matches.
    pub fn key(self, name: &str) -> Option<String> {
        let k = match self {
            Self::Exact => name.to_string(),
            Self::Normalized => normalize(name),
        };
        (!k.trim().is_empty()).then_some(k)
    }
}

/// Lower-cased letters and digits of `name`; everything else (whitespace, punctuation,
/// symbols) is dropped.
pub fn normalize(name: &str) -> String {
    name.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalized_ignores_case_whitespace_and_punctuation() {
        assert_eq!(normalize("ACME, Inc."), "acmeinc");
        assert_eq!(normalize("  Acme   Inc "), "acmeinc");
        assert_eq!(normalize("Acme-Inc"), "acmeinc");
        assert_eq!(normalize("Ünïcode GmbH & Co."), "ünïcodegmbhco");
        assert_ne!(normalize("Acme 1"), normalize("Acme 2"));
        assert_eq!(MatchMode::Normalized.key("!!! "), None);
        assert_eq!(MatchMode::Exact.key("Acme"), Some("Acme".into()));
        assert_eq!(MatchMode::Exact.key("  "), None);
        assert_eq!(MatchMode::parse("Normalized"), Some(MatchMode::Normalized));
        assert_eq!(MatchMode::parse("fuzzy"), None);
    }

    proptest! {
        #[test]
        fn normalize_is_idempotent(s in "\\PC{0,40}") {
            prop_assert_eq!(normalize(&normalize(&s)), normalize(&s));
        }

        #[test]
        fn case_and_punctuation_do_not_change_the_key(s in "[a-zA-Z0-9 ]{1,20}") {
            let shouted = s.to_uppercase();
            let punctuated = format!("{}.,", s.replace(' ', " - "));
            prop_assert_eq!(normalize(&s), normalize(&shouted));
            prop_assert_eq!(normalize(&s), normalize(&punctuated));
        }
    }
}
