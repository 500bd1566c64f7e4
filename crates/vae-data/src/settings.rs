//! Values of the data settings that need more than a plain number: the validation split's
//! size ([`ValidSize`]) and counts that explain what is wrong with a bad value.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// How many examples of an MNIST-format training file are held out (from its end) for
/// validation: `valid_size = "auto"` or a number in the `[data]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValidSize {
    /// [`ValidSize::AUTO_FRACTION`] of the training file (rounded to the nearest example), at
    /// most [`ValidSize::AUTO_CAP`]: 60 000 → 10 000 (the split of the literature, so results
    /// stay comparable), 8 000 → 1 333, 5 → 1, 2 → 0.
    #[default]
    Auto,
    /// Exactly this many; 0 trains on every example and leaves the validation split empty.
    Count(usize),
}

impl ValidSize {
    /// The most examples [`ValidSize::Auto`] holds out.
    pub const AUTO_CAP: usize = 10_000;
    /// The share of the training file [`ValidSize::Auto`] holds out, as 1 / this.
    pub const AUTO_FRACTION: usize = 6;

    /// The number of examples held out of a training file of `total` examples.
    pub fn resolve(self, total: usize) -> usize {
        match self {
            // Rounded to nearest; below `total` for every total ≥ 1.
            Self::Auto => (total.saturating_add(Self::AUTO_FRACTION / 2) / Self::AUTO_FRACTION)
                .min(Self::AUTO_CAP),
            Self::Count(n) => n,
        }
    }
}

impl From<usize> for ValidSize {
    fn from(count: usize) -> Self {
        Self::Count(count)
    }
}

impl fmt::Display for ValidSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("\"auto\""),
            Self::Count(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for ValidSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => serializer.serialize_str("auto"),
            Self::Count(n) => serializer.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for ValidSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(CountVisitor::<usize> {
                auto: true,
                _count: std::marker::PhantomData,
            })
            .map(Self::from)
    }
}

/// Deserialises a count (a whole number ≥ 0 that fits `T`) with a message that says what is
/// wrong: negative, fractional, not finite, or too large (with the largest allowed). Numbers
/// written as text (`"12"`, as the command line passes values that are not TOML) are read too.
pub(crate) fn count<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64> + Bounded,
{
    deserializer
        .deserialize_any(CountVisitor::<T> {
            auto: false,
            _count: std::marker::PhantomData,
        })
        .map(|v| match v {
            Parsed::Count(n) => n,
            Parsed::Auto => unreachable!("only ValidSize accepts \"auto\""),
        })
}

/// The largest value of an unsigned integer type, for "too large" messages.
pub(crate) trait Bounded {
    /// `Self::MAX` as a `u64`.
    const MAX_U64: u64;
}

impl Bounded for u8 {
    const MAX_U64: u64 = u8::MAX as u64;
}
impl Bounded for u32 {
    const MAX_U64: u64 = u32::MAX as u64;
}
impl Bounded for usize {
    const MAX_U64: u64 = usize::MAX as u64;
}

enum Parsed<T> {
    Auto,
    Count(T),
}

impl From<Parsed<usize>> for ValidSize {
    fn from(p: Parsed<usize>) -> Self {
        match p {
            Parsed::Auto => Self::Auto,
            Parsed::Count(n) => Self::Count(n),
        }
    }
}

struct CountVisitor<T> {
    /// Whether the text "auto" is accepted.
    auto: bool,
    _count: std::marker::PhantomData<T>,
}

impl<T: TryFrom<u64> + Bounded> CountVisitor<T> {
    fn expected(&self) -> &'static str {
        if self.auto {
            "a whole number of examples (≥ 0) or \"auto\""
        } else {
            "a whole number (≥ 0)"
        }
    }

    fn fit<E: de::Error>(&self, v: u64) -> Result<Parsed<T>, E> {
        T::try_from(v)
            .map(Parsed::Count)
            .map_err(|_| E::custom(format!("{v} is too large (at most {})", T::MAX_U64)))
    }
}

impl<'de, T: TryFrom<u64> + Bounded> Visitor<'de> for CountVisitor<T> {
    type Value = Parsed<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expected())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.fit(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        match u64::try_from(v) {
            Ok(v) => self.fit(v),
            Err(_) => Err(E::custom(format!(
                "{v} is negative; expected {}",
                self.expected()
            ))),
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
        match u64::try_from(v) {
            Ok(v) => self.fit(v),
            Err(_) => Err(E::custom(format!(
                "{v} is too large (at most {})",
                T::MAX_U64
            ))),
        }
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Self::Value, E> {
        match u128::try_from(v) {
            Ok(v) => self.visit_u128(v),
            Err(_) => Err(E::custom(format!(
                "{v} is negative; expected {}",
                self.expected()
            ))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if !v.is_finite() {
            return Err(E::custom(format!(
                "{v} is not finite; expected {}",
                self.expected()
            )));
        }
        if v < 0.0 {
            return Err(E::custom(format!(
                "{v} is negative; expected {}",
                self.expected()
            )));
        }
        if v.fract() != 0.0 {
            return Err(E::custom(format!(
                "{v} is not a whole number; expected {}",
                self.expected()
            )));
        }
        if v >= u64::MAX as f64 {
            return Err(E::custom(format!(
                "{v} is too large (at most {})",
                T::MAX_U64
            )));
        }
        self.fit(v as u64)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let text = v.trim();
        if self.auto && text == "auto" {
            return Ok(Parsed::Auto);
        }
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return match text.parse::<u64>() {
                Ok(n) => self.fit(n),
                Err(_) => Err(E::custom(format!(
                    "{text} is too large (at most {})",
                    T::MAX_U64
                ))),
            };
        }
        // Spelled-out numbers the formats read as text: say what is wrong with the number.
        match text.parse::<f64>() {
            Ok(n) => self.visit_f64(n),
            Err(_) => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}
