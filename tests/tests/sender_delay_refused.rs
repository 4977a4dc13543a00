//! A delay that cannot fit its memory limit is refused at start: the delay buffer exits with
//! EX_CONFIG (so systemd does not restart it in a loop) and says which keys to change.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keymash_tests::receiver::service_binary;
use keymash_tests::unique_name;

#[test]
fn a_delay_over_the_memory_limit_exits_with_ex_config_naming_the_keys() {
    let name = unique_name("sender-refused");
    let dir = std::env::temp_dir().join(format!("keymash-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("keymash.toml");
    let prefix = format!("kmt{}", name.replace('-', ""));
    std::fs::write(
        &config,
        format!("[shm]\nprefix = \"{prefix}\"\n[delay]\nseconds = 600.0\nmax_memory_mib = 1024\n"),
    )
    .unwrap();
    let mut child = Command::new(service_binary("keymash-delay-buffer"))
        .arg("--config")
        .arg(&config)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the delay buffer did not refuse the configuration");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status.code(), Some(78), "exit status; log:\n{log}");
    assert!(
        log.contains("delay.seconds") && log.contains("delay.max_memory_mib"),
        "log:\n{log}"
    );
    assert!(
        !std::path::Path::new(&format!("/dev/shm/{prefix}.delay-hold")).exists(),
        "nothing was created"
    );
}
