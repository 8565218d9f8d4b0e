/// Most arguments a task may pass to its program (after `argv[0]`).
pub const MAX_ARGS: usize = 256;
/// Most bytes all of a task's arguments may hold together.
pub const MAX_ARG_BYTES: usize = 64 * 1024;

/// Why a task's arguments are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArgsError {
    /// More than [`MAX_ARGS`] arguments.
    #[error("{0} arguments is more than the {MAX_ARGS} a task may have")]
    TooMany(usize),
    /// More than [`MAX_ARG_BYTES`] in all.
    #[error("the arguments hold {0} bytes, more than the {MAX_ARG_BYTES} a task may have")]
    TooLong(usize),
    /// An argument holds a NUL byte, which no program's argv can carry.
    #[error("argument {0} contains a NUL byte")]
    Nul(usize),
}

/// Checks a task's command-line arguments against the bounds every runner
/// applies, so a submitter learns before sending what a worker would refuse.
pub fn check_args<S: AsRef<str>>(args: &[S]) -> Result<(), ArgsError> {
    if args.len() > MAX_ARGS {
        return Err(ArgsError::TooMany(args.len()));
    }
    let mut total = 0usize;
    for (i, a) in args.iter().enumerate() {
        let a = a.as_ref();
        if a.contains('\0') {
            return Err(ArgsError::Nul(i + 1));
        }
        total = total.saturating_add(a.len());
    }
    if total > MAX_ARG_BYTES {
        return Err(ArgsError::TooLong(total));
    }
    Ok(())
}

/// A program's arguments after `argv[0]`: its own (a bundle's `args`),
/// then a task's, checked with [`check_args`] as one list.
pub fn argv(own: &[String], task: &[String]) -> Result<Vec<String>, ArgsError> {
    let all: Vec<String> = own.iter().chain(task).cloned().collect();
    check_args(&all)?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_count_size_and_nul() {
        assert_eq!(check_args::<&str>(&[]), Ok(()));
        assert_eq!(check_args(&["-T", "--flag=1"]), Ok(()));
        let many = vec!["x"; MAX_ARGS + 1];
        assert_eq!(check_args(&many), Err(ArgsError::TooMany(MAX_ARGS + 1)));
        assert_eq!(check_args(&many[..MAX_ARGS]), Ok(()));
        let long = "y".repeat(MAX_ARG_BYTES + 1);
        assert_eq!(
            check_args(&[long.as_str()]),
            Err(ArgsError::TooLong(MAX_ARG_BYTES + 1))
        );
        assert_eq!(check_args(&["a", "b\0c"]), Err(ArgsError::Nul(2)));
        let own = vec!["-T".to_owned()];
        assert_eq!(
            argv(&own, &["-F".to_owned()]),
            Ok(vec!["-T".into(), "-F".into()])
        );
        let half = vec!["z".to_owned(); MAX_ARGS / 2 + 1];
        assert_eq!(argv(&half, &half), Err(ArgsError::TooMany(MAX_ARGS + 2)));
    }
}
