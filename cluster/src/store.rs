//! The [`Store`]: this host's lease, the transactions that create networks and allocate
//! addresses, the endpoints it publishes, and the watch that hands the daemon a
//! [`ClusterView`] after every change.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::Mutex;

use crate::schema::*;
use crate::{Error, OP_TIMEOUT, PREFIX};

/// One host's connection to the cluster store.
#[derive(Clone)]
pub struct Store {
    url: String,
    client: Client,
    host_id: String,
    host: HostRecord,
    ttl: i64,
    /// The current lease (0: none yet).
    lease: Arc<AtomicI64>,
    /// Every leased key this host published, to publish again under a new lease.
    published: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Store {
    /// Makes the client (it connects lazily, so a store that is down now is no error).
    ///
    /// # Errors
    /// The client cannot be built.
    pub async fn new(
        url: &str,
        host_id: String,
        host: HostRecord,
        ttl: Duration,
    ) -> Result<Self, Error> {
        let parsed = StoreUrl::parse(url)?;
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(OP_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let client = Client::connect(&parsed.endpoints, Some(opts))
            .await
            .map_err(|e| Error::Unreachable {
                store: url.to_string(),
                why: e.to_string(),
            })?;
        Ok(Store {
            url: url.to_string(),
            client,
            host_id,
            host,
            ttl: i64::try_from(ttl.as_secs()).unwrap_or(15).max(2),
            lease: Arc::new(AtomicI64::new(0)),
            published: Arc::new(Mutex::new(BTreeMap::new())),
        })
    }

    /// This host's id.
    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    fn unreachable(&self, why: impl std::fmt::Display) -> Error {
        Error::Unreachable {
            store: self.url.clone(),
            why: why.to_string(),
        }
    }

    /// Runs one store call within [`OP_TIMEOUT`].
    async fn op<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(OP_TIMEOUT, f).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(self.unreachable(root_cause(&e))),
            Err(_) => Err(self.unreachable(format!("no answer within {} s", OP_TIMEOUT.as_secs()))),
        }
    }

    /// The current lease, or an error when there is none (the store was never reached).
    fn lease(&self) -> Result<i64, Error> {
        match self.lease.load(Ordering::SeqCst) {
            0 => Err(self.unreachable("this host holds no lease yet")),
            id => Ok(id),
        }
    }

    /// Keeps the host registered for as long as the task runs: grants a lease, publishes
    /// the host key and everything published before under it, keeps it alive every third of
    /// the TTL, and starts over (new lease) when the lease is lost.
    pub async fn keep_membership(self) {
        // One warning per outage, not one per retry.
        let mut warned = false;
        loop {
            match self.join().await {
                Ok(id) => {
                    warned = false;
                    tracing::info!(host = self.host_id, lease = id, "joined the cluster");
                    let why = self.keep_alive(id).await;
                    tracing::warn!(host = self.host_id, "cluster lease lost: {why}");
                }
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!("cannot join the cluster (retrying every second): {e}");
                }
                Err(e) => tracing::debug!("cannot join the cluster: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn join(&self) -> Result<i64, Error> {
        let mut c = self.client.clone();
        let grant = self.op(c.lease_grant(self.ttl, None)).await?;
        let id = grant.id();
        let put = Some(PutOptions::new().with_lease(id));
        let host = serde_json::to_string(&self.host).unwrap_or_default();
        self.op(c.put(host_key(&self.host_id), host, put.clone()))
            .await?;
        let published = self.published.lock().await.clone();
        for (k, v) in published {
            if k.starts_with(&format!("{PREFIX}ipam/")) {
                // Ours already (the old lease has not expired) or free: take it again.
                let txn = Txn::new()
                    .when([Compare::value(k.clone(), CompareOp::Equal, v.clone())])
                    .and_then([TxnOp::put(k.clone(), v.clone(), put.clone())]);
                let again = self.op(c.txn(txn)).await?.succeeded();
                if !again {
                    let txn = Txn::new()
                        .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(k.clone(), v.clone(), put.clone())]);
                    if !self.op(c.txn(txn)).await?.succeeded() {
                        tracing::warn!(
                            key = k,
                            "address taken by another host while this one was away"
                        );
                    }
                }
            } else {
                self.op(c.put(k, v, put.clone())).await?;
            }
        }
        self.lease.store(id, Ordering::SeqCst);
        Ok(id)
    }

    async fn keep_alive(&self, id: i64) -> String {
        let mut c = self.client.clone();
        let (mut keeper, mut stream) = match self.op(c.lease_keep_alive(id)).await {
            Ok(k) => k,
            Err(e) => return e.to_string(),
        };
        let every = Duration::from_secs(u64::try_from(self.ttl / 3).unwrap_or(1).max(1));
        let mut last_ok = tokio::time::Instant::now();
        loop {
            if last_ok.elapsed() > Duration::from_secs(u64::try_from(self.ttl).unwrap_or(15)) {
                return "no keep-alive answer within the TTL".into();
            }
            if let Err(e) = keeper.keep_alive().await {
                return e.to_string();
            }
            match tokio::time::timeout(OP_TIMEOUT, stream.message()).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => last_ok = tokio::time::Instant::now(),
                Ok(Ok(Some(_))) => return "the lease expired".into(),
                Ok(Ok(None)) => return "keep-alive stream closed".into(),
                Ok(Err(e)) => return e.to_string(),
                Err(_) => {
                    tracing::debug!("keep-alive unanswered");
                    // Re-open the stream: the old one may be stuck on a dead connection.
                    if let Ok((k, s)) = self.op(c.lease_keep_alive(id)).await {
                        keeper = k;
                        stream = s;
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Creates an overlay network for the whole cluster with the lowest free VNI, in one
    /// transaction (the name must be new there).
    ///
    /// # Errors
    /// The store is unreachable, or the name is taken.
    pub async fn create_network(
        &self,
        name: &str,
        mut rec: NetworkRecord,
    ) -> Result<NetworkRecord, Error> {
        let mut c = self.client.clone();
        for _ in 0..16 {
            let vnis = self
                .op(c.get(
                    format!("{PREFIX}vni/"),
                    Some(GetOptions::new().with_prefix().with_keys_only()),
                ))
                .await?;
            let used = vnis
                .kvs()
                .iter()
                .filter_map(|kv| kv.key_str().ok()?.rsplit('/').next()?.parse().ok())
                .collect();
            rec.vni = free_vni(&used)
                .ok_or_else(|| Error::Conflict("no free VNI left in the cluster".into()))?;
            let value = serde_json::to_string(&rec).unwrap_or_default();
            let txn = Txn::new()
                .when([
                    Compare::create_revision(network_key(name), CompareOp::Equal, 0),
                    Compare::create_revision(vni_key(rec.vni), CompareOp::Equal, 0),
                ])
                .and_then([
                    TxnOp::put(network_key(name), value, None),
                    TxnOp::put(
                        vni_key(rec.vni),
                        serde_json::to_string(name).unwrap_or_default(),
                        None,
                    ),
                ]);
            if self.op(c.txn(txn)).await?.succeeded() {
                return Ok(rec);
            }
            let exists = self.op(c.get(network_key(name), None)).await?;
            if !exists.kvs().is_empty() {
                return Err(Error::Conflict(format!(
                    "network name {name} is already in use in the cluster"
                )));
            }
        }
        Err(Error::Conflict(format!(
            "network {name}: VNI allocation kept racing; try again"
        )))
    }

    /// Removes an overlay network for the whole cluster, refused while any host has an
    /// endpoint on it.
    ///
    /// # Errors
    /// The store is unreachable, the network is unknown or has endpoints.
    pub async fn remove_network(&self, name: &str) -> Result<(), Error> {
        let mut c = self.client.clone();
        let eps = self
            .op(c.get(
                endpoints_prefix(name),
                Some(GetOptions::new().with_prefix()),
            ))
            .await?;
        let revision = eps.header().map_or(0, |h| h.revision());
        if !eps.kvs().is_empty() {
            let mut names: Vec<String> = eps
                .kvs()
                .iter()
                .filter_map(|kv| serde_json::from_slice::<EndpointRecord>(kv.value()).ok())
                .map(|e| e.name)
                .collect();
            names.sort();
            return Err(Error::Conflict(format!(
                "network {name} has active endpoints in the cluster ({}); disconnect them first",
                names.join(", ")
            )));
        }
        let held = self
            .op(c.get(
                ipam_prefix(name),
                Some(GetOptions::new().with_prefix().with_count_only()),
            ))
            .await?;
        if held.count() > 0 {
            return Err(Error::Conflict(format!(
                "network {name} has addresses held in the cluster (a connect in progress); \
                 try again"
            )));
        }
        let got = self.op(c.get(network_key(name), None)).await?;
        let Some(kv) = got.kvs().first() else {
            return Err(Error::NotFound(format!(
                "network {name} not found in the cluster"
            )));
        };
        let rec: Option<NetworkRecord> = serde_json::from_slice(kv.value()).ok();
        let mut ops = vec![TxnOp::delete(network_key(name), None)];
        if let Some(r) = rec {
            ops.push(TxnOp::delete(vni_key(r.vni), None));
        }
        // Only if nothing changed since the reads: the network, and no endpoint or address
        // created on any host meanwhile (every key of both prefixes is older than the read).
        let txn = Txn::new()
            .when([
                Compare::mod_revision(network_key(name), CompareOp::Equal, kv.mod_revision()),
                Compare::create_revision(endpoints_prefix(name), CompareOp::Less, revision + 1)
                    .with_prefix(),
                Compare::create_revision(ipam_prefix(name), CompareOp::Less, revision + 1)
                    .with_prefix(),
            ])
            .and_then(ops);
        if !self.op(c.txn(txn)).await?.succeeded() {
            return Err(Error::Conflict(format!(
                "network {name} changed meanwhile (a connect on another host?); try again"
            )));
        }
        Ok(())
    }

    /// Takes an address of `net` for endpoint `endpoint` of this host, under its lease: the
    /// given one, or the first free one. One transaction per try, succeeding only if the
    /// address's key does not exist (create revision 0), so two hosts never get the same.
    ///
    /// # Errors
    /// The store is unreachable, the address is taken, the network is full.
    pub async fn allocate(
        &self,
        net: &str,
        rec: &NetworkRecord,
        endpoint: &str,
        wanted: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, Error> {
        let lease = self.lease()?;
        let mut c = self.client.clone();
        let value = serde_json::to_string(&LeaseRecord {
            host: self.host_id.clone(),
            endpoint: endpoint.to_string(),
        })
        .unwrap_or_default();
        let put = Some(PutOptions::new().with_lease(lease));
        let try_take = |ip: Ipv4Addr| {
            Txn::new()
                .when([Compare::create_revision(
                    ipam_key(net, ip),
                    CompareOp::Equal,
                    0,
                )])
                .and_then([TxnOp::put(ipam_key(net, ip), value.clone(), put.clone())])
        };
        if let Some(ip) = wanted {
            if !candidates(rec).any(|c| c == ip) {
                return Err(Error::Invalid(format!(
                    "address {ip} is not assignable in network {net} ({})",
                    rec.ip_range.unwrap_or(rec.subnet)
                )));
            }
            if !self.op(c.txn(try_take(ip))).await?.succeeded() {
                return Err(Error::Conflict(format!(
                    "address {ip} is already in use in network {net}"
                )));
            }
            self.remember(ipam_key(net, ip), value.clone()).await;
            return Ok(ip);
        }
        for _ in 0..64 {
            let taken = self
                .op(c.get(
                    ipam_prefix(net),
                    Some(GetOptions::new().with_prefix().with_keys_only()),
                ))
                .await?;
            let used: std::collections::BTreeSet<Ipv4Addr> = taken
                .kvs()
                .iter()
                .filter_map(|kv| kv.key_str().ok()?.rsplit('/').next()?.parse().ok())
                .collect();
            let Some(ip) = candidates(rec).find(|ip| !used.contains(ip)) else {
                return Err(Error::Conflict(format!(
                    "no free address left in network {net} ({})",
                    rec.ip_range.unwrap_or(rec.subnet)
                )));
            };
            if self.op(c.txn(try_take(ip))).await?.succeeded() {
                self.remember(ipam_key(net, ip), value.clone()).await;
                return Ok(ip);
            }
            // Another host took it between our read and our transaction: read again.
        }
        Err(Error::Conflict(format!(
            "network {net}: address allocation kept racing; try again"
        )))
    }

    /// Frees an address this host took (best effort: an unreachable store frees it when the
    /// host's lease expires... or never, while the host lives; the error says so).
    ///
    /// # Errors
    /// The store is unreachable.
    pub async fn release(&self, net: &str, ip: Ipv4Addr) -> Result<(), Error> {
        let key = ipam_key(net, ip);
        let value = self.published.lock().await.remove(&key);
        let mut c = self.client.clone();
        if let Some(v) = value {
            let txn = Txn::new()
                .when([Compare::value(key.clone(), CompareOp::Equal, v)])
                .and_then([TxnOp::delete(key, None)]);
            self.op(c.txn(txn)).await?;
        }
        Ok(())
    }

    /// Publishes an endpoint of this host under its lease.
    ///
    /// # Errors
    /// The store is unreachable.
    pub async fn publish(&self, net: &str, id: &str, rec: &EndpointRecord) -> Result<(), Error> {
        let key = endpoint_key(net, id);
        let value = serde_json::to_string(rec).unwrap_or_default();
        self.remember(key.clone(), value.clone()).await;
        let lease = self.lease()?;
        let mut c = self.client.clone();
        self.op(c.put(key, value, Some(PutOptions::new().with_lease(lease))))
            .await?;
        Ok(())
    }

    /// Remembers an endpoint (and its address) of this host to publish when the store is
    /// reached (a restart while the store is down).
    pub async fn remember_endpoint(&self, net: &str, id: &str, rec: &EndpointRecord) {
        let lease = serde_json::to_string(&LeaseRecord {
            host: self.host_id.clone(),
            endpoint: id.to_string(),
        })
        .unwrap_or_default();
        self.remember(ipam_key(net, rec.ipv4), lease).await;
        self.remember(
            endpoint_key(net, id),
            serde_json::to_string(rec).unwrap_or_default(),
        )
        .await;
    }

    /// Withdraws an endpoint of this host.
    ///
    /// # Errors
    /// The store is unreachable.
    pub async fn unpublish(&self, net: &str, id: &str) -> Result<(), Error> {
        let key = endpoint_key(net, id);
        self.published.lock().await.remove(&key);
        let mut c = self.client.clone();
        self.op(c.delete(key, None)).await?;
        Ok(())
    }

    async fn remember(&self, key: String, value: String) {
        self.published.lock().await.insert(key, value);
    }

    /// Watches the whole prefix: sends a complete [`ClusterView`] now and after every change
    /// (bursts are coalesced). While the store is unreachable nothing is sent, so the
    /// receiver keeps its last view; the task retries every second.
    pub async fn watch(self, tx: tokio::sync::watch::Sender<Option<ClusterView>>) {
        let mut c = self.client.clone();
        loop {
            let got = self
                .op(c.get(PREFIX, Some(GetOptions::new().with_prefix())))
                .await;
            let resp = match got {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!("cluster watch: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let revision = resp.header().map_or(0, |h| h.revision());
            let view =
                ClusterView::from_kvs(revision, resp.kvs().iter().map(|kv| (kv.key(), kv.value())));
            tx.send_if_modified(|old| {
                let changed = old.as_ref().map(|o| (&o.hosts, &o.networks, &o.endpoints))
                    != Some((&view.hosts, &view.networks, &view.endpoints));
                *old = Some(view);
                changed
            });
            let opts = WatchOptions::new()
                .with_prefix()
                .with_start_revision(revision + 1);
            let mut stream = match self.op(c.watch(PREFIX, Some(opts))).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("cluster watch: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            // Wait for a change; re-read periodically too, so a silently dead stream (store
            // restarted, connection cut) is noticed.
            let waited = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
            if let Ok(Ok(Some(_))) = waited {
                // Coalesce a burst.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
