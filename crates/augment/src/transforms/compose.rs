//! Containers: Compose, RandomApply, RandomChoice.

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use super::{Applied, Augment, Context, Sample, Transform, coin, de_children, replay_mismatch};
use crate::error::{AugmentError, Result, check_range};

fn half() -> f64 {
    0.5
}

fn run_all<R: Rng + ?Sized>(
    transforms: &[Transform],
    sample: Sample,
    ctx: &mut Context<'_, R>,
) -> Result<Sample> {
    transforms.iter().try_fold(sample, |s, t| t.run(s, ctx))
}

/// Runs its transforms in order (torchvision `Compose`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compose {
    #[serde(deserialize_with = "de_children")]
    pub transforms: Vec<Transform>,
}

impl Compose {
    pub fn new(transforms: impl IntoIterator<Item = Transform>) -> Self {
        Self {
            transforms: transforms.into_iter().collect(),
        }
    }
}

impl Augment for Compose {
    fn validate(&self) -> Result<()> {
        self.transforms.iter().try_for_each(Augment::validate)
    }

    /// The canonical CIFAR and ImageNet shapes on 3-channel u8 input take a fused path
    /// (`crate::fast`) with the same draws and a bit-identical result.
    fn run<R: Rng + ?Sized>(&self, sample: Sample, ctx: &mut Context<'_, R>) -> Result<Sample> {
        match crate::fast::try_run(&self.transforms, sample, ctx)? {
            Ok(out) => Ok(out),
            Err(sample) => run_all(&self.transforms, sample, ctx),
        }
    }
}

/// Runs all its transforms with probability `p` (default 0.5), else none (torchvision
/// `RandomApply`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomApply {
    #[serde(deserialize_with = "de_children")]
    pub transforms: Vec<Transform>,
    #[serde(default = "half")]
    pub p: f64,
}

impl RandomApply {
    pub fn new(transforms: impl IntoIterator<Item = Transform>, p: f64) -> Self {
        Self {
            transforms: transforms.into_iter().collect(),
            p,
        }
    }
}

impl RandomApply {
    /// Checks `p`, then draws (or replays) whether the transforms run.
    pub(crate) fn next_apply<R: Rng + ?Sized>(&self, ctx: &mut Context<'_, R>) -> Result<bool> {
        check_range("RandomApply.p", self.p, 0.0, 1.0)?;
        let p = ctx.params(|rng| {
            Ok(Applied::RandomApply {
                apply: coin(rng, self.p),
            })
        })?;
        let Applied::RandomApply { apply } = p else {
            return Err(replay_mismatch("RandomApply", &p));
        };
        Ok(apply)
    }
}

impl Augment for RandomApply {
    fn validate(&self) -> Result<()> {
        check_range("RandomApply.p", self.p, 0.0, 1.0)?;
        self.transforms.iter().try_for_each(Augment::validate)
    }

    fn run<R: Rng + ?Sized>(&self, sample: Sample, ctx: &mut Context<'_, R>) -> Result<Sample> {
        if self.next_apply(ctx)? {
            run_all(&self.transforms, sample, ctx)
        } else {
            Ok(sample)
        }
    }
}

/// Runs one of its transforms, chosen uniformly or with weights `p` (torchvision
/// `RandomChoice`; weights need not sum to 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomChoice {
    #[serde(deserialize_with = "de_children")]
    pub transforms: Vec<Transform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<Vec<f64>>,
}

impl RandomChoice {
    pub fn new(transforms: impl IntoIterator<Item = Transform>) -> Self {
        Self {
            transforms: transforms.into_iter().collect(),
            p: None,
        }
    }
    /// Relative weights, one per transform.
    pub fn weights(mut self, p: impl Into<Vec<f64>>) -> Self {
        self.p = Some(p.into());
        self
    }

    fn check(&self) -> Result<()> {
        if self.transforms.is_empty() {
            return Err(AugmentError::param(
                "RandomChoice.transforms",
                "[]",
                "at least one transform",
            ));
        }
        if let Some(p) = &self.p {
            let ok = p.len() == self.transforms.len()
                && p.iter().all(|w| w.is_finite() && *w >= 0.0)
                && p.iter().sum::<f64>() > 0.0;
            if !ok {
                return Err(AugmentError::param(
                    "RandomChoice.p",
                    p,
                    format!(
                        "{} finite non-negative weights with a positive sum",
                        self.transforms.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn choose<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let n = self.transforms.len();
        match &self.p {
            None => rng.random_range(0..n),
            Some(p) => {
                let total: f64 = p.iter().sum();
                let mut u = rng.random::<f64>() * total;
                for (i, &w) in p.iter().enumerate() {
                    if u < w {
                        return i;
                    }
                    u -= w;
                }
                // Rounding left `u` just above the last weight: take the last non-zero one.
                p.iter().rposition(|&w| w > 0.0).unwrap_or(n - 1)
            }
        }
    }
}

impl RandomChoice {
    /// Checks the weights, then draws (or replays) the index of the transform to run; a
    /// replayed index is checked against the number of transforms.
    pub(crate) fn next_index<R: Rng + ?Sized>(&self, ctx: &mut Context<'_, R>) -> Result<usize> {
        self.check()?;
        let p = ctx.params(|rng| {
            Ok(Applied::RandomChoice {
                index: self.choose(rng),
            })
        })?;
        let Applied::RandomChoice { index } = p else {
            return Err(replay_mismatch("RandomChoice", &p));
        };
        if index >= self.transforms.len() {
            return Err(AugmentError::param(
                "replayed RandomChoice.index",
                index,
                format!("less than {}", self.transforms.len()),
            ));
        }
        Ok(index)
    }
}

impl Augment for RandomChoice {
    fn validate(&self) -> Result<()> {
        self.check()?;
        self.transforms.iter().try_for_each(Augment::validate)
    }

    fn run<R: Rng + ?Sized>(&self, sample: Sample, ctx: &mut Context<'_, R>) -> Result<Sample> {
        let index = self.next_index(ctx)?;
        self.transforms[index].run(sample, ctx)
    }
}
