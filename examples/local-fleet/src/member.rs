//! A member "cluster" on loopback: a few replicas of an HTTP service that answer with the
//! member's id. Replicas keep their ports for the member's life (a stable address, as a member's
//! east-west gateway has), so a killed member can come back on the same endpoints. A member can
//! be switched, while it serves, to answer slowly or to fail half its requests ([`Mode`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// The response header naming the member that answered.
pub const MEMBER_HEADER: &str = "x-member";

/// How a member's replicas answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// 200 after the member's service time.
    #[default]
    Normal,
    /// 200 after the service time plus this much more.
    Slow(Duration),
    /// 503 for a random half of the requests (each a coin toss), 200 for the others.
    HalfBroken,
}

struct Replica {
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

/// One member cluster's service.
pub struct Member {
    id: String,
    delay: Duration,
    mode: Arc<Mutex<Mode>>,
    replicas: Mutex<Vec<Replica>>,
}

impl Member {
    /// Starts `replicas` replicas on free loopback ports; each answers after `delay`.
    pub async fn start(id: &str, replicas: usize, delay: Duration) -> anyhow::Result<Member> {
        let member = Member {
            id: id.to_owned(),
            delay,
            mode: Arc::default(),
            replicas: Mutex::new(Vec::new()),
        };
        for _ in 0..replicas {
            let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            let addr = listener.local_addr()?;
            let task = member.serve(listener, addr);
            member.lock().push(Replica {
                addr,
                task: Some(task),
            });
        }
        Ok(member)
    }

    /// The member's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Switches how every replica answers from the next request on.
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// Every replica's address (running or not).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.lock().iter().map(|r| r.addr).collect()
    }

    /// How many replicas run.
    pub fn running(&self) -> usize {
        self.lock().iter().filter(|r| r.task.is_some()).count()
    }

    /// Kills every replica at once: listeners and open connections close, requests in flight
    /// are cut.
    pub fn kill(&self) {
        for replica in self.lock().iter_mut() {
            if let Some(task) = replica.task.take() {
                task.abort();
            }
        }
    }

    /// Starts every stopped replica again on its old port.
    pub fn revive(&self) -> anyhow::Result<()> {
        let mut replicas = self.lock();
        for replica in replicas.iter_mut().filter(|r| r.task.is_none()) {
            let listener = bind(replica.addr)?;
            replica.task = Some(self.serve(listener, replica.addr));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Replica>> {
        self.replicas.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn serve(&self, listener: TcpListener, addr: SocketAddr) -> JoinHandle<()> {
        let id = self.id.clone();
        let delay = self.delay;
        let mode = Arc::clone(&self.mode);
        let replica = format!("{id}-{}", addr.port());
        tokio::spawn(async move {
            // Dropping the set (when the task is aborted) aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let id = id.clone();
                let replica = replica.clone();
                let mode = Arc::clone(&mode);
                connections.spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let mode = *mode.lock().unwrap_or_else(PoisonError::into_inner);
                        answer(id.clone(), replica.clone(), delay, mode, request)
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        })
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket.listen(1024)?)
}

async fn answer(
    id: String,
    replica: String,
    delay: Duration,
    mode: Mode,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let _ = request.into_body().collect().await;
    let delay = match mode {
        Mode::Slow(extra) => delay + extra,
        Mode::Normal | Mode::HalfBroken => delay,
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::new(Full::new(Bytes::from(format!("{id}\n"))));
    if mode == Mode::HalfBroken && fastrand::bool() {
        *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    }
    let headers = response.headers_mut();
    if let Ok(value) = id.parse() {
        headers.insert(MEMBER_HEADER, value);
    }
    if let Ok(value) = replica.parse() {
        headers.insert("x-replica", value);
    }
    Ok(response)
}
