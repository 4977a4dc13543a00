//! Interop: capture a real stream on loopback with tshark and check that Wireshark's own
//! dissectors decode it as RTP and RTCP, with the sequence numbers we sent and nothing
//! malformed. Needs tshark and the right to capture (root). Without them it fails under CI
//! (`CI` set) and skips visibly elsewhere; the second test checks exactly that.

#[path = "support/skip.rs"]
mod skip;
#[path = "support/udp_run.rs"]
mod udp_run;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keymash_core::{MashLevel, Quality};
use keymash_transport::rtcp;
use keymash_transport::{Ssrc, Transmit, TransmitKind, TransportConfig};
use udp_run::{stream, UdpPair};

fn tshark_present() -> bool {
    Command::new("tshark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Effective uid 0, from /proc (this crate has no libc binding of its own).
fn running_as_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// Removes the capture file however the test ends.
struct TempFile(std::path::PathBuf);
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tshark_fields(
    file: &std::path::Path,
    port: u16,
    filter: &str,
    fields: &[&str],
) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(file)
        .args(["-d", &format!("udp.port=={port},rtp")]);
    cmd.args(["-Y", filter, "-T", "fields", "-E", "separator=;"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark -r");
    assert!(
        out.status.success(),
        "tshark -r failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(';').map(str::to_owned).collect())
        .collect()
}

const INTEROP_TEST: &str = "tshark_decodes_the_stream_as_rtp_and_rtcp_without_malformed_packets";

#[test]
fn tshark_decodes_the_stream_as_rtp_and_rtcp_without_malformed_packets() {
    if !tshark_present() {
        skip::skip_or_fail(
            "tshark is not installed (apt install tshark), so RTP/RTCP interop cannot be checked",
        );
        return;
    }
    let mut pair = UdpPair::bind(IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("bind loopback");
    let port = pair.rx.local_addr().expect("rx addr").port();
    let file = TempFile(std::env::temp_dir().join(format!(
        "keymash-transport-interop-{}-{port}.pcapng",
        std::process::id()
    )));

    let mut capture = Command::new("tshark")
        .args(["-i", "lo", "-f", &format!("udp port {port}"), "-w"])
        .arg(&file.0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tshark capture");
    // Wait until tshark says it is capturing, so the first packets are not missed.
    let stderr = capture.stderr.take().expect("stderr piped");
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut said = Vec::new();
    let ready = loop {
        match line_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("Capturing on") => break true,
            Ok(line) => said.push(line),
            Err(_) => break false,
        }
    };
    // dumpcap announces itself a moment before its filter is live (and before it finds out that
    // it may not capture, which ends tshark).
    if ready {
        std::thread::sleep(Duration::from_secs(1));
    }
    let ended = capture.try_wait().ok().flatten();
    if !ready || ended.is_some() {
        let _ = capture.kill();
        let _ = capture.wait();
        // What it said after "Capturing on" says why; without that line, its last words.
        let after: Vec<String> =
            std::iter::from_fn(|| line_rx.recv_timeout(Duration::from_secs(2)).ok()).collect();
        let why = if ready {
            &after[..after.len().min(2)]
        } else {
            &said[said.len().saturating_sub(3)..]
        };
        let root = if running_as_root() {
            ""
        } else {
            " (not root: capturing needs root or CAP_NET_RAW)"
        };
        let how = ended.map_or("within 20 s".to_owned(), |status| {
            format!("(it ended: {status})")
        });
        skip::skip_or_fail(&format!(
            "tshark could not capture on lo {how}{root}: {}",
            why.join(" ")
        ));
        return;
    }

    // Protected as on the exhibit: headers in the clear, payloads sealed, RTCP ending in KMSE.
    let security = keymash_transport::Protection::PreShared(
        keymash_core::key::PreSharedKey::from_bytes([0x5E; 32]),
    );
    let config = TransportConfig {
        fec: true,
        nack: true,
        security,
        ..TransportConfig::default()
    };
    let run = stream(&mut pair, config, 20, 10, Duration::from_millis(10));
    // Loopback loses nothing, so no NACK went out: send one compound with a NACK as the
    // receiver would (RR first, as RFC 3550 wants), for the dissector to check.
    let mut nack = Vec::new();
    let (me, media) = (Ssrc(0x1234_5678), Ssrc(0x0BAD_F00D));
    rtcp::rr::write(me, &[], &mut nack).unwrap();
    rtcp::nack::write(
        me,
        media,
        &rtcp::nack::entries_for([4000u16, 4002, 4017]),
        &mut nack,
    )
    .unwrap();
    rtcp::app::write(
        me,
        &rtcp::KeymashApp {
            quality: Quality::new(42).unwrap(),
            mash: MashLevel::FULL,
        },
        &mut nack,
    )
    .unwrap();
    pair.rx
        .send(&Transmit {
            contents: nack,
            kind: TransmitKind::Rtcp,
        })
        .expect("send NACK");
    std::thread::sleep(Duration::from_millis(300));
    // tshark writes a complete file on SIGINT.
    let stopped = Command::new("kill")
        .args(["-INT", &capture.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while capture.try_wait().ok().flatten().is_none() {
        if !stopped || Instant::now() > deadline {
            let _ = capture.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = capture.wait();

    let media_ssrc = {
        let rows = tshark_fields(&file.0, port, "rtp.p_type == 96", &["rtp.ssrc"]);
        rows.first()
            .and_then(|r| r.first().cloned())
            .expect("no RTP packets with PT 96 in the capture")
    };
    let seqs: Vec<u16> = tshark_fields(&file.0, port, "rtp.p_type == 96", &["rtp.seq"])
        .iter()
        .map(|r| r[0].parse().expect("numeric rtp.seq"))
        .collect();
    assert_eq!(
        seqs, run.sent_seqs,
        "tshark's RTP sequence numbers differ from the ones sent"
    );
    // Every media packet carries the capture age as an RFC 8285 one-byte element that Wireshark
    // itself decodes: profile 0xBEDE, ID 1, 3 data bytes (its `len` field is the byte count).
    let extensions = tshark_fields(
        &file.0,
        port,
        "rtp.p_type == 96",
        &[
            "rtp.ext",
            "rtp.ext.profile",
            "rtp.ext.rfc5285.id",
            "rtp.ext.rfc5285.len",
        ],
    );
    assert_eq!(extensions.len(), run.sent_seqs.len());
    for row in &extensions {
        let ext = row.first().map(String::as_str);
        assert!(
            matches!(ext, Some("1" | "True" | "true")),
            "no extension: {row:?}"
        );
        assert_eq!(
            row[1..],
            ["0xbede", "1", "3"],
            "capture-age element: {row:?}"
        );
    }
    let markers = tshark_fields(
        &file.0,
        port,
        "rtp.p_type == 96 && rtp.marker == 1",
        &["rtp.seq"],
    )
    .len();
    assert_eq!(markers, 20, "one marker per frame");
    let repair = tshark_fields(&file.0, port, "rtp.p_type == 97", &["rtp.ssrc"]);
    assert!(
        !repair.is_empty(),
        "no FEC repair packets decoded as RTP PT 97"
    );
    assert!(
        repair.iter().all(|r| r[0] != media_ssrc),
        "repair packets must be their own stream"
    );

    let rtcp_types: Vec<String> = tshark_fields(&file.0, port, "rtcp", &["rtcp.pt"])
        .into_iter()
        .flatten()
        .collect();
    let joined = rtcp_types.join(",");
    for (pt, name) in [
        ("200", "sender report"),
        ("201", "receiver report"),
        ("204", "APP"),
        ("205", "transport feedback"),
        ("207", "extended report"),
    ] {
        assert!(
            joined.split(',').any(|t| t == pt),
            "no RTCP {name} ({pt}) decoded: {joined}"
        );
    }
    let app_names: Vec<String> = tshark_fields(&file.0, port, "rtcp.pt == 204", &["rtcp.app.name"])
        .into_iter()
        .flatten()
        .flat_map(|r| r.split(',').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    assert!(
        app_names.iter().all(|n| n == "KMSH" || n == "KMSE"),
        "{app_names:?}"
    );
    assert!(
        app_names.iter().any(|n| n == "KMSE"),
        "no sealed RTCP (KMSE trailer) decoded: {app_names:?}"
    );

    let nack_pids = tshark_fields(
        &file.0,
        port,
        "rtcp.pt == 205 && rtcp.rtpfb.fmt == 1",
        &["rtcp.rtpfb.nack_pid"],
    );
    // tshark lists every lost sequence number, the PIDs and those in the bitmask alike.
    assert_eq!(
        nack_pids,
        vec![vec!["4000,4002,4017".to_owned()]],
        "generic NACK not decoded as sent"
    );

    // The round trip without loss (RFC 3611): the receiver's RRTR blocks (type 4), and the
    // sender's DLRR blocks (type 5) echoing one of them.
    let xr_blocks: Vec<String> = tshark_fields(&file.0, port, "rtcp.pt == 207", &["rtcp.xr.bt"])
        .into_iter()
        .flatten()
        .flat_map(|r| r.split(',').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    assert!(
        xr_blocks.iter().any(|b| b == "4") && xr_blocks.iter().any(|b| b == "5"),
        "no RRTR and DLRR blocks decoded: {xr_blocks:?}"
    );
    let rrtr: Vec<Vec<String>> =
        tshark_fields(&file.0, port, "rtcp.xr.bt == 4", &["rtcp.xr.timestamp"]);
    let lrr: Vec<Vec<String>> = tshark_fields(&file.0, port, "rtcp.xr.bt == 5", &["rtcp.xr.lrr"]);
    assert!(
        !rrtr.is_empty() && !lrr.is_empty() && lrr.iter().all(|r| r[0] != "0"),
        "RRTR {rrtr:?}, DLRR LRR {lrr:?}"
    );

    let malformed = tshark_fields(
        &file.0,
        port,
        "_ws.malformed || _ws.expert.severity >= 8388608",
        &["frame.number", "_ws.expert.message"],
    );
    assert!(
        malformed.is_empty(),
        "tshark reports malformed or erroneous packets: {malformed:?}"
    );
}

/// Set in the child run below; the child runs only [`INTEROP_TEST`] (`--exact`), and this guard
/// makes sure the check below can never start itself again.
const CHILD_GUARD: &str = "KEYMASH_TSHARK_CHECK_CHILD";

/// The interop test run again by this test binary with every directory holding `tshark` taken off
/// `PATH`: with `CI=true` it must fail and name tshark; without `CI` it must pass with a SKIPPED
/// line on stderr (outside libtest's capture).
#[test]
fn without_tshark_the_interop_test_fails_under_ci_and_skips_visibly_elsewhere() {
    assert!(
        std::env::var_os(CHILD_GUARD).is_none(),
        "the tshark check ran inside its own child run"
    );
    let path = std::env::var_os("PATH").unwrap_or_default();
    let without_tshark: Vec<_> = std::env::split_paths(&path)
        .filter(|dir| !dir.join("tshark").exists())
        .collect();
    let without_tshark = std::env::join_paths(without_tshark).expect("PATH entries");
    let run = |ci: bool| {
        let mut child = Command::new(std::env::current_exe().expect("own test executable"));
        child
            .args(["--exact", INTEROP_TEST, "--test-threads=1"])
            .env("PATH", &without_tshark)
            .env(CHILD_GUARD, "1");
        child.env_remove("RUST_TEST_NOCAPTURE");
        if ci {
            child.env("CI", "true");
        } else {
            child.env_remove("CI");
        }
        let out = child
            .stdin(Stdio::null())
            .output()
            .expect("run this test binary again");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            stdout.contains("running 1 test"),
            "the child did not run {INTEROP_TEST}:\n{stdout}{stderr}"
        );
        (out.status, stdout, stderr)
    };

    let (status, stdout, stderr) = run(true);
    assert!(
        !status.success(),
        "with CI=true and no tshark on PATH the interop test passed:\n{stdout}{stderr}"
    );
    assert!(
        stdout.contains(&format!("test {INTEROP_TEST} ... FAILED")),
        "{stdout}{stderr}"
    );
    assert!(
        stdout.contains("tshark is not installed"),
        "the failure does not name tshark:\n{stdout}{stderr}"
    );

    // A passing test's captured output is dropped: only a write past the capture shows.
    let (status, stdout, stderr) = run(false);
    assert!(
        status.success(),
        "without CI a missing tshark must skip, not fail:\n{stdout}{stderr}"
    );
    assert!(
        stderr.contains("SKIPPED") && stderr.contains("tshark is not installed"),
        "the skip is not visible in the output:\n{stdout}{stderr}"
    );
}
