//! A minimal HTTP/1.1 client: one keep-alive connection per [`Conn`], so a load run holds
//! exactly as many connections as it asks for. Targets must be loopback addresses.

use std::{
    net::{SocketAddr, ToSocketAddrs},
    time::Duration,
};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    client::conn::http1::{self, SendRequest},
    header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST},
    Method, Request,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where the server is: a loopback socket address and the `Host` header to send.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
}

impl Target {
    /// Parses `http://HOST:PORT` (a trailing `/` is allowed). Refuses anything that does
    /// not resolve to a loopback address: load is only ever sent to this machine.
    pub fn parse(base_url: &str) -> anyhow::Result<Self> {
        let rest = base_url
            .strip_prefix("http://")
            .with_context(|| format!("--base-url '{base_url}' must start with http://"))?;
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            bail!("--base-url '{base_url}' must be http://HOST:PORT, without a path");
        }
        let with_port = if host.rsplit_once(':').is_some_and(|(_, p)| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(']')
        }) {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        let addrs: Vec<SocketAddr> = with_port
            .to_socket_addrs()
            .with_context(|| format!("could not resolve '{with_port}'"))?
            .collect();
        let Some(addr) = addrs.iter().find(|a| a.ip().is_loopback()).copied() else {
            bail!("--base-url '{base_url}' is not a loopback address (127.0.0.0/8, ::1): load is only sent to this machine");
        };
        if addrs.iter().any(|a| !a.ip().is_loopback()) {
            bail!("--base-url '{base_url}' resolves to a non-loopback address too");
        }
        Ok(Self {
            addr,
            host: host.to_owned(),
        })
    }
}

/// One answer: status, whether it is a stored replay, the body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub replayed: bool,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "the server answered {} with a body that is not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A request that failed; `unsent` when it provably never reached the server.
#[derive(Debug)]
pub struct SendFailure {
    pub unsent: bool,
    pub error: anyhow::Error,
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
}

const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

impl Conn {
    pub async fn connect(target: &Target) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target.addr))
            .await
            .with_context(|| format!("connecting to {} timed out", target.addr))?
            .with_context(|| format!("could not connect to {}", target.addr))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            host: HeaderValue::from_str(&target.host)?,
        })
    }

    /// Sends one request and reads the whole answer. `headers` are extra headers; a body
    /// is sent as JSON.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&'static str, &str)],
        body: Option<Bytes>,
    ) -> anyhow::Result<Answer> {
        self.try_send(method, path, headers, body)
            .await
            .map_err(|f| f.error)
    }

    /// Like [`Conn::send`], telling apart a request that never left (the server had
    /// closed the connection, as actix-web does after an error answer whose body it did
    /// not read): that one is safe to send again on a new connection.
    pub async fn try_send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&'static str, &str)],
        body: Option<Bytes>,
    ) -> Result<Answer, SendFailure> {
        let failed = |error: anyhow::Error| SendFailure {
            unsent: false,
            error,
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| failed(e.into()))?;
        if let Err(e) = self.sender.ready().await {
            return Err(SendFailure {
                unsent: true,
                error: e.into(),
            });
        }
        let res = match self.sender.try_send_request(req).await {
            Ok(res) => res,
            Err(mut e) => {
                return Err(SendFailure {
                    unsent: e.take_message().is_some(),
                    error: e.into_error().into(),
                })
            }
        };
        let status = res.status().as_u16();
        let replayed = res
            .headers()
            .get(REPLAYED)
            .is_some_and(|v| v.as_bytes() == b"true");
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(e.into()))?
            .to_bytes();
        Ok(Answer {
            status,
            replayed,
            body,
        })
    }
}

/// One-off requests to the API (plans, stats), each on its own short connection.
#[derive(Debug, Clone)]
pub struct Api {
    pub target: Target,
    pub admin_token: Option<String>,
}

impl Api {
    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        let mut conn = Conn::connect(&self.target).await?;
        conn.send(Method::GET, path, &[], None).await
    }

    pub async fn admin_post(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<Answer> {
        let token = self
            .admin_token
            .as_deref()
            .context("creating plans needs --admin-token (or SEATKEEPER_AUTH__ADMIN_TOKEN)")?;
        let bearer = format!("Bearer {token}");
        let mut conn = Conn::connect(&self.target).await?;
        conn.send(
            Method::POST,
            path,
            &[(AUTHORIZATION.as_str(), bearer.as_str())],
            Some(Bytes::from(serde_json::to_vec(body)?)),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_base_urls_are_accepted() {
        let t = Target::parse("http://127.0.0.1:3000").unwrap();
        assert_eq!(t.addr.port(), 3000);
        assert_eq!(t.host, "127.0.0.1:3000");
        assert!(Target::parse("http://127.0.0.2:3000/").is_ok());
        assert!(Target::parse("http://[::1]:3000").is_ok());
        assert!(Target::parse("http://10.0.0.1:3000").is_err());
        assert!(Target::parse("https://127.0.0.1:3000").is_err());
        assert!(Target::parse("http://127.0.0.1:3000/api").is_err());
    }
}
