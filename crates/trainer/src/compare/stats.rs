//! The statistics of a comparison: mean and sample standard deviation over seeds.

/// Mean and sample standard deviation (n - 1 in the denominator, as numpy's `ddof=1` and
/// R's `sd`) of some values; `sd` is `None` for fewer than two.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub sd: Option<f64>,
    pub n: usize,
}

impl Spread {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let sd = (n > 1).then(|| {
            let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
            (ss / (n - 1) as f64).sqrt()
        });
        Some(Spread { mean, sd, n })
    }

    /// `mean ± sd` with `digits` decimals, values scaled by `scale` (100 for percentages).
    pub fn show(&self, scale: f64, digits: usize) -> String {
        match self.sd {
            Some(sd) => format!("{:.digits$} ± {:.digits$}", self.mean * scale, sd * scale),
            None => format!("{:.digits$}", self.mean * scale),
        }
    }
}

/// Per epoch, the spread of several runs' curves (runs shorter than others count where they
/// have values).
pub fn per_epoch(curves: &[Vec<f64>]) -> Vec<Spread> {
    let epochs = curves.iter().map(Vec::len).max().unwrap_or(0);
    (0..epochs)
        .filter_map(|e| {
            let at: Vec<f64> = curves.iter().filter_map(|c| c.get(e).copied()).collect();
            Spread::of(&at)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_sd_match_hand_computed_values() {
        // Mean 5; squared deviations 9+1+1+1+0+0+4+16 = 32 over n-1 = 7: sd = sqrt(32/7).
        let s = Spread::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert_eq!(s.mean, 5.0);
        assert!((s.sd.unwrap() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(s.n, 8);
        let one = Spread::of(&[0.25]).unwrap();
        assert_eq!((one.mean, one.sd), (0.25, None));
        assert_eq!(one.show(100.0, 1), "25.0");
        assert!(Spread::of(&[]).is_none());
        let two = Spread::of(&[0.5, 0.7]).unwrap();
        // sd of {0.5, 0.7} = sqrt(0.02) = 0.1414...
        assert_eq!(two.show(100.0, 1), "60.0 ± 14.1");
    }

    #[test]
    fn per_epoch_spreads_follow_the_runs() {
        let s = per_epoch(&[vec![1.0, 2.0, 3.0], vec![3.0, 4.0]]);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].mean, 2.0);
        assert_eq!(s[1].mean, 3.0);
        assert_eq!((s[2].mean, s[2].n, s[2].sd), (3.0, 1, None));
    }
}
