//! A plain WASI command: it reads stdin, writes stdout and takes options
//! from its command line, with nothing but the Rust standard library. Any
//! language that targets WASI P2 can make a job like this one.
//!
//! It counts the lines, words and bytes of its input, like `wc`; `-l`, `-w`
//! and `-c` pick which counts to print.

use std::io::{self, Read, Write};
use std::process::ExitCode;

/// What to count, from the command line.
#[derive(Debug, PartialEq)]
struct Options {
    lines: bool,
    words: bool,
    bytes: bool,
}

fn options(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        lines: false,
        words: false,
        bytes: false,
    };
    for arg in args {
        match arg.as_str() {
            "-l" | "--lines" => o.lines = true,
            "-w" | "--words" => o.words = true,
            "-c" | "--bytes" => o.bytes = true,
            other => return Err(format!("unknown option {other:?} (expected -l, -w or -c)")),
        }
    }
    if !(o.lines || o.words || o.bytes) {
        o = Options {
            lines: true,
            words: true,
            bytes: true,
        };
    }
    Ok(o)
}

fn count(input: &[u8], o: &Options) -> String {
    let text = String::from_utf8_lossy(input);
    let mut fields = Vec::new();
    if o.lines {
        fields.push(input.iter().filter(|&&b| b == b'\n').count());
    }
    if o.words {
        fields.push(text.split_whitespace().count());
    }
    if o.bytes {
        fields.push(input.len());
    }
    let fields: Vec<String> = fields.iter().map(usize::to_string).collect();
    fields.join(" ") + "\n"
}

fn main() -> ExitCode {
    let o = match options(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut input = Vec::new();
    if let Err(e) = io::stdin().read_to_end(&mut input) {
        eprintln!("error: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    match io::stdout().write_all(count(&input, &o).as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Result<Options, String> {
        options(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn counts_what_the_options_ask_for() {
        let input = b"one two\nthree\n";
        assert_eq!(count(input, &opts(&[]).expect("no options")), "2 3 14\n");
        assert_eq!(count(input, &opts(&["-l"]).expect("-l")), "2\n");
        assert_eq!(count(input, &opts(&["-w", "-c"]).expect("-w -c")), "3 14\n");
        assert!(opts(&["--nope"]).is_err());
    }
}
