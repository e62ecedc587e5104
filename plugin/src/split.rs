//! Weighted choice and the share arithmetic: renormalisation over usable clusters and Higress'
//! canary weight normalisation.

/// Higress `normalizeWeightedCluster`: with canary weights `w_i` and total `T = max(Σw, total)`
/// (total defaults to 100), canary i gets `floor(w_i * 100 / T)` percent and the base the rest.
pub fn higress_canary_percents(weights: &[u32], total: Option<u32>) -> Vec<u32> {
    let sum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    let t = sum.max(u64::from(total.unwrap_or(100))).max(1);
    weights
        .iter()
        .map(|&w| (u64::from(w) * 100 / t) as u32)
        .collect()
}

/// Pick an index by weight: `weights` yields (index, weight >= 0). `draw` is uniform in [0, 1).
/// Returns `None` if the total weight is zero.
pub fn pick<I>(weights: I, draw: f64) -> Option<usize>
where
    I: Iterator<Item = (usize, f64)> + Clone,
{
    let total: f64 = weights.clone().map(|(_, w)| w.max(0.0)).sum();
    // Also catches NaN (a weight computed from a bad factor): never divide by it.
    if total.is_nan() || total <= 0.0 {
        return None;
    }
    let mut target = draw * total;
    let mut last = None;
    for (i, w) in weights {
        let w = w.max(0.0);
        if w <= 0.0 {
            continue;
        }
        last = Some(i);
        if target < w {
            return Some(i);
        }
        target -= w;
    }
    // Rounding can leave `target` just past the last bucket.
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn higress_normalisation_matches_the_reference() {
        // One canary at 20 of 100: 20%, base 80%.
        assert_eq!(higress_canary_percents(&[20], None), vec![20]);
        // Weights over the total: T = Σw = 150 -> floor(100*100/150)=66, floor(50*100/150)=33.
        assert_eq!(higress_canary_percents(&[100, 50], None), vec![66, 33]);
        // canary-weight-total 1000: 30 -> 3%.
        assert_eq!(higress_canary_percents(&[30], Some(1000)), vec![3]);
        assert_eq!(higress_canary_percents(&[0], None), vec![0]);
    }

    #[test]
    fn pick_renormalises_over_positive_weights() {
        let w = [(0, 0.0), (1, 30.0), (2, 20.0)];
        // 50/30/20 with the first dead -> 60/40.
        assert_eq!(pick(w.iter().copied(), 0.0), Some(1));
        assert_eq!(pick(w.iter().copied(), 0.59), Some(1));
        assert_eq!(pick(w.iter().copied(), 0.61), Some(2));
        assert_eq!(pick(w.iter().copied(), 0.999_999), Some(2));
        assert_eq!(pick([(0, 0.0)].iter().copied(), 0.5), None);
    }

    proptest! {
        #[test]
        fn canary_percents_never_exceed_100(ws in proptest::collection::vec(0u32..1_000_000, 0..8), t in proptest::option::of(1u32..1_000_000)) {
            let p = higress_canary_percents(&ws, t);
            prop_assert!(p.iter().map(|&x| u64::from(x)).sum::<u64>() <= 100);
        }

        #[test]
        fn pick_returns_only_positive_weight_entries(ws in proptest::collection::vec(0.0f64..100.0, 1..10), draw in 0.0f64..1.0) {
            let it = ws.iter().copied().enumerate();
            match pick(it, draw) {
                Some(i) => prop_assert!(ws[i] > 0.0),
                None => prop_assert!(ws.iter().all(|&w| w <= 0.0)),
            }
        }
    }
}
