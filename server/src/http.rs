//! The HTTP side, on the server's runtime beside the protocol listener:
//!
//! * `GET /metrics`: Prometheus text: the pool's `poolalloc_*` families (as
//!   `Metrics::to_prometheus` writes them), then the server's `jt809_*`
//!   counters ([`crate::counters`]);
//! * `GET /leaks`: the pool's leak report as text; `?format=json` as JSON;
//!   `?min_age=SECS` lists only allocations at least that old (what a
//!   steady server still holds from a while ago is what leaks);
//! * `GET /health`: `ok`.
//!
//! # Never in the way
//!
//! A scrape reads the allocator without taking any lock its allocation
//! paths take (see `poolalloc::metrics`), and the server's counters are
//! relaxed atomics, so traffic never waits for a scrape. The scrape's own
//! work (walking chunks, resolving leak sites, formatting) runs on tokio's
//! blocking pool, so it never holds up a worker thread that is serving
//! connections either. Every response is built on the system heap, never
//! in the pool: with the pool at its limit, the endpoints still answer.

use crate::server::View;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Accepts HTTP connections forever.
pub async fn serve(listener: TcpListener, view: Arc<dyn View>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                crate::log!("http accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let view = Arc::clone(&view);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| respond(Arc::clone(&view), req));
            // A client that goes away mid-request is its own business.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A response with `status`, `content_type` and `body`.
fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn respond(
    view: Arc<dyn View>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n"));
    }
    let query = Query::parse(req.uri().query().unwrap_or(""));
    let response = match req.uri().path() {
        "/health" => reply(StatusCode::OK, TEXT, "ok\n"),
        "/metrics" => {
            let text = blocking(move || view.prometheus()).await;
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            )
        }
        "/leaks" => leaks(view, query).await,
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: try /metrics, /leaks, /leaks?format=json, /health\n",
        ),
    };
    Ok(response)
}

async fn leaks(view: Arc<dyn View>, query: Query) -> Response<Full<Bytes>> {
    let min_age = Duration::from_secs_f64(query.min_age.unwrap_or(0.0));
    let json = query.json;
    let body = blocking(move || {
        let report = view.leak_report(min_age)?;
        Some(if json {
            serde_json::to_string_pretty(&report).map(|mut s| {
                s.push('\n');
                s
            })
        } else {
            Ok(report.to_string())
        })
    })
    .await;
    match body {
        None => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "no leak report: this server's buffers are not pooled (--buffers heap)\n",
        ),
        Some(Ok(text)) if json => reply(StatusCode::OK, "application/json", text),
        Some(Ok(text)) => reply(StatusCode::OK, TEXT, text),
        Some(Err(e)) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The query parameters `/leaks` knows.
#[derive(Debug, Default, PartialEq)]
struct Query {
    json: bool,
    min_age: Option<f64>,
}

impl Query {
    fn parse(query: &str) -> Query {
        let mut q = Query::default();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("format", "json")) => q.json = true,
                Some(("min_age", v)) => {
                    q.min_age = v.parse().ok().filter(|s: &f64| s.is_finite() && *s >= 0.0)
                }
                _ => {}
            }
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::Query;

    #[test]
    fn query() {
        assert_eq!(Query::parse(""), Query::default());
        let q = Query::parse("format=json&min_age=2.5");
        assert!(q.json);
        assert_eq!(q.min_age, Some(2.5));
        assert_eq!(Query::parse("min_age=-1&format=text"), Query::default());
    }
}
