//! The [`DynamicPricingEngine`]: a worker's price, moved by its load and
//! the demand it cannot serve.
//!
//! The rule, once per window:
//!
//! 1. **Pressure** of the window's sample: `(busy + waiting + refused) /
//!    slots`, in thousandths, capped at 2000. Busy slots are supply in
//!    use; tasks waiting for a slot and tasks refused for lack of one are
//!    demand not served.
//! 2. **Smoothed** by an exponential moving average (half old, half new by
//!    default), so one burst does not swing the price.
//! 3. **Target**: the base price at the target pressure (half the slots
//!    busy, as EIP-1559 targets half-full blocks), half of it when idle,
//!    rising linearly to twice it with every slot busy and four times it
//!    when as much again waits; clamped to `[min, max]`.
//! 4. **Step**: the price moves towards the target by at most 12.5 % of
//!    itself per window, and never past it.
//!
//! Why a target rather than EIP-1559's pure integrator (`price × (1 + ⅛ ×
//! (load − target) / target)` each block): a blockchain's fee controls the
//! demand it measures, because every block is full or not for everyone.
//! One worker among many does not: its load depends on what the others
//! charge, so an integrator winds up to a bound and stays there while the
//! load sits a little off target. A target price is a function of the
//! current (smoothed) load, so under a constant load the price settles
//! at one value, returns to the base when the worker is idle again, and
//! does not fall when load rises. The bounded step keeps EIP-1559's
//! property that a price cannot be moved far in one window by a burst,
//! and approaching the target without overshooting it means no
//! oscillation.
//!
//! Prices are credits per million fuel, whole numbers on the wire; the
//! engine keeps millionths so a price of 2 can move by 12.5 %.

use std::fmt;

/// Millionths of a credit per million fuel.
const MICRO: u128 = 1_000_000;

/// What an operator sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PricingConfig {
    /// The price at the target pressure (`[market] base_price`).
    pub base: u64,
    /// Never below (`[market] min_price`).
    pub min: u64,
    /// Never above (`[market] max_price`).
    pub max: u64,
    /// The target pressure, thousandths (500: half the slots busy).
    pub target_permille: u32,
    /// The most the price moves per window, thousandths of itself (125).
    pub max_step_permille: u32,
    /// The weight of a new sample in the moving average, thousandths
    /// (500: half old, half new).
    pub smoothing_permille: u32,
}

impl PricingConfig {
    /// A base price with the default bounds: never below the base (an
    /// idle worker asks what its operator set), at most four times it.
    pub fn with_base(base: u64) -> Self {
        Self {
            base,
            min: base,
            max: base.saturating_mul(4),
            target_permille: 500,
            max_step_permille: 125,
            smoothing_permille: 500,
        }
    }
}

/// A configuration that cannot price.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricingError(pub String);

impl fmt::Display for PricingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PricingError {}

/// What a worker saw over one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Slots in all.
    pub slots: u32,
    /// Slots busy (at the window's end, or averaged over it).
    pub busy: u32,
    /// Tasks waiting for a slot.
    pub waiting: u32,
    /// Tasks refused for lack of a slot during the window.
    pub refused: u32,
}

impl Sample {
    /// The sample's pressure, thousandths, capped at 2000.
    pub fn pressure_permille(&self) -> u32 {
        let demand = u64::from(self.busy) + u64::from(self.waiting) + u64::from(self.refused);
        let p = demand * 1000 / u64::from(self.slots.max(1));
        p.min(2000) as u32
    }
}

/// A worker's price over time. Deterministic: the same samples give the
/// same prices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicPricingEngine {
    config: PricingConfig,
    price_micro: u128,
    pressure: u32,
    windows: u64,
}

/// The inputs that set the price now, for `p2pctl market price`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inputs {
    /// The price now, credits per million fuel.
    pub price: u64,
    /// Where it is heading.
    pub target: u64,
    /// The smoothed pressure, thousandths.
    pub pressure_permille: u32,
    /// Windows seen.
    pub windows: u64,
    /// The configuration.
    pub config: PricingConfig,
}

impl DynamicPricingEngine {
    /// An engine starting at the base price. The bounds must hold the base;
    /// a paid worker's bounds are at least 1 (a price of 0 runs unpaid).
    pub fn new(config: PricingConfig) -> Result<Self, PricingError> {
        if config.min > config.base || config.base > config.max {
            return Err(PricingError(format!(
                "the price bounds must hold the base price: min_price {} ≤ base_price {} ≤ max_price {}",
                config.min, config.base, config.max
            )));
        }
        if config.base > 0 && config.min == 0 {
            return Err(PricingError(
                "min_price must be at least 1 when base_price is set: a price of 0 runs tasks unpaid"
                    .into(),
            ));
        }
        if config.target_permille == 0 || config.target_permille >= 2000 {
            return Err(PricingError(
                "the target pressure must be between 0 and 2000 thousandths".into(),
            ));
        }
        if config.max_step_permille == 0 || config.max_step_permille > 1000 {
            return Err(PricingError(
                "the largest step must be between 1 and 1000 thousandths".into(),
            ));
        }
        if config.smoothing_permille == 0 || config.smoothing_permille > 1000 {
            return Err(PricingError(
                "the smoothing weight must be between 1 and 1000 thousandths".into(),
            ));
        }
        Ok(Self {
            config,
            price_micro: u128::from(config.base) * MICRO,
            pressure: config.target_permille,
            windows: 0,
        })
    }

    /// The price now, credits per million fuel, rounded to the nearest and
    /// within the bounds.
    pub fn price(&self) -> u64 {
        let whole = (self.price_micro + MICRO / 2) / MICRO;
        (u64::try_from(whole).unwrap_or(u64::MAX)).clamp(self.config.min, self.config.max)
    }

    /// The smoothed pressure, thousandths.
    pub fn pressure_permille(&self) -> u32 {
        self.pressure
    }

    /// What sets the price now.
    pub fn inputs(&self) -> Inputs {
        Inputs {
            price: self.price(),
            target: u64::try_from(self.target_micro() / MICRO).unwrap_or(u64::MAX),
            pressure_permille: self.pressure,
            windows: self.windows,
            config: self.config,
        }
    }

    /// The price the smoothed pressure points at, in millionths.
    fn target_micro(&self) -> u128 {
        let c = &self.config;
        let base = u128::from(c.base) * MICRO;
        let t = u128::from(c.target_permille);
        let p = u128::from(self.pressure);
        // Below the target: from half the base (idle) to the base.
        // Above: the base, plus the base for every `t` of excess.
        let target = if p <= t {
            base / 2 + base * p / (2 * t)
        } else {
            base + base * (p - t) / t
        };
        target.clamp(u128::from(c.min) * MICRO, u128::from(c.max) * MICRO)
    }

    /// Ends a window with what it saw; returns the new price.
    pub fn step(&mut self, sample: Sample) -> u64 {
        let c = self.config;
        let w = u64::from(c.smoothing_permille);
        let now = u64::from(sample.pressure_permille());
        let old = u64::from(self.pressure);
        // Rounded half up, so a constant sample is a fixed point.
        self.pressure = ((old * (1000 - w) + now * w + 500) / 1000) as u32;
        self.windows = self.windows.saturating_add(1);
        let target = self.target_micro();
        let most = (self.price_micro * u128::from(c.max_step_permille) / 1000).max(1);
        self.price_micro = if target > self.price_micro {
            self.price_micro + (target - self.price_micro).min(most)
        } else {
            self.price_micro - (self.price_micro - target).min(most)
        };
        self.price()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(slots: u32, busy: u32, waiting: u32) -> Sample {
        Sample {
            slots,
            busy,
            waiting,
            refused: 0,
        }
    }

    #[test]
    fn rises_when_saturated_and_returns_to_base_when_idle() {
        let mut e = DynamicPricingEngine::new(PricingConfig::with_base(100)).expect("present");
        assert_eq!(e.price(), 100);
        let mut last = 100;
        for _ in 0..40 {
            let p = e.step(sample(4, 4, 4));
            assert!(p >= last, "the price does not fall while saturated");
            // At most 12.5 % a window (plus rounding of one).
            assert!(p <= last + last / 8 + 1);
            last = p;
        }
        assert_eq!(last, 400, "saturated: the ceiling, four times the base");
        for _ in 0..60 {
            e.step(sample(4, 0, 0));
        }
        assert_eq!(e.price(), 100, "idle: back to the base (the default floor)");
    }

    #[test]
    fn small_prices_still_move() {
        let mut e = DynamicPricingEngine::new(PricingConfig::with_base(2)).expect("present");
        for _ in 0..20 {
            e.step(sample(1, 1, 1));
        }
        assert!(e.price() > 2, "price {}", e.price());
    }

    #[test]
    fn bad_bounds_are_named() {
        let mut c = PricingConfig::with_base(10);
        c.min = 11;
        assert!(
            DynamicPricingEngine::new(c)
                .expect_err("refused")
                .0
                .contains("min_price 11")
        );
        let mut c = PricingConfig::with_base(10);
        c.min = 0;
        assert!(
            DynamicPricingEngine::new(c)
                .expect_err("refused")
                .0
                .contains("unpaid")
        );
        // Unpaid stays unpaid whatever the load.
        let mut e = DynamicPricingEngine::new(PricingConfig::with_base(0)).expect("present");
        assert_eq!(e.step(sample(1, 1, 10)), 0);
    }

    fn config() -> impl Strategy<Value = PricingConfig> {
        (
            1u64..1_000_000,
            0u64..4,
            1u64..8,
            1u32..1999,
            50u32..=1000,
            100u32..=1000,
        )
            .prop_map(
                |(base, below, above, target, step, smoothing)| PricingConfig {
                    base,
                    min: (base / (below + 1)).max(1),
                    max: base.saturating_mul(above),
                    target_permille: target,
                    max_step_permille: step,
                    smoothing_permille: smoothing,
                },
            )
    }

    fn samples() -> impl Strategy<Value = Vec<Sample>> {
        prop::collection::vec(
            (1u32..64, 0u32..64, 0u32..128, 0u32..128).prop_map(
                |(slots, busy, waiting, refused)| Sample {
                    slots,
                    busy: busy.min(slots),
                    waiting,
                    refused,
                },
            ),
            0..64,
        )
    }

    proptest! {
        #[test]
        fn the_price_stays_within_its_bounds(c in config(), s in samples()) {
            let mut e = DynamicPricingEngine::new(c).expect("present");
            for x in s {
                let p = e.step(x);
                prop_assert!(p >= c.min && p <= c.max, "{p} outside [{}, {}]", c.min, c.max);
            }
        }

        #[test]
        fn more_load_never_means_a_lower_price(
            c in config(), history in samples(), slots in 1u32..64, low in 0u32..64, more in 0u32..64,
        ) {
            let mut e = DynamicPricingEngine::new(c).expect("present");
            for x in history {
                e.step(x);
            }
            let mut a = e.clone();
            let mut b = e;
            let pa = a.step(sample(slots, low.min(slots), 0));
            let pb = b.step(sample(slots, low.min(slots), more));
            prop_assert!(pb >= pa, "more load gave {pb} < {pa}");
        }

        #[test]
        fn under_constant_load_it_settles(c in config(), history in samples(), slots in 1u32..64, busy in 0u32..64, waiting in 0u32..64) {
            let mut e = DynamicPricingEngine::new(c).expect("present");
            for x in history {
                e.step(x);
            }
            let s = sample(slots, busy.min(slots), waiting);
            // The average converges within ~30 windows and the price then
            // closes on its target by at least 1/8 of the gap or reaches it.
            for _ in 0..400 {
                e.step(s);
            }
            let settled = e.clone();
            for _ in 0..20 {
                e.step(s);
            }
            prop_assert_eq!(settled.price(), e.price());
            prop_assert_eq!(settled.pressure_permille(), e.pressure_permille());
        }
    }
}
