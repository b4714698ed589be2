//! `ttvm bench --quick` on the smallest workload: the harness runs end to end and writes a
//! results file with the expected shape. Timings are never asserted (benchmarks are not
//! tests); only that the figures exist and are positive.

use ttvm_test_support as common;

use serde_json::Value;

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[k],
    })
}

fn positive(v: &Value, path: &str) -> f64 {
    let x = get(v, path).as_f64().unwrap_or_else(|| panic!("{path} is not a number: {}", get(v, path)));
    assert!(x > 0.0 && x.is_finite(), "{path} = {x}, expected a positive number");
    x
}

#[test]
fn quick_bench_writes_results() {
    if !common::require_kvm("quick_bench_writes_results") {
        return;
    }
    let dir = common::tempdir();
    let results = dir.path().join("results");
    let o = common::run(&[
        "bench",
        "--quick",
        "--no-qemu",
        "--runs",
        "1",
        "--workloads",
        "timer",
        "--results-dir",
        results.to_str().unwrap(),
        "--workdir",
        dir.path().join("work").to_str().unwrap(),
        "--no-doc",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("issue 8 targets:"), "no table printed:\n{}", common::text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("SKIPPING the QEMU measurements: --no-qemu"), "{err}");

    let text = std::fs::read_to_string(results.join("latest-quick.json")).expect("latest-quick.json");
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    for key in [
        "schema",
        "date",
        "command",
        "host",
        "workloads",
        "checkpoints",
        "restore",
        "reverse",
        "targets",
        "tui",
        "qemu_skipped",
    ] {
        assert!(v.get(key).is_some(), "missing key {key} in {text}");
    }
    assert_eq!(v["quick"], Value::Bool(true));
    assert_eq!(v["workloads"].as_array().map(Vec::len), Some(1), "only the timer workload");
    let w = &v["workloads"][0];
    assert_eq!(w["name"], "timer");
    let steps = positive(w, "steps");
    assert!(steps > 1000.0, "timer ran {steps} steps");
    for p in [
        "medians.ceiling_us_per_step",
        "medians.record_us_per_step",
        "medians.replay_us_per_step",
        "medians.free_run_secs",
        "ratios.record_vs_ceiling",
        "ratios.replay_vs_record",
        "trace_bytes_per_mstep",
        "history_bytes_per_mstep",
        "runs.0.ceiling.steps",
        "runs.0.record.trace.header_bytes",
    ] {
        positive(w, p);
    }
    assert!(w["medians"]["qemu_plain_secs"].is_null(), "QEMU was skipped");
    positive(&v, "host.nproc");
    positive(&v, "restore.series.0.session_build_ms");
    positive(&v, "restore.series.1.session_build_ms");
    assert_eq!(get(&v, "restore.series.1.ram_mib").as_u64(), Some(1024));
    let tl = &v["reverse"]["timeline"];
    positive(tl, "positions.0.warm.median_ms");
    positive(tl, "positions.0.cold.samples_ms.0");
    positive(tl, "reverse_continue.0.backward_secs");
    assert_eq!(tl["reverse_continue"][0]["correct"], Value::Bool(true), "reverse-continue stopped elsewhere");
    positive(tl, "goto.median_ms");
    let tui = v["tui"]["stats"].as_array().expect("tui.stats");
    assert!(
        tui.iter()
            .any(|s| s["what"].as_str().is_some_and(|w| w.starts_with("step back"))
                && s["median_ms"].as_f64() > Some(0.0)),
        "no step-back latency in {}",
        v["tui"]
    );
    let ids: Vec<&str> = v["targets"].as_array().unwrap().iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(
        ids,
        [
            "record_vs_ceiling",
            "replay_vs_record",
            "checkpoint_ms_per_mib",
            "restore_proportional",
            "reverse_stepi",
            "reverse_continue_10m",
            "timer_trace_size"
        ]
    );
}

#[test]
fn unknown_workload_is_bad_input() {
    let o = common::run(&["bench", "--workloads", "nonesuch", "--no-doc"]);
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no workload \"nonesuch\""), "{}", common::text(&o));
}

#[test]
fn missing_kvm_exits_3() {
    let dir = common::tempdir();
    let o = common::ttvm()
        .env("TTVM_KVM_DEVICE", "/nonexistent/kvm")
        .args(["bench", "--quick", "--no-qemu", "--no-doc", "--results-dir"])
        .arg(dir.path())
        .output()
        .expect("spawn ttvm");
    assert_eq!(o.status.code(), Some(3), "{}", common::text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ttvm bench needs KVM"), "{}", common::text(&o));
}
