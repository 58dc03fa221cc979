//! Latency percentiles from every sample (microseconds), by the nearest-rank method.

use serde::Serialize;

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// The nearest-rank `p`-th percentile (0 < p <= 100) of sorted samples: the smallest
/// sample such that at least `p` % of all samples are at or below it. `None` when empty.
pub fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Sorts the samples (microseconds) and summarises them; all zero when there are none.
pub fn summarize(samples: &mut [u32]) -> Latency {
    samples.sort_unstable();
    let ms = |us: Option<u32>| us.map_or(0.0, |v| f64::from(v) / 1000.0);
    let mean_ms = if samples.is_empty() {
        0.0
    } else {
        samples.iter().map(|&v| u64::from(v)).sum::<u64>() as f64 / samples.len() as f64 / 1000.0
    };
    Latency {
        p50_ms: ms(percentile(samples, 50.0)),
        p90_ms: ms(percentile(samples, 90.0)),
        p99_ms: ms(percentile(samples, 99.0)),
        max_ms: ms(samples.last().copied()),
        mean_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_one_to_a_hundred_is_fifty_and_the_p99_is_ninety_nine() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 90.0), Some(90));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
    }

    #[test]
    fn a_single_sample_is_every_percentile() {
        for p in [0.1, 50.0, 99.0, 100.0] {
            assert_eq!(percentile(&[7], p), Some(7));
        }
    }

    #[test]
    fn no_samples_have_no_percentile_and_summarise_to_zero() {
        assert_eq!(percentile(&[], 50.0), None);
        let s = summarize(&mut []);
        assert_eq!(s.p99_ms, 0.0);
        assert_eq!(s.max_ms, 0.0);
    }

    #[test]
    fn one_slow_request_in_a_hundred_shows_in_the_max_but_not_the_p99() {
        let mut v = vec![1000u32; 99];
        v.push(250_000);
        v.reverse(); // unsorted on purpose
        let s = summarize(&mut v);
        assert_eq!(s.p50_ms, 1.0);
        assert_eq!(s.p99_ms, 1.0);
        assert_eq!(s.max_ms, 250.0);
        assert!((s.mean_ms - 3.49).abs() < 1e-9);
    }

    #[test]
    fn two_slow_requests_in_a_hundred_reach_the_p99() {
        let mut v = vec![1000u32; 98];
        v.extend([90_000, 250_000]);
        let s = summarize(&mut v);
        assert_eq!(s.p99_ms, 90.0);
        assert_eq!(s.p90_ms, 1.0);
    }
}
