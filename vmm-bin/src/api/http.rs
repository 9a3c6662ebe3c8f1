//! HTTP/1.1 for the API socket: request heads parsed with `httparse`,
//! bodies framed by `Content-Length`, responses written as Firecracker's
//! `micro_http` writes them (JSON bodies, `Connection: keep-alive` unless
//! the client asked to close).
//!
//! Everything a client sends is bounded: the head (request line and
//! headers) to [`MAX_HEAD`] bytes and [`MAX_HEADERS`] headers, the body to
//! [`MAX_BODY`] bytes. A request over a bound, or one that is malformed,
//! is an [`HttpError`]: the server answers 400 and closes the connection,
//! since the rest of the byte stream can no longer be framed.
//!
//! [`parse`] is a pure function of the bytes received so far (the fuzz
//! target `api_request` drives it), so pipelined requests and requests
//! split across reads are handled by calling it again on the same buffer.

use std::io::Write;

/// Most bytes of a request line plus headers.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most bytes of a request body (Firecracker's largest bodies, drive and
/// network configurations, are well under 1 KiB).
pub const MAX_BODY: usize = 64 * 1024;
/// Most headers in one request.
pub const MAX_HEADERS: usize = 32;

/// The request methods the API knows; anything else is kept by name for
/// the error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// Any other token (POST, DELETE, ...): answered 400.
    Other(String),
}

impl Method {
    fn from_token(t: &str) -> Method {
        match t {
            "GET" => Method::Get,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            other => Method::Other(other.to_string()),
        }
    }

    /// The method as it appears on the request line.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Other(s) => s,
        }
    }
}

/// One complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path, without a query string or an absolute form's scheme and
    /// host (`/drives/rootfs`).
    pub path: String,
    /// The body; `None` when there is none (no `Content-Length`, or 0), as
    /// Firecracker distinguishes "Empty PUT request".
    pub body: Option<Vec<u8>>,
    /// Whether the connection stays open after the response (HTTP/1.1
    /// unless `Connection: close`; HTTP/1.0 only with `keep-alive`).
    pub keep_alive: bool,
}

/// What [`parse`] made of the bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The request is not complete yet. `expect_continue`: the head is
    /// complete, asked for `Expect: 100-continue`, and the body has not
    /// arrived (curl sends larger bodies only after `100 Continue`).
    NeedMore {
        /// Send `HTTP/1.1 100 Continue` before waiting for the body.
        expect_continue: bool,
    },
    /// A complete request, and how many bytes of the buffer it used.
    Done {
        /// The request.
        request: Request,
        /// Bytes consumed (head and body); the rest is the next request.
        used: usize,
    },
}

/// Why a request cannot be served; each is answered 400 and the connection
/// closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The request line and headers exceed [`MAX_HEAD`].
    #[error("the request head is larger than {limit} bytes")]
    HeadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// More than [`MAX_HEADERS`] headers.
    #[error("the request has more than {limit} headers")]
    TooManyHeaders {
        /// The limit.
        limit: usize,
    },
    /// The declared body exceeds [`MAX_BODY`].
    #[error("the request body of {length} bytes is larger than {limit} bytes")]
    BodyTooLarge {
        /// The declared length.
        length: u64,
        /// The limit.
        limit: usize,
    },
    /// httparse rejected the head.
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
    /// `Content-Length` is not a number, or two of them disagree.
    #[error("invalid Content-Length header '{0}'")]
    ContentLength(String),
    /// Bodies must be framed by `Content-Length`.
    #[error("Transfer-Encoding '{0}' is not supported; send a Content-Length")]
    TransferEncoding(String),
    /// The request target is not a path.
    #[error("the request target '{0}' is not an absolute path")]
    Target(String),
}

/// Parses the request at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Progress, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(HttpError::HeadTooLarge { limit: MAX_HEAD })
        }
        Ok(httparse::Status::Partial) => {
            return Ok(Progress::NeedMore {
                expect_continue: false,
            })
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::TooManyHeaders { limit: MAX_HEADERS })
        }
        Err(e) => return Err(HttpError::Malformed(e.to_string())),
    };
    if head_len > MAX_HEAD {
        return Err(HttpError::HeadTooLarge { limit: MAX_HEAD });
    }
    // A complete head has all three; httparse guarantees it.
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HttpError::Malformed("incomplete request line".into()));
    };
    let mut length: Option<u64> = None;
    let mut keep_alive = version == 1;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        let value = value.trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<u64>()
                .ok()
                .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| HttpError::ContentLength(value.to_string()))?;
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::ContentLength(value.to_string()));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::TransferEncoding(value.to_string()));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue = value.eq_ignore_ascii_case("100-continue");
        }
    }
    let length = length.unwrap_or(0);
    let body_len = usize::try_from(length)
        .ok()
        .filter(|&n| n <= MAX_BODY)
        .ok_or(HttpError::BodyTooLarge {
            length,
            limit: MAX_BODY,
        })?;
    let path = request_path(target)?;
    let available = buf.len() - head_len;
    if available < body_len {
        return Ok(Progress::NeedMore { expect_continue });
    }
    let body = (body_len > 0).then(|| buf[head_len..head_len + body_len].to_vec());
    Ok(Progress::Done {
        request: Request {
            method: Method::from_token(method),
            path,
            body,
            keep_alive,
        },
        used: head_len + body_len,
    })
}

/// The path of an origin-form (`/a/b?q`) or absolute-form
/// (`http://localhost/a/b`) target, without its query.
fn request_path(target: &str) -> Result<String, HttpError> {
    let rest = match target.split_once("://") {
        Some((_, after)) => match after.find('/') {
            Some(i) => &after[i..],
            None => "/",
        },
        None => target,
    };
    if !rest.starts_with('/') {
        return Err(HttpError::Target(target.to_string()));
    }
    let path = rest.split(['?', '#']).next().unwrap_or(rest);
    Ok(path.to_string())
}

/// A response: a status and an optional JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code (200, 204 or 400 here).
    pub status: u16,
    /// The JSON body, if any.
    pub body: Option<String>,
}

impl Response {
    /// 204 No Content.
    pub fn no_content() -> Response {
        Response {
            status: 204,
            body: None,
        }
    }

    /// 200 with `body` serialised.
    pub fn ok_json<T: serde::Serialize>(body: &T) -> Response {
        match serde_json::to_string(body) {
            Ok(s) => Response {
                status: 200,
                body: Some(s),
            },
            // Our own types always serialise; say so if one did not.
            Err(e) => Response::fault(500, &format!("serialising the response failed: {e}")),
        }
    }

    /// `status` with Firecracker's error body `{"fault_message": ...}`.
    pub fn fault(status: u16, message: &str) -> Response {
        let body = serde_json::json!({ "fault_message": message }).to_string();
        Response {
            status,
            body: Some(body),
        }
    }

    /// The fault message of an error response.
    pub fn fault_message(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(self.body.as_deref()?).ok()?;
        v.get("fault_message")?.as_str().map(str::to_string)
    }

    /// The bytes on the wire.
    pub fn to_bytes(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nServer: vmm-bin API\r\nConnection: {}\r\n",
            self.status,
            reason(self.status),
            if keep_alive { "keep-alive" } else { "close" }
        );
        match &self.body {
            Some(body) => {
                out.push_str(&format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                ));
                out.push_str(body);
            }
            None => out.push_str("\r\n"),
        }
        out.into_bytes()
    }

    /// Writes the response (one `write_all`, so one system call for the
    /// small responses the API sends).
    pub fn write_to(&self, w: &mut impl Write, keep_alive: bool) -> std::io::Result<()> {
        w.write_all(&self.to_bytes(keep_alive))
    }
}

/// The interim response a client waiting on `Expect: 100-continue` needs.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        500 => "Internal Server Error",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(buf: &[u8]) -> (Request, usize) {
        match parse(buf).unwrap() {
            Progress::Done { request, used } => (request, used),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn test_parse_put_with_body_and_pipelined_get() {
        let body = r#"{"vcpu_count": 2, "mem_size_mib": 256}"#;
        let raw = format!(
            "PUT /machine-config HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}GET / HTTP/1.1\r\n\r\n",
            body.len()
        );
        let (req, used) = done(raw.as_bytes());
        assert_eq!(req.method, Method::Put);
        assert_eq!(req.path, "/machine-config");
        assert_eq!(req.body.as_deref(), Some(body.as_bytes()));
        assert!(req.keep_alive);
        let (next, rest) = done(&raw.as_bytes()[used..]);
        assert_eq!(
            (next.method, next.path.as_str(), next.body),
            (Method::Get, "/", None)
        );
        assert_eq!(used + rest, raw.len());
    }

    #[test]
    fn test_parse_waits_for_head_and_body() {
        let raw =
            b"PUT /vm HTTP/1.1\r\nContent-Length: 20\r\nExpect: 100-continue\r\n\r\n{\"state\":";
        assert_eq!(
            parse(&raw[..10]).unwrap(),
            Progress::NeedMore {
                expect_continue: false
            }
        );
        assert_eq!(
            parse(raw).unwrap(),
            Progress::NeedMore {
                expect_continue: true
            }
        );
    }

    #[test]
    fn test_parse_limits_and_malformed_input() {
        let big = format!(
            "PUT /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(
            parse(big.as_bytes()),
            Err(HttpError::BodyTooLarge { .. })
        ));
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(
            parse(long.as_bytes()),
            Err(HttpError::HeadTooLarge { limit: MAX_HEAD })
        );
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(
            parse(many.as_bytes()),
            Err(HttpError::TooManyHeaders { .. })
        ));
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET * HTTP/1.1\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn test_parse_connection_and_target_forms() {
        let (r, _) = done(b"GET /version HTTP/1.0\r\n\r\n");
        assert!(!r.keep_alive);
        let (r, _) = done(b"GET /version HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(r.keep_alive);
        let (r, _) =
            done(b"GET http://localhost/vm/config?x=1 HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert_eq!(r.path, "/vm/config");
        assert!(!r.keep_alive);
        let (r, _) = done(b"DELETE /drives/a HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(r.method, Method::Other("DELETE".into()));
        assert_eq!(r.body, None);
    }

    #[test]
    fn test_response_bytes_match_firecracker_shape() {
        let r = Response::fault(400, "bad \"thing\"");
        let text = String::from_utf8(r.to_bytes(true)).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("Connection: keep-alive\r\n"));
        assert!(
            text.ends_with(r#"{"fault_message":"bad \"thing\""}"#),
            "{text}"
        );
        assert_eq!(r.fault_message().as_deref(), Some("bad \"thing\""));
        let text = String::from_utf8(Response::no_content().to_bytes(false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 204 No Content\r\n"));
        assert!(text.ends_with("Connection: close\r\n\r\n"), "{text}");
    }
}
