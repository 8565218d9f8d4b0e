//! wordcount: counts words with the map/reduce world (`p2pc:job/map-reduce`).
//!
//! Shows: `map` runs once per shard of the input (in parallel, and in a
//! network on different workers); `reduce` merges the shard results. Words
//! are runs of letters, digits and apostrophes, compared case-insensitively.
//!
//! Run it (p2pctl splits the input at line boundaries into `--shards` parts):
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p wordcount
//! p2pctl run target/wasm32-wasip2/release/wordcount.wasm --input book.txt --shards 4
//! ```
//!
//! Output: one `count<TAB>word` line per word, most frequent first, ties in
//! alphabetical order.

use std::collections::BTreeMap;

use p2pc_guest::JobError;

/// Counts the words of one shard; the output is `word<TAB>count` lines.
fn map(shard: Vec<u8>) -> p2pc_guest::Result {
    let text = std::str::from_utf8(&shard)?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for word in text
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
    {
        *counts.entry(word.to_lowercase()).or_default() += 1;
    }
    let mut out = String::new();
    for (word, n) in &counts {
        out.push_str(word);
        out.push('\t');
        out.push_str(&n.to_string());
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// Adds up the shards' counts and sorts by frequency.
fn reduce(outputs: Vec<Vec<u8>>) -> p2pc_guest::Result {
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for (i, output) in outputs.iter().enumerate() {
        p2pc_guest::progress(i as u64, outputs.len() as u64);
        for line in std::str::from_utf8(output)?.lines() {
            let (word, n) = line.split_once('\t').ok_or_else(|| {
                JobError::invalid_input(format!("map output line without a tab: {line:?}"))
            })?;
            let n: u64 = n
                .parse()
                .map_err(|_| JobError::invalid_input(format!("bad count in {line:?}")))?;
            *totals.entry(word.to_owned()).or_default() += n;
        }
    }
    let mut ranked: Vec<(String, u64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut out = String::new();
    for (word, n) in ranked {
        out.push_str(&format!("{n}\t{word}\n"));
    }
    p2pc_guest::log::info(format!("merged {} shard outputs", outputs.len()));
    Ok(out.into_bytes())
}

p2pc_guest::map_reduce!(map, reduce);
