//! The certificate authority as an actor: signs certificates on request and watches expiry.
//!
//! It holds the loaded CAs in memory so no other component reads key files. Components ask it by
//! message ([`PkiMsg`]); a daily tick re-checks the serving and admin certificates and logs a
//! warning when one is within the renewal window (they are reissued at the next start, as in K3s).

use crate::certs::{CertInfo, ClusterPki, Leaf, PkiError, RENEW_BEFORE, ServingNames, Usage};
use kernel::{Actor, BoxError, Ctx};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// How often certificate expiry is checked while running.
const CHECK_EVERY: Duration = Duration::from_secs(24 * 3600);

/// Requests to the certificate authority.
#[derive(Debug)]
pub enum PkiMsg {
    /// Issue a client certificate (CN = user, O = groups) signed by the client CA.
    IssueClient {
        /// The user name (certificate CN).
        user: String,
        /// The groups (certificate O values).
        groups: Vec<String>,
        /// Where the certificate goes.
        reply: oneshot::Sender<Result<Leaf, PkiError>>,
    },
    /// Issue a serving certificate for `names` signed by the server CA.
    IssueServing {
        /// The subject CN.
        cn: String,
        /// DNS names and addresses to cover.
        names: ServingNames,
        /// Where the certificate goes.
        reply: oneshot::Sender<Result<Leaf, PkiError>>,
    },
    /// The CA bundle agents pin (the bytes `/cacerts` serves).
    CaBundle {
        /// Where the PEM goes.
        reply: oneshot::Sender<String>,
    },
    /// Timer: check the expiry of the certificates in use.
    CheckExpiry,
}

/// The certificate authority actor.
#[derive(Debug)]
pub struct CertAuthority {
    pki: Arc<ClusterPki>,
}

impl CertAuthority {
    /// An authority over material loaded by [`crate::ensure`].
    pub fn new(pki: Arc<ClusterPki>) -> Self {
        CertAuthority { pki }
    }

    /// Certificates in use that expire within the renewal window, with their remaining days.
    pub fn expiring(&self) -> Vec<(&'static str, i64)> {
        let now = OffsetDateTime::now_utc();
        [
            ("serving-kube-apiserver", &self.pki.serving),
            ("client-admin", &self.pki.admin),
        ]
        .into_iter()
        .filter_map(|(name, leaf)| {
            let info = CertInfo::from_pem(&leaf.cert_pem).ok()?;
            let left = info.not_after - now;
            (left < RENEW_BEFORE).then_some((name, left.whole_days()))
        })
        .collect()
    }
}

impl Actor for CertAuthority {
    type Msg = PkiMsg;

    async fn started(&mut self, ctx: &Ctx<Self>) -> Result<(), BoxError> {
        let addr = ctx.addr();
        let stop = ctx.token().clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECK_EVERY);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => if addr.send(PkiMsg::CheckExpiry).await.is_err() { break },
                }
            }
        });
        Ok(())
    }

    async fn handle(&mut self, msg: PkiMsg, _ctx: &Ctx<Self>) -> Result<(), BoxError> {
        match msg {
            PkiMsg::IssueClient {
                user,
                groups,
                reply,
            } => {
                let _ = reply.send(self.pki.client_ca.issue(
                    &user,
                    &groups,
                    Usage::Client,
                    &ServingNames::default(),
                ));
            }
            PkiMsg::IssueServing { cn, names, reply } => {
                let _ = reply.send(self.pki.server_ca.issue(&cn, &[], Usage::Server, &names));
            }
            PkiMsg::CaBundle { reply } => {
                let _ = reply.send(self.pki.server_ca.cert_pem.clone());
            }
            PkiMsg::CheckExpiry => {
                for (name, days) in self.expiring() {
                    tracing::warn!(
                        certificate = name,
                        days_left = days,
                        "certificate expires soon; restart to renew"
                    );
                }
            }
        }
        Ok(())
    }
}
