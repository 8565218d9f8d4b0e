fn run(input: Vec<u8>) -> p2pc_guest::Result {
    Ok(input.to_ascii_uppercase())
}
p2pc_guest::job!(run);

// The job function is plain Rust, so `cargo test` runs it natively.
#[cfg(test)]
mod tests {
    #[test]
    fn shouts_its_input() {
        let output = super::run(b"hello".to_vec()).expect("run succeeds");
        assert_eq!(output, b"HELLO");
    }
}
