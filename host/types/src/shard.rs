/// Splits `input` into at most `n` shards of roughly equal size, cutting
/// only after a newline so no line is split across shards. Concatenating the
/// shards gives back the input. Empty input gives one empty shard, so a
/// map/reduce job always sees at least one `map` call.
pub fn split_at_lines(input: &[u8], n: usize) -> Vec<&[u8]> {
    let n = n.max(1);
    if input.is_empty() {
        return vec![input];
    }
    let target = input.len().div_ceil(n);
    let mut shards = Vec::with_capacity(n);
    let mut start = 0;
    while start < input.len() {
        let want = (start + target).min(input.len());
        let end = if want == input.len() {
            want
        } else {
            match input[want..].iter().position(|&b| b == b'\n') {
                Some(i) => want + i + 1,
                None => input.len(),
            }
        };
        shards.push(&input[start..end]);
        start = end;
    }
    shards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_concatenate_to_the_input_and_respect_lines() {
        let input = b"alpha beta\ngamma\ndelta epsilon zeta\neta\ntheta\n";
        for n in 1..8 {
            let shards = split_at_lines(input, n);
            assert!(shards.len() <= n, "{n}");
            assert_eq!(shards.concat(), input.to_vec());
            for s in &shards[..shards.len() - 1] {
                assert_eq!(s.last(), Some(&b'\n'));
            }
        }
        assert_eq!(split_at_lines(b"", 3), vec![&b""[..]]);
        assert_eq!(split_at_lines(b"no newline at all", 3).len(), 1);
    }
}
