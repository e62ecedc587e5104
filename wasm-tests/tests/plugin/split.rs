//! Split accuracy over 100,000 requests: each cluster within 1 percentage point.

use serde_json::json;

use super::*;

fn check(cfg: serde_json::Value, want: &[(&str, f64)]) {
    let h = host(&cfg);
    let d = distribution(&h, 100_000, &[]);
    for (c, w) in want {
        let got = share(&d, c);
        assert!((got - w).abs() <= 0.01, "{c}: {got:.4} vs {w} ({d:?})");
    }
}

#[test]
fn weights_from_ready_endpoints_over_100k_requests() {
    let mut cfg = config(&["hz-a", "hz-b", "hz-c"], json!({}));
    for (i, r) in [5, 3, 2].iter().enumerate() {
        cfg["routes"][0]["backends"][i]["ready"] = json!(r);
    }
    check(cfg, &[("hz-a", 0.5), ("hz-b", 0.3), ("hz-c", 0.2)]);
}

#[test]
fn explicit_weights_renormalise_when_a_cluster_dies() {
    let mut cfg = config(&["hz-a", "hz-b", "hz-c"], json!({}));
    for (i, w) in [50, 30, 20].iter().enumerate() {
        cfg["routes"][0]["backends"][i]["weight"] = json!(w);
    }
    cfg["clusters"][0]["state"] = json!("down");
    check(cfg, &[("hz-a", 0.0), ("hz-b", 0.6), ("hz-c", 0.4)]);
}

#[test]
fn one_to_one_with_zero_replicas_sends_all_to_the_survivor() {
    let mut cfg = config(&["hz-a", "hz-b"], json!({}));
    cfg["routes"][0]["backends"][1]["ready"] = json!(0);
    check(cfg, &[("hz-a", 1.0)]);
}
