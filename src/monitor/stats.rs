//! The drift statistics, as scipy computes them and Evidently applies them:
//! two-sample Kolmogorov-Smirnov (scipy's exact p-value up to 10 000 values per
//! side, the asymptotic one above), normed Wasserstein, PSI, Jensen-Shannon
//! distance, chi-squared, the two-proportion z-test and L-infinity. Pure
//! functions over sorted values or aligned frequencies; choosing a method is
//! drift.rs's job. Cross-checked against scipy in tests/monitor_stats.rs.

use statrs::function::erf::erfc;
use statrs::function::gamma::gamma_ur;

/// scipy's `ks_2samp(method="auto")` is exact while both samples have at most this many values.
const KS_EXACT_MAX_N: usize = 10_000;

/// Two-sample Kolmogorov-Smirnov, two-sided: `(D, p-value)`. Both slices sorted
/// ascending, not empty.
pub fn ks_2samp(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (n1, n2) = (a.len(), b.len());
    let d = ks_statistic(a, b);
    if n1.max(n2) <= KS_EXACT_MAX_N {
        if let Some((d, p)) = ks_exact(n1 as u64, n2 as u64, d) {
            return (d, p);
        }
    }
    // scipy: kstwo.sf(d, round(n1*n2/(n1+n2))); Stephens' form of the Kolmogorov
    // limit is within 1e-3 of it for the sizes that get here.
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = (m * n / (m + n)).round();
    let lambda = (en.sqrt() + 0.12 + 0.11 / en.sqrt()) * d;
    (d, kolmogorov_sf(lambda).clamp(0.0, 1.0))
}

/// The largest distance between the two empirical CDFs.
pub fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut d: f64 = 0.0;
    while i < a.len() && j < b.len() {
        let x = if a[i] <= b[j] { a[i] } else { b[j] };
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n1 - j as f64 / n2).abs());
    }
    d
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// scipy's `_attempt_exact_2kssamp` (two-sided); None where scipy falls back to asymp.
fn ks_exact(n1: u64, n2: u64, d: f64) -> Option<(f64, f64)> {
    let g = gcd(n1, n2);
    let lcm = (n1 / g) * n2;
    let h = (d * lcm as f64).round() as u64;
    let d = h as f64 / lcm as f64;
    if h == 0 {
        return Some((d, 1.0));
    }
    let p = if n1 == n2 {
        prob_outside_square(n1, h)
    } else {
        outer_prob_inside_method(n1, n2, g, h)
    };
    (p.is_finite() && (0.0..=1.0).contains(&p)).then_some((d, p))
}

/// scipy's `_compute_prob_outside_square`: the share of lattice paths leaving |x-y| < h.
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let mut p = 0.0;
    let mut k = (n / h) as i64;
    while k >= 0 {
        let ku = k as u64;
        let mut p1 = 1.0;
        for j in 0..h {
            let num = n as f64 - (ku * h + j) as f64;
            p1 = num * p1 / (n + ku * h + j + 1) as f64;
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// scipy's `_compute_outer_prob_inside_method`: the probability that a random
/// lattice path from (0,0) to (m,n) leaves the band |nx/g - my/g| < h.
fn outer_prob_inside_method(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (mg, ng) = ((m / g) as i64, (n / g) as i64);
    let (m, n, h) = (m as i64, n as i64, h as i64);
    let ceil_div = |a: i64, b: i64| -> i64 { (a as f64 / b as f64).ceil() as i64 };
    let floor_div = |a: i64, b: i64| -> i64 { (a as f64 / b as f64).floor() as i64 };
    let mut minj: i64 = 0;
    let mut maxj: i64 = ceil_div(h, mg).min(n + 1);
    let mut curlen = maxj - minj;
    let len_a = (2 * maxj + 2).min(n + 1) as usize;
    let mut a = vec![1.0f64; len_a.max(1)];
    for v in a.iter_mut().take(maxj as usize) {
        *v = 0.0;
    }
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        minj = (floor_div(ng * i - h, mg) + 1).max(0).min(n);
        maxj = ceil_div(ng * i + h, mg).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        for jj in 0..(maxj - minj) {
            let j = jj + minj;
            let prev = a[(jj + minj - lastminj) as usize];
            val = (prev * i as f64 + val * j as f64) / (i + j) as f64;
            a[jj as usize] = val;
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let from = (maxj - minj) as usize;
            let to = (from + (lastlen - curlen) as usize).min(a.len());
            for v in &mut a[from..to] {
                *v = 1.0;
            }
        }
    }
    a[(maxj - minj - 1) as usize]
}

/// The Kolmogorov distribution's survival function Q(λ) = P(K > λ).
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 1.18 {
        // 1 - sqrt(2π)/λ Σ exp(-(2k-1)²π²/(8λ²))
        let w = std::f64::consts::PI.powi(2) / (8.0 * lambda * lambda);
        let s: f64 = (1..=8)
            .map(|k| {
                let o = (2 * k - 1) as f64;
                (-o * o * w).exp()
            })
            .sum();
        1.0 - (2.0 * std::f64::consts::PI).sqrt() / lambda * s
    } else {
        let s: f64 = (1..=100)
            .map(|k| {
                let k = k as f64;
                let sign = if (k as i64) % 2 == 1 { 1.0 } else { -1.0 };
                sign * (-2.0 * k * k * lambda * lambda).exp()
            })
            .sum();
        2.0 * s
    }
}

/// The population standard deviation (numpy's `std`, ddof 0).
pub fn std_dev(a: &[f64]) -> f64 {
    let n = a.len() as f64;
    let mean = a.iter().sum::<f64>() / n;
    (a.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// scipy's `wasserstein_distance` of two sorted samples: ∫ |F_a - F_b|.
pub fn wasserstein(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut total = 0.0;
    let mut prev = a[0].min(b[0]);
    while i < a.len() || j < b.len() {
        let x = match (a.get(i), b.get(j)) {
            (Some(&p), Some(&q)) => p.min(q),
            (Some(&p), None) => p,
            (None, Some(&q)) => q,
            (None, None) => break,
        };
        total += (x - prev) * (i as f64 / n1 - j as f64 / n2).abs();
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        prev = x;
    }
    total
}

/// Evidently's `wasserstein_distance_norm`: the distance in units of the
/// reference's standard deviation (at least 0.001).
pub fn wasserstein_normed(reference: &[f64], current: &[f64]) -> f64 {
    wasserstein(reference, current) / std_dev(reference).max(0.001)
}

/// Evidently's zero filling before PSI: empty bins get a tiny share so the log is finite.
pub fn fill_zeroes(p: &mut [f64]) {
    let min_nonzero = p
        .iter()
        .copied()
        .filter(|v| *v != 0.0)
        .fold(f64::INFINITY, f64::min);
    if !min_nonzero.is_finite() {
        return;
    }
    let fill = if min_nonzero <= 0.0001 {
        min_nonzero / 1e6
    } else {
        0.0001
    };
    for v in p.iter_mut().filter(|v| **v == 0.0) {
        *v = fill;
    }
}

/// Population stability index of two share vectors (zero-filled first).
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    let (mut r, mut c) = (reference.to_vec(), current.to_vec());
    fill_zeroes(&mut r);
    fill_zeroes(&mut c);
    r.iter().zip(&c).map(|(r, c)| (r - c) * (r / c).ln()).sum()
}

/// scipy's `distance.jensenshannon` (natural log): the square root of the
/// Jensen-Shannon divergence of the two (normalized) distributions.
pub fn jensenshannon(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    let rel = |x: f64, y: f64| -> f64 {
        if x > 0.0 && y > 0.0 {
            x * (x / y).ln()
        } else if x == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    };
    let mut js = 0.0;
    for (x, y) in p.iter().zip(q) {
        let (x, y) = (x / sp, y / sq);
        let m = (x + y) / 2.0;
        js += rel(x, m) + rel(y, m);
    }
    (js / 2.0).max(0.0).sqrt()
}

/// scipy's `chisquare(f_obs, f_exp)`: the p-value with k-1 degrees of freedom.
pub fn chisquare(observed: &[f64], expected: &[f64]) -> f64 {
    let stat: f64 = observed
        .iter()
        .zip(expected)
        .map(|(o, e)| {
            if *e == 0.0 {
                if *o == 0.0 {
                    0.0
                } else {
                    f64::INFINITY
                }
            } else {
                (o - e).powi(2) / e
            }
        })
        .sum();
    let df = observed.len() as f64 - 1.0;
    if df <= 0.0 {
        return f64::NAN;
    }
    if stat.is_infinite() {
        return 0.0;
    }
    if stat <= 0.0 {
        return 1.0;
    }
    gamma_ur(df / 2.0, stat / 2.0)
}

/// Evidently's two-proportion z-test: the two-sided p-value that the share of
/// one category is the same in both samples (`k1` of `n1` against `k2` of `n2`).
pub fn z_test(k1: f64, n1: f64, k2: f64, n2: f64) -> f64 {
    let (p1, p2) = (k1 / n1, k2 / n2);
    let p = (k1 + k2) / (n1 + n2);
    let se = (p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 {
        return if p1 == p2 { 1.0 } else { 0.0 };
    }
    let z = (p1 - p2) / se;
    // 2 * (1 - Φ(|z|)) = erfc(|z|/√2)
    erfc(z.abs() / std::f64::consts::SQRT_2)
}

/// The largest difference between two share vectors.
pub fn linf(reference: &[f64], current: &[f64]) -> f64 {
    reference
        .iter()
        .zip(current)
        .map(|(r, c)| (r - c).abs())
        .fold(0.0, f64::max)
}

/// numpy's `histogram_bin_edges(values, bins)` for a range `[lo, hi]`.
pub fn bin_edges(lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    let (lo, hi) = if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    };
    (0..=bins)
        .map(|i| lo + (hi - lo) * i as f64 / bins as f64)
        .collect()
}

/// numpy's `histogram(values, edges)[0]` of sorted values: every bin half-open
/// except the last, which holds its upper edge.
pub fn histogram(sorted: &[f64], edges: &[f64]) -> Vec<f64> {
    let bins = edges.len() - 1;
    let mut counts = vec![0.0; bins];
    for &v in sorted {
        if v < edges[0] || v > edges[bins] {
            continue;
        }
        // numpy searches the edges: the bin is the last edge <= v.
        let idx = edges.partition_point(|e| *e <= v);
        let bin = idx.saturating_sub(1).min(bins - 1);
        counts[bin] += 1.0;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_samples_do_not_drift() {
        let a: Vec<f64> = (0..100).map(f64::from).collect();
        let (d, p) = ks_2samp(&a, &a);
        assert_eq!(d, 0.0);
        assert_eq!(p, 1.0);
        assert_eq!(wasserstein(&a, &a), 0.0);
        assert_eq!(psi(&[0.5, 0.5], &[0.5, 0.5]), 0.0);
        assert_eq!(jensenshannon(&[1.0, 1.0], &[1.0, 1.0]), 0.0);
    }

    #[test]
    fn a_shifted_sample_has_distance_equal_to_the_shift() {
        let a: Vec<f64> = (0..100).map(f64::from).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 3.0).collect();
        assert!((wasserstein(&a, &b) - 3.0).abs() < 1e-9);
    }
}
