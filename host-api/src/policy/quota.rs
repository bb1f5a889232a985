//! Per-credential quotas: how many requests may carry a credential per minute and per day.
//!
//! Windows are fixed and aligned to UTC: the current minute (`now / 60 s`) and the current
//! day (`now / 86 400 s`, from midnight UTC). A burst that straddles a minute boundary can
//! therefore send up to twice the per-minute limit within 60 seconds; the per-day limit
//! bounds the total. A clock set back never reopens a window: a window index older than
//! the one counted is treated as the one counted.
//!
//! Pure arithmetic here; the counters live in the store (`store::quota`).

use serde::{Deserialize, Serialize};

/// The largest limit accepted for either window.
pub const MAX_LIMIT: u32 = 100_000_000;

const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 86_400_000;

/// How many requests may carry a credential: per UTC minute and per UTC day. `None`
/// means no limit for that window.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
    /// Requests per day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_day: Option<u32>,
}

/// A quota that was refused when it was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// A limit of zero would refuse every request: delete the secret instead.
    #[error("a {0} quota must be at least 1 (a quota of 0 would refuse every request)")]
    Zero(Window),
    /// A limit above [`MAX_LIMIT`].
    #[error("a {0} quota may be at most {MAX_LIMIT}")]
    TooLarge(Window),
}

/// A quota window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The current UTC minute.
    Minute,
    /// The current UTC day.
    Day,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Window::Minute => "per-minute",
            Window::Day => "per-day",
        })
    }
}

impl Quota {
    /// A quota from the two optional limits, each checked.
    pub fn new(per_minute: Option<u32>, per_day: Option<u32>) -> Result<Self, QuotaError> {
        let q = Quota {
            per_minute,
            per_day,
        };
        q.check()?;
        Ok(q)
    }

    /// Whether neither window has a limit.
    pub fn is_unlimited(&self) -> bool {
        self.per_minute.is_none() && self.per_day.is_none()
    }

    /// Checks both limits (also used on metadata read from elsewhere, such as a request).
    pub fn check(&self) -> Result<(), QuotaError> {
        for (limit, window) in [
            (self.per_minute, Window::Minute),
            (self.per_day, Window::Day),
        ] {
            match limit {
                Some(0) => return Err(QuotaError::Zero(window)),
                Some(n) if n > MAX_LIMIT => return Err(QuotaError::TooLarge(window)),
                _ => {}
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.per_minute, self.per_day) {
            (None, None) => f.write_str("unlimited"),
            (Some(m), None) => write!(f, "{m}/min"),
            (None, Some(d)) => write!(f, "{d}/day"),
            (Some(m), Some(d)) => write!(f, "{m}/min {d}/day"),
        }
    }
}

/// Requests counted for one credential: the window each count belongs to, and the count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Index of the minute counted (`unix ms / 60 000`).
    pub minute: u64,
    /// Requests in that minute.
    pub in_minute: u32,
    /// Index of the day counted (`unix ms / 86 400 000`).
    pub day: u64,
    /// Requests in that day.
    pub in_day: u32,
}

/// The encoded size of a [`Usage`].
pub const USAGE_BYTES: usize = 24;

impl Usage {
    /// This usage with one more request at `now_ms`, or the window whose limit it would
    /// pass. Nothing is counted when a window is full.
    pub fn take(self, quota: &Quota, now_ms: u64) -> Result<Usage, Window> {
        let (minute, in_minute) = roll(self.minute, self.in_minute, now_ms / MINUTE_MS);
        let (day, in_day) = roll(self.day, self.in_day, now_ms / DAY_MS);
        if quota.per_minute.is_some_and(|m| in_minute >= m) {
            return Err(Window::Minute);
        }
        if quota.per_day.is_some_and(|d| in_day >= d) {
            return Err(Window::Day);
        }
        Ok(Usage {
            minute,
            in_minute: in_minute.saturating_add(1),
            day,
            in_day: in_day.saturating_add(1),
        })
    }

    /// This usage with the request counted at `now_ms` given back (a request counted for
    /// one credential, then refused for another). A window that has rolled over since
    /// keeps its count: the request was counted in the one before.
    pub fn give_back(self, now_ms: u64) -> Usage {
        let back = |counted: u64, count: u32, now: u64| {
            if counted == now {
                count.saturating_sub(1)
            } else {
                count
            }
        };
        Usage {
            in_minute: back(self.minute, self.in_minute, now_ms / MINUTE_MS),
            in_day: back(self.day, self.in_day, now_ms / DAY_MS),
            ..self
        }
    }

    /// The fixed-size encoding persisted in the store.
    pub fn encode(&self) -> [u8; USAGE_BYTES] {
        let mut out = [0u8; USAGE_BYTES];
        out[0..8].copy_from_slice(&self.minute.to_be_bytes());
        out[8..12].copy_from_slice(&self.in_minute.to_be_bytes());
        out[12..20].copy_from_slice(&self.day.to_be_bytes());
        out[20..24].copy_from_slice(&self.in_day.to_be_bytes());
        out
    }

    /// Decodes [`Usage::encode`]; `None` for any other length.
    pub fn decode(bytes: &[u8]) -> Option<Usage> {
        let b: &[u8; USAGE_BYTES] = bytes.try_into().ok()?;
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(a)
        };
        let u32_at = |i: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[i..i + 4]);
            u32::from_be_bytes(a)
        };
        Some(Usage {
            minute: u64_at(0),
            in_minute: u32_at(8),
            day: u64_at(12),
            in_day: u32_at(20),
        })
    }
}

/// The count for window `now` given what was counted in window `counted`: a later window
/// starts at zero; the same or an earlier one (a clock set back) keeps the count.
fn roll(counted: u64, count: u32, now: u64) -> (u64, u32) {
    if now > counted {
        (now, 0)
    } else {
        (counted, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z, a day boundary

    #[test]
    fn rejects_zero_and_huge_limits() {
        assert_eq!(
            Quota::new(Some(0), None),
            Err(QuotaError::Zero(Window::Minute))
        );
        assert_eq!(
            Quota::new(None, Some(0)),
            Err(QuotaError::Zero(Window::Day))
        );
        assert!(Quota::new(Some(MAX_LIMIT + 1), None).is_err());
        assert!(Quota::new(Some(1), Some(MAX_LIMIT)).is_ok());
    }

    #[test]
    fn counts_up_to_the_minute_limit_then_refuses_until_the_next_minute() {
        let q = Quota::new(Some(3), None).expect("q");
        let mut u = Usage::default();
        for i in 0..3 {
            u = u.take(&q, T0 + i * 1000).expect("within the limit");
        }
        assert_eq!(u.take(&q, T0 + 59_999), Err(Window::Minute));
        let next = u.take(&q, T0 + 60_000).expect("a new minute");
        assert_eq!(next.in_minute, 1);
        assert_eq!(next.in_day, 4);
    }

    #[test]
    fn the_day_limit_holds_across_minutes_and_resets_at_midnight_utc() {
        let q = Quota::new(Some(10), Some(2)).expect("q");
        let u = Usage::default().take(&q, T0).expect("1");
        let u = u.take(&q, T0 + 3_600_000).expect("2");
        assert_eq!(u.take(&q, T0 + 7_200_000), Err(Window::Day));
        assert!(u.take(&q, T0 + DAY_MS).is_ok());
    }

    #[test]
    fn a_refusal_counts_nothing() {
        let q = Quota::new(Some(1), None).expect("q");
        let u = Usage::default().take(&q, T0).expect("1");
        assert!(u.take(&q, T0 + 1).is_err());
        assert_eq!(u.in_minute, 1);
    }

    #[test]
    fn a_request_given_back_frees_its_windows_but_not_an_earlier_window() {
        let q = Quota::new(Some(1), Some(2)).expect("q");
        let u = Usage::default().take(&q, T0).expect("1");
        let back = u.give_back(T0 + 1);
        assert_eq!((back.in_minute, back.in_day), (0, 0));
        assert!(back.take(&q, T0 + 2).is_ok());
        // Given back a minute later: that minute counted nothing, the day keeps nothing.
        let later = u.give_back(T0 + MINUTE_MS);
        assert_eq!((later.in_minute, later.in_day), (1, 0));
    }

    #[test]
    fn a_clock_set_back_does_not_reopen_a_window() {
        let q = Quota::new(Some(1), Some(5)).expect("q");
        let u = Usage::default().take(&q, T0 + DAY_MS).expect("1");
        assert_eq!(u.take(&q, T0), Err(Window::Minute));
    }

    #[test]
    fn usage_round_trips_and_rejects_other_lengths() {
        let u = Usage {
            minute: 1,
            in_minute: 2,
            day: 3,
            in_day: u32::MAX,
        };
        assert_eq!(Usage::decode(&u.encode()), Some(u));
        assert_eq!(Usage::decode(&[0; 23]), None);
        assert_eq!(Usage::decode(&[0; 25]), None);
    }

    #[test]
    fn old_metadata_without_a_quota_reads_as_unlimited() {
        let q: Quota = serde_json::from_str("{}").expect("reads");
        assert!(q.is_unlimited());
        assert_eq!(serde_json::to_string(&q).expect("json"), "{}");
    }
}
