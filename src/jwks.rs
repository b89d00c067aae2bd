//! Token keys from an identity provider (Keycloak, Auth0…): its JWKS fetched over HTTPS or
//! HTTP into the [`Verifier`], at start, every refresh interval, and when a token names a key
//! id the set does not hold (a rotation), at most once per `min_refetch`. A failed fetch keeps
//! the last good set.

use crate::auth::{AuthError, Identity, Verifier};
use crate::config::JwksSource;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed fetch, the next try comes this much later.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(15);

/// The largest JWKS accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Why a fetch failed.
#[derive(Debug, Error)]
pub enum JwksError {
    /// The URL has no host, or a scheme other than http/https.
    #[error("not an http(s) URL with a host")]
    Url,
    /// The provider could not be reached or answered badly.
    #[error("{0}")]
    Fetch(String),
    /// The answer is not a usable JWK set.
    #[error("{0}")]
    Keys(#[from] crate::auth::KeyError),
}

/// A verifier whose keys come from an identity provider.
pub struct Jwks {
    source: JwksSource,
    verifier: Verifier,
    /// When the last fetch started.
    last: Mutex<Option<Instant>>,
    /// Held while fetching: concurrent asks wait for the one fetch.
    fetching: tokio::sync::Mutex<()>,
}

impl Jwks {
    /// Keys from `source` into `verifier` (fetched by [`Jwks::run`]).
    pub fn new(source: JwksSource, verifier: Verifier) -> Arc<Jwks> {
        Arc::new(Jwks {
            source,
            verifier,
            last: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// Keeps the keys fresh until `shutdown`: fetches now, then every refresh interval (sooner
    /// again after a failure).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let url = &self.source.url;
        let loopback = url
            .parse::<Uri>()
            .ok()
            .and_then(|u| {
                u.host()
                    .map(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]")
            })
            .unwrap_or(false);
        if url.starts_with("http://") && !loopback {
            warn!(jwks = %url, "JWT_JWKS_URL is plain HTTP: whoever is on the path can hand the router keys and forge any token; use https://");
        }
        loop {
            let wait = match self.fetch().await {
                Ok(()) => self.source.refresh,
                Err(()) => RETRY_AFTER_FAILURE,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Verifies `token`; a token signed by a key the set does not hold (yet) fetches the set
    /// again first, unless that was done less than `min_refetch` ago (so that unknown key ids
    /// do not make every handshake hit the provider).
    pub async fn verify(&self, token: &str, now: u64) -> Result<Identity, AuthError> {
        match self.verifier.verify(token, now) {
            Err(AuthError::UnknownKey | AuthError::KeysUnavailable) => {
                let recent = self
                    .last
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_some_and(|at| at.elapsed() < self.source.min_refetch);
                if !recent {
                    let _ = self.fetch().await;
                }
                self.verifier.verify(token, now)
            }
            other => other,
        }
    }

    /// One fetch (or waits for the one under way), logged; the keys stay as they were when it
    /// fails.
    async fn fetch(&self) -> Result<(), ()> {
        let started = Instant::now();
        let _one = self.fetching.lock().await;
        let done_meanwhile = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at >= started);
        if done_meanwhile {
            return Ok(());
        }
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let url = &self.source.url;
        let fetched = tokio::time::timeout(FETCH_TIMEOUT, get(url))
            .await
            .unwrap_or_else(|_| Err(JwksError::Fetch("timed out".into())));
        match fetched.and_then(|body| Ok(self.verifier.set_jwks(&body)?)) {
            Ok(keys) => {
                info!(jwks = %url, keys, "token keys loaded");
                Ok(())
            }
            Err(error) => {
                let kept = self.verifier.has_keys();
                warn!(jwks = %url, cause = %error, kept_last_keys = kept, "could not load the token keys");
                Err(())
            }
        }
    }
}

/// GETs `url` (HTTP/1.1, TLS for https with the system's roots, `SSL_CERT_FILE` honoured) and
/// returns its body, when the answer is 200.
async fn get(url: &str) -> Result<String, JwksError> {
    let uri: Uri = url.parse().map_err(|_| JwksError::Url)?;
    let host = uri.host().ok_or(JwksError::Url)?.to_owned();
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(JwksError::Url),
    };
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((bare_host, port))
        .await
        .map_err(|e| JwksError::Fetch(format!("cannot connect to {host}:{port}: {e}")))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host.as_str(), |a| a.as_str());
    if !tls {
        return request(tcp, authority, path).await;
    }
    let name = rustls_pki_name(bare_host)?;
    let stream = tls_connector()
        .connect(name, tcp)
        .await
        .map_err(|e| JwksError::Fetch(format!("TLS with {host}: {e}")))?;
    request(stream, authority, path).await
}

fn rustls_pki_name(
    host: &str,
) -> Result<tokio_rustls::rustls::pki_types::ServerName<'static>, JwksError> {
    tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| JwksError::Url)
}

/// A TLS client trusting the system's root certificates (and `SSL_CERT_FILE`).
fn tls_connector() -> tokio_rustls::TlsConnector {
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One GET over `io`.
async fn request(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    authority: &str,
    path: &str,
) -> Result<String, JwksError> {
    let failed = |e: hyper::Error| JwksError::Fetch(e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(failed)?;
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, "application/json")
        .header(hyper::header::USER_AGENT, "presence-router")
        .body(Empty::<Bytes>::new())
        .map_err(|_| JwksError::Url)?;
    let exchange = async {
        let response = sender.send_request(request).await.map_err(failed)?;
        let status = response.status();
        if status != hyper::StatusCode::OK {
            return Err(JwksError::Fetch(format!("answered {status}")));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| JwksError::Fetch(format!("reading the answer: {e}")))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| JwksError::Fetch("not UTF-8".into()))
    };
    // The connection is driven while the exchange runs; it never decides the outcome itself
    // (a connection that ends early makes the exchange fail).
    let drive = async {
        let _ = connection.await;
        std::future::pending().await
    };
    tokio::select! {
        result = exchange => result,
        result = drive => result,
    }
}
