//! The header agreement before each collective reads the same on every engine: the same
//! mismatch gives every rank of every engine the same message.

use std::time::Duration;

use kindling_dist::{Communicator, LocalGroup, ReduceOp};

/// Runs the mismatch `case` on this rank of a two-rank group and returns the error message.
/// `op`: rank 0 all-reduces while rank 1 broadcasts; `size`: the ranks all-reduce 3 and 4
/// values.
pub fn mismatch(comm: &mut impl Communicator, case: &str) -> String {
    let rank = comm.rank();
    let mut buf = vec![1.0f32; 3 + rank];
    let result = match (case, rank) {
        ("op", 0) => comm.all_reduce(&mut buf[..3], ReduceOp::Sum),
        ("op", _) => comm.broadcast(&mut buf[..3], 1),
        ("size", _) => comm.all_reduce(&mut buf, ReduceOp::Sum),
        (other, _) => panic!("unknown mismatch case {other}"),
    };
    match result {
        Ok(()) => "no error".into(),
        Err(e) => e.to_string(),
    }
}

const EXPECTED: [(&str, &str); 2] = [
    (
        "op",
        "ranks disagree on the collective to run (per rank: [\"#1 all_reduce(Sum)\", \
         \"#1 broadcast(root 1)\"])",
    ),
    (
        "size",
        "all_reduce: buffer sizes differ across ranks (elements per rank: [3, 4])",
    ),
];

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn a_mismatch_reads_the_same_on_every_rank_of_every_engine() {
    for (case, expected) in EXPECTED {
        let mut messages: Vec<(String, String)> = Vec::new();
        let local = LocalGroup::run(&[(), ()], TIMEOUT, |comm, ()| {
            Ok::<_, std::convert::Infallible>(mismatch(comm, case))
        })
        .expect("group");
        for (rank, m) in local.into_iter().enumerate() {
            messages.push((format!("threads rank {rank}"), m.expect("rank ran")));
        }
        let tcp = crate::tcp::group(2, TIMEOUT, |mut comm| mismatch(&mut comm, case));
        for (rank, m) in tcp.into_iter().enumerate() {
            messages.push((format!("tcp rank {rank}"), m.expect("rank joined")));
        }
        #[cfg(feature = "mpi")]
        {
            let ranks = crate::mpi::mpirun(2, &format!("mismatch_{case}"), 20_000);
            for rank in 0..2 {
                messages.push((
                    format!("mpi rank {rank}"),
                    ranks.get(rank, "message").into(),
                ));
            }
        }
        for (who, message) in &messages {
            assert_eq!(message, expected, "{case} mismatch, {who}");
        }
        eprintln!(
            "{case} mismatch: {} ranks said {expected:?}",
            messages.len()
        );
    }
}
