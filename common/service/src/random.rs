//! Random bytes from the operating system (getrandom(2), which waits until the kernel's pool is
//! seeded): pre-shared keys and the transport's per-start session salts.

/// The OS random source failed (no getrandom(2) and no /dev/urandom: the system is broken).
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct RandomError(String);

/// `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| RandomError(e.to_string()))?;
    Ok(out)
}
