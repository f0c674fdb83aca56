//! The server against raw sockets: answers, limits, keep-alive and the connection cap, with a
//! handler that answers at once (no Postgres).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::{Handler, Limits, start};
use crate::http::answer::{Answer, Call};

fn server(timeout_ms: u64, max_connections: usize) -> SocketAddr {
    let handler: Handler = Arc::new(|call, reply| {
        let _ = reply.send(match call {
            Call::Notify(_) => Answer::stored(7),
            Call::Webhook(_, _) => Answer::stored(8),
        });
    });
    let limits = Limits {
        timeout: Duration::from_millis(timeout_ms),
        max_connections,
    };
    let secret = Arc::new(RwLock::new(Some("s3cret".to_string())));
    start("127.0.0.1:0", limits, secret, handler).unwrap()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads one response: its status and body (by Content-Length).
fn response(s: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap() == 0 {
            panic!(
                "closed before a response: {:?}",
                String::from_utf8_lossy(&buf)
            );
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}

fn post(s: &mut TcpStream, headers: &str, body: &str) -> (u16, String) {
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    response(s)
}

fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn answers_each_kind_of_request_on_one_kept_alive_connection() {
    let addr = server(2_000, 10);
    let mut s = connect(addr);
    assert_eq!(
        post(&mut s, "Whdb-Webhook-Secret: s3cret\r\n", "{}"),
        (200, r#"{"inbox_id":7}"#.into())
    );
    assert_eq!(
        post(&mut s, "Plaid-Sync-Secret: s3cret\r\n", "{}"),
        (200, r#"{"inbox_id":7}"#.into())
    );
    assert_eq!(
        post(&mut s, "Plaid-Verification: x\r\n", "{}"),
        (200, r#"{"inbox_id":8}"#.into())
    );
    assert_eq!(post(&mut s, "Whdb-Webhook-Secret: wrong\r\n", "{}").0, 401);
    assert_eq!(post(&mut s, "Whdb-Webhook-Secret: \r\n", "{}").0, 401);
    write!(s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(response(&mut s).0, 405);
}

#[test]
fn a_body_over_1_mib_is_413() {
    let addr = server(2_000, 10);
    let mut s = connect(addr);
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n"
    )
    .unwrap();
    assert_eq!(response(&mut s).0, 413);
    // Chunked, so no length is declared: the limit still holds.
    let mut s = connect(addr);
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    // Exactly 1 MiB, then one byte more and the last chunk: all of it is in the server's
    // hands when it answers, so its close is not a reset that would lose the answer.
    let chunk = vec![b'a'; 64 * 1024];
    let mut body = Vec::new();
    for _ in 0..16 {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"1\r\na\r\n0\r\n\r\n");
    s.write_all(&body).unwrap();
    assert_eq!(response(&mut s).0, 413);
}

#[test]
fn a_client_sending_a_byte_a_while_is_cut_off_and_others_are_served_meanwhile() {
    let addr = server(500, 10);
    let started = Instant::now();
    // Headers trickling in.
    let mut slow = connect(addr);
    let mut cut = false;
    for b in b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa" {
        if slow.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        let mut other = connect(addr);
        assert_eq!(
            post(&mut other, "", "{}").0,
            200,
            "served while one trickles"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        cut || closed(&mut slow),
        "the slow client still holds its connection"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    // A body trickling in: 408 at the limit.
    let mut slow = connect(addr);
    write!(
        slow,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{"
    )
    .unwrap();
    let t = Instant::now();
    assert_eq!(response(&mut slow).0, 408);
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn an_idle_kept_alive_connection_is_closed_after_the_timeout() {
    let addr = server(300, 10);
    let mut s = connect(addr);
    assert_eq!(post(&mut s, "", "{}").0, 200);
    std::thread::sleep(Duration::from_millis(800));
    assert!(closed(&mut s));
}

#[test]
fn past_the_connection_cap_a_connection_is_answered_503() {
    let addr = server(5_000, 2);
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(addr)).collect();
    for s in &mut held {
        assert_eq!(post(s, "", "{}").0, 200);
    }
    let mut third = connect(addr);
    let (status, body) = response(&mut third);
    assert_eq!(status, 503);
    assert!(body.contains("too many open connections"));
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let mut again = connect(addr);
    assert_eq!(post(&mut again, "", "{}").0, 200);
}
