//! Failback timers across config changes. A backend that a config makes usable again after the
//! previous one made it unusable starts its hold-down; one still ramping keeps its timer.
//!
//! "The previous config" has two sources: the config this plugin instance ran before (in
//! memory), and the failback [`Ledger`] in shared data, which every instance writes when it
//! adopts a config. A new plugin instance (Envoy builds one on every filter config update, maybe
//! in a fresh VM) has no predecessor in memory but finds the ledger, so a member mid-hold-down
//! does not jump to full weight; a worker adopting a config after another one did reads the
//! timers that worker started instead of starting its own.
//!
//! Backends are matched by (route name, service name, cluster id), kept as a 64-bit FNV-1a hash
//! so the ledger is 16 bytes per unusable or ramping backend and needs no string allocation.

use std::hash::Hasher;

use crate::config::Config;
use crate::failover::{slot_allows, slots_allowed};
use crate::health::ramp;

/// A backend's identity across configs: hash of (route name, service name, cluster id).
pub type Key = u64;

/// What a config said about one backend, as the next config sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Prior {
    /// The controller's view made it unusable.
    Unusable,
    /// Usable; `Some(t)`: back since `t` (in failback hold or ramp), `None`: no timer.
    Usable(Option<u64>),
}

/// A backend's key. Each part is length-prefixed so `("a/b", "c")` and `("a", "b/c")` differ.
pub fn key(route: &str, service: &str, cluster: &str) -> Key {
    let mut h = fnv::FnvHasher::default();
    for part in [route, service, cluster] {
        h.write_u64(part.len() as u64);
        h.write(part.as_bytes());
    }
    h.finish()
}

/// The failback timer of a backend in the new config (`usable`: by the controller's view),
/// from what this instance's previous config said (`mine`) and what shared data says (`shared`).
pub fn carried(
    mine: Option<Prior>,
    shared: Option<Prior>,
    usable: bool,
    now_ms: u64,
) -> Option<u64> {
    if !usable {
        return None;
    }
    match (mine, shared) {
        // Usable before here too: nothing came back, whatever a stale shared entry says.
        (Some(Prior::Usable(at)), _) => at,
        // Another instance already saw it come back: its timer, not a restart. Never in the
        // future (a worker's clock may lag a little).
        (_, Some(Prior::Usable(Some(t)))) => Some(t.min(now_ms)),
        (Some(Prior::Unusable), _) | (None, Some(Prior::Unusable)) => Some(now_ms),
        (None, None | Some(Prior::Usable(None))) => None,
    }
}

/// Set every backend's failback timer in `new` (see [`carried`]).
pub fn carry_over(mine: Option<&Ledger>, shared: &Ledger, new: &mut Config, now_ms: u64) {
    let nothing_to_carry = mine.is_none() && shared.is_empty();
    for slot in 0..new.backends.len() {
        let t = match nothing_to_carry {
            true => None,
            false => {
                let k = new.slots[slot].key;
                let usable = slot_allows(new, slot);
                carried(mine.and_then(|m| m.get(k)), shared.get(k), usable, now_ms)
            }
        };
        new.backends[slot].recovered_at_ms = t;
    }
}

/// [`carry_over`] for `new`, a new state of `old`'s very routes (same slots, same keys): what
/// `old` said of a backend is at hand by slot, so only a backend that turns usable looks in
/// the shared ledger. One pass over flat arrays. Answers whether any backend turned usable or
/// unusable: if none did, every timer stayed and the ledger has nothing new to learn.
pub fn carry_state(old: &Config, shared: &Ledger, new: &mut Config, now_ms: u64) -> bool {
    let (was, is) = (slots_allowed(old), slots_allowed(new));
    let mut flipped = false;
    let slots = was.iter().zip(&is).zip(&mut new.backends).enumerate();
    for (slot, ((&was, &is), b)) in slots {
        flipped |= was != is;
        let mine = match was {
            true => Prior::Usable(old.backends.get(slot).and_then(|o| o.recovered_at_ms)),
            false => Prior::Unusable,
        };
        let theirs = match (was, is) {
            (false, true) => new.slots.get(slot).and_then(|s| shared.get(s.key)),
            _ => None,
        };
        b.recovered_at_ms = carried(Some(mine), theirs, is, now_ms);
    }
    flipped
}

/// What `cfg` says of the backend in `slot`.
fn prior(cfg: &Config, slot: usize) -> Prior {
    match slot_allows(cfg, slot) {
        true => Prior::Usable(cfg.backends.get(slot).and_then(|b| b.recovered_at_ms)),
        false => Prior::Unusable,
    }
}

/// Backend states by key, sorted for binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    entries: Vec<(Key, Prior)>,
}

/// Leads the shared record, so a record of another format reads as no record.
const MAGIC: &[u8; 4] = b"FBL1";
/// The stored time of an unusable backend.
const UNUSABLE: u64 = u64::MAX;

impl Ledger {
    /// Every backend of `cfg`: what an instance that ran it knows.
    pub fn of(cfg: &Config) -> Ledger {
        let slots = cfg.slots.iter().enumerate();
        Ledger::collect(slots.map(|(i, s)| (s.key, prior(cfg, i))))
    }

    /// What a later instance needs of `cfg` at `now_ms`: its unusable backends and those still
    /// in failback hold or ramp. Usable backends without a timer are left out (no entry means
    /// no timer), so the size follows the backends that are down or coming back.
    pub fn to_share(cfg: &Config, now_ms: u64) -> Ledger {
        let ramping = |route: u32, t: u64| {
            let Some(r) = cfg.routes.get(route as usize) else {
                return false;
            };
            ramp(now_ms, t, r.failback.hold_seconds, r.failback.ramp_seconds) < 1.0
        };
        let slots = cfg.slots.iter().enumerate();
        Ledger::collect(slots.filter_map(|(i, s)| {
            let p = prior(cfg, i);
            let needed = match p {
                Prior::Unusable => true,
                Prior::Usable(None) => false,
                Prior::Usable(Some(t)) => ramping(s.route, t),
            };
            needed.then_some((s.key, p))
        }))
    }

    /// Sorted, one entry per key (the smallest state if a config repeats a key), so every
    /// instance encodes the same config the same way.
    fn collect(entries: impl Iterator<Item = (Key, Prior)>) -> Ledger {
        let mut entries: Vec<(Key, Prior)> = entries.collect();
        entries.sort_unstable();
        entries.dedup_by_key(|e| e.0);
        Ledger { entries }
    }

    pub fn get(&self, k: Key) -> Option<Prior> {
        let i = self.entries.binary_search_by_key(&k, |e| e.0).ok()?;
        self.entries.get(i).map(|e| e.1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `FBL1`, then per entry the key and the time it came back (`u64::MAX`: unusable), both
    /// little-endian. Usable entries without a timer are not stored.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 16 * self.entries.len());
        out.extend_from_slice(MAGIC);
        for &(k, p) in &self.entries {
            let at = match p {
                Prior::Unusable => UNUSABLE,
                Prior::Usable(Some(t)) => t,
                Prior::Usable(None) => continue,
            };
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&at.to_le_bytes());
        }
        out
    }

    /// A stored record; `None` if it is not one (then there is nothing to carry).
    pub fn decode(b: &[u8]) -> Option<Ledger> {
        let body = b.strip_prefix(MAGIC)?;
        if body.len() % 16 != 0 {
            return None;
        }
        let word = |s: &[u8]| s.try_into().ok().map(u64::from_le_bytes);
        let entries = body.chunks_exact(16).map(|c| {
            let (k, at) = (word(&c[..8])?, word(&c[8..])?);
            let p = if at == UNUSABLE {
                Prior::Unusable
            } else {
                Prior::Usable(Some(at))
            };
            Some((k, p))
        });
        Some(Ledger::collect(
            entries.collect::<Option<Vec<_>>>()?.into_iter(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use serde_json::json;

    const T0: u64 = 1_000_000;

    /// One active-standby route over a and b, failback 10 s + 20 s; `a_ready` 0 makes a unusable.
    fn cfg(route: &str, a_ready: u32) -> Config {
        let doc = json!({
            "version": 1,
            "clusters": [{"id": "a"}, {"id": "b"}],
            "routes": [{
                "name": route,
                "mode": "active-standby", "order": ["a", "b"],
                "failback": {"hold_seconds": 10, "ramp_seconds": 20},
                "backends": [
                    {"cluster": "a", "upstream": "up-a", "ready": a_ready},
                    {"cluster": "b", "upstream": "up-b", "ready": 1}
                ]
            }]
        });
        config::parse(doc.to_string().as_bytes()).expect("valid config")
    }

    fn timer_of_a(c: &Config) -> Option<u64> {
        c.recovered_at_ms(&c.routes[0].base.backends[0])
    }

    /// One worker adopts `new` after running `old` (or as a fresh instance), with `shared` the
    /// record in shared data; answers the record it leaves.
    fn adopt(old: Option<&Config>, shared: &Ledger, new: &mut Config, now: u64) -> Ledger {
        let mine = old.map(Ledger::of);
        carry_over(mine.as_ref(), shared, new, now);
        Ledger::to_share(new, now)
    }

    #[test]
    fn the_carry_rule_prefers_own_history_then_a_shared_timer() {
        use Prior::*;
        let now = T0;
        let cases = [
            // (mine, shared, usable now) -> timer
            (None, None, true, None),
            (None, Some(Unusable), true, Some(now)),
            (None, Some(Usable(Some(5))), true, Some(5)),
            (None, Some(Usable(Some(now + 9))), true, Some(now)),
            (Some(Unusable), None, true, Some(now)),
            (Some(Unusable), Some(Unusable), true, Some(now)),
            (Some(Unusable), Some(Usable(Some(7))), true, Some(7)),
            (Some(Usable(None)), Some(Unusable), true, None),
            (Some(Usable(Some(3))), Some(Usable(Some(7))), true, Some(3)),
            (Some(Unusable), Some(Usable(Some(7))), false, None),
            (None, Some(Unusable), false, None),
        ];
        for (mine, shared, usable, want) in cases {
            assert_eq!(
                carried(mine, shared, usable, now),
                want,
                "{mine:?} {shared:?} {usable}"
            );
        }
    }

    #[test]
    fn a_fresh_instance_mid_hold_down_keeps_the_timer_another_started() {
        // Worker 1 ran "a down" and adopts "a back" at T0: the hold-down starts.
        let down = cfg("shop", 0);
        let boot = Ledger::to_share(&down, T0 - 5_000);
        let mut back = cfg("shop", 2);
        let record = adopt(Some(&down), &boot, &mut back, T0);
        assert_eq!(timer_of_a(&back), Some(T0));
        assert_eq!(
            record.get(key("shop", "shop", "a")),
            Some(Prior::Usable(Some(T0)))
        );
        // Worker 2 adopts the same config 300 ms later: the same timer, not a restart.
        let mut second = cfg("shop", 2);
        let again = adopt(Some(&down), &record, &mut second, T0 + 300);
        assert_eq!(timer_of_a(&second), Some(T0));
        assert_eq!(again, record, "nothing new to store");
        // A new plugin instance (no config in memory) 5 s in keeps it too.
        let mut fresh = cfg("shop", 3);
        adopt(None, &record, &mut fresh, T0 + 5_000);
        assert_eq!(timer_of_a(&fresh), Some(T0));
    }

    #[test]
    fn without_a_matching_entry_nothing_is_held_down() {
        // No record at all.
        let mut fresh = cfg("shop", 2);
        adopt(None, &Ledger::default(), &mut fresh, T0);
        assert_eq!(timer_of_a(&fresh), None);
        // A record of another route where a was down: keys do not match.
        let other = Ledger::to_share(&cfg("orders", 0), T0);
        assert_eq!(other.len(), 1);
        let mut fresh = cfg("shop", 2);
        adopt(None, &other, &mut fresh, T0);
        assert_eq!(timer_of_a(&fresh), None);
        // A stale record saying a is down, while this instance already ran it usable.
        let stale = Ledger::to_share(&cfg("shop", 0), T0);
        let mut next = cfg("shop", 2);
        adopt(Some(&cfg("shop", 1)), &stale, &mut next, T0);
        assert_eq!(timer_of_a(&next), None);
    }

    #[test]
    fn the_shared_part_holds_unusable_and_ramping_backends_only() {
        let mut back = cfg("shop", 2);
        let down = cfg("shop", 0);
        assert_eq!(Ledger::of(&down).len(), 2);
        let shared = Ledger::to_share(&down, T0);
        assert_eq!(shared.len(), 1, "b is usable without a timer");
        adopt(Some(&down), &shared, &mut back, T0);
        // Hold 10 s + ramp 20 s: kept until 30 s after it came back, then dropped.
        assert_eq!(Ledger::to_share(&back, T0 + 29_999).len(), 1);
        assert!(Ledger::to_share(&back, T0 + 30_000).is_empty());
    }

    #[test]
    fn records_round_trip_and_anything_else_reads_as_none() {
        let mut back = cfg("shop", 2);
        let mut l = adopt(Some(&cfg("shop", 0)), &Ledger::default(), &mut back, T0);
        l.entries.push((key("x", "y", "z"), Prior::Unusable));
        l.entries.sort_unstable();
        let bytes = l.encode();
        assert_eq!(bytes.len(), 4 + 2 * 16);
        assert_eq!(Ledger::decode(&bytes), Some(l));
        assert_eq!(Ledger::decode(b"FBL1"), Some(Ledger::default()));
        for bad in [
            &b""[..],
            b"FBL",
            b"FBL2",
            &bytes[..bytes.len() - 1],
            b"garbage garbage!",
        ] {
            assert_eq!(Ledger::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_do_not_run_parts_together() {
        assert_ne!(key("a/b", "c", "d"), key("a", "b/c", "d"));
        assert_ne!(key("ab", "", "c"), key("a", "b", "c"));
        assert_eq!(key("a", "b", "c"), key("a", "b", "c"));
    }
}
