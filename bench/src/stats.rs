//! Small statistics for noisy measurements: medians, percentiles, least-squares lines.

use serde::Serialize;

/// Median of `xs` (NaN-free input; 0 for an empty slice).
pub fn median(xs: &[f64]) -> f64 {
    let v = sorted(xs);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 0 => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        n => v[n / 2],
    }
}

fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The `p`-th percentile (nearest rank on the sorted values; 0 for an empty slice).
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    let v = sorted(xs);
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Largest value (0 for an empty slice).
pub fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().filter(|x| x.is_finite()).fold(0.0, f64::max)
}

/// Median, p99 and extremes of a set of latencies, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    /// Number of samples.
    pub n: usize,
    /// Median.
    pub median_ms: f64,
    /// 99th percentile (nearest rank: with fewer than 100 samples, the largest).
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Every sample, in the order taken.
    pub samples_ms: Vec<f64>,
}

impl Latency {
    /// Summarises samples given in milliseconds.
    pub fn from_ms(samples_ms: Vec<f64>) -> Self {
        Self {
            n: samples_ms.len(),
            median_ms: median(&samples_ms),
            p99_ms: percentile(&samples_ms, 99.0),
            max_ms: max(&samples_ms),
            samples_ms,
        }
    }
}

/// A least-squares line y = intercept + slope · x.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Fit {
    /// Points used.
    pub n: usize,
    /// y at x = 0.
    pub intercept: f64,
    /// dy/dx.
    pub slope: f64,
    /// Coefficient of determination (1 = every point on the line).
    pub r2: f64,
}

/// Fits a line through `(x, y)` points; a degenerate input (fewer than two distinct x)
/// gives slope 0 through the mean.
pub fn fit(points: &[(f64, f64)]) -> Fit {
    let n = points.len();
    if n == 0 {
        return Fit::default();
    }
    let nf = n as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / nf;
    let my = points.iter().map(|p| p.1).sum::<f64>() / nf;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx <= f64::EPSILON {
        return Fit { n, intercept: my, slope: 0.0, r2: 0.0 };
    }
    let slope = sxy / sxx;
    let r2 = if syy <= f64::EPSILON { 1.0 } else { (sxy * sxy) / (sxx * syy) };
    Fit { n, intercept: my - slope * mx, slope, r2 }
}

/// A line fitted robustly (Theil–Sen: the median of the slopes between all pairs of points,
/// then the median intercept), so a few samples slowed by the host scheduler do not tilt
/// it; with Spearman's rank correlation of x and y.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct RobustFit {
    /// Points used.
    pub n: usize,
    /// y at x = 0.
    pub intercept: f64,
    /// dy/dx.
    pub slope: f64,
    /// Spearman's rank correlation (1: y always grows with x; 0: unrelated).
    pub spearman: f64,
}

/// Fits a line through `(x, y)` with the Theil–Sen estimator.
pub fn robust_fit(points: &[(f64, f64)]) -> RobustFit {
    let n = points.len();
    let mut slopes = Vec::new();
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            if (b.0 - a.0).abs() > f64::EPSILON {
                slopes.push((b.1 - a.1) / (b.0 - a.0));
            }
        }
    }
    let slope = median(&slopes);
    let intercept = median(&points.iter().map(|p| p.1 - slope * p.0).collect::<Vec<_>>());
    RobustFit { n, intercept, slope, spearman: spearman(points) }
}

/// Ranks with ties averaged.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]].total_cmp(&v[idx[i]]).is_eq() {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (0 when undefined).
pub fn spearman(points: &[(f64, f64)]) -> f64 {
    let rx = ranks(&points.iter().map(|p| p.0).collect::<Vec<_>>());
    let ry = ranks(&points.iter().map(|p| p.1).collect::<Vec<_>>());
    let f = fit(&rx.iter().copied().zip(ry.iter().copied()).collect::<Vec<_>>());
    if f.slope > 0.0 {
        f.r2.sqrt()
    } else {
        -f.r2.sqrt()
    }
}

/// A deterministic pseudo-random sequence (xorshift64*), so every run of the benchmark
/// visits the same positions.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced by a fixed non-zero value).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[1.0, 5.0], 99.0), 5.0);
        assert_eq!(max(&[1.0, f64::NAN, 7.0]), 7.0);
    }

    #[test]
    fn line_fit() {
        let f = fit(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]);
        assert!((f.slope - 2.0).abs() < 1e-9 && (f.intercept - 1.0).abs() < 1e-9 && f.r2 > 0.999);
        let flat = fit(&[(1.0, 2.0), (1.0, 4.0)]);
        assert_eq!((flat.slope, flat.intercept), (0.0, 3.0));
        assert_eq!(fit(&[]).n, 0);
    }

    #[test]
    fn robust_line_ignores_an_outlier() {
        let mut pts: Vec<(f64, f64)> = (0..20).map(|i| (f64::from(i), 10.0 + 2.0 * f64::from(i))).collect();
        pts.push((5.0, 10_000.0));
        let f = robust_fit(&pts);
        assert!((f.slope - 2.0).abs() < 1e-9 && (f.intercept - 10.0).abs() < 1e-9, "{f:?}");
        assert!(f.spearman > 0.8, "{f:?}");
        assert!(spearman(&[(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)]) < -0.99);
        assert_eq!(robust_fit(&[]).n, 0);
    }

    #[test]
    fn rng_is_deterministic_and_bounded() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
        }
        assert_eq!(Rng::new(0).below(0), 0);
    }
}
