//! HTTP callouts (`proxy_http_call`) held in a queue until the test answers or fails them, or
//! their timeout passes on the simulated clock. Like Envoy, an upstream that is not a known
//! cluster is refused with `BAD_ARGUMENT` (when the test declared its clusters).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use proxy_wasm_host::abi::v0_2_1::{
    CalloutId, Callouts, ContextId, GuestId, HttpCall, HttpCallRefusal, Invocation,
};

use crate::clock::SimClock;

/// A call a guest made that waits for the test to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpCallRequest {
    /// The host-wide id to pass to `Host::complete_http_call` / `Host::fail_http_call`.
    pub id: u64,
    /// The VM (worker) that made the call.
    pub vm: usize,
    /// The Envoy cluster the guest named.
    pub upstream: String,
    /// The request headers, pseudo-headers included, in the guest's order.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
    /// The timeout the guest gave (zero = none).
    pub timeout: Duration,
}

impl HttpCallRequest {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) id: u64,
    pub(crate) guest: GuestId,
    pub(crate) context: ContextId,
    pub(crate) callout: CalloutId,
    /// Simulated time after which Envoy would fail the call, if the guest gave a timeout.
    pub(crate) deadline: Option<Duration>,
    pub(crate) request: HttpCallRequest,
}

#[derive(Debug, Default)]
struct Queue {
    pending: Vec<Pending>,
    next_id: u64,
    known_upstreams: Option<BTreeSet<String>>,
}

/// The callouts service of one host, shared by its VMs.
#[derive(Debug)]
pub(crate) struct CalloutQueue {
    queue: Mutex<Queue>,
    clock: Arc<SimClock>,
}

impl CalloutQueue {
    pub(crate) fn new(clock: Arc<SimClock>) -> Self {
        Self {
            queue: Mutex::default(),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_known_upstreams(&self, upstreams: Option<BTreeSet<String>>) {
        self.lock().known_upstreams = upstreams;
    }

    pub(crate) fn pending(&self) -> Vec<Pending> {
        self.lock().pending.clone()
    }

    pub(crate) fn take(&self, id: u64) -> Option<Pending> {
        let mut queue = self.lock();
        let index = queue.pending.iter().position(|pending| pending.id == id)?;
        Some(queue.pending.remove(index))
    }

    /// Forgets callouts the crate ended (their context was deleted).
    pub(crate) fn forget(&self, guest: GuestId, ended: &[CalloutId]) {
        self.lock()
            .pending
            .retain(|pending| !(pending.guest == guest && ended.contains(&pending.callout)));
    }

    pub(crate) fn earliest_deadline(&self) -> Option<(Duration, u64)> {
        self.lock()
            .pending
            .iter()
            .filter_map(|pending| pending.deadline.map(|at| (at, pending.id)))
            .min()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Callouts for CalloutQueue {
    fn http_call(
        &self,
        call: Invocation,
        callout: CalloutId,
        request: HttpCall<'_>,
    ) -> Result<(), HttpCallRefusal> {
        let mut queue = self.lock();
        let upstream = text(&request.upstream);
        if queue
            .known_upstreams
            .as_ref()
            .is_some_and(|known| !known.contains(&upstream))
        {
            return Err(HttpCallRefusal::UnknownUpstream);
        }
        queue.next_id += 1;
        let id = queue.next_id;
        let deadline = (!request.timeout.is_zero()).then(|| self.clock.elapsed() + request.timeout);
        let request = HttpCallRequest {
            id,
            vm: 0,
            upstream,
            headers: request
                .headers
                .iter()
                .map(|(k, v)| (text(k), text(v)))
                .collect(),
            body: request.body.to_vec(),
            timeout: request.timeout,
        };
        queue.pending.push(Pending {
            id,
            guest: call.guest,
            context: call.context,
            callout,
            deadline,
            request,
        });
        Ok(())
    }
}
