//! The backend: "OK\n" for every request line, connection kept until the peer closes.
//! Idle connections cost it one task and one socket, so it also serves the idle-connection test.

use std::io::{self, Write};
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::net::{listen, REPLY};

pub async fn run(addrs: Vec<SocketAddr>) -> io::Result<()> {
    let mut accept_loops = Vec::new();
    for addr in addrs {
        let listener = listen(addr)?;
        accept_loops.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(answer(stream));
                    }
                    // Out of fds or a reset before accept: keep serving the others.
                    Err(e) => {
                        eprintln!("conn-bench serve: accept on {addr}: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    println!("listening");
    io::stdout().flush()?;
    for l in accept_loops {
        l.await.map_err(io::Error::other)?;
    }
    Ok(())
}

async fn answer(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; 512];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for _ in buf[..n].iter().filter(|&&b| b == b'\n') {
            if stream.write_all(REPLY).await.is_err() {
                return;
            }
        }
    }
}
