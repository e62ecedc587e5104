//! Leader election with a `coordination.k8s.io/v1` Lease: the holder renews it; another replica
//! takes it over only once it has expired. Optimistic concurrency (resourceVersion) makes two
//! replicas racing for an expired Lease safe: one update wins, the other gets 409.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::Api;

/// A Lease-based elector.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl Elector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
        }
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Acquire or renew the Lease; `Ok(true)` while this replica is the leader.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        // A leader that stopped gracefully leaves no holder: take over at once.
        let released = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(MicroTime(t)), Some(d)) => {
                now.duration_since(*t) > SignedDuration::from_secs(i64::from(d))
            }
            _ => true,
        };
        if !mine && !expired && !released {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquired = if mine {
            spec.acquire_time.clone()
        } else {
            None
        };
        lease.spec = Some(self.spec(now, acquired, transitions));
        // replace carries metadata.resourceVersion: a concurrent writer makes this a 409.
        self.replace(&lease).await
    }

    /// Write `lease` back; `Ok(false)` when a concurrent writer won (409: its resourceVersion
    /// is stale).
    async fn replace(&self, lease: &Lease) -> Result<bool, kube::Error> {
        match self
            .api
            .replace(&self.name, &PostParams::default(), lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// On shutdown: if this replica holds the Lease, clear its holder so a follower takes over
    /// on its next try instead of waiting for the Lease to expire. `Ok(false)`: not ours (or a
    /// concurrent write won), nothing to release.
    pub async fn release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        self.replace(&lease).await
    }

    /// How long to wait before the next try: a leader renews at a third of the duration; a
    /// follower tries every second, so it takes over a released Lease within about a second.
    pub fn retry_period(&self, leading: bool) -> Duration {
        if leading {
            self.duration / 3
        } else {
            FOLLOWER_RETRY
        }
    }
}

/// A follower's retry period ([`Elector::retry_period`]).
pub const FOLLOWER_RETRY: Duration = Duration::from_secs(1);
