//! Knobs and randomness shared by the torture tests (`tests/tests/torture_*.rs`): sizes and
//! durations from `TORTURE_*` variables, `TORTURE_LONG=1` for the long variants, and a seeded
//! generator whose seed the tests print so that `TORTURE_SEED` replays a run.

/// A numeric knob from the environment: `None` when unset or not a number.
pub fn env_num(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

/// Whether `TORTURE_LONG=1` asks for the long variant.
pub fn long() -> bool {
    std::env::var_os("TORTURE_LONG").is_some_and(|v| v == "1")
}

/// `TORTURE_SEED`, or one derived from the pid (never 0, which xorshift cannot leave).
pub fn seed() -> u64 {
    env_num("TORTURE_SEED").unwrap_or(u64::from(std::process::id()) | 1)
}

/// xorshift64*: small, seeded, reproducible; not for anything but picking test steps.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
