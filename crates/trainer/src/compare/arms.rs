//! The arms of `kindling compare augment`: named training pipelines (and MixUp/CutMix
//! settings), read from an arm file. The default set is `compare/augment.toml` in this crate,
//! compiled in so that the binary needs no files.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kindling_augment::Transform;
use kindling_augment::transforms::Compose;
use serde::Deserialize;

use crate::config::MixConfig;

/// The default arm set's text.
pub const DEFAULT_ARMS: &str = include_str!("../../compare/augment.toml");

/// The input side the default arms are written for.
pub const DEFAULT_SIDE: usize = 32;

/// One way of augmenting the training data.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    pub name: String,
    /// The training pipeline; `None` trains on the evaluation pipeline (no augmentation).
    pub pipeline: Option<Transform>,
    /// Fields of the run config's `mix` section for this arm, laid over the base config's
    /// (whose MixUp and CutMix are turned off first): a JSON object.
    pub mix: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArmFile {
    arm: Vec<RawArm>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArm {
    name: String,
    pipeline: Option<Vec<Transform>>,
    pipeline_file: Option<PathBuf>,
    mix: Option<serde_json::Value>,
}

/// Parses an arm file's `text`; `base` is the folder `pipeline_file` paths are relative to,
/// `origin` names the file in errors.
pub fn parse(text: &str, base: &Path, origin: &str) -> Result<Vec<Arm>> {
    let file: ArmFile = toml::from_str(text).with_context(|| format!("reading arms {origin}"))?;
    let mut arms = Vec::with_capacity(file.arm.len());
    for raw in file.arm {
        let pipeline = match (raw.pipeline, raw.pipeline_file) {
            (Some(_), Some(_)) => bail!(
                "arm {} in {origin} has both `pipeline` and `pipeline_file`: give one",
                raw.name
            ),
            (Some(steps), None) => Some(Compose::new(steps).into()),
            (None, Some(file)) => Some(read_pipeline(&base.join(file))?),
            (None, None) => None,
        };
        let mix = raw.mix.unwrap_or_else(|| serde_json::json!({}));
        // Named now rather than at the arm's turn: a misspelt field would otherwise fail late.
        serde_json::from_value::<MixConfig>(mix.clone())
            .with_context(|| format!("the `mix` of arm {} in {origin}", raw.name))?;
        arms.push(Arm {
            name: raw.name,
            pipeline,
            mix,
        });
    }
    check_names(&arms)?;
    Ok(arms)
}

/// The arms of an arm file on disk.
pub fn from_path(path: &Path) -> Result<Vec<Arm>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read arm file {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base, &path.display().to_string())
}

/// The compiled-in default arms.
pub fn defaults() -> Result<Vec<Arm>> {
    parse(DEFAULT_ARMS, Path::new("."), "(the default set)")
}

/// `--arm NAME=FILE`: an arm that trains with the pipeline in FILE.
pub fn from_flag(flag: &str) -> Result<Arm> {
    let Some((name, file)) = flag.split_once('=') else {
        bail!("--arm {flag}: expected NAME=PIPELINE_FILE");
    };
    if name.is_empty() || file.is_empty() {
        bail!("--arm {flag}: expected NAME=PIPELINE_FILE");
    }
    Ok(Arm {
        name: name.to_string(),
        pipeline: Some(read_pipeline(Path::new(file))?),
        mix: serde_json::json!({}),
    })
}

fn read_pipeline(path: &Path) -> Result<Transform> {
    Transform::from_path(path).with_context(|| format!("pipeline file {}", path.display()))
}

/// Arm names become run directory names: unique, non-empty, and safe in a path.
pub fn check_names(arms: &[Arm]) -> Result<()> {
    if arms.is_empty() {
        bail!("no arms to compare");
    }
    for (i, arm) in arms.iter().enumerate() {
        let safe = !arm.name.is_empty()
            && arm
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && !arm.name.starts_with('.');
        if !safe {
            bail!(
                "arm name {:?}: use letters, digits, '-', '_' and '.' (it names a folder)",
                arm.name
            );
        }
        if arms[..i].iter().any(|a| a.name == arm.name) {
            bail!("two arms are named {}", arm.name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_parses_into_the_seed_techniques() {
        let arms = defaults().expect("default arms");
        let names: Vec<&str> = arms.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "none",
                "crop",
                "flip",
                "color-jitter",
                "rotation",
                "erasing",
                "mixup",
                "cutmix",
                "recipe"
            ]
        );
        assert!(arms[0].pipeline.is_none());
        assert_eq!(arms[6].mix, serde_json::json!({"mixup_alpha": 1.0}));
        assert_eq!(arms[7].mix, serde_json::json!({"cutmix_alpha": 1.0}));
        assert_eq!(arms[1].mix, serde_json::json!({}));
        // The recipe arm is the trainer's default 32x32 training pipeline.
        assert_eq!(
            arms[8].pipeline.as_ref(),
            Some(&crate::recipes::train(DEFAULT_SIDE, false))
        );
    }

    #[test]
    fn bad_arm_files_name_what_is_wrong() {
        let dir = Path::new(".");
        let both = "[[arm]]\nname = \"a\"\npipeline = []\npipeline_file = \"x.toml\"\n";
        let err = parse(both, dir, "t.toml").unwrap_err();
        assert!(format!("{err:#}").contains("both `pipeline` and `pipeline_file`"));
        let twice = "[[arm]]\nname = \"a\"\n[[arm]]\nname = \"a\"\n";
        assert!(
            parse(twice, dir, "t.toml")
                .unwrap_err()
                .to_string()
                .contains("two arms are named a")
        );
        let slash = "[[arm]]\nname = \"../x\"\n";
        assert!(
            parse(slash, dir, "t.toml")
                .unwrap_err()
                .to_string()
                .contains("names a folder")
        );
        let bad_mix = "[[arm]]\nname = \"a\"\nmix = { mixup = 1.0 }\n";
        let err = parse(bad_mix, dir, "t.toml").unwrap_err();
        assert!(format!("{err:#}").contains("the `mix` of arm a"), "{err:#}");
        let bad_transform = "[[arm]]\nname = \"a\"\npipeline = [{ type = \"Nope\" }]\n";
        assert!(parse(bad_transform, dir, "t.toml").is_err());
        assert!(from_flag("nofile").is_err());
        let missing = from_flag("mine=/nonexistent/p.toml").unwrap_err();
        assert!(format!("{missing:#}").contains("/nonexistent/p.toml"));
    }
}
