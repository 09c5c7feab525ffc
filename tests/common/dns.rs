//! Helpers for the DNS tests: `dig` run inside a container and its output parsed, and a test
//! upstream resolver (dnsmasq) inside the SERVERS namespace of a [`NatWorld`].
//!
//! The upstream never forwards anywhere (`--no-resolv --no-hosts`, no `--server`): it answers
//! `*.fwd.test` with 203.0.113.50, `big.test` TXT with [`BIG_TXT_RECORDS`] records of ~200
//! bytes each (≈1.7 KB, more than 512 bytes and more than dnsmasq's own 1232-byte EDNS limit,
//! so its UDP answer is always truncated), and REFUSED for anything else. Each query it
//! receives is logged to a file that tests can read.

use super::world::*;
use super::*;

/// The address the test upstream listens on (port 53, UDP and TCP).
pub const UPSTREAM_IP: &str = FAR_IP;
/// What the upstream answers for `fwd.test` and any name under it.
pub const FWD_ADDR: &str = "203.0.113.50";
/// How many TXT records the upstream has for `big.test`.
pub const BIG_TXT_RECORDS: usize = 8;

/// dnsmasq in the SERVERS namespace on 203.0.113.2:53; killed (by process group) on drop.
pub struct Upstream {
    _bg: Bg,
    pub log: PathBuf,
}

impl Upstream {
    /// Starts the test resolver and waits until it listens on UDP and TCP.
    pub fn start(w: &NatWorld) -> Self {
        Self::start_in(&w.servers, w.dir.path())
    }

    /// Starts the test resolver in `servers` (a SERVERS namespace wired to a world with
    /// [`wire`]), logging to `dir`.
    pub fn start_in(servers: &Netns, dir: &Path) -> Self {
        let log = dir.join("dnsmasq.log");
        let filler = "x".repeat(200);
        let txt: String = (0..BIG_TXT_RECORDS)
            .map(|i| format!(" --txt-record=big.test,r{i}{filler}"))
            .collect();
        let script = format!(
            "exec dnsmasq --keep-in-foreground --log-facility=- --log-queries --user=root \
             --pid-file= --no-resolv --no-hosts --listen-address={UPSTREAM_IP} \
             --bind-interfaces --port=53 --address=/fwd.test/{FWD_ADDR}{txt} 2>>{}",
            log.display()
        );
        let bg = Bg::sh(servers, &script);
        wait_for("dnsmasq to listen on 203.0.113.2:53", || {
            listening_on(servers, "udp", UPSTREAM_IP, 53)
                && listening_on(servers, "tcp", UPSTREAM_IP, 53)
        });
        Upstream { _bg: bg, log }
    }

    /// The query log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True when the upstream received a query for `name` (case-insensitive).
    pub fn saw(&self, name: &str) -> bool {
        let needle = format!("] {} from ", name.to_ascii_lowercase());
        self.log()
            .lines()
            .any(|l| l.contains("query[") && l.to_ascii_lowercase().contains(&needle))
    }
}

/// One resource record of dig's ANSWER SECTION.
#[derive(Debug, Clone)]
pub struct Rr {
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub data: String,
}

/// A `dig` run and what it printed, parsed.
pub struct Dig {
    pub run: Run,
    /// `NOERROR`, `NXDOMAIN`, ...; None when no answer came back.
    pub status: Option<String>,
    /// Header flags of the (last) answer: qr, aa, tc, rd, ra.
    pub flags: Vec<String>,
    pub answers: Vec<Rr>,
}

impl Dig {
    pub fn status(&self) -> &str {
        self.status.as_deref().unwrap_or("<no answer>")
    }
    /// The data of the A records, in answer order.
    pub fn addrs(&self) -> Vec<String> {
        self.answers
            .iter()
            .filter(|r| r.rtype == "A")
            .map(|r| r.data.clone())
            .collect()
    }
    pub fn flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
    /// Answered, NOERROR, exactly these A records (any order).
    pub fn resolves_to(&self, want: &[&str]) -> bool {
        let mut got = self.addrs();
        got.sort();
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        self.status.as_deref() == Some("NOERROR") && got == want
    }
}

impl std::fmt::Display for Dig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status={} flags={:?} answers={:?}\n{}",
            self.status(),
            self.flags,
            self.answers,
            self.run
        )
    }
}

/// Runs `dig @SERVER ARGS` inside `ns` (one try, 3 s per try unless ARGS say otherwise) and
/// parses its output.
pub fn dig(ns: &Netns, server: &str, args: &str) -> Dig {
    let r = run(ns, 30, &format!("dig @{server} +time=3 +tries=1 {args}"));
    parse_dig(r)
}

/// Parses dig's default output. When dig printed several messages (a truncated UDP answer,
/// then the TCP retry), the last one wins.
pub fn parse_dig(run: Run) -> Dig {
    let text = run.stdout();
    let mut status = None;
    let mut flags = Vec::new();
    let mut answers = Vec::new();
    let mut in_answer = false;
    for line in text.lines() {
        if let Some(i) = line.find("status: ") {
            let s: String = line[i + 8..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            status = Some(s);
            answers.clear();
        }
        if let Some(rest) = line.strip_prefix(";; flags:") {
            let f = rest.split(';').next().unwrap_or("");
            flags = f.split_whitespace().map(str::to_string).collect();
        }
        if line.starts_with(";; ANSWER SECTION:") {
            in_answer = true;
            continue;
        }
        if in_answer {
            if line.trim().is_empty() || line.starts_with(';') {
                in_answer = false;
                continue;
            }
            let mut it = line.split_whitespace();
            let (Some(name), Some(ttl), Some(_class), Some(rtype)) =
                (it.next(), it.next(), it.next(), it.next())
            else {
                continue;
            };
            answers.push(Rr {
                name: name.to_string(),
                ttl: ttl.parse().unwrap_or(0),
                rtype: rtype.to_string(),
                data: it.collect::<Vec<_>>().join(" "),
            });
        }
    }
    Dig {
        run,
        status,
        flags,
        answers,
    }
}

/// Sends `bytes` from `ns` to `server`:53 over UDP (one datagram) or TCP (as a stream, then
/// half-close) with socat and returns whatever came back within ~1 s.
pub fn send_raw(ns: &Netns, dir: &Path, server: &str, tcp: bool, bytes: &[u8]) -> Vec<u8> {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let input = dir.join(format!("raw{n}.in"));
    let output = dir.join(format!("raw{n}.out"));
    std::fs::write(&input, bytes).expect("write raw query");
    let proto = if tcp { "TCP" } else { "UDP" };
    run(
        ns,
        10,
        &format!(
            "socat -t 1 -T 2 - {proto}:{server}:53 < {} > {}",
            input.display(),
            output.display()
        ),
    );
    std::fs::read(&output).unwrap_or_default()
}

/// A well-formed DNS query (RD set) for `name`, type `qtype` (1 = A), id `id`.
pub fn query_bytes(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}
