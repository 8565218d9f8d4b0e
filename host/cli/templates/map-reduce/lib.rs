//! Counts the words of its input with the `map-reduce` world: `map` runs
//! once per shard (in parallel, and in a network on different workers), and
//! `reduce` adds up what the maps returned.

/// Counts the words of one shard; the output is the count in decimal.
fn map(shard: Vec<u8>) -> p2pc_guest::Result {
    let text = std::str::from_utf8(&shard)?;
    Ok(text.split_whitespace().count().to_string().into_bytes())
}

/// Adds the shards' counts.
fn reduce(outputs: Vec<Vec<u8>>) -> p2pc_guest::Result {
    let mut total: u64 = 0;
    for output in outputs {
        let n: u64 = std::str::from_utf8(&output)?
            .parse()
            .map_err(p2pc_guest::JobError::failed)?;
        total = total
            .checked_add(n)
            .ok_or_else(|| p2pc_guest::JobError::failed("count overflows"))?;
    }
    Ok(format!("{total}\n").into_bytes())
}

p2pc_guest::map_reduce!(map, reduce);

// Both functions are plain Rust, so `cargo test` runs them natively.
#[cfg(test)]
mod tests {
    #[test]
    fn counts_words_across_shards() {
        let maps: Vec<Vec<u8>> = ["the quick brown fox\n", "jumps over\nthe lazy dog\n"]
            .into_iter()
            .map(|shard| super::map(shard.as_bytes().to_vec()).expect("map succeeds"))
            .collect();
        assert_eq!(maps, [b"4".to_vec(), b"5".to_vec()]);
        assert_eq!(super::reduce(maps).expect("reduce succeeds"), b"9\n");
    }
}
