//! The report's failure scenarios as data: for each, the fleet, the traffic, a timeline of
//! events, and what to measure against (the member new requests must avoid, the member that
//! must keep its share, the member whose failback to profile).

use std::time::Duration;

use crate::member::Mode;

/// How long and how hard the report runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Shorter timelines, and passive health / failback shortened to match.
    pub quick: bool,
    /// GETs per second, and as many POSTs per second.
    pub rate: u32,
    /// GETs (and as many POSTs) per second under config churn.
    pub churn_rate: u32,
    /// Failback (hold, ramp) seconds, set on the Ingresses.
    pub failback: (u32, u32),
    /// Passive health (first ejection, ramp) seconds; `None` = the plugin's defaults.
    pub passive_health: Option<(u32, u32)>,
}

/// The plugin's default first ejection (`PassiveHealthV1::base_ejection_seconds`).
pub const DEFAULT_EJECTION_SECONDS: u32 = 10;

impl Plan {
    /// The published report: plugin defaults for passive health, the demo's failback.
    pub fn full() -> Plan {
        Plan {
            quick: false,
            rate: 100,
            churn_rate: 1000,
            failback: (3, 6),
            passive_health: None,
        }
    }

    /// About a third of the time: short timelines, 3 s ejections, ramps and hold.
    pub fn quick() -> Plan {
        Plan {
            quick: true,
            rate: 100,
            churn_rate: 200,
            failback: (3, 3),
            passive_health: Some((3, 3)),
        }
    }

    /// The first ejection's length: failover is measured before the ejected member's
    /// probation probes (which are by design).
    pub fn ejection(&self) -> Duration {
        let seconds = self
            .passive_health
            .map_or(DEFAULT_EJECTION_SECONDS, |p| p.0);
        Duration::from_secs(u64::from(seconds))
    }

    /// `full` seconds in the full plan, `quick` in the quick one.
    fn secs(&self, full: f64, quick: f64) -> Duration {
        Duration::from_secs_f64(if self.quick { quick } else { full })
    }
}

/// Something that happens to the fleet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// The member's processes die; no control-plane change.
    Kill(&'static str),
    /// The killed processes start again on their old ports.
    Revive(&'static str),
    /// Planned: endpoints leave the slices (the controller pushes), processes stop after the drain.
    ScaleToZero(&'static str, Duration),
    /// Processes start, then join the slices.
    ScaleUp(&'static str),
    /// Unplanned outage the controller notices: processes die, slices empty after the delay.
    Lose(&'static str, Duration),
    /// The member's API server becomes unreachable (the controller marks it `unknown`).
    ApiUnreachable(&'static str),
    /// Reachable again.
    ApiReachable(&'static str),
    /// How the member's replicas answer from now on.
    SetMode(&'static str, Mode),
}

impl Action {
    /// A short label for the timeline.
    pub fn label(&self) -> String {
        match self {
            Action::Kill(m) => format!("{m} killed"),
            Action::Revive(m) => format!("{m} back"),
            Action::ScaleToZero(m, _) => format!("{m} to 0"),
            Action::ScaleUp(m) => format!("{m} up"),
            Action::Lose(m, _) => format!("{m} lost"),
            Action::ApiUnreachable(m) => format!("{m} API unreachable"),
            Action::ApiReachable(m) => format!("{m} API back"),
            Action::SetMode(m, Mode::Normal) => format!("{m} normal"),
            Action::SetMode(m, Mode::Slow(d)) => format!("{m} +{} ms", d.as_millis()),
            Action::SetMode(m, Mode::HalfBroken) => format!("{m} 50% 503"),
        }
    }
}

/// Config churn: `member`'s ready replicas alternate between all and all but one every
/// `period` (each an EndpointSlice change: a new EDS assignment and a new plugin config by
/// ECDS), from `from` until the traffic ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Churn {
    pub member: &'static str,
    pub period: Duration,
    pub from: Duration,
}

/// One scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// File stem of its timeline.
    pub id: &'static str,
    pub title: &'static str,
    /// Fixture directory under `examples/fleet`.
    pub fixture: &'static str,
    pub members: &'static [&'static str],
    /// GETs per second, and as many POSTs.
    pub rate: u32,
    pub duration: Duration,
    pub events: Vec<(Duration, Action)>,
    pub churn: Option<Churn>,
    /// New requests must avoid this member from this event on (index into `events`).
    pub avoid: Option<(&'static str, usize)>,
    /// This member must keep its share from this event to the next.
    pub keep: Option<(&'static str, usize)>,
    /// This member comes back at this event: profile its failback.
    pub failback: Option<(&'static str, usize)>,
}

const THREE: &[&str] = &["hz-a", "hz-b", "hz-c"];
const TWO: &[&str] = &["hz-a", "hz-b"];

impl Scenario {
    fn active_active(id: &'static str, title: &'static str, plan: &Plan) -> Scenario {
        Scenario {
            id,
            title,
            fixture: "active-active",
            members: THREE,
            rate: plan.rate,
            duration: Duration::ZERO,
            events: Vec::new(),
            churn: None,
            avoid: None,
            keep: None,
            failback: None,
        }
    }

    fn at(mut self, at: Duration, action: Action) -> Scenario {
        self.events.push((at, action));
        self
    }

    fn lasting(mut self, duration: Duration) -> Scenario {
        self.duration = duration;
        self
    }

    /// The percent of requests `member` takes when the whole fleet is healthy: all of them
    /// for an active-standby primary (the first member), none for its standby, an equal share
    /// in active-active (every member has as many replicas).
    pub fn design_share(&self, member: &str) -> f64 {
        match (self.fixture, self.members.first()) {
            ("active-standby", Some(primary)) if *primary == member => 100.0,
            ("active-standby", _) => 0.0,
            _ => 100.0 / self.members.len().max(1) as f64,
        }
    }
}

/// Every scenario of the report, in order.
pub fn all(plan: &Plan) -> Vec<Scenario> {
    let s = |full, quick| plan.secs(full, quick);
    let ms = Duration::from_millis;
    let aa = |id, title| Scenario::active_active(id, title, plan);
    vec![
        Scenario {
            avoid: Some(("hz-b", 0)),
            failback: Some(("hz-b", 1)),
            ..aa("kill", "member killed outright, then back")
                .at(s(3.0, 2.0), Action::Kill("hz-b"))
                .at(s(8.0, 4.0), Action::Revive("hz-b"))
                .lasting(s(26.0, 11.0))
        },
        Scenario {
            avoid: Some(("hz-b", 0)),
            failback: Some(("hz-b", 1)),
            ..aa("scale-to-zero", "member scaled to 0, then back")
                .at(s(3.0, 2.0), Action::ScaleToZero("hz-b", ms(500)))
                .at(s(8.0, 4.0), Action::ScaleUp("hz-b"))
                .lasting(s(20.0, 11.0))
        },
        Scenario {
            keep: Some(("hz-b", 0)),
            ..aa(
                "api-unreachable",
                "member API server unreachable, pods serving",
            )
            .at(s(3.0, 2.0), Action::ApiUnreachable("hz-b"))
            .at(s(13.0, 6.0), Action::ApiReachable("hz-b"))
            .lasting(s(16.0, 8.0))
        },
        Scenario {
            avoid: Some(("hz-b", 1)),
            ..aa(
                "api-unreachable-pods-die",
                "member API server unreachable, then its pods die",
            )
            .at(s(3.0, 1.5), Action::ApiUnreachable("hz-b"))
            .at(s(8.0, 3.0), Action::Kill("hz-b"))
            .lasting(s(20.0, 8.0))
        },
        flapping(plan),
        Scenario {
            avoid: Some(("hz-b", 0)),
            ..aa("slow", "slow member (+500 ms per response)")
                .at(s(3.0, 2.0), Action::SetMode("hz-b", Mode::Slow(ms(500))))
                .lasting(s(15.0, 7.0))
        },
        Scenario {
            avoid: Some(("hz-b", 0)),
            ..aa("half-broken", "half-broken member (50% 503)")
                .at(s(3.0, 2.0), Action::SetMode("hz-b", Mode::HalfBroken))
                .lasting(s(20.0, 9.0))
        },
        Scenario {
            fixture: "active-standby",
            members: TWO,
            avoid: Some(("hz-a", 0)),
            failback: Some(("hz-a", 1)),
            ..aa("active-standby", "active-standby: primary lost, then back")
                .at(s(3.0, 2.0), Action::Lose("hz-a", ms(500)))
                .at(s(8.0, 4.0), Action::ScaleUp("hz-a"))
                .lasting(s(34.0, 14.0))
        },
        Scenario {
            rate: plan.churn_rate,
            churn: Some(Churn {
                member: "hz-c",
                period: ms(100),
                from: s(2.0, 1.0),
            }),
            ..aa("config-churn", "config churn: a change every 100 ms").lasting(s(62.0, 10.0))
        },
    ]
}

/// A crash-looping member as Kubernetes shows it: up 2 s (ready), down 2 s (processes dead,
/// no ready endpoint), for 30 s (10 s quick), then up for good.
fn flapping(plan: &Plan) -> Scenario {
    let (start, flapping) = if plan.quick { (2, 10) } else { (3, 30) };
    let mut scenario = Scenario {
        avoid: Some(("hz-b", 0)),
        ..Scenario::active_active("flapping", "flapping member (up 2 s / down 2 s)", plan)
    };
    for t in (start..start + flapping).step_by(4) {
        let t = u64::try_from(t).unwrap_or(0);
        scenario = scenario
            .at(Duration::from_secs(t), Action::Lose("hz-b", Duration::ZERO))
            .at(Duration::from_secs(t + 2), Action::ScaleUp("hz-b"));
    }
    scenario.lasting(plan.secs(42.0, 16.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_fits_its_duration_and_names_real_events() {
        for plan in [Plan::full(), Plan::quick()] {
            let scenarios = all(&plan);
            assert_eq!(scenarios.len(), 9);
            for s in &scenarios {
                let last = s.events.last().map_or(Duration::ZERO, |e| e.0);
                assert!(last < s.duration, "{}: event after the end", s.id);
                assert!(s.events.windows(2).all(|w| w[0].0 < w[1].0), "{}", s.id);
                for (_, index) in [s.avoid, s.keep, s.failback].into_iter().flatten() {
                    assert!(index < s.events.len(), "{}", s.id);
                }
            }
            let total: Duration = scenarios.iter().map(|s| s.duration).sum();
            assert!(total <= Duration::from_secs(270), "{total:?}");
        }
    }

    #[test]
    fn flapping_alternates_down_and_up_for_its_period() {
        let s = flapping(&Plan::full());
        assert_eq!(s.events.len(), 16);
        assert_eq!(s.events[0].0, Duration::from_secs(3));
        assert_eq!(
            s.events[15],
            (Duration::from_secs(33), Action::ScaleUp("hz-b"))
        );
    }
}
