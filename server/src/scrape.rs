//! A minimal HTTP/1.1 GET, for the demo, the tests and the bench to read the
//! server's endpoints the way a dashboard would: one request per
//! connection (`Connection: close`), the body read to the end. Blocking,
//! std only: its callers are plain threads.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response: status code and body.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

/// `GET path` from the server at `addr`.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response");
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "chunked body"));
    }
    Ok(Response {
        status,
        body: body.to_string(),
    })
}

/// The value of the unlabelled sample `name` in Prometheus text.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The value of sample `name{labels}` in Prometheus text (`labels` as
/// written, e.g. `result="refused"`).
pub fn labelled(text: &str, name: &str, labels: &str) -> Option<f64> {
    sample(text, &format!("{name}{{{labels}}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples() {
        let t = "# HELP a x\na 1\na_b 2\nc{r=\"x\"} 3.5\n";
        assert_eq!(sample(t, "a"), Some(1.0));
        assert_eq!(sample(t, "a_b"), Some(2.0));
        assert_eq!(labelled(t, "c", "r=\"x\""), Some(3.5));
        assert_eq!(sample(t, "c"), None);
    }
}
