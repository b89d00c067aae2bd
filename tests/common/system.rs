//! Programs the tests need from the machine, installed from Debian's packages when missing.

/// Makes sure `program` runs (`program <check>` succeeds), installing `package` with apt-get
/// (as root) when it does not; fails the test with what to install when that is not possible.
/// `who` names the tests that need it.
pub fn debian_package(program: &str, check: &str, package: &str, who: &str) {
    let present = || {
        std::process::Command::new(program)
            .arg(check)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present() {
        return;
    }
    eprintln!("{program} is missing: installing {package} with apt-get");
    // Test binaries run at once: each waits for the others' dpkg lock instead of failing.
    let apt = |args: &[&str]| {
        let _ = std::process::Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300"])
            .args(args)
            .status();
    };
    apt(&["update"]);
    apt(&["install", "-y", package]);
    assert!(
        present(),
        "{who} need {program} and it could not be installed here: install it (apt-get install {package}) and run again"
    );
}
