//! The ready counts of a state document in one string: routes separated by `;`, a route's
//! backends by `,`, `-` for a backend not counted: `"3,2,1,-;2,2"`.
//!
//! Why a string and not nested JSON arrays: at 10,000 routes x 4 backends, serde_json reading
//! 40,000 array elements took 2.5 ms in the VM (the size-optimised wasm build), this string
//! 0.27 ms; and it stays readable with `curl`.

use std::fmt::{self, Write};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Ready counts per route and backend, flat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    pub(super) values: Vec<Option<u32>>,
    /// Where each route's counts end in `values`.
    pub(super) ends: Vec<usize>,
}

impl Ready {
    /// From per-route lists (the controller builds it this way).
    pub fn from_routes<I, R>(routes: I) -> Ready
    where
        I: IntoIterator<Item = R>,
        R: IntoIterator<Item = Option<u32>>,
    {
        let mut r = Ready::default();
        for route in routes {
            r.values.extend(route);
            r.ends.push(r.values.len());
        }
        r
    }

    pub fn routes(&self) -> usize {
        self.ends.len()
    }

    /// The counts of route `i`.
    pub fn route(&self, i: usize) -> &[Option<u32>] {
        let start = i.checked_sub(1).map_or(0, |p| self.ends[p]);
        self.values.get(start..self.ends[i]).unwrap_or(&[])
    }

    /// Read `"3,2,1,-;2,2"`; the error names the route and backend (0-based). One pass over
    /// the bytes: `split` and `str::parse` per count cost several times more in the VM.
    pub fn parse(text: &str) -> Result<Ready, String> {
        let mut r = Ready::default();
        if text.is_empty() {
            return Ok(r);
        }
        r.values.reserve(text.len() / 2 + 1);
        let mut start = 0;
        let bytes = text.as_bytes();
        for (at, &b) in bytes.iter().chain([&b';']).enumerate() {
            if b != b',' && b != b';' {
                continue;
            }
            let count = &bytes[start..at];
            start = at + 1;
            let value = match count {
                b"-" => None,
                digits => Some(number(digits).ok_or_else(|| r.not_a_count(digits))?),
            };
            r.values.push(value);
            if b == b';' {
                if r.ends.len() == super::MAX_ROUTES {
                    return Err(format!("more than {} routes", super::MAX_ROUTES));
                }
                r.ends.push(r.values.len());
            }
        }
        Ok(r)
    }

    /// The error for `count`, the next value of `self` as read so far.
    fn not_a_count(&self, count: &[u8]) -> String {
        let route = self.ends.len();
        let backend = self.values.len() - self.ends.last().copied().unwrap_or(0);
        format!(
            "route {route}, backend {backend}: \"{}\" is not a ready count (digits, or - for not counted)",
            String::from_utf8_lossy(count)
        )
    }
}

/// Decimal digits as a u32; `None` if empty, not digits, or too large.
fn number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u32, |n, &d| {
        let d = d.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u32::from(d))
    })
}

impl fmt::Display for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in 0..self.routes() {
            if i > 0 {
                f.write_char(';')?;
            }
            for (j, c) in self.route(i).iter().enumerate() {
                if j > 0 {
                    f.write_char(',')?;
                }
                match c {
                    Some(n) => write!(f, "{n}")?,
                    None => f.write_char('-')?,
                }
            }
        }
        Ok(())
    }
}

impl Serialize for Ready {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ready {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ready, D::Error> {
        d.deserialize_str(ReadyVisitor)
    }
}

struct ReadyVisitor;

impl Visitor<'_> for ReadyVisitor {
    type Value = Ready;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("ready counts as \"3,2,-;2,2\" (routes by ;, backends by ,)")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Ready, E> {
        Ready::parse(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_counts_read_back_from_their_text(
            routes in proptest::collection::vec(
                proptest::collection::vec(proptest::option::of(any::<u32>()), 1..6),
                0..20,
            )
        ) {
            let r = Ready::from_routes(routes);
            prop_assert_eq!(Ready::parse(&r.to_string()), Ok(r));
        }
    }

    #[test]
    fn counts_round_trip_through_the_text() {
        let r = Ready::from_routes([vec![Some(3), Some(2), None], vec![Some(0)], vec![None]]);
        assert_eq!(r.to_string(), "3,2,-;0;-");
        assert_eq!(Ready::parse("3,2,-;0;-"), Ok(r));
        assert_eq!(Ready::parse(""), Ok(Ready::default()));
        assert_eq!(Ready::default().to_string(), "");
    }

    #[test]
    fn anything_but_counts_is_refused_with_its_place() {
        for (text, want) in [
            ("1,x", "route 0, backend 1: \"x\" is not a ready count"),
            ("1;", "route 1, backend 0: \"\" is not a ready count"),
            ("1;2,-1", "route 1, backend 1: \"-1\" is not a ready count"),
            ("4294967296", "route 0, backend 0: \"4294967296\""),
            ("1, 2", "route 0, backend 1: \" 2\""),
        ] {
            let e = Ready::parse(text).unwrap_err();
            assert!(e.starts_with(want), "{text}: {e}");
        }
    }
}
