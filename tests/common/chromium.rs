//! Headless Chromium for the browser tests: Debian's `chromium`, installed from the
//! distribution when missing and possible (as `redis_server` installs redis-server).

/// Where Debian installs it; the browser scripts launch exactly this binary.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The Chromium binary, installed with apt-get when missing; fails with a clear reason.
pub fn chromium() -> &'static str {
    static FOUND: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    FOUND.get_or_init(|| {
        let present = || {
            std::process::Command::new(CHROMIUM)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if present() {
            return;
        }
        eprintln!("chromium is missing: installing it with apt-get");
        // Test binaries run at once: each waits for the others' dpkg lock instead of failing.
        let apt = |args: &[&str]| {
            let _ = std::process::Command::new("apt-get")
                .args(["-o", "DPkg::Lock::Timeout=300"])
                .args(args)
                .status();
        };
        apt(&["update"]);
        apt(&["install", "-y", "chromium"]);
        assert!(
            present(),
            "the browser tests need Chromium at {CHROMIUM} and it could not be installed here: \
             install it (as root: apt-get install chromium) and run again"
        );
    });
    CHROMIUM
}
