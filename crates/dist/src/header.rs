//! The header each rank announces before a collective, and the one verdict on the headers of all
//! ranks. Every engine runs the same check before any data moves, so a mismatch reads the same
//! whatever the engine, and adding a collective touches this file and the engines' data paths.

use crate::comm::ReduceOp;
use crate::error::{DistError, Result};

/// A collective, as a header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    AllReduce(ReduceOp),
    Broadcast,
    Barrier,
    AllGather,
}

impl Op {
    /// The name errors use (`DistError::Timeout { op, .. }`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::AllReduce(_) => "all_reduce",
            Op::Broadcast => "broadcast",
            Op::Barrier => "barrier",
            Op::AllGather => "all_gather_bytes",
        }
    }

    fn code(self) -> u64 {
        match self {
            Op::AllReduce(ReduceOp::Sum) => 1,
            Op::AllReduce(ReduceOp::Mean) => 2,
            Op::Broadcast => 3,
            Op::Barrier => 4,
            Op::AllGather => 5,
        }
    }

    fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            1 => Op::AllReduce(ReduceOp::Sum),
            2 => Op::AllReduce(ReduceOp::Mean),
            3 => Op::Broadcast,
            4 => Op::Barrier,
            5 => Op::AllGather,
            _ => return None,
        })
    }
}

/// What a rank is about to run: its `seq`-th collective (counted from 1), `op` on `len`
/// elements (bytes for `all_gather_bytes`), from `root` (broadcast; 0 otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub seq: u64,
    pub op: Op,
    pub len: u64,
    pub root: u64,
}

impl Header {
    /// Size of [`Header::to_bytes`].
    pub(crate) const BYTES: usize = 32;

    pub(crate) fn new(seq: u64, op: Op, len: usize, root: usize) -> Self {
        Self {
            seq,
            op,
            len: len as u64,
            root: root as u64,
        }
    }

    /// The wire form: four little-endian words `seq, op, len, root`.
    pub(crate) fn to_words(self) -> [u64; 4] {
        [self.seq, self.op.code(), self.len, self.root]
    }

    pub(crate) fn from_words(words: [u64; 4]) -> Result<Self> {
        let op = Op::from_code(words[1]).ok_or_else(|| {
            DistError::Invalid(format!(
                "a peer announced an unknown collective (code {}): is every rank the same \
                 version of kindling?",
                words[1]
            ))
        })?;
        Ok(Self {
            seq: words[0],
            op,
            len: words[2],
            root: words[3],
        })
    }

    pub(crate) fn to_bytes(self) -> [u8; Self::BYTES] {
        let mut out = [0u8; Self::BYTES];
        for (chunk, word) in out.chunks_exact_mut(8).zip(self.to_words()) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != Self::BYTES {
            return Err(DistError::Invalid(format!(
                "a collective header of {} bytes (expected {})",
                bytes.len(),
                Self::BYTES
            )));
        }
        let mut words = [0u64; 4];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(chunk);
            *word = u64::from_le_bytes(raw);
        }
        Self::from_words(words)
    }

    /// How an [`DistError::OpMismatch`] shows this rank's call: `#3 broadcast(root 1)`.
    fn describe(&self) -> String {
        let call = match self.op {
            Op::AllReduce(op) => format!("all_reduce({op:?})"),
            Op::Broadcast => format!("broadcast(root {})", self.root),
            Op::Barrier => "barrier".into(),
            Op::AllGather => "all_gather_bytes".into(),
        };
        format!("#{} {call}", self.seq)
    }
}

/// The verdict on every rank's header (indexed by rank): the same collective at the same point
/// of the sequence (same root for a broadcast, a root inside the group), and the same length
/// except for `all_gather_bytes`, whose parts may differ.
pub(crate) fn verdict(headers: &[Header]) -> Result<()> {
    let Some(first) = headers.first() else {
        return Err(DistError::Invalid("no headers to agree on".into()));
    };
    let same_call = |h: &Header| h.seq == first.seq && h.op == first.op && h.root == first.root;
    if !headers.iter().all(same_call) {
        return Err(DistError::OpMismatch {
            per_rank: headers.iter().map(Header::describe).collect(),
        });
    }
    if first.op == Op::Broadcast && first.root >= headers.len() as u64 {
        return Err(DistError::Invalid(format!(
            "broadcast root {} is not a rank of a group of {}",
            first.root,
            headers.len()
        )));
    }
    if first.op != Op::AllGather && headers.iter().any(|h| h.len != first.len) {
        return Err(DistError::SizeMismatch {
            op: first.op.name(),
            sizes: headers.iter().map(|h| h.len as usize).collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(seq: u64, op: Op, len: usize, root: usize) -> Header {
        Header::new(seq, op, len, root)
    }

    #[test]
    fn headers_round_trip_through_bytes_and_words() {
        for op in [
            Op::AllReduce(ReduceOp::Sum),
            Op::AllReduce(ReduceOp::Mean),
            Op::Broadcast,
            Op::Barrier,
            Op::AllGather,
        ] {
            let header = h(7, op, 1 << 40, 3);
            assert_eq!(Header::from_bytes(&header.to_bytes()), Ok(header));
            assert_eq!(Header::from_words(header.to_words()), Ok(header));
        }
        assert!(Header::from_bytes(&[0; 31]).is_err());
        let unknown = Header::from_words([1, 99, 0, 0]).expect_err("unknown op");
        assert!(unknown.to_string().contains("code 99"), "{unknown}");
    }

    #[test]
    fn matching_headers_pass() {
        let sum = Op::AllReduce(ReduceOp::Sum);
        assert_eq!(verdict(&[h(1, sum, 4, 0), h(1, sum, 4, 0)]), Ok(()));
        // all_gather parts may differ in length.
        let g = Op::AllGather;
        assert_eq!(verdict(&[h(2, g, 1, 0), h(2, g, 9, 0)]), Ok(()));
    }

    #[test]
    fn mismatches_name_every_ranks_call() {
        let sum = Op::AllReduce(ReduceOp::Sum);
        let e = verdict(&[h(3, sum, 4, 0), h(3, Op::Broadcast, 4, 1)]).expect_err("op");
        assert_eq!(
            e.to_string(),
            "ranks disagree on the collective to run (per rank: [\"#3 all_reduce(Sum)\", \
             \"#3 broadcast(root 1)\"])"
        );
        let e = verdict(&[h(3, Op::Broadcast, 4, 0), h(3, Op::Broadcast, 4, 1)]).expect_err("root");
        assert!(matches!(e, DistError::OpMismatch { .. }), "{e}");
        let e = verdict(&[h(3, Op::Barrier, 0, 0), h(4, Op::Barrier, 0, 0)]).expect_err("seq");
        assert!(e.to_string().contains("#4 barrier"), "{e}");
        let e = verdict(&[h(1, sum, 3, 0), h(1, sum, 4, 0)]).expect_err("len");
        assert_eq!(
            e,
            DistError::SizeMismatch {
                op: "all_reduce",
                sizes: vec![3, 4]
            }
        );
        let e = verdict(&[h(1, Op::Broadcast, 2, 2), h(1, Op::Broadcast, 2, 2)]).expect_err("root");
        assert!(e.to_string().contains("root 2 is not a rank"), "{e}");
    }
}
