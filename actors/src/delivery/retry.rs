//! When the next attempt is due (CONTRACT §5 delivery semantics).

use chrono::{DateTime, Utc};
use rand::Rng;

use super::endpoint::RetryPolicy;
use super::sender::Outcome;

/// The next attempt's time after `attempts_made` attempts (the last one failing with `outcome`),
/// or `None` to give up. `Retry-After` is honoured within the policy's bounds.
pub fn next_attempt(
    policy: &RetryPolicy,
    attempts_made: u32,
    outcome: &Outcome,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let to_chrono = |d: std::time::Duration| chrono::Duration::from_std(d).unwrap_or_default();
    match policy {
        RetryPolicy::Schedule { delays } => {
            let delay = delays.get(attempts_made.saturating_sub(1) as usize)?.0;
            let longest = delays.iter().map(|d| d.0).max().unwrap_or(delay);
            let delay = match outcome.retry_after {
                Some(asked) => asked.clamp(delay, longest.max(delay)),
                None => delay,
            };
            Some(now + to_chrono(delay))
        }
        RetryPolicy::Exponential {
            base,
            factor,
            max_age,
        } => {
            let exp = factor.powi(attempts_made.saturating_sub(1).min(60) as i32);
            let ceiling = base.as_secs_f64() * exp;
            // Full jitter: anywhere between zero and the exponential ceiling.
            let jittered = rand::rng().random_range(0.0..=ceiling.max(0.001));
            let mut delay = std::time::Duration::from_secs_f64(jittered.min(max_age.as_secs_f64()));
            if let Some(asked) = outcome.retry_after {
                delay = delay.max(asked);
            }
            let at = now + to_chrono(delay);
            (at <= created_at + to_chrono(*max_age)).then_some(at)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::delivery::endpoint::Delay;

    fn failed(retry_after: Option<u64>) -> Outcome {
        Outcome {
            status: Some(503),
            error: None,
            duration: Duration::ZERO,
            snippet: None,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn schedule_then_give_up_with_retry_after_clamped() {
        let p = RetryPolicy::Schedule {
            delays: vec![
                Delay(Duration::from_secs(1)),
                Delay(Duration::from_secs(5)),
                Delay(Duration::from_secs(30)),
            ],
        };
        let now = Utc::now();
        let secs = |n: u32, ra| {
            next_attempt(&p, n, &failed(ra), now, now).map(|t| (t - now).num_seconds())
        };
        assert_eq!(secs(1, None), Some(1));
        assert_eq!(secs(2, None), Some(5));
        assert_eq!(secs(3, None), Some(30));
        assert_eq!(secs(4, None), None);
        assert_eq!(secs(1, Some(10)), Some(10));
        assert_eq!(secs(1, Some(3600)), Some(30));
    }

    #[test]
    fn exponential_stays_within_ceiling_and_max_age() {
        let p = RetryPolicy::Exponential {
            base: Duration::from_secs(1),
            factor: 2.0,
            max_age: Duration::from_secs(60),
        };
        let now = Utc::now();
        for n in 1..6 {
            let at = next_attempt(&p, n, &failed(None), now, now).unwrap();
            assert!((at - now).num_milliseconds() <= 1000 * 2i64.pow(n - 1));
        }
        let old = now - chrono::Duration::seconds(59);
        assert!(next_attempt(&p, 10, &failed(Some(5)), old, now).is_none());
    }
}
