//! Headless Chromium for the browser tests: Debian's `chromium`, installed from the
//! distribution when missing and possible (as `redis_server` installs redis-server).

/// Where Debian installs it; the browser scripts launch exactly this binary.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The Chromium binary, installed with apt-get when missing; fails with a clear reason.
pub fn chromium() -> &'static str {
    static FOUND: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    FOUND.get_or_init(|| {
        super::system::debian_package(CHROMIUM, "--version", "chromium", "the browser tests")
    });
    CHROMIUM
}
