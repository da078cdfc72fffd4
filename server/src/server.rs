//! The server: one runtime, one buffer pool, two listeners.
//!
//! [`Server::start`] builds a tokio runtime of its own, the [`BufPool`]
//! (limited by `--max-memory`, leak detection at the chosen level), the
//! [`Pipeline`] over it, and binds the protocol and HTTP listeners; every
//! accepted connection is a task ([`crate::connection`]). The caller keeps
//! the [`Server`] handle: its addresses (port 0 binds a free port), a
//! [`View`] of its numbers, and [`Server::stop`], which shuts the runtime
//! down and so drops every connection, then the pipeline and the pool.
//!
//! Owning the runtime keeps the server self-contained: the CLI's `serve`
//! parks its main thread on it, while the demo and the tests start one in
//! process beside a load generator on a runtime of its own.
//!
//! # The pool
//!
//! The chunk size follows the limit (a sixteenth of it, between 256 KiB and
//! Netty's 4 MiB), so a small limit still fills in small steps and a
//! refusal comes when the limit is nearly all used, not a whole chunk
//! early; a thread's cache holds at most a chunk.

use crate::buffers::{Buffers, HeapBuffers};
use crate::counters::{Counters, Snapshot};
use crate::protocol::cipher::CipherParams;
use crate::refusals::RefusalLog;
use crate::stages::{Pipeline, Stage};
use poolalloc::buf::BufPool;
use poolalloc::{LeakDetection, LeakReport, PooledAllocator};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// Which buffers the stages copy into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BufferKind {
    /// Pooled buffers from one `BufPool` under the limit (the server).
    Pooled,
    /// `BytesMut` on the global allocator, unlimited (the bench's peer).
    Heap,
}

/// What [`Server::start`] needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The protocol listener.
    pub listen: SocketAddr,
    /// The HTTP listener (`/metrics`, `/leaks`, `/health`).
    pub http: SocketAddr,
    /// The pool's limit in bytes (`None`: unlimited).
    pub max_memory: Option<usize>,
    /// The stage that keeps its copies.
    pub leak_stage: Option<Stage>,
    /// The pool's leak detection level.
    pub leak_detection: LeakDetection,
    /// Pooled or heap buffers.
    pub buffers: BufferKind,
    /// Largest frame accepted, escaped, flags included.
    pub max_frame: usize,
    /// The body cipher's constants.
    pub cipher: CipherParams,
    /// This platform's `MSG_GNSSCENTERID`, in acknowledgements.
    pub center_id: u32,
    /// Runtime worker threads (`None`: one per CPU).
    pub threads: Option<usize>,
}

impl ServeConfig {
    /// Defaults: loopback, free ports, unlimited, no leak, `Simple`
    /// detection, pooled buffers, 4 KiB frames.
    pub fn new(listen: SocketAddr, http: SocketAddr) -> ServeConfig {
        ServeConfig {
            listen,
            http,
            max_memory: None,
            leak_stage: None,
            leak_detection: LeakDetection::Simple,
            buffers: BufferKind::Pooled,
            max_frame: DEFAULT_MAX_FRAME,
            cipher: CipherParams::DEFAULT,
            center_id: 0x0809_0001,
            threads: None,
        }
    }
}

/// Largest frame by default: a position is about 220 bytes escaped.
pub const DEFAULT_MAX_FRAME: usize = 4096;

/// What every connection task shares.
pub struct Shared<B: Buffers> {
    /// The stages.
    pub pipeline: Pipeline<B>,
    /// The server's counters.
    pub counters: Counters,
    /// Refusals, logged once per second.
    pub refusals: RefusalLog,
    /// Largest frame accepted.
    pub max_frame: usize,
    /// This platform's id.
    pub center_id: u32,
}

/// The server's numbers, as the HTTP side and the demo read them.
pub trait View: Send + Sync + 'static {
    /// The server's counters.
    fn counters(&self) -> Snapshot;
    /// `/metrics`: the allocator's families, then the server's.
    fn prometheus(&self) -> String;
    /// The pool's leak report of allocations at least `min_age` old (`None`
    /// for heap buffers).
    fn leak_report(&self, min_age: Duration) -> Option<LeakReport>;
    /// The pool's used memory and limit (`None` for heap buffers).
    fn memory(&self) -> Option<(usize, usize)>;
    /// Refusal log lines written.
    fn refusal_lines(&self) -> u64;
    /// The leaking stage, if any.
    fn leak_stage(&self) -> Option<Stage>;
}

impl<B: Buffers> View for Shared<B> {
    fn counters(&self) -> Snapshot {
        self.counters.snapshot()
    }

    fn prometheus(&self) -> String {
        let mut out = match self.pipeline.pool().allocator() {
            Some(a) => a.metrics().to_prometheus(),
            None => String::new(),
        };
        self.counters
            .write_prometheus(self.pipeline.copies(), &mut out);
        out
    }

    fn leak_report(&self, min_age: Duration) -> Option<LeakReport> {
        let a = self.pipeline.pool().allocator()?;
        Some(a.leak_report_older_than(min_age))
    }

    fn memory(&self) -> Option<(usize, usize)> {
        let s = self.pipeline.pool().allocator()?.metrics_summary();
        Some((s.used_memory, s.max_memory))
    }

    fn refusal_lines(&self) -> u64 {
        self.refusals.lines()
    }

    fn leak_stage(&self) -> Option<Stage> {
        self.pipeline.leak_stage()
    }
}

/// A running server.
pub struct Server {
    runtime: Option<Runtime>,
    tcp: SocketAddr,
    http: SocketAddr,
    view: Arc<dyn View>,
}

impl Server {
    /// Starts a server; returns once both listeners are bound.
    pub fn start(config: &ServeConfig) -> io::Result<Server> {
        let mut rt = tokio::runtime::Builder::new_multi_thread();
        rt.enable_io().enable_time().thread_name("jt809-server");
        if let Some(n) = config.threads {
            rt.worker_threads(n.max(1));
        }
        let runtime = rt.build()?;
        match config.buffers {
            BufferKind::Pooled => {
                let pool =
                    pool(config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                Server::with(runtime, config, pool)
            }
            BufferKind::Heap => Server::with(runtime, config, HeapBuffers),
        }
    }

    fn with<B: Buffers>(runtime: Runtime, config: &ServeConfig, pool: B) -> io::Result<Server> {
        let shared = Arc::new(Shared {
            pipeline: Pipeline::new(pool, config.cipher, config.leak_stage),
            counters: Counters::default(),
            refusals: RefusalLog::default(),
            max_frame: config.max_frame,
            center_id: config.center_id,
        });
        let (tcp, http) = runtime.block_on(async {
            let tcp = TcpListener::bind(config.listen).await?;
            let http = TcpListener::bind(config.http).await?;
            io::Result::Ok((tcp, http))
        })?;
        let (tcp_addr, http_addr) = (tcp.local_addr()?, http.local_addr()?);
        runtime.spawn(accept(tcp, Arc::clone(&shared)));
        let view: Arc<dyn View> = shared;
        runtime.spawn(crate::http::serve(http, Arc::clone(&view)));
        Ok(Server {
            runtime: Some(runtime),
            tcp: tcp_addr,
            http: http_addr,
            view,
        })
    }

    /// The protocol listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.tcp
    }

    /// The HTTP listener's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The server's numbers.
    pub fn view(&self) -> &dyn View {
        &*self.view
    }

    /// Stops the server: connections are dropped, then the pool.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The pool for `config`.
fn pool(config: &ServeConfig) -> Result<BufPool, String> {
    let mut b = PooledAllocator::builder().leak_detection(config.leak_detection);
    if let Some(max) = config.max_memory {
        let chunk = chunk_for(max);
        // Thread caches in proportion: at most a chunk's worth per thread.
        b = b
            .max_memory(max)
            .chunk_size(chunk)
            .max_cached_capacity((chunk / 8).min(1 << 20))
            .cache_max_bytes(chunk.min(2 << 20));
    }
    let allocator = b.try_build().map_err(|e| e.to_string())?;
    Ok(BufPool::new(allocator))
}

/// A sixteenth of the limit as a power of two, within 256 KiB ..= 4 MiB.
fn chunk_for(max_memory: usize) -> usize {
    let sixteenth = (max_memory / 16).max(1);
    let pow2 = 1usize << (usize::BITS - 1 - sixteenth.leading_zeros());
    pow2.clamp(256 << 10, 4 << 20)
}

async fn accept<B: Buffers>(listener: TcpListener, shared: Arc<Shared<B>>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move { crate::connection::serve(stream, peer, &shared).await });
            }
            Err(e) => {
                // Out of file descriptors, usually: wait rather than spin.
                crate::log!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::chunk_for;

    #[test]
    fn chunk_follows_the_limit() {
        assert_eq!(chunk_for(8 << 20), 512 << 10);
        assert_eq!(chunk_for(1 << 20), 256 << 10);
        assert_eq!(chunk_for(1 << 30), 4 << 20);
        assert_eq!(chunk_for(100 << 20), 4 << 20);
        assert_eq!(chunk_for(20 << 20), 1 << 20);
    }
}
