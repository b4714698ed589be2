//! A description of the machine the benchmark ran on, for the results file and the report.

use serde::Serialize;

/// The machine.
#[derive(Clone, Debug, Serialize)]
pub struct Host {
    /// Online CPUs.
    pub nproc: usize,
    /// /proc/cpuinfo's model name.
    pub cpu_model: String,
    /// Host kernel release.
    pub kernel: String,
    /// Which KVM module is loaded (/sys/module): kvm_intel, kvm_amd, kvm_pvm, ...
    pub kvm_flavour: String,
    /// /proc/loadavg when the benchmark started.
    pub loadavg_start: String,
    /// /proc/loadavg when it ended.
    pub loadavg_end: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default().trim().to_string()
}

/// The first three fields of /proc/loadavg.
pub fn loadavg() -> String {
    read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

impl Host {
    /// Describes this machine now.
    pub fn describe() -> Self {
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let modules: Vec<&str> = ["kvm_pvm", "kvm_intel", "kvm_amd"]
            .into_iter()
            .filter(|m| std::path::Path::new("/sys/module").join(m).exists())
            .collect();
        let kvm_flavour = match modules.as_slice() {
            [] if std::path::Path::new("/sys/module/kvm").exists() => "kvm (no vendor module found)".to_string(),
            [] => "none found in /sys/module".to_string(),
            m => m.join(" + "),
        };
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel: read("/proc/sys/kernel/osrelease"),
            kvm_flavour,
            loadavg_start: loadavg(),
            loadavg_end: String::new(),
        }
    }
}

/// The current UTC time as (`YYYY-MM-DD`, `YYYY-MM-DDThh:mm:ssZ`).
pub fn utc_now() -> (String, String) {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = ttvm_vmm::devices::rtc::civil_from_days(days);
    let date = format!("{y:04}-{m:02}-{d:02}");
    let stamp = format!("{date}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60);
    (date, stamp)
}
