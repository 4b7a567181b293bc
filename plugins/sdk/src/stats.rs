//! Small statistics that alert rules and forecasters share: robust location and scale, a
//! bounded rolling history, and the normal distribution's quantile for service levels and
//! prediction intervals.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// The median of `values` (NaN-free); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Median absolute deviation from the median (unscaled).
pub fn mad(values: &[f64]) -> Option<f64> {
    let m = median(values)?;
    let deviations: Vec<f64> = values.iter().map(|x| (x - m).abs()).collect();
    median(&deviations)
}

/// 1.4826 x MAD estimates the standard deviation of normally distributed data.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// The robust z-score of `x` against `history`: `(x - median) / (1.4826 * MAD)`, with the
/// scale floored at `min_scale` so a perfectly flat history does not make every change infinite.
pub fn robust_z(x: f64, history: &[f64], min_scale: f64) -> Option<(f64, f64, f64)> {
    let m = median(history)?;
    let scale = (MAD_TO_SIGMA * mad(history)?).max(min_scale);
    Some(((x - m) / scale, m, scale))
}

pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Sample standard deviation (n - 1); 0 for fewer than two values.
pub fn std_dev(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values);
    (values.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (values.len() - 1) as f64).sqrt()
}

/// The last `capacity` values of a series, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rolling {
    capacity: usize,
    values: VecDeque<f64>,
}

impl Rolling {
    pub fn new(capacity: usize) -> Self {
        Rolling {
            capacity: capacity.max(1),
            values: VecDeque::new(),
        }
    }

    pub fn push(&mut self, x: f64) {
        if self.values.len() == self.capacity {
            self.values.pop_front();
        }
        self.values.push_back(x);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn to_vec(&self) -> Vec<f64> {
        self.values.iter().copied().collect()
    }
}

/// The standard normal quantile (inverse CDF) at probability `p` in (0, 1), by Acklam's rational
/// approximation refined with one Halley step (relative error below 1e-12).
pub fn normal_quantile(p: f64) -> f64 {
    assert!(
        p > 0.0 && p < 1.0,
        "normal_quantile: p = {p} is not in (0, 1)"
    );
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    // One Halley step against the CDF.
    let e = normal_cdf(x) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// The standard normal CDF, via the complementary error function.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Complementary error function (W. J. Cody's rational Chebyshev approximation as given in
/// Numerical Recipes' `erfcc`, refined: fractional error below 1.2e-7), then polished by the
/// caller's Halley step where precision matters.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad_by_hand() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        // |x - 2| = 1, 1, 0, 2, 98 -> median 1.
        assert_eq!(mad(&[1.0, 3.0, 2.0, 4.0, 100.0]), Some(1.0));
        let (z, m, s) = robust_z(10.0, &[1.0, 3.0, 2.0, 4.0, 100.0], 0.5).unwrap();
        assert_eq!(m, 3.0);
        assert!((s - 1.4826).abs() < 1e-12);
        assert!((z - 7.0 / 1.4826).abs() < 1e-9);
        // Flat history: the floor applies.
        assert_eq!(robust_z(5.0, &[2.0, 2.0, 2.0], 0.5).unwrap().0, 6.0);
    }

    #[test]
    fn rolling_keeps_the_last_values() {
        let mut r = Rolling::new(3);
        for x in 1..=5 {
            r.push(x as f64);
        }
        assert_eq!(r.to_vec(), vec![3.0, 4.0, 5.0]);
        assert!((std_dev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) - 2.138_089_935).abs() < 1e-8);
    }

    #[test]
    fn normal_quantiles_match_tables() {
        // Standard table values.
        for (p, z) in [
            (0.5, 0.0),
            (0.9, 1.281_551_565_545),
            (0.95, 1.644_853_626_951),
            (0.975, 1.959_963_984_540),
            (0.99, 2.326_347_874_041),
            (0.01, -2.326_347_874_041),
            (0.001, -3.090_232_306_168),
        ] {
            assert!(
                (normal_quantile(p) - z).abs() < 1e-6,
                "p={p}: {}",
                normal_quantile(p)
            );
        }
    }
}
