//! What the process-level test binaries share: free ports, a fresh database on each
//! durable store ([`stores`]), and a TCP proxy in front of a database server that a test
//! can cut to make the database unreachable without stopping the machine's PostgreSQL or
//! MongoDB (other tests use them).
#![allow(dead_code)] // each test binary uses its own part

pub mod app;
pub mod mongod;
pub mod stores;

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Forwards 127.0.0.1:<port> to a database server (`host:port`) until cut; cutting drops
/// every connection and refuses new ones, restoring accepts again on the same port.
pub struct Proxy {
    pub port: u16,
    up: watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, _) = watch::channel(true);
        let state = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let mut alive = state.subscribe();
                if !*alive.borrow() {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = alive.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { port, up }
    }

    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}
