//! The listener's HTTP/1.1 server: hyper on a one-thread tokio runtime, on a thread of its own
//! that never calls Postgres. It reads a request within the limits, decides with `answer::route`
//! whose it is, and hands the call to `Handler` (the worker's main thread runs it) to await the
//! answer.
//!
//! Limits: hyper closes a connection whose headers take longer than the timeout (an idle
//! keep-alive connection included) or exceed 64 KiB; the body gets the timeout again and
//! 1 MiB; past `max_connections` open connections a new one is answered 503 and closed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request as HttpRequest, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, oneshot};

use super::answer::{self, Answer, Call, MAX_BODY, Request};

/// Runs a call and sends its answer; returns at once (the call is queued for the main thread).
pub type Handler = Arc<dyn Fn(Call, oneshot::Sender<Answer>) + Send + Sync>;

#[derive(Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub max_connections: usize,
}

/// What the server shares with the main thread: the backend's secret, replaced on reload.
pub type Secret = Arc<RwLock<Option<String>>>;

const MAX_HEADERS_BYTES: usize = 64 * 1024;

/// Binds `addr` (an error here is the caller's to report) and serves it on a new thread for the
/// rest of the process. Returns the bound address.
pub fn start(
    addr: &str,
    limits: Limits,
    secret: Secret,
    handler: Handler,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("plaid_sync http".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => accept(listener, limits, secret, handler).await,
                    Err(e) => eprintln!("plaid_sync listener: {e}"),
                }
            })
        })?;
    Ok(bound)
}

async fn accept(
    listener: tokio::net::TcpListener,
    limits: Limits,
    secret: Secret,
    handler: Handler,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let mut stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors, most likely: let some close.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let body = Answer::unavailable("too many open connections").body;
                let busy = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let write = stream.write_all(busy.as_bytes());
                let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
            });
            continue;
        };
        let (secret, handler) = (secret.clone(), handler.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let (secret, handler) = (secret.clone(), handler.clone());
                async move { Ok::<_, Infallible>(serve(req, limits, &secret, &handler).await) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.timeout)
                .max_buf_size(MAX_HEADERS_BYTES)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

async fn serve(
    req: HttpRequest<Incoming>,
    limits: Limits,
    secret: &Secret,
    handler: &Handler,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let header = |name: &str| parts.headers.get(name).map(|v| v.as_bytes());
    let declared = header(CONTENT_LENGTH.as_str())
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok());
    if let Some(refused) = answer::refuse_method(parts.method.as_str()) {
        return respond(refused, true);
    }
    if declared.is_some_and(|n| n > MAX_BODY) {
        return respond(Answer::too_large(), true);
    }
    let body =
        match tokio::time::timeout(limits.timeout, Limited::new(body, MAX_BODY).collect()).await {
            Err(_) => return respond(Answer::too_slow(), true),
            Ok(Err(_)) => return respond(Answer::too_large(), true),
            Ok(Ok(collected)) => collected.to_bytes(),
        };
    let given = answer::SECRET_HEADERS.iter().find_map(|h| header(h));
    let request = Request {
        method: parts.method.as_str(),
        secret: given,
        verification: header("plaid-verification").and_then(|v| std::str::from_utf8(v).ok()),
        body: &body,
    };
    let call = {
        let secret = secret.read().unwrap_or_else(|p| p.into_inner());
        answer::route(&request, secret.as_deref())
    };
    let answer = match call {
        Err(refusal) => refusal,
        Ok(call) => {
            let (tx, rx) = oneshot::channel();
            handler(call, tx);
            rx.await
                .unwrap_or_else(|_| Answer::unavailable("the listener is stopping; try again"))
        }
    };
    respond(answer, false)
}

fn respond(answer: Answer, close: bool) -> Response<Full<Bytes>> {
    let mut response = Response::builder()
        .status(answer.status)
        .header(CONTENT_TYPE, "application/json");
    if close {
        // The rest of the request was not read: the connection cannot carry another.
        response = response.header(CONNECTION, "close");
    }
    response
        .body(Full::new(Bytes::from(answer.body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod unit;
