//! Fault injection for the crash-safety tests: the process dies, or a write fails, at a named
//! point of the checkpoint and output protocol, so tests can check that every instant leaves
//! a run that `--resume` continues.
//!
//! Set `VAE_FAULT_ABORT_AT=<point>[#<n>]` to abort the process (as a SIGKILL would) when it reaches
//! `<point>` (its n-th time), and `VAE_FAULT_WRITE_ERROR=<file name>[#<n>]` to make writing that file (its n-th time) fail with the
//! operating system's "No space left on device". Unset (always, outside tests), each check is
//! one environment lookup per checkpoint, nothing per training step.

/// Whether `VAE_FAULT_ABORT_AT` names `point` now: `<point>` fires the first time the point
/// is reached, `<point>#<n>` the n-th time.
pub(crate) fn armed(point: &str) -> bool {
    fires("VAE_FAULT_ABORT_AT", point)
}

/// Whether environment variable `var` names `point` (`<point>` or `<point>#<n>`) and this is
/// the time it fires; each point's visits are counted per variable.
fn fires(var: &str, point: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static REACHED: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);
    let Some(target) = std::env::var_os(var) else {
        return false;
    };
    let target = target.to_string_lossy();
    let (name, nth) = match target.split_once('#') {
        Some((name, n)) => (name, n.parse().unwrap_or(1)),
        None => (&*target, 1),
    };
    if name != point {
        return false;
    }
    let mut reached = REACHED.lock().unwrap_or_else(|p| p.into_inner());
    let count = reached
        .get_or_insert_with(HashMap::new)
        .entry(format!("{var}={point}"))
        .or_insert(0);
    *count += 1;
    *count == nth
}

/// Aborts the process if `VAE_FAULT_ABORT_AT` names `point` (see [`armed`]).
pub(crate) fn point(point: &str) {
    if armed(point) {
        eprintln!("fault injection: aborting at {point}");
        std::process::abort();
    }
}

/// "No space left on device" if `VAE_FAULT_WRITE_ERROR` names the file `path` is written to:
/// `<file name>` every time, `<file name>#<n>` its n-th write only.
pub(crate) fn injected_write_error(path: &std::path::Path) -> std::io::Result<()> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(());
    };
    let every = std::env::var_os("VAE_FAULT_WRITE_ERROR").is_some_and(|t| t == name.as_str());
    if every || fires("VAE_FAULT_WRITE_ERROR", &name) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "No space left on device (injected)",
        ));
    }
    Ok(())
}
