//! The config endpoint over real HTTP on 127.0.0.1: ETag, long-poll wake-up, 304 on timeout,
//! 401 on a bad token.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fleetgate_controller::handoff::{self, ConfigCell, Endpoint, Published};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: fleetgate\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

async fn serve(token: Option<&str>) -> (SocketAddr, ConfigCell, Gauge) {
    let cell = ConfigCell::default();
    let waiting = Gauge::default();
    let ep = Endpoint {
        cell: cell.clone(),
        token: token.map(Into::into),
        waiting: waiting.clone(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, handoff::router(ep)).await.unwrap();
    });
    (addr, cell, waiting)
}

fn published(rev: &str) -> Published {
    Published {
        revision: rev.to_string(),
        json: format!("{{\"revision\":\"{rev}\"}}").into(),
    }
}

const AUTH: (&str, &str) = ("Authorization", "Bearer t0ken");

#[tokio::test]
async fn serves_config_with_etag_and_304_after_the_wait() {
    let (addr, cell, _) = serve(Some("t0ken")).await;
    assert_eq!(get(addr, "/v1/config", &[AUTH]).await.status, 503);
    cell.publish(published("r1"));
    let r = get(addr, "/v1/config", &[AUTH]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some("\"r1\""));
    assert_eq!(r.body, "{\"revision\":\"r1\"}");
    let started = Instant::now();
    let r = get(
        addr,
        "/v1/config?wait=1",
        &[AUTH, ("If-None-Match", "\"r1\"")],
    )
    .await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some("\"r1\""));
    assert!(r.body.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // A stale ETag gets the config at once.
    let r = get(addr, "/v1/config", &[AUTH, ("If-None-Match", "\"r0\"")]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn long_poll_wakes_within_100ms_of_a_change() {
    let (addr, cell, waiting) = serve(Some("t0ken")).await;
    cell.publish(published("r1"));
    let poll = tokio::spawn(async move {
        get(
            addr,
            "/v1/config?wait=30",
            &[AUTH, ("If-None-Match", "\"r1\"")],
        )
        .await
    });
    // Wait until the request is parked.
    let t0 = Instant::now();
    while waiting.get() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "client never parked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Publishing the same revision does not wake it.
    assert!(!cell.publish(published("r1")));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!poll.is_finished());
    let changed = Instant::now();
    assert!(cell.publish(published("r2")));
    let r = poll.await.unwrap();
    let latency = changed.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some("\"r2\""));
    assert!(latency < Duration::from_millis(100), "{latency:?}");
    assert_eq!(waiting.get(), 0);
}

#[tokio::test]
async fn wrong_or_missing_token_is_401_with_nothing_served() {
    let (addr, cell, _) = serve(Some("t0ken")).await;
    cell.publish(published("r1"));
    for h in [
        vec![],
        vec![("Authorization", "Bearer nope")],
        vec![("Authorization", "Basic dDBrZW4=")],
    ] {
        let r = get(addr, "/v1/config", &h).await;
        assert_eq!(r.status, 401, "{h:?}");
        assert!(r.header("etag").is_none());
        assert!(!r.body.contains("revision"));
    }
}

#[tokio::test]
async fn draining_answers_parked_and_new_long_polls_at_once() {
    let (addr, cell, waiting) = serve(None).await;
    cell.publish(published("r1"));
    let poll = tokio::spawn(async move {
        get(addr, "/v1/config?wait=30", &[("If-None-Match", "\"r1\"")]).await
    });
    let t0 = Instant::now();
    while waiting.get() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "client never parked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained = Instant::now();
    cell.drain();
    let r = poll.await.unwrap();
    assert_eq!(r.status, 304, "parked poll: {}", r.body);
    assert!(
        drained.elapsed() < Duration::from_secs(1),
        "{:?}",
        drained.elapsed()
    );
    let t1 = Instant::now();
    let r = get(addr, "/v1/config?wait=30", &[("If-None-Match", "\"r1\"")]).await;
    assert_eq!(r.status, 304);
    assert!(
        t1.elapsed() < Duration::from_secs(1),
        "a new poll parked while draining"
    );
    let r = get(addr, "/v1/config", &[]).await;
    assert_eq!(
        (r.status, r.header("etag")),
        (200, Some("\"r1\"")),
        "plain GETs still served"
    );
    assert_eq!(waiting.get(), 0);
}

/// Config `c`, routes revision `routes`, state `s`, published together.
fn publish_split(cell: &ConfigCell, c: &str, routes: &str, s: &str) -> bool {
    let state = Published {
        revision: s.to_string(),
        json: format!("{{\"revision\":\"{s}\"}}").into(),
    };
    cell.publish_split(published(c), routes.to_string(), state)
}

/// A long poll of `path` with `If-None-Match: "<etag>"`, once it is parked.
async fn parked(
    addr: SocketAddr,
    waiting: &Gauge,
    path: &'static str,
    etag: &str,
) -> tokio::task::JoinHandle<Reply> {
    let before = waiting.get();
    let inm = format!("\"{etag}\"");
    let poll = tokio::spawn(async move { get(addr, path, &[AUTH, ("If-None-Match", &inm)]).await });
    let t0 = Instant::now();
    while waiting.get() == before {
        assert!(t0.elapsed() < Duration::from_secs(5), "client never parked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    poll
}

#[tokio::test]
async fn state_and_routes_have_their_own_etags_and_long_polls() {
    let (addr, cell, waiting) = serve(Some("t0ken")).await;
    assert!(publish_split(&cell, "c1", "routes1", "s1"));
    let r = get(addr, "/v1/state", &[AUTH]).await;
    assert_eq!((r.status, r.header("etag")), (200, Some("\"s1\"")));
    assert_eq!(r.body, "{\"revision\":\"s1\"}");
    let r = get(addr, "/v1/config?watch=routes", &[AUTH]).await;
    assert_eq!((r.status, r.header("etag")), (200, Some("\"routes1\"")));
    assert_eq!(r.body, "{\"revision\":\"c1\"}", "the full config");
    let r = get(addr, "/v1/config", &[AUTH]).await;
    assert_eq!(r.header("etag"), Some("\"c1\""));
    assert_eq!(get(addr, "/v1/state", &[]).await.status, 401);

    let state = parked(addr, &waiting, "/v1/state?wait=30", "s1").await;
    let routes = parked(addr, &waiting, "/v1/config?wait=30&watch=routes", "routes1").await;
    let full = parked(addr, &waiting, "/v1/config?wait=30", "c1").await;
    // A state-only change: the state poll and the plain config poll (plugins that only know
    // v1 must see ready counts) answer; the routes poll does not.
    let changed = Instant::now();
    assert!(publish_split(&cell, "c2", "routes1", "s2"));
    let r = state.await.unwrap();
    assert!(
        changed.elapsed() < Duration::from_millis(100),
        "{:?}",
        changed.elapsed()
    );
    assert_eq!((r.status, r.header("etag")), (200, Some("\"s2\"")));
    assert_eq!(r.body, "{\"revision\":\"s2\"}");
    let r = full.await.unwrap();
    assert_eq!(r.header("etag"), Some("\"c2\""));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!routes.is_finished(), "a state change woke the routes poll");
    // The routes change: now it answers, with the routes revision.
    assert!(publish_split(&cell, "c3", "routes2", "s3"));
    let r = routes.await.unwrap();
    assert_eq!((r.status, r.header("etag")), (200, Some("\"routes2\"")));
    assert_eq!(r.body, "{\"revision\":\"c3\"}");
    assert_eq!(waiting.get(), 0);
}

#[tokio::test]
async fn an_unchanged_state_is_304_after_the_wait() {
    let (addr, cell, _) = serve(None).await;
    publish_split(&cell, "c1", "routes1", "s1");
    let started = Instant::now();
    let r = get(addr, "/v1/state?wait=1", &[("If-None-Match", "\"s1\"")]).await;
    assert_eq!((r.status, r.header("etag")), (304, Some("\"s1\"")));
    assert!(r.body.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // Publishing the same config again wakes nobody: still 304 after the wait.
    let poll =
        tokio::spawn(
            async move { get(addr, "/v1/state?wait=1", &[("If-None-Match", "\"s1\"")]).await },
        );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!publish_split(&cell, "c1", "routes1", "s1"));
    assert_eq!(poll.await.unwrap().status, 304);
}

#[tokio::test]
async fn a_config_published_without_a_split_has_no_state_document() {
    let (addr, cell, _) = serve(None).await;
    cell.publish(published("r1"));
    let r = get(addr, "/v1/state", &[]).await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no state document"), "{}", r.body);
    let r = get(addr, "/v1/config?watch=routes", &[]).await;
    assert_eq!((r.status, r.header("etag")), (200, Some("\"r1\"")));
}
