//! `serve`: the far end of every measurement. TCP: greets each connection with one byte and
//! closes it (the client answers the FIN with its reset, so neither side keeps TIME_WAIT
//! state), echoes until the peer closes (for `hold`), or closes at once (a reset by default). UDP: counts datagrams per burst and
//! prints one line when a burst ends.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};

use crate::udp::Burst;
use crate::{Close, TcpMode};

const LISTENER: Token = Token(0);
const UDP: Token = Token(1);
/// Tokens of accepted connections start here.
const FIRST_CONN: usize = 2;

pub fn run(
    tcp: Option<SocketAddr>,
    mode: TcpMode,
    close: Close,
    udp: Option<SocketAddr>,
    idle: Duration,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        tcp.is_some() || udp.is_some(),
        "serve needs --tcp or --udp (or both)"
    );
    let mut poll = Poll::new()?;
    let mut listener = match tcp {
        Some(a) => {
            let mut l = listen(a).map_err(|e| anyhow::anyhow!("tcp {a}: {e}"))?;
            poll.registry()
                .register(&mut l, LISTENER, Interest::READABLE)?;
            Some(l)
        }
        None => None,
    };
    let mut udp_sock = match udp {
        Some(a) => {
            let s = socket2::Socket::new(
                socket2::Domain::for_address(a),
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )?;
            // Room for bursts: the count is what the path delivered, not what one wakeup took.
            let _ = s.set_recv_buffer_size(16 << 20);
            s.set_nonblocking(true)?;
            s.bind(&a.into())
                .map_err(|e| anyhow::anyhow!("udp {a}: {e}"))?;
            let mut s = UdpSocket::from_std(s.into());
            poll.registry().register(&mut s, UDP, Interest::READABLE)?;
            Some(s)
        }
        None => None,
    };
    let mut conns: HashMap<usize, TcpStream> = HashMap::new();
    let mut next = FIRST_CONN;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 65536];
    let mut burst = Burst::default();
    loop {
        let timeout = burst.last().map(|t| idle.saturating_sub(t.elapsed()));
        poll.poll(&mut events, timeout)?;
        for ev in events.iter() {
            match ev.token() {
                LISTENER => {
                    let Some(l) = listener.as_mut() else { continue };
                    loop {
                        match l.accept() {
                            Ok((mut s, _)) => {
                                if mode == TcpMode::Greet {
                                    // One syscall and the close: the send buffer is empty.
                                    let _ = s.write(b"!");
                                } else if mode == TcpMode::Echo {
                                    let t = next;
                                    next += 1;
                                    poll.registry().register(
                                        &mut s,
                                        Token(t),
                                        Interest::READABLE,
                                    )?;
                                    conns.insert(t, s);
                                } else if close == Close::Rst {
                                    let _ =
                                        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                                }
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            // ECONNABORTED and friends: the next one may do.
                            Err(_) => break,
                        }
                    }
                }
                UDP => {
                    let Some(s) = udp_sock.as_mut() else { continue };
                    loop {
                        match s.recv(&mut buf) {
                            Ok(n) => burst.add(buf.get(..n).unwrap_or(&[]), Instant::now()),
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(_) => break,
                        }
                    }
                }
                Token(t) => {
                    let Some(s) = conns.get_mut(&t) else { continue };
                    if !echo_all(s, &mut buf) {
                        conns.remove(&t);
                    }
                }
            }
        }
        if burst.last().is_some_and(|last| last.elapsed() >= idle) {
            println!("serve udp {}", burst.report());
            std::io::stdout().flush()?;
            burst = Burst::default();
        }
    }
}

/// Echoes what is readable now; false once the peer is gone.
fn echo_all(s: &mut TcpStream, buf: &mut [u8]) -> bool {
    loop {
        match s.read(buf) {
            Ok(0) => return false,
            Ok(n) => {
                let Some(data) = buf.get(..n) else {
                    return false;
                };
                // Echo replies are small (request/response); a full send buffer ends the
                // connection rather than queueing.
                if s.write_all(data).is_err() {
                    return false;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// A non-blocking listener with a long accept queue (connection-rate runs fill it fast).
fn listen(a: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(a), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&a.into())?;
    s.listen(4096)?;
    s.set_nonblocking(true)?;
    Ok(TcpListener::from_std(s.into()))
}
