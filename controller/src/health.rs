//! Member control-plane contact, the input of the three cluster states peers get wrong.
//!
//! A member whose API watch has failed for longer than the grace period is [`Contact::Lost`]
//! (the config marks it `unknown` and keeps its last endpoints; the plugin's passive health
//! decides). Only real evidence, a live watch showing zero ready endpoints, makes it `down`
//! (decided in [`crate::derive`]). A member that never synced is [`Contact::Never`] (`unknown`,
//! nothing known). Time is `tokio::time::Instant` so tests can pause it.

use std::time::Duration;

use tokio::time::Instant;

use crate::derive::Contact;

/// Default grace period before a failing watch makes a member `unknown`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Watch health of one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberHealth {
    /// The watch completed an initial list at least once.
    pub synced: bool,
    /// When the watch started failing (cleared by the next successful event).
    pub failing_since: Option<Instant>,
}

impl MemberHealth {
    /// A watch event arrived (list or watch): contact is fine.
    pub fn on_event(&mut self) {
        self.failing_since = None;
    }
    /// The initial list completed.
    pub fn on_synced(&mut self) {
        self.synced = true;
        self.failing_since = None;
    }
    /// The watch failed; the first failure starts the grace period.
    pub fn on_error(&mut self, now: Instant) {
        self.failing_since.get_or_insert(now);
    }
    /// When this member turns `Lost` unless an event comes first (a derive is due then).
    pub fn lost_at(&self, grace: Duration) -> Option<Instant> {
        self.failing_since
            .filter(|_| self.synced)
            .map(|t| t + grace)
    }
    /// Contact as of `now`.
    pub fn contact(&self, now: Instant, grace: Duration) -> Contact {
        if !self.synced {
            return Contact::Never;
        }
        match self.failing_since {
            Some(t) if now.saturating_duration_since(t) >= grace => Contact::Lost,
            _ => Contact::Live,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failing_watch_is_live_until_the_grace_period_ends() {
        let grace = Duration::from_secs(30);
        let mut h = MemberHealth::default();
        assert_eq!(h.contact(Instant::now(), grace), Contact::Never);
        h.on_synced();
        h.on_error(Instant::now());
        tokio::time::advance(Duration::from_secs(29)).await;
        h.on_error(Instant::now()); // a retry failing again does not restart the clock
        assert_eq!(h.contact(Instant::now(), grace), Contact::Live);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(h.contact(Instant::now(), grace), Contact::Lost);
        h.on_event();
        assert_eq!(h.contact(Instant::now(), grace), Contact::Live);
    }
}
