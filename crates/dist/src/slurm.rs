//! Slurm's launch environment (`srun kindling train ...`): the rank, world size and local rank
//! Slurm gives every task, and the rendezvous address derived from the job's node list, for when
//! torchrun's variables are absent.

use crate::error::{DistError, Result};

/// The first host of a Slurm host list: `node[01-04,07],gpu5` -> `node01`.
pub fn first_host(nodelist: &str) -> Option<String> {
    let mut depth = 0usize;
    let end = nodelist
        .char_indices()
        .find(|&(_, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth = depth.saturating_sub(1),
                _ => {}
            }
            c == ',' && depth == 0
        })
        .map_or(nodelist.len(), |(i, _)| i);
    let first = nodelist[..end].trim();
    if first.is_empty() {
        return None;
    }
    match first.split_once('[') {
        None => Some(first.to_string()),
        Some((prefix, ranges)) => {
            let start = ranges
                .trim_end_matches(']')
                .split([',', '-'])
                .next()
                .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()))?;
            Some(format!("{prefix}{start}"))
        }
    }
}

/// The port a Slurm job's ranks meet on without `MASTER_PORT`: 15000 + the job id's last four
/// digits, as PyTorch Lightning picks it, so that jobs sharing a node do not collide.
pub fn default_port(job_id: &str) -> Result<u16> {
    let digits: String = job_id.chars().filter(char::is_ascii_digit).collect();
    let tail = &digits[digits.len().saturating_sub(4)..];
    let n: u16 = tail
        .parse()
        .map_err(|_| DistError::Invalid(format!("SLURM_JOB_ID={job_id:?}: expected a number")))?;
    Ok(15000 + n)
}

/// `(rank, world size, local rank, master address)` from Slurm's variables, read through
/// `var`; `None` when `SLURM_PROCID` is not set (not a Slurm task).
pub fn read(var: impl Fn(&str) -> Option<String>) -> Option<Result<(usize, usize, usize, String)>> {
    let procid = var("SLURM_PROCID")?;
    Some((|| {
        let number = |name: &str| -> Result<usize> {
            let text = var(name).ok_or_else(|| {
                DistError::Invalid(format!("{name} is not set (a Slurm task has SLURM_PROCID)"))
            })?;
            text.trim().parse().map_err(|_| {
                DistError::Invalid(format!("{name}={text:?}: expected a non-negative integer"))
            })
        };
        let rank = procid.trim().parse().map_err(|_| {
            DistError::Invalid(format!(
                "SLURM_PROCID={procid:?}: expected a non-negative integer"
            ))
        })?;
        let world = number("SLURM_NTASKS")?;
        let local = number("SLURM_LOCALID")?;
        let addr = match var("MASTER_ADDR") {
            Some(addr) => addr,
            None => {
                let list = var("SLURM_JOB_NODELIST")
                    .or_else(|| var("SLURM_NODELIST"))
                    .ok_or_else(|| {
                        DistError::Invalid(
                            "neither MASTER_ADDR nor SLURM_JOB_NODELIST is set".into(),
                        )
                    })?;
                first_host(&list).ok_or_else(|| {
                    DistError::Invalid(format!("SLURM_JOB_NODELIST={list:?}: no first host"))
                })?
            }
        };
        let port = match var("MASTER_PORT") {
            Some(p) => p.trim().parse().map_err(|_| {
                DistError::Invalid(format!("MASTER_PORT={p:?}: expected a port number"))
            })?,
            None => default_port(&var("SLURM_JOB_ID").unwrap_or_default())?,
        };
        Ok((rank, world, local, format!("{addr}:{port}")))
    })())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn first_hosts_of_slurm_host_lists() {
        assert_eq!(first_host("node[01-04,07],gpu5").as_deref(), Some("node01"));
        assert_eq!(first_host("gpu5,node[1-2]").as_deref(), Some("gpu5"));
        assert_eq!(first_host("n[7,9]").as_deref(), Some("n7"));
        assert_eq!(first_host("single").as_deref(), Some("single"));
        assert_eq!(first_host(""), None);
        assert_eq!(first_host("bad[x-y]"), None);
    }

    #[test]
    fn a_slurm_task_reads_its_rank_and_the_first_node() {
        let vars: HashMap<&str, &str> = [
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_NODELIST", "node[03-06]"),
            ("SLURM_JOB_ID", "1234567"),
        ]
        .into();
        let get = |k: &str| vars.get(k).map(|v| v.to_string());
        let env = read(get).expect("a Slurm task").expect("valid");
        assert_eq!(env, (5, 8, 1, "node03:19567".to_string()));
        assert!(read(|_| None).is_none(), "not a Slurm task");
        let partial = |k: &str| (k == "SLURM_PROCID").then(|| "0".to_string());
        let err = read(partial).unwrap().unwrap_err();
        assert!(err.to_string().contains("SLURM_NTASKS is not set"), "{err}");
    }
}
