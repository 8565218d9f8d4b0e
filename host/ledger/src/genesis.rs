//! The genesis file: a network's founding facts, in TOML.
//!
//! ```toml
//! network = "p2pc-demo"            # a name; part of the network id
//! challenge_window_ms = 600000     # shortest dispute window a hold may carry
//! issuers = ["<hex public key>"]   # keys that may mint
//!
//! [arbiters]
//! policy = "any"                   # or "listed", with keys = [...]
//!
//! [[mint]]                         # credits that exist from the start
//! to = "<hex public key>"
//! amount = 1000
//! ```
//!
//! Every replica of a network must hold the same file; the id printed by
//! `p2pctl ledger genesis` names it, and every op carries that id.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use p2pc_crypto::PublicKey;
use serde::{Deserialize, Serialize};

use crate::state::{ArbiterPolicy, Genesis};

/// A genesis file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// It could not be read.
    #[error("cannot read genesis file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid TOML of the expected shape.
    #[error("genesis file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    network: String,
    #[serde(default)]
    challenge_window_ms: u64,
    #[serde(default)]
    issuers: Vec<PublicKey>,
    #[serde(default)]
    arbiters: Arbiters,
    #[serde(default)]
    mint: Vec<Mint>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Arbiters {
    policy: Policy,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    keys: Vec<PublicKey>,
}

#[derive(Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Policy {
    #[default]
    Any,
    Listed,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mint {
    to: PublicKey,
    amount: u64,
}

impl Genesis {
    /// Parses a genesis file's text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, GenesisError> {
        let bad = |message: String| GenesisError::Parse {
            path: origin.to_owned(),
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| bad(e.message().to_owned()))?;
        if file.network.trim().is_empty() {
            return Err(bad("`network` must name the network".into()));
        }
        let arbiters = match file.arbiters.policy {
            Policy::Any if file.arbiters.keys.is_empty() => ArbiterPolicy::Any,
            Policy::Any => {
                return Err(bad(
                    "[arbiters] keys are given but policy is \"any\"; use policy = \"listed\""
                        .into(),
                ));
            }
            Policy::Listed if file.arbiters.keys.is_empty() => {
                return Err(bad(
                    "[arbiters] policy \"listed\" needs at least one key".into()
                ));
            }
            Policy::Listed => ArbiterPolicy::Listed(file.arbiters.keys.into_iter().collect()),
        };
        let mut allocations: BTreeMap<PublicKey, u64> = BTreeMap::new();
        let mut total: u64 = 0;
        for m in file.mint {
            if m.amount == 0 {
                return Err(bad(format!("[[mint]] to {} has amount 0", m.to)));
            }
            total = total
                .checked_add(m.amount)
                .ok_or_else(|| bad("[[mint]] amounts add up to more than 2^64-1".into()))?;
            *allocations.entry(m.to).or_default() += m.amount;
        }
        Ok(Genesis {
            network: file.network,
            issuers: file.issuers.into_iter().collect::<BTreeSet<_>>(),
            allocations,
            min_window_ms: file.challenge_window_ms,
            arbiters,
        })
    }

    /// Reads and parses a genesis file.
    pub fn load(path: &Path) -> Result<Self, GenesisError> {
        let text = std::fs::read_to_string(path).map_err(|source| GenesisError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The genesis as a file [`from_toml`](Self::from_toml) reads back
    /// to an equal genesis.
    pub fn to_toml(&self) -> String {
        let (policy, keys) = match &self.arbiters {
            ArbiterPolicy::Any => (Policy::Any, Vec::new()),
            ArbiterPolicy::Listed(k) => (Policy::Listed, k.iter().copied().collect()),
        };
        let file = File {
            network: self.network.clone(),
            challenge_window_ms: self.min_window_ms,
            issuers: self.issuers.iter().copied().collect(),
            arbiters: Arbiters { policy, keys },
            mint: self
                .allocations
                .iter()
                .map(|(to, amount)| Mint {
                    to: *to,
                    amount: *amount,
                })
                .collect(),
        };
        toml::to_string(&file).expect("a genesis always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pc_crypto::SecretKey;

    #[test]
    fn round_trips_and_refuses_bad_files() {
        let a = SecretKey::from_seed(&[1; 32]).public();
        let b = SecretKey::from_seed(&[2; 32]).public();
        let g = Genesis {
            network: "t".into(),
            issuers: [a].into(),
            allocations: [(b, 7)].into(),
            min_window_ms: 5,
            arbiters: ArbiterPolicy::Listed([a].into()),
        };
        let text = g.to_toml();
        assert_eq!(Genesis::from_toml(&text, "x").expect("round trip"), g);

        for (bad, says) in [
            ("network = \"\"", "must name"),
            ("network = \"n\"\nissuers = [\"zz\"]", "zz"),
            ("network = \"n\"\nfee = 1", "unknown field"),
            (
                "network = \"n\"\n[arbiters]\npolicy = \"listed\"",
                "at least one key",
            ),
            (
                "network = \"n\"\n[[mint]]\nto = \"0101010101010101010101010101010101010101010101010101010101010101\"\namount = 0",
                "amount 0",
            ),
        ] {
            let err = Genesis::from_toml(bad, "g.toml")
                .expect_err("refused")
                .to_string();
            assert!(err.contains(says) && err.contains("g.toml"), "{bad}: {err}");
        }
    }
}
