//! Memory estimates checked before allocating, so a setting that cannot fit (a huge batch,
//! `sample --n 10^9`) is a clear refusal instead of an allocator abort.

use crate::error::TrainError;

/// Bytes the operating system reports as available to this process: Linux's
/// `MemAvailable`, lowered to the cgroup (container) limit when one is set. `None` where
/// that cannot be read; the checks then pass.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available = meminfo.lines().find_map(|line| {
        let kib = line
            .strip_prefix("MemAvailable:")?
            .trim()
            .strip_suffix("kB")?;
        kib.trim().parse::<u64>().ok().map(|k| k * 1024)
    })?;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    Some(cgroup.map_or(available, |limit| limit.min(available)))
}

/// Refuses `what` when its estimated `bytes` exceed the available memory; `advice` says
/// which setting lowers it.
pub(crate) fn check(what: &str, bytes: u128, advice: &str) -> Result<(), TrainError> {
    match available_memory() {
        Some(available) if bytes > u128::from(available) => Err(TrainError::Memory {
            what: what.to_string(),
            needed: bytes,
            available,
            advice: advice.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Estimated peak bytes of one training step: parameters, gradients and Adam's two moments
/// (4 × 4 bytes per parameter), and activations, bounded by 128 bytes per value of the
/// decoder's output (`examples × latent_samples × data_dim`; an MLP keeps about ten
/// such f32 tensors for the backward pass, a conv net a few times more).
pub(crate) fn training_step_bytes(
    params: usize,
    examples: usize,
    latent_samples: usize,
    data_dim: usize,
) -> u128 {
    16 * params as u128 + 128 * examples as u128 * latent_samples as u128 * data_dim as u128
}

/// Estimated bytes to decode `n` samples of `data_dim` values (decoder activations and the
/// host copy) and draw them.
pub(crate) fn sampling_bytes(n: usize, data_dim: usize) -> u128 {
    64 * n as u128 * data_dim.max(1) as u128
}

/// Bytes for people: "12.3 GiB".
pub(crate) fn human(bytes: u128) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_grow_with_what_is_asked_and_refuse_the_impossible() {
        assert!(training_step_bytes(1000, 128, 1, 784) < training_step_bytes(1000, 128, 2, 784));
        assert_eq!(human(1536), "1.5 KiB");
        if let Some(available) = available_memory() {
            assert!(available > 0);
            let err = check("a test", u128::from(available) * 2, "ask for less").unwrap_err();
            assert!(err.to_string().contains("ask for less"), "{err}");
            check("a test", 1024, "").expect("a kilobyte fits");
        }
    }
}
