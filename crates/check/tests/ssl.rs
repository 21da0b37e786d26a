//! SSL_GET against a rustls server with a self-signed certificate.

mod support;

use halb_check::probe::http::HttpProbe;
use halb_config::model::{HttpCheck, Url};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use support::{response, serve_http, target, Seen};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A TLS server with a self-signed certificate for `www.example.org`; returns its address, the
/// requests it saw and the SNI names clients sent.
async fn tls_server() -> (SocketAddr, Seen, Arc<Mutex<Vec<Option<String>>>>) {
    let cert = rcgen::generate_simple_self_signed(vec!["www.example.org".to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let chain = vec![CertificateDer::from(cert.cert.der().to_vec())];
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let snis: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let (seen2, snis2) = (seen.clone(), snis.clone());
    tokio::spawn(async move {
        let respond = Arc::new(|_: &str| response("200 OK", b"secure"));
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, seen, snis, respond) = (
                acceptor.clone(),
                seen2.clone(),
                snis2.clone(),
                respond.clone(),
            );
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                snis.lock()
                    .unwrap()
                    .push(tls.get_ref().1.server_name().map(str::to_string));
                serve_http(tls, seen, respond).await;
            });
        }
    });
    (addr, seen, snis)
}

fn ssl(enable_sni: bool) -> HttpCheck {
    HttpCheck {
        urls: vec![Url::new("/tls".into())],
        enable_sni,
        ..HttpCheck::default()
    }
}

#[tokio::test]
async fn ssl_get_without_verification() {
    let (addr, seen, snis) = tls_server().await;
    // The certificate is self-signed and names another host: accepted, as keepalived does.
    HttpProbe::new(
        &ssl(false),
        true,
        target(addr),
        Some("www.example.org"),
        Some("www.example.org"),
    )
    .unwrap()
    .check()
    .await
    .unwrap();
    assert_eq!(
        *snis.lock().unwrap(),
        vec![None],
        "no SNI unless enable_sni"
    );
    assert!(seen.lock().unwrap()[0].contains("\r\nHost: www.example.org\r\n"));
}

#[tokio::test]
async fn ssl_get_with_sni() {
    let (addr, _, snis) = tls_server().await;
    HttpProbe::new(
        &ssl(true),
        true,
        target(addr),
        Some("www.example.org"),
        Some("sni.example.org"),
    )
    .unwrap()
    .check()
    .await
    .unwrap();
    // Without a virtualhost there is no name to send.
    HttpProbe::new(&ssl(true), true, target(addr), None, None)
        .unwrap()
        .check()
        .await
        .unwrap();
    assert_eq!(
        *snis.lock().unwrap(),
        vec![Some("sni.example.org".to_string()), None]
    );
}

#[tokio::test]
async fn ssl_get_against_a_server_that_does_not_speak_tls() {
    // A server that talks first, and not TLS.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        }
    });
    let err = HttpProbe::new(&ssl(false), true, target(addr), None, None)
        .unwrap()
        .check()
        .await
        .unwrap_err();
    assert!(err.message.contains("SSL handshake"), "{err}");
    assert!(!err.timed_out());

    // A plain HTTP server waits for a request that never comes: the deadline ends it.
    let (addr, _) = support::http_server(|_| response("200 OK", b"plain")).await;
    let mut t = target(addr);
    t.timeout = std::time::Duration::from_millis(300);
    let err = HttpProbe::new(&ssl(false), true, t, None, None)
        .unwrap()
        .check()
        .await
        .unwrap_err();
    assert!(err.timed_out());
    assert!(err.message.contains("TLS handshake"), "{err}");
}
