//! The TCP engine: a process group from a torchrun-style environment (`RANK`, `WORLD_SIZE`,
//! `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`), on one machine or several, for any backend.
//!
//! Rank 0 is the hub of a star: every other rank connects to it, sends its contribution to each
//! collective (its [`Header`] first), and gets the result back. Rank 0 checks the headers with
//! the [`verdict`] every engine shares before combining anything, and it is the one that knows
//! which peer is missing, so its verdict (timeout, dead peer, mismatch) is sent to every rank:
//! all ranks report the same error. Sockets are polled without blocking, so a closed
//! connection (a dead process, on any machine) is seen at once.
//!
//! The star moves `2 (N - 1)` buffers through rank 0 per all-reduce: fine for metadata, the
//! NCCL engine's rendezvous and CPU training of small models across machines; MPI is faster
//! for large models.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::comm::{Communicator, ReduceOp, check_timeout, pause};
use crate::error::{DistError, Result};
use crate::header::{Header, Op, verdict};

/// Rank 0 gets this long beyond the timeout to send its verdict before the others give up on
/// it.
const VERDICT_GRACE: Duration = Duration::from_millis(500);
/// Frames larger than this are refused (a corrupt or foreign stream).
const MAX_FRAME: u64 = 1 << 36;
const MAGIC: u32 = 0x6b64_7463;
/// How long the rest of a frame that has started to arrive may take.
const MID_FRAME_TIMEOUT: Duration = Duration::from_secs(60);

/// Frame kinds.
const HELLO: u8 = 1;
const WELCOME: u8 = 2;
const CALL: u8 = 3;
const RESULT: u8 = 4;
const VERDICT: u8 = 5;
const ABORT: u8 = 6;

/// The environment of one rank, as torchrun sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpEnv {
    /// `RANK`.
    pub rank: usize,
    /// `WORLD_SIZE`.
    pub world_size: usize,
    /// `LOCAL_RANK` (default: `RANK` modulo `LOCAL_WORLD_SIZE`, or `RANK` on one machine).
    pub local_rank: usize,
    /// `MASTER_ADDR:MASTER_PORT`, where the other ranks reach rank 0.
    pub master: String,
    /// Where rank 0 listens (`KINDLING_BIND`, e.g. `10.0.0.1:29500`); by default every
    /// interface at `MASTER_PORT`, since `MASTER_ADDR` may resolve to a loopback address on
    /// rank 0's own machine (Debian maps the host name to 127.0.1.1).
    pub bind: Option<String>,
}

impl TcpEnv {
    /// Reads `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR` and `MASTER_PORT` (torchrun's;
    /// under torchrun, whose agent holds `MASTER_PORT`, the ranks meet at `MASTER_PORT + 1`),
    /// or, when `RANK` is absent in a Slurm task, `SLURM_PROCID`, `SLURM_NTASKS`,
    /// `SLURM_LOCALID` and the first host of `SLURM_JOB_NODELIST` (see [`crate::slurm`]).
    pub fn from_env() -> Result<Self> {
        let bind = std::env::var("KINDLING_BIND").ok();
        if std::env::var_os("RANK").is_none()
            && let Some(slurm) = crate::slurm::read(|name| std::env::var(name).ok())
        {
            let (rank, world_size, local_rank, master) = slurm?;
            let env = Self {
                rank,
                world_size,
                local_rank,
                master,
                bind,
            };
            env.check()?;
            return Ok(env);
        }
        let var = |name: &str| {
            std::env::var(name).map_err(|_| {
                DistError::Invalid(format!(
                    "{name} is not set (the TCP and NCCL engines read RANK, WORLD_SIZE, \
                     MASTER_ADDR and MASTER_PORT, as torchrun sets them)"
                ))
            })
        };
        let number = |name: &str, text: String| {
            text.trim().parse::<usize>().map_err(|_| {
                DistError::Invalid(format!("{name}={text:?}: expected a non-negative integer"))
            })
        };
        let rank = number("RANK", var("RANK")?)?;
        let world_size = number("WORLD_SIZE", var("WORLD_SIZE")?)?;
        let local_rank = match (
            std::env::var("LOCAL_RANK"),
            std::env::var("LOCAL_WORLD_SIZE"),
        ) {
            (Ok(v), _) => number("LOCAL_RANK", v)?,
            // torchrun numbers ranks node by node.
            (Err(_), Ok(n)) => match number("LOCAL_WORLD_SIZE", n)? {
                0 => return Err(DistError::Invalid("LOCAL_WORLD_SIZE=0".into())),
                n => rank % n,
            },
            (Err(_), Err(_)) => rank,
        };
        let mut port = number("MASTER_PORT", var("MASTER_PORT")?)?;
        // Under torchrun its agent's TCPStore already listens on MASTER_PORT: meet next to it.
        if std::env::var("TORCHELASTIC_USE_AGENT_STORE")
            .is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
        {
            port += 1;
        }
        let env = Self {
            rank,
            world_size,
            local_rank,
            master: format!("{}:{port}", var("MASTER_ADDR")?),
            bind,
        };
        env.check()?;
        Ok(env)
    }

    fn check(&self) -> Result<()> {
        if self.world_size == 0 || self.rank >= self.world_size {
            return Err(DistError::Invalid(format!(
                "RANK={} is not a rank of WORLD_SIZE={}",
                self.rank, self.world_size
            )));
        }
        Ok(())
    }
}

/// One framed connection, read without blocking.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    inbox: Vec<u8>,
}

struct Frame {
    kind: u8,
    seq: u64,
    body: Vec<u8>,
}

impl Conn {
    fn new(stream: TcpStream) -> std::io::Result<Self> {
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        Ok(Self {
            stream,
            inbox: Vec::new(),
        })
    }

    /// Sends a frame, waiting at most until `deadline` for the peer to take it.
    fn send(&mut self, kind: u8, seq: u64, body: &[u8], deadline: Instant) -> std::io::Result<()> {
        let mut head = Vec::with_capacity(21);
        head.extend_from_slice(&MAGIC.to_le_bytes());
        head.push(kind);
        head.extend_from_slice(&seq.to_le_bytes());
        head.extend_from_slice(&(body.len() as u64).to_le_bytes());
        self.stream.set_nonblocking(false)?;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        self.stream.set_write_timeout(Some(left))?;
        let sent = self
            .stream
            .write_all(&head)
            .and_then(|()| self.stream.write_all(body));
        self.stream.set_nonblocking(true)?;
        sent
    }

    /// A complete frame if one has arrived; `Err` when the connection closed or is corrupt.
    fn poll(&mut self) -> std::io::Result<Option<Frame>> {
        let mut chunk = [0u8; 1 << 16];
        loop {
            if let Some(frame) = self.take_frame()? {
                return Ok(Some(frame));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.inbox.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn take_frame(&mut self) -> std::io::Result<Option<Frame>> {
        if self.inbox.len() < 21 {
            return Ok(None);
        }
        let word = |range: std::ops::Range<usize>, inbox: &[u8]| {
            let mut b = [0u8; 8];
            b[..range.len()].copy_from_slice(&inbox[range]);
            u64::from_le_bytes(b)
        };
        if word(0..4, &self.inbox) != u64::from(MAGIC) {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                "not a kindling-dist stream",
            ));
        }
        let len = word(13..21, &self.inbox);
        if len > MAX_FRAME {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                "frame too large",
            ));
        }
        let total = 21 + len as usize;
        if self.inbox.len() < total {
            // The sender is streaming this frame: read the rest in one blocking call rather
            // than polling chunk by chunk (bounded, so a peer that stalls mid-frame is an error).
            let have = self.inbox.len();
            self.inbox.resize(total, 0);
            self.stream.set_nonblocking(false)?;
            self.stream.set_read_timeout(Some(MID_FRAME_TIMEOUT))?;
            let read = self.stream.read_exact(&mut self.inbox[have..]);
            self.stream.set_nonblocking(true)?;
            if let Err(e) = read {
                self.inbox.truncate(have);
                return Err(e);
            }
        }
        let frame = Frame {
            kind: self.inbox[4],
            seq: word(5..13, &self.inbox),
            body: self.inbox[21..total].to_vec(),
        };
        self.inbox.drain(..total);
        Ok(Some(frame))
    }
}

/// One rank's handle on a TCP process group; see [`TcpComm::connect`].
///
/// Follows the [`Communicator`] contract: every collective is bounded by the timeout, a rank
/// whose process ends or whose connection drops is reported at once as
/// [`DistError::PeerFailed`], and lengths are checked (by rank 0) before anything is combined.
/// Sums are taken in rank order on rank 0, so every rank gets bit-identical results.
#[derive(Debug)]
pub struct TcpComm {
    env: TcpEnv,
    timeout: Duration,
    /// Rank 0: one connection per rank (`None` at its own index). Others: the hub at index 0.
    peers: Vec<Option<Conn>>,
    seq: u64,
    closed: Option<String>,
}

impl TcpComm {
    /// Joins the group that the torchrun-style environment describes ([`TcpEnv::from_env`]).
    pub fn from_env(timeout: Duration) -> Result<Self> {
        Self::connect(TcpEnv::from_env()?, timeout)
    }

    /// Joins a group: rank 0 listens on `env.master` and waits (at most `timeout`) for every
    /// other rank, which connect (retrying until `timeout`, so start order does not matter).
    pub fn connect(env: TcpEnv, timeout: Duration) -> Result<Self> {
        check_timeout(timeout)?;
        env.check()?;
        let deadline = Instant::now() + timeout;
        let peers = if env.rank == 0 {
            accept_all(&env, deadline, timeout)?
        } else {
            let mut peers: Vec<Option<Conn>> = (0..env.world_size).map(|_| None).collect();
            peers[0] = Some(join(&env, deadline, timeout)?);
            peers
        };
        Ok(Self {
            env,
            timeout,
            peers,
            seq: 0,
            closed: None,
        })
    }

    fn fail(&mut self, err: DistError) -> DistError {
        self.closed.get_or_insert_with(|| err.to_string());
        err
    }

    /// Runs one collective: `body` is this rank's contribution; returns the result bytes.
    fn collective(&mut self, op: Op, len: usize, root: usize, body: Vec<u8>) -> Result<Vec<u8>> {
        if let Some(why) = &self.closed {
            return Err(DistError::Closed(why.clone()));
        }
        self.seq += 1;
        let header = Header::new(self.seq, op, len, root);
        let outcome = if self.env.rank == 0 {
            self.hub(header, body)
        } else {
            self.spoke(header, body)
        };
        outcome.map_err(|e| self.fail(e))
    }

    /// Rank 0: gather every call, check, combine, answer.
    // The loop over ranks indexes two vectors and reports through `self`.
    #[allow(clippy::needless_range_loop)]
    fn hub(&mut self, header: Header, mine: Vec<u8>) -> Result<Vec<u8>> {
        let world = self.env.world_size;
        let op = header.op;
        let start = Instant::now();
        let deadline = start + self.timeout;
        let mut calls: Vec<Option<(Header, Vec<u8>)>> = (0..world).map(|_| None).collect();
        calls[0] = Some((header, mine));
        loop {
            let mut progressed = false;
            for rank in 1..world {
                if calls[rank].is_some() {
                    continue;
                }
                let Some(conn) = self.peers[rank].as_mut() else {
                    continue;
                };
                match conn.poll() {
                    Ok(Some(frame)) if frame.kind == CALL && frame.seq == self.seq => {
                        match split_call(&frame.body) {
                            Ok((head, data)) => calls[rank] = Some((head, data.to_vec())),
                            Err(e) => return Err(self.tell_all(e)),
                        }
                        progressed = true;
                    }
                    Ok(Some(frame)) if frame.kind == ABORT => {
                        let reason = String::from_utf8_lossy(&frame.body).into_owned();
                        return Err(self.tell_all(DistError::PeerFailed {
                            rank,
                            op: op.name(),
                            reason,
                        }));
                    }
                    Ok(Some(frame)) => {
                        return Err(self.tell_all(DistError::Invalid(format!(
                            "rank {rank} sent an unexpected frame (kind {}, sequence {} while \
                             this is collective {})",
                            frame.kind, frame.seq, self.seq
                        ))));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.peers[rank] = None;
                        return Err(self.tell_all(DistError::PeerFailed {
                            rank,
                            op: op.name(),
                            reason: format!("its connection closed ({e})"),
                        }));
                    }
                }
            }
            if let Some(missing) = (1..world).find(|&r| calls[r].is_none()) {
                if Instant::now() >= deadline {
                    return Err(self.tell_all(DistError::Timeout {
                        op: op.name(),
                        peer: missing,
                        after: self.timeout,
                    }));
                }
                if !progressed {
                    pause(start.elapsed());
                }
                continue;
            }
            break;
        }
        let (headers, bodies): (Vec<Header>, Vec<Vec<u8>>) = calls.into_iter().flatten().unzip();
        if let Err(e) = verdict(&headers) {
            return Err(self.tell_all(e));
        }
        let result = combine(header, world, bodies)?;
        for rank in 1..world {
            if let Some(conn) = self.peers[rank].as_mut()
                && let Err(e) = conn.send(RESULT, self.seq, &result, deadline + VERDICT_GRACE)
            {
                return Err(self.tell_all(DistError::PeerFailed {
                    rank,
                    op: op.name(),
                    reason: format!("sending it the result failed ({e})"),
                }));
            }
        }
        Ok(result)
    }

    /// Rank 0 tells every other rank about `err`, which they then report as their own.
    fn tell_all(&mut self, err: DistError) -> DistError {
        let verdict = encode_error(&err);
        let deadline = Instant::now() + VERDICT_GRACE;
        for conn in self.peers.iter_mut().flatten() {
            let _ = conn.send(VERDICT, self.seq, &verdict, deadline);
        }
        err
    }

    /// Ranks other than 0: send the call, wait for rank 0's answer.
    fn spoke(&mut self, header: Header, body: Vec<u8>) -> Result<Vec<u8>> {
        let op = header.op;
        let start = Instant::now();
        let deadline = start + self.timeout + VERDICT_GRACE;
        let mut call = Vec::with_capacity(Header::BYTES + body.len());
        call.extend_from_slice(&header.to_bytes());
        call.extend_from_slice(&body);
        drop(body);
        let seq = self.seq;
        let hub_failed = |reason: String| DistError::PeerFailed {
            rank: 0,
            op: op.name(),
            reason,
        };
        let conn = self.peers[0]
            .as_mut()
            .ok_or_else(|| DistError::Closed("no connection to rank 0".into()))?;
        if let Err(e) = conn.send(CALL, seq, &call, deadline) {
            // Rank 0 may have given its verdict and gone before this rank arrived: report the
            // verdict if it is waiting in the socket.
            while let Ok(Some(frame)) = conn.poll() {
                match frame.kind {
                    VERDICT => return Err(decode_error(&frame.body, op.name())),
                    ABORT => return Err(hub_failed(String::from_utf8_lossy(&frame.body).into())),
                    _ => {}
                }
            }
            return Err(hub_failed(format!("its connection closed ({e})")));
        }
        drop(call);
        loop {
            match conn.poll() {
                Ok(Some(frame)) if frame.kind == RESULT && frame.seq == seq => {
                    return Ok(frame.body);
                }
                Ok(Some(frame)) if frame.kind == VERDICT => {
                    return Err(decode_error(&frame.body, op.name()));
                }
                Ok(Some(frame)) if frame.kind == ABORT => {
                    let reason = String::from_utf8_lossy(&frame.body).into_owned();
                    return Err(hub_failed(reason));
                }
                Ok(Some(frame)) => {
                    return Err(DistError::Invalid(format!(
                        "rank 0 sent an unexpected frame (kind {}, sequence {})",
                        frame.kind, frame.seq
                    )));
                }
                Ok(None) => {}
                Err(e) => return Err(hub_failed(format!("its connection closed ({e})"))),
            }
            if Instant::now() >= deadline {
                return Err(DistError::Timeout {
                    op: op.name(),
                    peer: 0,
                    after: self.timeout,
                });
            }
            pause(start.elapsed());
        }
    }
}

impl Communicator for TcpComm {
    fn rank(&self) -> usize {
        self.env.rank
    }

    fn world_size(&self) -> usize {
        self.env.world_size
    }

    fn local_rank(&self) -> usize {
        self.env.local_rank
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn set_timeout(&mut self, timeout: Duration) {
        if check_timeout(timeout).is_ok() {
            self.timeout = timeout;
        }
    }

    fn all_reduce(&mut self, buf: &mut [f32], op: ReduceOp) -> Result<()> {
        let out = self.collective(Op::AllReduce(op), buf.len(), 0, f32_bytes(buf))?;
        read_f32s(&out, buf)
    }

    fn broadcast(&mut self, buf: &mut [f32], root: usize) -> Result<()> {
        // Only the root's values travel.
        let body = if root == self.env.rank {
            f32_bytes(buf)
        } else {
            Vec::new()
        };
        let out = self.collective(Op::Broadcast, buf.len(), root, body)?;
        read_f32s(&out, buf)
    }

    fn barrier(&mut self) -> Result<()> {
        self.collective(Op::Barrier, 0, 0, Vec::new()).map(drop)
    }

    fn all_gather_bytes(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        let out = self.collective(Op::AllGather, bytes.len(), 0, bytes.to_vec())?;
        let mut parts = Vec::with_capacity(self.env.world_size);
        let mut rest = out.as_slice();
        while rest.len() >= 8 {
            let n = u64::from_le_bytes(rest[..8].try_into().unwrap_or_default()) as usize;
            if rest.len() < 8 + n {
                break;
            }
            parts.push(rest[8..8 + n].to_vec());
            rest = &rest[8 + n..];
        }
        if parts.len() != self.env.world_size {
            return Err(DistError::Invalid("corrupt all_gather result".into()));
        }
        Ok(parts)
    }

    fn abort(&mut self, reason: &str) {
        if self.closed.is_some() {
            return;
        }
        let deadline = Instant::now() + VERDICT_GRACE;
        let seq = self.seq;
        for conn in self.peers.iter_mut().flatten() {
            let _ = conn.send(ABORT, seq, reason.as_bytes(), deadline);
        }
        self.closed = Some(format!(
            "rank {} aborted the group: {reason}",
            self.env.rank
        ));
    }
}

/// Rank 0's side of the rendezvous: accept `world - 1` ranks, each saying hello with its rank
/// and the world size it expects.
fn accept_all(env: &TcpEnv, deadline: Instant, timeout: Duration) -> Result<Vec<Option<Conn>>> {
    let port = env.master.rsplit(':').next().unwrap_or_default();
    let address = env
        .bind
        .clone()
        .unwrap_or_else(|| format!("0.0.0.0:{port}"));
    let listener = TcpListener::bind(&address).map_err(|e| {
        DistError::Invalid(format!(
            "rank 0 cannot listen on {address} (MASTER_PORT of MASTER_ADDR:MASTER_PORT = {}; \
             KINDLING_BIND picks another address): {e}",
            env.master
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| DistError::Invalid(format!("listener: {e}")))?;
    let world = env.world_size;
    let mut peers: Vec<Option<Conn>> = (0..world).map(|_| None).collect();
    let mut pending: Vec<Conn> = Vec::new();
    let start = Instant::now();
    while peers.iter().skip(1).any(Option::is_none) {
        match listener.accept() {
            Ok((stream, _)) => pending
                .push(Conn::new(stream).map_err(|e| DistError::Invalid(format!("accept: {e}")))?),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(DistError::Invalid(format!("accept: {e}"))),
        }
        let mut i = 0;
        while i < pending.len() {
            match pending[i].poll() {
                Ok(Some(frame)) if frame.kind == HELLO && frame.body.len() == 16 => {
                    let mut conn = pending.swap_remove(i);
                    let rank = u64::from_le_bytes(frame.body[..8].try_into().unwrap_or_default());
                    let their_world =
                        u64::from_le_bytes(frame.body[8..].try_into().unwrap_or_default());
                    let rank = rank as usize;
                    if their_world as usize != world || rank == 0 || rank >= world {
                        return Err(DistError::Invalid(format!(
                            "a rank joined as rank {rank} of {their_world}, but this group has \
                             {world} ranks (check RANK and WORLD_SIZE on every node)"
                        )));
                    }
                    if peers[rank].is_some() {
                        return Err(DistError::Invalid(format!(
                            "two processes joined as rank {rank}"
                        )));
                    }
                    conn.send(WELCOME, 0, &[], deadline)
                        .map_err(|e| DistError::Invalid(format!("welcome: {e}")))?;
                    peers[rank] = Some(conn);
                }
                Ok(Some(_)) | Err(_) => {
                    // Not one of ours (or gone before saying hello): ignore it.
                    pending.swap_remove(i);
                }
                Ok(None) => i += 1,
            }
        }
        if Instant::now() >= deadline {
            let missing = (1..world).find(|&r| peers[r].is_none()).unwrap_or(1);
            return Err(DistError::Timeout {
                op: "rendezvous",
                peer: missing,
                after: timeout,
            });
        }
        pause(start.elapsed());
    }
    Ok(peers)
}

/// A non-zero rank's side: connect to rank 0 (retrying until it listens), say hello, wait for
/// the welcome.
fn join(env: &TcpEnv, deadline: Instant, timeout: Duration) -> Result<Conn> {
    let addrs: Vec<SocketAddr> = env
        .master
        .to_socket_addrs()
        .map_err(|e| DistError::Invalid(format!("MASTER_ADDR:MASTER_PORT = {}: {e}", env.master)))?
        .collect();
    let start = Instant::now();
    let mut last_error = String::from("no address");
    loop {
        for addr in &addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            match TcpStream::connect_timeout(addr, left.clamp(Duration::from_millis(1), timeout)) {
                Ok(stream) => {
                    let mut conn =
                        Conn::new(stream).map_err(|e| DistError::Invalid(e.to_string()))?;
                    let mut hello = (env.rank as u64).to_le_bytes().to_vec();
                    hello.extend_from_slice(&(env.world_size as u64).to_le_bytes());
                    if conn.send(HELLO, 0, &hello, deadline).is_ok() {
                        loop {
                            match conn.poll() {
                                Ok(Some(f)) if f.kind == WELCOME => return Ok(conn),
                                Ok(None) if Instant::now() < deadline => {
                                    pause(start.elapsed());
                                }
                                Ok(None) => break,
                                Ok(Some(_)) | Err(_) => {
                                    return Err(DistError::PeerFailed {
                                        rank: 0,
                                        op: "rendezvous",
                                        reason: "rank 0 refused this rank (see its error)".into(),
                                    });
                                }
                            }
                        }
                    }
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        if Instant::now() >= deadline {
            return Err(DistError::Invalid(format!(
                "rendezvous timed out after {timeout:?}: rank 0 at {} did not answer \
                 ({last_error})",
                env.master
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The result of a collective from every rank's contribution (rank order).
fn combine(header: Header, world: usize, mut calls: Vec<Vec<u8>>) -> Result<Vec<u8>> {
    match header.op {
        Op::AllReduce(op) => {
            let mut acc = std::mem::take(&mut calls[0]);
            for part in &calls[1..] {
                for (a, b) in acc.chunks_exact_mut(4).zip(part.chunks_exact(4)) {
                    let sum = f32::from_le_bytes([a[0], a[1], a[2], a[3]])
                        + f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    a.copy_from_slice(&sum.to_le_bytes());
                }
            }
            if op == ReduceOp::Mean {
                let n = world as f32;
                for a in acc.chunks_exact_mut(4) {
                    let v = f32::from_le_bytes([a[0], a[1], a[2], a[3]]) / n;
                    a.copy_from_slice(&v.to_le_bytes());
                }
            }
            Ok(acc)
        }
        Op::Broadcast => Ok(std::mem::take(&mut calls[header.root as usize])),
        Op::Barrier => Ok(Vec::new()),
        Op::AllGather => {
            let mut out = Vec::new();
            for part in &calls {
                out.extend_from_slice(&(part.len() as u64).to_le_bytes());
                out.extend_from_slice(part);
            }
            Ok(out)
        }
    }
}

fn split_call(body: &[u8]) -> Result<(Header, &[u8])> {
    if body.len() < Header::BYTES {
        return Err(DistError::Invalid("a truncated call frame".into()));
    }
    let (head, data) = body.split_at(Header::BYTES);
    Ok((Header::from_bytes(head)?, data))
}

/// Rank 0's verdicts travel as text lines: a tag, then the fields.
fn encode_error(err: &DistError) -> Vec<u8> {
    let text = match err {
        DistError::Timeout { peer, after, .. } => format!("timeout\n{peer}\n{}", after.as_nanos()),
        DistError::PeerFailed { rank, reason, .. } => format!("peer\n{rank}\n{reason}"),
        DistError::SizeMismatch { sizes, .. } => format!(
            "sizes\n{}",
            sizes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
        DistError::OpMismatch { per_rank } => format!("ops\n{}", per_rank.join("\n")),
        DistError::Invalid(why) => format!("invalid\n{why}"),
        other => format!("other\n{other}"),
    };
    text.into_bytes()
}

fn decode_error(bytes: &[u8], op: &'static str) -> DistError {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.splitn(3, '\n');
    let tag = lines.next().unwrap_or_default();
    let a = lines.next().unwrap_or_default();
    let b = lines.next().unwrap_or_default();
    match tag {
        "timeout" => DistError::Timeout {
            op,
            peer: a.parse().unwrap_or(0),
            after: Duration::from_nanos(b.parse().unwrap_or(0)),
        },
        "peer" => DistError::PeerFailed {
            rank: a.parse().unwrap_or(0),
            op,
            reason: b.to_string(),
        },
        "sizes" => DistError::SizeMismatch {
            op,
            sizes: a.split(',').filter_map(|s| s.parse().ok()).collect(),
        },
        "ops" => DistError::OpMismatch {
            per_rank: text.lines().skip(1).map(String::from).collect(),
        },
        "invalid" => DistError::Invalid(text.split_once('\n').map_or("", |(_, why)| why).into()),
        _ => DistError::Invalid(format!("rank 0 reported: {a}{b}")),
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; values.len() * 4];
    for (o, v) in out.chunks_exact_mut(4).zip(values) {
        o.copy_from_slice(&v.to_le_bytes());
    }
    out
}

fn read_f32s(bytes: &[u8], out: &mut [f32]) -> Result<()> {
    if bytes.len() != out.len() * 4 {
        return Err(DistError::Invalid(format!(
            "rank 0 sent {} bytes for {} values",
            bytes.len(),
            out.len()
        )));
    }
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    Ok(())
}
