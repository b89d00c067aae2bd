//! Percentiles and the router's resident memory.

use serde::Serialize;
use std::time::Duration;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// Percentiles of `samples` (any order).
    pub fn of(mut samples: Vec<Duration>) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i].as_secs_f64() * 1000.0
        };
        Percentiles {
            samples: samples.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: at(1.0),
        }
    }

    /// `p50 / p99 / p999 ms (n)` for the table.
    pub fn line(&self) -> String {
        if self.samples == 0 {
            return "-".into();
        }
        format!(
            "{:.1} / {:.1} / {:.1} ms (n={})",
            self.p50_ms, self.p99_ms, self.p999_ms, self.samples
        )
    }
}

/// Resident set size of `pid` in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The CPU time (user + system) process `pid` has used, in ms (Linux `/proc`, whose clock ticks
/// are 1/100 s).
pub fn cpu_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((ticks(11)? + ticks(12)?) * 10)
}

/// Buckets of a [`Histogram`]: exact below 128 µs, then 64 per power of two (under 1.6 % wide),
/// up to about 2^40 µs.
const BUCKETS: usize = 35 * 64 + 128;

/// Which bucket holds `us` microseconds.
fn bucket(us: u64) -> usize {
    if us < 128 {
        return us as usize;
    }
    let shift = 63 - u64::from(us.leading_zeros()) - 6;
    (shift as usize * 64 + (us >> shift) as usize).min(BUCKETS - 1)
}

/// The middle of bucket `index`, in microseconds.
fn bucket_value(index: usize) -> f64 {
    if index < 128 {
        return index as f64;
    }
    let shift = index / 64 - 1;
    let low = ((index % 64 + 64) as u64) << shift;
    low as f64 + (1u64 << shift) as f64 / 2.0
}

/// A latency histogram many tasks record into at once (relaxed atomics, no lock): millions of
/// samples in a fixed 19 KB, mergeable across processes.
pub struct Histogram {
    counts: Vec<std::sync::atomic::AtomicU64>,
    max_us: std::sync::atomic::AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: (0..BUCKETS)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            max_us: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// A histogram's non-empty buckets and its exact maximum, as one process reports them.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct HistogramDump {
    /// (bucket, count) pairs.
    pub buckets: Vec<(usize, u64)>,
    pub max_us: u64,
}

impl Histogram {
    /// Records one sample.
    pub fn record(&self, latency: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let us = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        self.counts[bucket(us)].fetch_add(1, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
    }

    pub fn dump(&self) -> HistogramDump {
        use std::sync::atomic::Ordering::Relaxed;
        HistogramDump {
            buckets: self
                .counts
                .iter()
                .enumerate()
                .map(|(i, c)| (i, c.load(Relaxed)))
                .filter(|(_, c)| *c > 0)
                .collect(),
            max_us: self.max_us.load(Relaxed),
        }
    }
}

/// Latency percentiles of merged histograms, in milliseconds (bucket middles: within 1.6 %).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Spread {
    pub samples: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    /// The percentiles of all of `dumps` together.
    pub fn of(dumps: &[HistogramDump]) -> Spread {
        let mut counts = vec![0u64; BUCKETS];
        for dump in dumps {
            for &(i, c) in &dump.buckets {
                if let Some(slot) = counts.get_mut(i) {
                    *slot += c;
                }
            }
        }
        let samples: u64 = counts.iter().sum();
        let max_ms = dumps.iter().map(|d| d.max_us).max().unwrap_or(0) as f64 / 1000.0;
        if samples == 0 {
            return Spread::default();
        }
        let at = |q: f64| {
            let rank = ((samples as f64 * q).ceil() as u64).clamp(1, samples);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return (bucket_value(i) / 1000.0).min(max_ms);
                }
            }
            max_ms
        };
        Spread {
            samples,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms,
        }
    }

    /// `p50 / p90 / p99 / max ms (n)` for the table.
    pub fn line(&self) -> String {
        if self.samples == 0 {
            return "-".into();
        }
        format!(
            "{:.2} / {:.2} / {:.2} / {:.2} ms (n={})",
            self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms, self.samples
        )
    }
}

/// A figure with its unit, or `-` when there is none.
pub fn or_dash(value: Option<f64>, unit: &str) -> String {
    value.map_or("-".into(), |v| format!("{v:.0}{unit}"))
}

/// Prints a run's table and writes its results as JSON to `path`.
pub fn report(
    rows: &[(&str, String)],
    results: &impl serde::Serialize,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    println!();
    for (name, value) in rows {
        println!("{name:<46} {value}");
    }
    std::fs::write(path, serde_json::to_string_pretty(results)?)?;
    eprintln!("results written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        let mut last = 0;
        for us in 0..1_000_000u64 {
            let b = bucket(us);
            assert!(b == last || b == last + 1, "{us}");
            last = b;
            let mid = bucket_value(b);
            assert!(
                (mid - us as f64).abs() <= 1.0 + us as f64 * 0.016,
                "{us} {mid}"
            );
        }
    }
}
