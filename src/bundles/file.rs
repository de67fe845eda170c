//! `TALLY_BUNDLES_FILE`: bundles kept in a TOML file and upserted at start-up.
//!
//! Each `[[bundles]]` entry matches the bundle with the same `stripe_price_id` (created when
//! there is none, updated otherwise). Stripe prices cannot change amount, so a new price means a
//! new entry; set `active = false` on the old one to archive it. Bundles missing from the file
//! are left alone. Every entry is checked before any is written.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use super::{BundleFields, Catalog};
use crate::error::Error;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundlesFile {
    #[serde(default)]
    bundles: Vec<FileBundle>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBundle {
    name: String,
    credits: i64,
    /// Absent: the credits never expire.
    validity_days: Option<i64>,
    price_amount: i64,
    currency: String,
    stripe_price_id: String,
    #[serde(default = "active_by_default")]
    active: bool,
}

fn active_by_default() -> bool {
    true
}

/// What loading the file did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    pub created: usize,
    pub updated: usize,
}

/// Parses and checks the file's bundles; the error says which entry and field is wrong.
pub fn parse(text: &str) -> Result<Vec<BundleFields>, String> {
    let file: BundlesFile = toml::from_str(text).map_err(|error| error.to_string())?;
    let mut prices = HashSet::new();
    file.bundles
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let fields = BundleFields {
                name: entry.name,
                credits: entry.credits,
                validity_days: entry.validity_days,
                price_amount: entry.price_amount,
                currency: entry.currency,
                stripe_price_id: entry.stripe_price_id,
                active: entry.active,
            }
            .validate()
            .map_err(|error| format!("bundles[{index}]: {}", error.detail()))?;
            if !prices.insert(fields.stripe_price_id.clone()) {
                return Err(format!(
                    "bundles[{index}]: stripe_price_id {} appears twice",
                    fields.stripe_price_id
                ));
            }
            Ok(fields)
        })
        .collect()
}

/// Reads `path` and upserts its bundles. Errors name the file and the entry.
pub async fn load(catalog: &Catalog, path: &Path) -> anyhow::Result<Loaded> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
    let bundles =
        parse(&text).map_err(|problem| anyhow::anyhow!("{}: {problem}", path.display()))?;
    let mut loaded = Loaded::default();
    for fields in bundles {
        let (_, created) = catalog
            .upsert_by_price(fields)
            .await
            .map_err(|error: Error| anyhow::anyhow!("{}: {}", path.display(), error.detail()))?;
        if created {
            loaded.created += 1;
        } else {
            loaded.updated += 1;
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../../bundles.example.toml");
        let bundles = parse(text).unwrap();
        let summary: Vec<(i64, i64, Option<i64>)> = bundles
            .iter()
            .map(|b| (b.credits, b.price_amount, b.validity_days))
            .collect();
        assert_eq!(
            summary,
            vec![
                (100, 999, Some(365)),
                (500, 1499, Some(365)),
                (1000, 1999, Some(365))
            ]
        );
        assert!(bundles.iter().all(|b| b.currency == "usd" && b.active));
    }

    #[test]
    fn mistakes_name_the_entry() {
        let error = parse(
            "[[bundles]]\nname = \"A\"\ncredits = 0\nprice_amount = 1\ncurrency = \"usd\"\n\
             stripe_price_id = \"price_a\"\n",
        )
        .unwrap_err();
        assert!(error.starts_with("bundles[0]: credits"), "{error}");
        let error = parse("[[bundles]]\nname = \"A\"\ncredit = 5\n").unwrap_err();
        assert!(error.contains("credit"), "{error}");
        let twice = "[[bundles]]\nname = \"A\"\ncredits = 1\nprice_amount = 1\ncurrency = \"usd\"\n\
                     stripe_price_id = \"price_a\"\n";
        let error = parse(&format!("{twice}{twice}")).unwrap_err();
        assert!(error.contains("appears twice"), "{error}");
    }
}
