//! The etcd 3 backend (K3s' `--datastore-endpoint=https://h1:2379,h2:2379`), over etcd's native
//! gRPC API with a client generated from the vendored protos (see `proto/README.md`; no `protoc`).
//!
//! # Mapping
//! - revision = etcd's store revision (cluster-wide, so `current_revision` moves with any write
//!   to the etcd cluster, not only this store's);
//! - create = `Txn(if create_revision(k) == 0 then Put)`; update = `Txn(if mod_revision(k) ==
//!   expected then Put else Range(k))` (the failure branch reports the current version); delete
//!   = `Txn(if mod_revision(k) == expected then DeleteRange(k, prev_kv) else Range(k))`, or a
//!   plain `DeleteRange(k, prev_kv)` without an expectation;
//! - get/list = `Range` at a revision, `range_end` = prefix + 1, `limit` + 1 for `more` (etcd
//!   returns keys in byte order); count = `Range(count_only)`;
//! - watch = `Watch` from `after + 1` with `prev_kv`; a watch etcd cancels for compaction ends with
//!   [`StoreError::Compacted`]; a broken stream is re-established from the last delivered
//!   revision, so events are neither lost nor repeated;
//! - compact = `Compact(physical)`; TTL = `LeaseGrant` + `Put` with the lease (etcd deletes the
//!   key, with a delete event, when the lease expires, also across restarts); the requested TTL is
//!   encoded in the lease ID this backend asks for (`1 << 62 | ttl_secs << 32 | random`), so
//!   versions report `lease_ttl` without an extra round trip; db_size = `Maintenance.Status`.
//!
//! # Namespaces
//! With [`EtcdOptions::namespace`] empty (the default, and what [`open`](crate::open) uses), keys
//! are stored as they are, as Kubernetes and Go K3s store them, and the compacted revision is
//! etcd's own (found with `Range` probes). A non-empty namespace `N` lets several stores share one
//! etcd (the tests do): keys live under `N/d`, and `N/m/epoch` (created at first open) and
//! `N/m/compact` record when the store was created and how far it was compacted, so a fresh
//! namespace reports compacted revision 0 and history before its creation is empty rather than
//! lost. Compacting still compacts the whole etcd keyspace.
//!
//! # Errors
//! gRPC `Unavailable`/`DeadlineExceeded`/`ResourceExhausted`/`Aborted` are
//! [`StoreError::Unavailable`] (retryable; `open` retries them for
//! [`EtcdOptions::connect_timeout`]); etcd's "required revision has been compacted" and "is a
//! future revision" are `Compacted` and `FutureRevision`. Messages name the endpoints.

mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use self::pb::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest,
    PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, StatusRequest,
    TxnRequest, TxnResponse, compare, kv_client::KvClient, lease_client::LeaseClient,
    maintenance_client::MaintenanceClient, request_op, response_op, watch_client::WatchClient,
};
use self::pb::mvccpb;
use crate::backend::{Backend, WatchStream};
use crate::error::StoreError;
use crate::options::StoreOptions;
use crate::sql::TlsFiles;
use crate::types::{KeyValue, ListResult, Revision};

/// The generated etcd v3 API client (messages and `*_client` modules).
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    rustdoc::all
)]
pub mod pb {
    /// `mvccpb`: key-value versions and watch events.
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    /// `authpb`: users, roles and permissions.
    pub mod authpb {
        tonic::include_proto!("authpb");
    }
    /// `etcdserverpb`: the KV, Watch, Lease, Cluster, Maintenance and Auth services.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}

/// Settings of the etcd backend beyond [`StoreOptions`].
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Key namespace (see the module docs); empty stores keys as they are.
    pub namespace: String,
    /// How long `connect` keeps retrying endpoints that cannot be reached.
    pub connect_timeout: Duration,
    /// Deadline of each unary request.
    pub request_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            namespace: String::new(),
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// Largest gRPC message accepted (a list of many large values).
const MAX_MESSAGE: usize = 512 << 20;
/// Marks lease IDs granted by this backend; bits 32..62 hold the TTL in seconds.
const LEASE_MARK: i64 = 1 << 62;
const LEASE_TTL_MASK: i64 = (1 << 30) - 1;

/// The etcd backend. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct EtcdBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    kv: KvClient<Channel>,
    watch: WatchClient<Channel>,
    lease: LeaseClient<Channel>,
    maintenance: MaintenanceClient<Channel>,
    /// The endpoints, for messages.
    endpoints: String,
    /// Prefix of every stored key (empty without a namespace).
    data: Vec<u8>,
    /// Prefix of the namespace's bookkeeping keys, if namespaced.
    meta: Option<Vec<u8>>,
    /// The revision the namespace was created at (0 without one): no history before it.
    epoch: AtomicI64,
    /// The compacted revision as last seen.
    compacted: AtomicI64,
    /// Varies lease IDs.
    lease_seq: AtomicU64,
    closed: AtomicBool,
    close_tx: tokio::sync::watch::Sender<bool>,
    opts: EtcdOptions,
}

/// `key` + 1 at its last byte that can be incremented; `[0]` (no upper bound) if none.
fn range_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// etcd rejects an empty key; `[0]` (with `range_end` `[0]`) means "from the first key".
fn non_empty(key: Vec<u8>) -> Vec<u8> {
    if key.is_empty() { vec![0] } else { key }
}

/// The TTL encoded in a lease ID this backend granted.
fn lease_ttl(lease: i64) -> Option<i64> {
    if lease == 0 {
        None
    } else if lease >> 62 == 1 {
        Some((lease >> 32) & LEASE_TTL_MASK)
    } else {
        // A lease granted by another client: its TTL is not known without asking.
        None
    }
}

fn io_err(path: &std::path::Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        op: "read datastore TLS file",
        path: path.to_owned(),
        source,
    }
}

impl EtcdBackend {
    /// Connects to the etcd cluster at `endpoints` (`http(s)://host:port`), retrying endpoints that
    /// cannot be reached for [`EtcdOptions::connect_timeout`].
    pub async fn connect(
        endpoints: &[String],
        opts: &StoreOptions,
        etcd: &EtcdOptions,
        tls: &TlsFiles,
    ) -> Result<Self, StoreError> {
        opts.validate()
            .map_err(|errors| StoreError::InvalidOptions { errors })?;
        let names = endpoints.join(",");
        let bad = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Database {
            backend: "etcd",
            path: names.clone().into(),
            source,
        };
        if endpoints.is_empty() {
            return Err(bad("no etcd endpoint given".into()));
        }
        let mut tls_config = None;
        if endpoints.iter().any(|e| e.starts_with("https://")) {
            let mut cfg = ClientTlsConfig::new();
            match &tls.ca_file {
                Some(ca) => {
                    let pem = std::fs::read(ca).map_err(|e| io_err(ca, e))?;
                    cfg = cfg.ca_certificate(Certificate::from_pem(pem));
                }
                None => cfg = cfg.with_native_roots(),
            }
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                let c = std::fs::read(cert).map_err(|e| io_err(cert, e))?;
                let k = std::fs::read(key).map_err(|e| io_err(key, e))?;
                cfg = cfg.identity(Identity::from_pem(c, k));
            }
            tls_config = Some(cfg);
        }
        let mut eps = Vec::with_capacity(endpoints.len());
        for url in endpoints {
            let mut ep = tonic::transport::Endpoint::from_shared(url.clone())
                .map_err(|e| bad(Box::new(e)))?
                .connect_timeout(etcd.connect_timeout.min(Duration::from_secs(5)))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(10))
                .keep_alive_while_idle(true);
            if url.starts_with("https://")
                && let Some(cfg) = &tls_config
            {
                ep = ep.tls_config(cfg.clone()).map_err(|e| bad(Box::new(e)))?;
            }
            eps.push(ep);
        }
        let channel = match eps.as_slice() {
            [one] => one.connect_lazy(),
            _ => Channel::balance_list(eps.into_iter()),
        };
        let (data, meta) = if etcd.namespace.is_empty() {
            (Vec::new(), None)
        } else {
            let ns = etcd.namespace.as_bytes();
            ([ns, b"/d"].concat(), Some([ns, b"/m/"].concat()))
        };
        let (close_tx, _) = tokio::sync::watch::channel(false);
        let inner = Arc::new(Inner {
            kv: KvClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            watch: WatchClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
            lease: LeaseClient::new(channel.clone()),
            maintenance: MaintenanceClient::new(channel),
            endpoints: names,
            data,
            meta,
            epoch: AtomicI64::new(0),
            compacted: AtomicI64::new(0),
            lease_seq: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            close_tx,
            opts: etcd.clone(),
        });
        // Reachability, with retries while the cluster is down or starting.
        let deadline = tokio::time::Instant::now() + etcd.connect_timeout;
        let mut delay = Duration::from_millis(100);
        loop {
            match inner.current_revision().await {
                Ok(_) => break,
                Err(StoreError::Unavailable { reason }) => {
                    if tokio::time::Instant::now() + delay > deadline {
                        return Err(StoreError::Unavailable {
                            reason: format!("{reason} (gave up after {:?})", etcd.connect_timeout),
                        });
                    }
                    tracing::warn!(%reason, retry_in = ?delay, "etcd not reachable yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
        inner.init_namespace().await?;
        let compacted = inner.refresh_compacted().await?;
        tracing::info!(endpoints = %inner.endpoints, compacted, namespace = %etcd.namespace, "etcd datastore open");
        Ok(EtcdBackend { inner })
    }
}

impl Inner {
    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.opts.request_timeout);
        req
    }

    /// Maps a gRPC status. `at` is the revision a read asked for, if any.
    fn status_err(&self, s: tonic::Status) -> StoreError {
        use tonic::Code;
        match s.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Cancelled => StoreError::Unavailable {
                reason: format!("etcd {}: {}", self.endpoints, s.message()),
            },
            _ => StoreError::Database {
                backend: "etcd",
                path: self.endpoints.clone().into(),
                source: Box::new(s),
            },
        }
    }

    /// Maps a read's status, recognising etcd's compaction and future-revision errors.
    async fn read_err(&self, s: tonic::Status, at: Revision) -> StoreError {
        let msg = s.message();
        if msg.contains("required revision has been compacted") {
            let compacted = self.refresh_compacted().await.unwrap_or(at + 1).max(at + 1);
            return StoreError::Compacted {
                requested: at,
                compacted,
            };
        }
        if msg.contains("required revision is a future revision") {
            return match self.current_revision().await {
                Ok(current) => StoreError::FutureRevision {
                    requested: at,
                    current,
                },
                Err(e) => e,
            };
        }
        self.status_err(s)
    }

    fn key(&self, key: &str) -> Vec<u8> {
        [self.data.as_slice(), key.as_bytes()].concat()
    }

    /// The store key of an etcd key, if it is one of this store's (and UTF-8).
    fn user_key(&self, key: &[u8]) -> Option<String> {
        let rest = key.strip_prefix(self.data.as_slice())?;
        match std::str::from_utf8(rest) {
            Ok(s) => Some(s.to_owned()),
            Err(_) => {
                tracing::warn!(key = ?String::from_utf8_lossy(key), "skipping a non-UTF-8 etcd key");
                None
            }
        }
    }

    fn to_kv(&self, kv: mvccpb::KeyValue) -> Option<KeyValue> {
        Some(KeyValue {
            key: self.user_key(&kv.key)?,
            value: Bytes::from(kv.value),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            lease_ttl: lease_ttl(kv.lease),
        })
    }

    fn meta_key(&self, name: &str) -> Option<Vec<u8>> {
        self.meta
            .as_ref()
            .map(|m| [m.as_slice(), name.as_bytes()].concat())
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, tonic::Status> {
        self.kv
            .clone()
            .range(self.request(req))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, StoreError> {
        self.kv
            .clone()
            .txn(self.request(req))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.status_err(s))
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let resp = self
            .range(RangeRequest {
                key: non_empty(self.key("")),
                count_only: true,
                limit: 1,
                ..Default::default()
            })
            .await
            .map_err(|s| self.status_err(s))?;
        Ok(header_rev(resp.header.as_ref()))
    }

    /// Creates the namespace's epoch key (once) and loads the epoch.
    async fn init_namespace(&self) -> Result<(), StoreError> {
        let Some(epoch_key) = self.meta_key("epoch") else {
            return Ok(());
        };
        let resp = self
            .txn(TxnRequest {
                compare: vec![Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Create as i32,
                    key: epoch_key.clone(),
                    target_union: Some(compare::TargetUnion::CreateRevision(0)),
                    ..Default::default()
                }],
                success: vec![put_op(epoch_key.clone(), Vec::new(), 0)],
                failure: vec![range_op(epoch_key)],
            })
            .await?;
        let epoch = if resp.succeeded {
            header_rev(resp.header.as_ref())
        } else {
            first_range_kv(resp.responses).map_or(0, |kv| kv.create_revision)
        };
        self.epoch.store(epoch, Ordering::Release);
        Ok(())
    }

    /// Reads the compacted revision (the namespace's record, or etcd's own) into the cache.
    async fn refresh_compacted(&self) -> Result<Revision, StoreError> {
        let found = match self.meta_key("compact") {
            Some(key) => {
                let resp = self
                    .range(RangeRequest {
                        key,
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| self.status_err(s))?;
                resp.kvs
                    .first()
                    .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse().ok())
                    .unwrap_or(0)
            }
            None => self.probe_compacted().await?,
        };
        self.compacted.fetch_max(found, Ordering::AcqRel);
        Ok(self.compacted.load(Ordering::Acquire))
    }

    /// Whether etcd can still serve reads at `rev`.
    async fn readable(&self, rev: Revision) -> Result<bool, StoreError> {
        match self
            .range(RangeRequest {
                key: non_empty(self.key("")),
                count_only: true,
                revision: rev,
                ..Default::default()
            })
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.message().contains("required revision has been compacted") => Ok(false),
            Err(s) => Err(self.status_err(s)),
        }
    }

    /// etcd's compacted revision: the oldest readable revision (0 if nothing was compacted),
    /// found by checking the cached value and otherwise by bisection.
    async fn probe_compacted(&self) -> Result<Revision, StoreError> {
        let cached = self.compacted.load(Ordering::Acquire);
        if cached > 1 && self.readable(cached).await? && !self.readable(cached - 1).await? {
            return Ok(cached);
        }
        if self.readable(1).await? {
            return Ok(0);
        }
        // Invariant: `lo` is not readable, `hi` is.
        let (mut lo, mut hi) = (1, self.current_revision().await?);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.readable(mid).await? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(hi)
    }

    /// Grants a lease whose ID encodes `ttl` (see the module docs).
    async fn grant(&self, ttl: Duration) -> Result<i64, StoreError> {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let secs = i64::try_from(secs.clamp(1, LEASE_TTL_MASK as u64)).unwrap_or(LEASE_TTL_MASK);
        for _ in 0..8 {
            let id = LEASE_MARK | (secs << 32) | random_u32(&self.lease_seq);
            let resp = self
                .lease
                .clone()
                .lease_grant(self.request(LeaseGrantRequest { ttl: secs, id }))
                .await;
            match resp {
                Ok(r) => return Ok(r.into_inner().id),
                Err(s) if s.message().contains("lease already exists") => continue,
                Err(s) => return Err(self.status_err(s)),
            }
        }
        Err(StoreError::Unavailable {
            reason: format!("etcd {}: could not find a free lease ID", self.endpoints),
        })
    }

    /// Revokes a lease that ended up unused (best effort).
    fn revoke_later(self: &Arc<Self>, id: i64) {
        if id == 0 {
            return;
        }
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            let _ = inner
                .lease
                .clone()
                .lease_revoke(inner.request(LeaseRevokeRequest { id }))
                .await;
        });
    }

    /// The store's compacted revision, failing reads below it.
    fn check_compacted(&self, at: Revision) -> Result<(), StoreError> {
        let compacted = self.compacted.load(Ordering::Acquire);
        if at < compacted {
            return Err(StoreError::Compacted {
                requested: at,
                compacted,
            });
        }
        Ok(())
    }

    /// Raises the namespace's compaction record to `rev`.
    async fn raise_compact_record(&self, rev: Revision) -> Result<(), StoreError> {
        let Some(key) = self.meta_key("compact") else {
            return Ok(());
        };
        loop {
            let cur = self
                .range(RangeRequest {
                    key: key.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|s| self.status_err(s))?;
            let (value, mod_rev) = cur.kvs.first().map_or((0, 0), |kv| {
                let v = std::str::from_utf8(&kv.value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .unwrap_or(0);
                (v, kv.mod_revision)
            });
            if value >= rev {
                return Ok(());
            }
            let resp = self
                .txn(TxnRequest {
                    compare: vec![Compare {
                        result: compare::CompareResult::Equal as i32,
                        target: compare::CompareTarget::Mod as i32,
                        key: key.clone(),
                        target_union: Some(compare::TargetUnion::ModRevision(mod_rev)),
                        ..Default::default()
                    }],
                    success: vec![put_op(key.clone(), rev.to_string().into_bytes(), 0)],
                    failure: vec![],
                })
                .await?;
            if resp.succeeded {
                return Ok(());
            }
        }
    }
}

fn header_rev(h: Option<&ResponseHeader>) -> Revision {
    h.map_or(0, |h| h.revision)
}

fn put_op(key: Vec<u8>, value: Vec<u8>, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key,
            value,
            lease,
            ..Default::default()
        })),
    }
}

fn range_op(key: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key,
            ..Default::default()
        })),
    }
}

fn mod_equals(key: Vec<u8>, rev: Revision) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Mod as i32,
        key,
        target_union: Some(compare::TargetUnion::ModRevision(rev)),
        ..Default::default()
    }
}

/// The first key-value of the first response, if it is a range response.
fn first_range_kv(responses: Vec<ResponseOp>) -> Option<mvccpb::KeyValue> {
    match responses.into_iter().next()?.response? {
        response_op::Response::ResponseRange(r) => r.kvs.into_iter().next(),
        _ => None,
    }
}

/// 32 random-enough bits (lease IDs only need to avoid collisions; a collision is retried).
fn random_u32(seq: &AtomicU64) -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(seq.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() & 0xFFFF_FFFF) as i64
}

fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey {
            key: String::new(),
            reason: "empty",
        });
    }
    Ok(())
}

#[async_trait::async_trait]
impl Backend for EtcdBackend {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.check_open()?;
        self.inner.current_revision().await
    }

    async fn get(&self, key: &str, at: Option<Revision>) -> Result<Option<KeyValue>, StoreError> {
        let inner = &self.inner;
        inner.check_open()?;
        check_key(key)?;
        if let Some(at) = at {
            inner.check_compacted(at)?;
        }
        let resp = inner
            .range(RangeRequest {
                key: inner.key(key),
                revision: at.unwrap_or(0),
                ..Default::default()
            })
            .await;
        match resp {
            Ok(r) => Ok(r.kvs.into_iter().next().and_then(|kv| inner.to_kv(kv))),
            Err(s) => Err(inner.read_err(s, at.unwrap_or(0)).await),
        }
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at: Option<Revision>,
    ) -> Result<ListResult, StoreError> {
        let inner = &self.inner;
        inner.check_open()?;
        if let Some(at) = at {
            inner.check_compacted(at)?;
        }
        let from = inner.key(prefix);
        let end = range_end(&from);
        let start = match start_after {
            Some(after) if after >= prefix => {
                let mut k = inner.key(after);
                k.push(0);
                k
            }
            _ => non_empty(from),
        };
        let resp = inner
            .range(RangeRequest {
                key: start,
                range_end: end,
                limit: i64::try_from(limit).unwrap_or(i64::MAX),
                revision: at.unwrap_or(0),
                ..Default::default()
            })
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(s) => return Err(inner.read_err(s, at.unwrap_or(0)).await),
        };
        let revision = at.unwrap_or_else(|| header_rev(resp.header.as_ref()));
        let items: Vec<KeyValue> = resp
            .kvs
            .into_iter()
            .filter_map(|kv| inner.to_kv(kv))
            .collect();
        let more = limit > 0 && resp.more;
        let continue_after = if more {
            items.last().map(|kv| kv.key.clone())
        } else {
            None
        };
        Ok(ListResult {
            items,
            revision,
            more,
            continue_after,
        })
    }

    async fn count(&self, prefix: &str) -> Result<(i64, Revision), StoreError> {
        let inner = &self.inner;
        inner.check_open()?;
        let from = inner.key(prefix);
        let resp = inner
            .range(RangeRequest {
                range_end: range_end(&from),
                key: non_empty(from),
                count_only: true,
                ..Default::default()
            })
            .await
            .map_err(|s| inner.status_err(s))?;
        Ok((resp.count, header_rev(resp.header.as_ref())))
    }

    async fn create(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Revision, StoreError> {
        let inner = &self.inner;
        inner.check_open()?;
        check_key(key)?;
        let lease = match ttl {
            Some(ttl) => inner.grant(ttl).await?,
            None => 0,
        };
        let k = inner.key(key);
        let resp = inner
            .txn(TxnRequest {
                compare: vec![Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Create as i32,
                    key: k.clone(),
                    target_union: Some(compare::TargetUnion::CreateRevision(0)),
                    ..Default::default()
                }],
                success: vec![put_op(k, value.to_vec(), lease)],
                failure: vec![],
            })
            .await;
        match resp {
            Ok(r) if r.succeeded => Ok(header_rev(r.header.as_ref())),
            Ok(_) => {
                inner.revoke_later(lease);
                Err(StoreError::AlreadyExists {
                    key: key.to_owned(),
                })
            }
            Err(e) => {
                inner.revoke_later(lease);
                Err(e)
            }
        }
    }

    async fn update(
        &self,
        key: &str,
        expected_mod_revision: Revision,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Revision, StoreError> {
        let inner = &self.inner;
        inner.check_open()?;
        check_key(key)?;
        let k = inner.key(key);
        if expected_mod_revision <= 0 {
            // `mod_revision == 0` would match a missing key.
            let current = self.get(key, None).await?.map(Box::new);
            return Err(StoreError::Conflict {
                key: key.to_owned(),
                current,
            });
        }
        let lease = match ttl {
            Some(ttl) => inner.grant(ttl).await?,
            None => 0,
        };
        let resp = inner
            .txn(TxnRequest {
                compare: vec![mod_equals(k.clone(), expected_mod_revision)],
                success: vec![put_op(k.clone(), value.to_vec(), lease)],
                failure: vec![range_op(k)],
            })
            .await;
        match resp {
            Ok(r) if r.succeeded => Ok(header_rev(r.header.as_ref())),
            Ok(r) => {
                inner.revoke_later(lease);
                let current = first_range_kv(r.responses)
                    .and_then(|kv| inner.to_kv(kv))
                    .map(Box::new);
                Err(StoreError::Conflict {
                    key: key.to_owned(),
                    current,
                })
            }
            Err(e) => {
                inner.revoke_later(lease);
                Err(e)
            }
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        let inner = &self.inner;
        inner.check_open()?;
        check_key(key)?;
        let k = inner.key(key);
        let not_found = || StoreError::NotFound {
            key: key.to_owned(),
        };
        let delete = DeleteRangeRequest {
            key: k.clone(),
            prev_kv: true,
            ..Default::default()
        };
        let Some(expected) = expected_mod_revision else {
            let resp = inner
                .kv
                .clone()
                .delete_range(inner.request(delete))
                .await
                .map_err(|s| inner.status_err(s))?
                .into_inner();
            let rev = header_rev(resp.header.as_ref());
            return match resp.prev_kvs.into_iter().next() {
                Some(prev) if resp.deleted > 0 => {
                    Ok((inner.to_kv(prev).ok_or_else(not_found)?, rev))
                }
                _ => Err(not_found()),
            };
        };
        let resp = inner
            .txn(TxnRequest {
                compare: vec![mod_equals(k.clone(), expected)],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestDeleteRange(delete)),
                }],
                failure: vec![range_op(k)],
            })
            .await?;
        let rev = header_rev(resp.header.as_ref());
        if resp.succeeded {
            let prev = match resp.responses.into_iter().next().and_then(|r| r.response) {
                Some(response_op::Response::ResponseDeleteRange(d)) => {
                    d.prev_kvs.into_iter().next()
                }
                _ => None,
            };
            return Ok((
                prev.and_then(|kv| inner.to_kv(kv)).ok_or_else(not_found)?,
                rev,
            ));
        }
        match first_range_kv(resp.responses).and_then(|kv| inner.to_kv(kv)) {
            None => Err(not_found()),
            Some(cur) => Err(StoreError::Conflict {
                key: key.to_owned(),
                current: Some(Box::new(cur)),
            }),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        self.inner.check_open()?;
        if self.inner.meta.is_some() {
            self.inner.refresh_compacted().await?;
        }
        Ok(watch::watch(Arc::clone(&self.inner), prefix, after))
    }

    async fn compact(&self, keep_after: Revision) -> Result<(), StoreError> {
        let inner = &self.inner;
        inner.check_open()?;
        let compacted = inner.refresh_compacted().await?;
        if keep_after <= compacted {
            return Ok(());
        }
        let current = inner.current_revision().await?;
        if keep_after > current {
            return Err(StoreError::FutureRevision {
                requested: keep_after,
                current,
            });
        }
        inner.raise_compact_record(keep_after).await?;
        let done = inner
            .kv
            .clone()
            .compact(inner.request(CompactionRequest {
                revision: keep_after,
                physical: true,
            }))
            .await;
        match done {
            Ok(_) => {}
            // Someone compacted etcd further already.
            Err(s) if s.message().contains("required revision has been compacted") => {}
            Err(s) => return Err(inner.status_err(s)),
        }
        inner.compacted.fetch_max(keep_after, Ordering::AcqRel);
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.inner.check_open()?;
        self.inner.refresh_compacted().await
    }

    async fn db_size(&self) -> Result<u64, StoreError> {
        let inner = &self.inner;
        inner.check_open()?;
        let status = inner
            .maintenance
            .clone()
            .status(inner.request(StatusRequest {}))
            .await
            .map_err(|s| inner.status_err(s))?
            .into_inner();
        Ok(u64::try_from(status.db_size).unwrap_or(0))
    }

    async fn close(&self) {
        if !self.inner.closed.swap(true, Ordering::AcqRel) {
            self.inner.close_tx.send_replace(true);
            tracing::info!(endpoints = %self.inner.endpoints, "etcd datastore closed");
        }
    }
}

impl Drop for EtcdBackend {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.close_tx.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_end_increments_with_carry() {
        assert_eq!(range_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(range_end(b"a\xff"), b"b".to_vec());
        assert_eq!(range_end(b""), vec![0]);
        assert_eq!(range_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn lease_ids_carry_the_ttl() {
        let seq = AtomicU64::new(0);
        let id = LEASE_MARK | (3600 << 32) | random_u32(&seq);
        assert!(id > 0);
        assert_eq!(lease_ttl(id), Some(3600));
        assert_eq!(lease_ttl(0), None);
        assert_eq!(lease_ttl(0x1234_5678), None);
    }
}
