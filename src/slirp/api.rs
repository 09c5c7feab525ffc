//! slirp4netns's API socket (`--api-socket`): one JSON request per connection, one compact
//! JSON reply without a newline, then the connection is shut down. The commands and the
//! exact error strings are slirp4netns 1.2's (`api.c`): `add_hostfwd` → `{"return":{"id":N}}`
//! (ids from 1, never reused), `list_hostfwd` → the entries (under `"return"`, as the man
//! page documents, and at the top level, as slirp4netns's code emits them), `remove_hostfwd`
//! → `{"return":{}}`; every failure is `{"error":{"desc":"..."}}`. Where slirp4netns says only
//! `slirp_add_hostfwd failed`, the reason follows after `: `.
//!
//! A request is read until the client shuts its side down (as the documentation asks) or
//! until what arrived parses as JSON (slirp4netns reads once), at most 4095 bytes, within
//! [`READ_TIMEOUT`]. Each connection is served on its own task, so a slow client holds up
//! nobody; the forward table is locked only while one command runs.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use nat::{PortMapping, Protocol, Publish};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;

use crate::datapath::Datapath;

/// A request larger than this is refused (slirp4netns's buffer).
pub const MAX_REQUEST: usize = 4096;
/// A client must have sent its request within this time.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// After the reply, what the client still sends is read and ignored for at most this long.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// One forward, as `list_hostfwd` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forward {
    /// Its id.
    pub id: u64,
    /// tcp or udp.
    pub proto: Protocol,
    /// Host address and port listened on.
    pub host: SocketAddrV4,
    /// Where it leads in the namespace.
    pub guest: SocketAddrV4,
}

/// A request, checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// `add_hostfwd`.
    Add {
        /// tcp or udp.
        proto: Protocol,
        /// Host side.
        host: SocketAddrV4,
        /// Namespace side.
        guest: SocketAddrV4,
    },
    /// `list_hostfwd`.
    List,
    /// `remove_hostfwd`.
    Remove {
        /// The forward's id.
        id: u64,
    },
}

/// The reply `{"error":{"desc":desc}}`.
pub fn error(desc: &str) -> String {
    json!({"error": {"desc": desc}}).to_string()
}

/// Parses one request. `net` is the virtual network: an empty or absent `guest_addr` means
/// net+100, and a guest address must be a host address of the network other than the
/// gateway (net+2) and the DNS address (net+3).
///
/// # Errors
/// slirp4netns's error description.
pub fn parse_request(body: &[u8], net: Ipv4Net) -> Result<Request, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|_| "bad request: cannot parse JSON".to_string())?;
    let Value::Object(obj) = value else {
        return Err("bad request: json_object() failed".into());
    };
    let Some(Value::String(execute)) = obj.get("execute") else {
        return Err("bad request: no execute found".into());
    };
    let args = obj.get("arguments");
    let arg = |name: &str| args.and_then(|a| a.get(name));
    match execute.as_str() {
        "add_hostfwd" => {
            let bad = |what: &str| format!("bad request: add_hostfwd: bad arguments.{what}");
            let proto = match arg("proto") {
                Some(Value::String(p)) if p == "tcp" => Protocol::Tcp,
                Some(Value::String(p)) if p == "udp" => Protocol::Udp,
                _ => return Err(bad("proto")),
            };
            let host_ip = match arg("host_addr") {
                None | Some(Value::Null) => Ipv4Addr::UNSPECIFIED,
                Some(Value::String(s)) if s.is_empty() => Ipv4Addr::UNSPECIFIED,
                Some(Value::String(s)) => s.parse().map_err(|_| bad("host_addr"))?,
                Some(_) => return Err(bad("host_addr")),
            };
            let host_port = port(arg("host_port")).ok_or_else(|| bad("host_port"))?;
            let guest_default = Ipv4Addr::from(u32::from(net.network()) + 100);
            let guest_ip = match arg("guest_addr") {
                None | Some(Value::Null) => guest_default,
                Some(Value::String(s)) if s.is_empty() => guest_default,
                Some(Value::String(s)) => s.parse().map_err(|_| bad("guest_addr"))?,
                Some(_) => return Err(bad("guest_addr")),
            };
            if !is_guest(net, guest_ip) {
                return Err(bad("guest_addr"));
            }
            let guest_port = port(arg("guest_port")).ok_or_else(|| bad("guest_port"))?;
            Ok(Request::Add {
                proto,
                host: SocketAddrV4::new(host_ip, host_port),
                guest: SocketAddrV4::new(guest_ip, guest_port),
            })
        }
        "list_hostfwd" => Ok(Request::List),
        "remove_hostfwd" => {
            let id = arg("id")
                .and_then(Value::as_u64)
                .filter(|id| *id > 0)
                .ok_or_else(|| "bad request: remove_hostfwd: bad arguments.id".to_string())?;
            Ok(Request::Remove { id })
        }
        _ => Err("bad request: unknown execute".into()),
    }
}

/// A port: a JSON integer (or an integral float, as JavaScript clients send) in 1..=65535.
fn port(v: Option<&Value>) -> Option<u16> {
    let v = v?;
    let n = match v.as_u64() {
        Some(n) => n,
        None => {
            let f = v.as_f64()?;
            if f.fract() != 0.0 || !(1.0..=65535.0).contains(&f) {
                return None;
            }
            f as u64
        }
    };
    u16::try_from(n).ok().filter(|p| *p != 0)
}

/// Whether `ip` can be a forward's destination: a host of the network, not a virtual address.
fn is_guest(net: Ipv4Net, ip: Ipv4Addr) -> bool {
    let base = u32::from(net.network());
    net.contains(&ip)
        && ip != net.network()
        && ip != net.broadcast()
        && u32::from(ip) != base + 2
        && u32::from(ip) != base + 3
}

/// The forwards of one drop-in and the data path they are served by.
pub struct Forwards {
    net: Ipv4Net,
    datapath: Arc<Datapath>,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    entries: BTreeMap<u64, Forward>,
}

impl Forwards {
    /// No forwards yet, for network `net`.
    pub fn new(net: Ipv4Net, datapath: Arc<Datapath>) -> Self {
        Self {
            net,
            datapath,
            table: Mutex::new(Table {
                next_id: 1,
                entries: BTreeMap::new(),
            }),
        }
    }

    /// Answers one request body with the reply to send.
    pub async fn answer(&self, body: &[u8]) -> String {
        match parse_request(body, self.net) {
            Ok(req) => self.execute(req).await,
            Err(desc) => error(&desc),
        }
    }

    async fn execute(&self, req: Request) -> String {
        let mut table = self.table.lock().await;
        match req {
            Request::Add { proto, host, guest } => {
                let failed = |why: String| {
                    error(&format!(
                        "bad request: add_hostfwd: slirp_add_hostfwd failed: {why}"
                    ))
                };
                let mapping = PortMapping {
                    host_ip: IpAddr::V4(*host.ip()),
                    host_port: host.port(),
                    container_port: guest.port(),
                    protocol: proto,
                };
                let fd = match crate::daemon::ports::bind(&mapping) {
                    Ok(fd) => fd,
                    Err(e) => return failed(e.to_string()),
                };
                let publish = Publish {
                    mapping,
                    container_ip: IpAddr::V4(*guest.ip()),
                };
                if let Err(e) = self.datapath.add_publish(publish, fd).await {
                    return failed(e.to_string());
                }
                let id = table.next_id;
                table.next_id += 1;
                table.entries.insert(
                    id,
                    Forward {
                        id,
                        proto,
                        host,
                        guest,
                    },
                );
                tracing::info!(id, %proto, %host, %guest, "port forward added");
                json!({"return": {"id": id}}).to_string()
            }
            Request::List => {
                let entries: Vec<Value> = table
                    .entries
                    .values()
                    .map(|f| {
                        json!({
                            "id": f.id,
                            "proto": f.proto.to_string(),
                            "host_addr": f.host.ip().to_string(),
                            "host_port": f.host.port(),
                            "guest_addr": f.guest.ip().to_string(),
                            "guest_port": f.guest.port(),
                        })
                    })
                    .collect();
                json!({"return": {"entries": entries}, "entries": entries}).to_string()
            }
            Request::Remove { id } => {
                let failed = || error("bad request: remove_hostfwd: slirp_remove_hostfwd failed");
                let Some(f) = table.entries.get(&id).copied() else {
                    return failed();
                };
                match self
                    .datapath
                    .remove_publish(SocketAddr::V4(f.host), f.proto)
                    .await
                {
                    Ok(_) => {
                        table.entries.remove(&id);
                        tracing::info!(id, "port forward removed");
                        json!({"return": {}}).to_string()
                    }
                    Err(_) => failed(),
                }
            }
        }
    }

    /// Serves the API socket until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: UnixListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let me = self.clone();
                    tokio::spawn(async move { me.connection(stream).await });
                }
                Err(e) => {
                    tracing::warn!("API socket: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn connection(&self, mut stream: UnixStream) {
        let reply = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
            Ok(Ok(body)) => self.answer(&body).await,
            Ok(Err(desc)) => error(&desc),
            Err(_) => error("bad request: cannot parse JSON"),
        };
        let _ = stream.write_all(reply.as_bytes()).await;
        let _ = stream.shutdown().await;
        // A client may still be sending (a trailing newline written separately, say) when
        // the JSON before it was complete: drain until it shuts down its side, briefly, so
        // that its last write does not fail with EPIPE.
        let mut sink = [0u8; 512];
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
}

/// Reads a request: until EOF, or until the bytes so far are one JSON value.
async fn read_request(stream: &mut UnixStream) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    loop {
        // `len` stays below MAX_REQUEST (checked after each read), so there is room.
        let Some(room) = buf.get_mut(len..) else {
            return Err("bad request: too large message".into());
        };
        let n = stream
            .read(room)
            .await
            .map_err(|_| "bad request: cannot parse JSON".to_string())?;
        if n == 0 {
            break;
        }
        len += n;
        if len >= MAX_REQUEST {
            return Err("bad request: too large message".into());
        }
        if serde_json::from_slice::<Value>(&buf[..len]).is_ok() {
            break;
        }
    }
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Ipv4Net {
        "10.0.2.0/24".parse().unwrap()
    }

    #[test]
    fn podmans_add_hostfwd_defaults_the_guest_to_net_plus_100() {
        let body = br#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"","guest_port":80}}
"#;
        assert_eq!(
            parse_request(body, net()),
            Ok(Request::Add {
                proto: Protocol::Tcp,
                host: "0.0.0.0:8080".parse().unwrap(),
                guest: "10.0.2.100:80".parse().unwrap(),
            })
        );
    }

    #[test]
    fn rootlesskits_add_hostfwd_with_an_empty_host_and_float_ports_is_accepted() {
        let body = br#"{"execute":"add_hostfwd","arguments":{"proto":"udp","host_addr":"","host_port":5353.0,"guest_addr":"10.0.2.100","guest_port":53}}"#;
        assert_eq!(
            parse_request(body, net()),
            Ok(Request::Add {
                proto: Protocol::Udp,
                host: "0.0.0.0:5353".parse().unwrap(),
                guest: "10.0.2.100:53".parse().unwrap(),
            })
        );
    }

    #[test]
    fn list_and_remove_parse() {
        assert_eq!(
            parse_request(br#"{"execute":"list_hostfwd"}"#, net()),
            Ok(Request::List)
        );
        assert_eq!(
            parse_request(
                br#"{"execute":"remove_hostfwd","arguments":{"id":3}}"#,
                net()
            ),
            Ok(Request::Remove { id: 3 })
        );
    }

    #[test]
    fn every_bad_request_gets_slirps_error_string() {
        let add = |args: &str| format!(r#"{{"execute":"add_hostfwd","arguments":{args}}}"#);
        let cases: Vec<(String, &str)> = vec![
            ("{".into(), "bad request: cannot parse JSON"),
            ("[1,2]".into(), "bad request: json_object() failed"),
            (
                r#"{"arguments":{}}"#.into(),
                "bad request: no execute found",
            ),
            (r#"{"execute":7}"#.into(), "bad request: no execute found"),
            (
                r#"{"execute":"reboot"}"#.into(),
                "bad request: unknown execute",
            ),
            (
                add(r#"{"host_port":1,"guest_port":1}"#),
                "bad request: add_hostfwd: bad arguments.proto",
            ),
            (
                add(r#"{"proto":"tcp6","host_port":1,"guest_port":1}"#),
                "bad request: add_hostfwd: bad arguments.proto",
            ),
            (
                add(r#"{"proto":"tcp","host_addr":"::","host_port":1,"guest_port":1}"#),
                "bad request: add_hostfwd: bad arguments.host_addr",
            ),
            (
                add(r#"{"proto":"tcp","guest_port":1}"#),
                "bad request: add_hostfwd: bad arguments.host_port",
            ),
            (
                add(r#"{"proto":"tcp","host_port":0,"guest_port":1}"#),
                "bad request: add_hostfwd: bad arguments.host_port",
            ),
            (
                add(r#"{"proto":"tcp","host_port":65536,"guest_port":1}"#),
                "bad request: add_hostfwd: bad arguments.host_port",
            ),
            (
                add(r#"{"proto":"tcp","host_port":"80","guest_port":1}"#),
                "bad request: add_hostfwd: bad arguments.host_port",
            ),
            (
                add(r#"{"proto":"tcp","host_port":1.5,"guest_port":1}"#),
                "bad request: add_hostfwd: bad arguments.host_port",
            ),
            (
                add(r#"{"proto":"tcp","host_port":1,"guest_addr":"10.0.3.1","guest_port":1}"#),
                "bad request: add_hostfwd: bad arguments.guest_addr",
            ),
            (
                add(r#"{"proto":"tcp","host_port":1,"guest_addr":"10.0.2.2","guest_port":1}"#),
                "bad request: add_hostfwd: bad arguments.guest_addr",
            ),
            (
                add(r#"{"proto":"tcp","host_port":1,"guest_addr":"10.0.2.255","guest_port":1}"#),
                "bad request: add_hostfwd: bad arguments.guest_addr",
            ),
            (
                add(r#"{"proto":"tcp","host_port":1}"#),
                "bad request: add_hostfwd: bad arguments.guest_port",
            ),
            (
                r#"{"execute":"remove_hostfwd","arguments":{"id":"1"}}"#.into(),
                "bad request: remove_hostfwd: bad arguments.id",
            ),
            (
                r#"{"execute":"remove_hostfwd"}"#.into(),
                "bad request: remove_hostfwd: bad arguments.id",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                parse_request(body.as_bytes(), net()),
                Err(want.to_string()),
                "{body}"
            );
        }
    }

    #[test]
    fn errors_are_compact_json_without_a_newline() {
        assert_eq!(
            error("bad request: unknown execute"),
            r#"{"error":{"desc":"bad request: unknown execute"}}"#
        );
    }
}
