//! The archive directory: the open hour's `.avi` and `.jsonl`, rotation at each UTC hour (and
//! to a new part when a file reaches the AVI 1.0 size limit or the hour's name is taken), and
//! the size cap. Names and policies come from `keymash_watch::avi`; this is their I/O.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use keymash_pipeline::access::ProcessUser;
use keymash_watch::avi::{files_to_delete, ArchiveName, AviWriter, Recording};

/// Buffered writes: a 640x480 JPEG is some 40 kB, so a frame is about one write.
const WRITE_BUFFER: usize = 256 * 1024;
const MB: f64 = 1e6;

/// The file pair being written.
#[derive(Debug)]
struct Open {
    stem: String,
    avi_path: PathBuf,
    avi: AviWriter<BufWriter<File>>,
    jsonl: BufWriter<File>,
    jsonl_bytes: u64,
    /// Unix hour (`unix_s / 3600`) the file belongs to.
    hour: u64,
    part: u32,
}

/// The archive directory and what is being written in it.
#[derive(Debug)]
pub(crate) struct Archive {
    dir: PathBuf,
    width: u32,
    height: u32,
    fps: u32,
    cap_bytes: u64,
    open: Option<Open>,
    /// Bytes of earlier parts of the open file's hour (finished by this process).
    hour_bytes_before: u64,
}

impl Archive {
    /// The archive in `dir`, created if missing and checked writable now, so a directory the
    /// service cannot use stops it at start with the reason, not at the first picture.
    pub(crate) fn new(
        dir: &Path,
        width: u32,
        height: u32,
        fps: u32,
        cap_bytes: u64,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| unusable(dir, "create", &e))?;
        let probe = dir.join(".keymash-archive-probe");
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&probe)
            .map_err(|e| unusable(dir, "write to", &e))?;
        std::fs::remove_file(&probe).map_err(|e| unusable(dir, "remove files in", &e))?;
        Ok(Archive {
            dir: dir.to_owned(),
            width,
            height,
            fps,
            cap_bytes,
            open: None,
            hour_bytes_before: 0,
        })
    }

    /// Appends `copies` frames of `jpeg` (more than one when ticks were missed) at Unix second
    /// `unix_s`, opening or rotating the file as needed.
    pub(crate) fn record(&mut self, jpeg: &[u8], copies: u64, unix_s: u64) -> anyhow::Result<()> {
        self.rotate_if_new_hour(unix_s)?;
        for _ in 0..copies {
            let open = match &mut self.open {
                Some(open) if open.avi.has_room_for(jpeg.len()) => open,
                Some(open) => {
                    // Full (AVI 1.0 sizes are 32-bit): the hour goes on in its next part.
                    let part = open.part + 1;
                    let bytes = self.finish()?;
                    self.hour_bytes_before += bytes;
                    self.start(unix_s, part)?
                }
                None => self.start(unix_s, 1)?,
            };
            let path = &open.avi_path;
            open.avi
                .push_jpeg(jpeg)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    /// Once a second while recording: rewrites the AVI header (so a cut file plays to here)
    /// and appends `line` to the `.jsonl`. Nothing while no file is open.
    pub(crate) fn second(&mut self, line: &str, unix_s: u64) -> anyhow::Result<()> {
        if self.open.is_none() {
            return Ok(());
        }
        self.rotate_if_new_hour(unix_s)?;
        let Some(open) = &mut self.open else {
            return Ok(());
        };
        let path = &open.avi_path;
        open.avi
            .refresh_header()
            .with_context(|| format!("cannot write {}", path.display()))?;
        let jsonl = path.with_extension("jsonl");
        writeln!(open.jsonl, "{line}")
            .and_then(|()| open.jsonl.flush())
            .with_context(|| format!("cannot write {}", jsonl.display()))?;
        open.jsonl_bytes += line.len() as u64 + 1;
        Ok(())
    }

    /// Pushes what the kernel holds of both files to the disk, so a power cut loses at most
    /// the time since (a kill loses nothing the kernel has).
    pub(crate) fn sync(&mut self) -> anyhow::Result<()> {
        if let Some(open) = &mut self.open {
            let path = &open.avi_path;
            open.avi
                .get_mut()
                .get_ref()
                .sync_data()
                .and_then(|()| open.jsonl.get_ref().sync_data())
                .with_context(|| format!("cannot sync {}", path.display()))?;
        }
        Ok(())
    }

    /// Deletes the oldest recordings (`.avi` and `.jsonl` together) while the archive holds
    /// more than its cap; never the open one.
    pub(crate) fn enforce_cap(&mut self) -> anyhow::Result<()> {
        let recordings = self.recordings()?;
        let total: u64 = recordings
            .iter()
            .filter(|r| ArchiveName::parse(&r.stem).is_some())
            .map(|r| r.bytes)
            .sum();
        let current = self.open.as_ref().map_or("", |o| o.stem.as_str());
        for stem in files_to_delete(&recordings, self.cap_bytes, current) {
            let bytes = recordings
                .iter()
                .find(|r| r.stem == stem)
                .map_or(0, |r| r.bytes);
            for extension in ["avi", "jsonl"] {
                let path = self.dir.join(format!("{stem}.{extension}"));
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    // Logged, not fatal: recording goes on, and the next check tries again.
                    Err(e) => log::warn!("cannot delete {}: {e}", path.display()),
                }
            }
            log::info!(
                "deleted {stem}.avi and .jsonl ({:.0} MB): the archive held {:.0} MB, more than \
                 archive.max_gib ({:.0} MB)",
                bytes as f64 / MB,
                total as f64 / MB,
                self.cap_bytes as f64 / MB
            );
        }
        Ok(())
    }

    /// Finishes the open file (index and final header); returns its bytes.
    pub(crate) fn finish(&mut self) -> anyhow::Result<u64> {
        let Some(open) = self.open.take() else {
            return Ok(0);
        };
        let (frames, path) = (open.avi.frames(), open.avi_path);
        let file = open
            .avi
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .and_then(|file| {
                let len = file.metadata()?.len();
                file.sync_data()?;
                Ok(len)
            })
            .with_context(|| format!("cannot finish {}", path.display()))?;
        let jsonl = path.with_extension("jsonl");
        open.jsonl
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_data())
            .with_context(|| format!("cannot finish {}", jsonl.display()))?;
        log::info!(
            "finished {}: {frames} frames, {:.1} MB",
            path.display(),
            file as f64 / MB
        );
        Ok(file + open.jsonl_bytes)
    }

    /// The `.avi` being written.
    pub(crate) fn current(&self) -> Option<&Path> {
        self.open.as_ref().map(|o| o.avi_path.as_path())
    }

    /// Bytes written this hour by this process, every part counted.
    pub(crate) fn hour_bytes(&self) -> u64 {
        self.open.as_ref().map_or(0, |o| {
            self.hour_bytes_before + o.avi.bytes() + o.jsonl_bytes
        })
    }

    fn rotate_if_new_hour(&mut self, unix_s: u64) -> anyhow::Result<()> {
        let hour = unix_s / 3600;
        if self.open.as_ref().is_some_and(|o| o.hour != hour) {
            self.finish()?;
            self.hour_bytes_before = 0;
            self.start(unix_s, 1)?;
        }
        Ok(())
    }

    /// Opens the first free part from `part` on of the hour holding `unix_s`: a restarted
    /// archive finds its earlier file of the hour there and leaves it as it is.
    fn start(&mut self, unix_s: u64, mut part: u32) -> anyhow::Result<&mut Open> {
        let (stem, avi_path, file) = loop {
            let stem = ArchiveName::stem(unix_s, part);
            let avi_path = self.dir.join(format!("{stem}.avi"));
            if !avi_path.with_extension("jsonl").exists() {
                match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&avi_path)
                {
                    Ok(file) => break (stem, avi_path, file),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(unusable(&self.dir, "write to", &e)),
                }
            }
            part = part
                .checked_add(1)
                .context("no free file name for this hour")?;
        };
        let jsonl_path = avi_path.with_extension("jsonl");
        let jsonl = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&jsonl_path)
            .with_context(|| format!("cannot create {}", jsonl_path.display()))?;
        let avi = AviWriter::new(
            BufWriter::with_capacity(WRITE_BUFFER, file),
            self.width,
            self.height,
            self.fps,
        )
        .with_context(|| format!("cannot write {}", avi_path.display()))?;
        log::info!(
            "recording {}x{} at {} fps to {}",
            self.width,
            self.height,
            self.fps,
            avi_path.display()
        );
        let open = self.open.insert(Open {
            stem,
            avi_path,
            avi,
            jsonl: BufWriter::new(jsonl),
            jsonl_bytes: 0,
            hour: unix_s / 3600,
            part,
        });
        Ok(open)
    }

    /// Every recording in the directory with the bytes of its `.avi` and `.jsonl`.
    fn recordings(&self) -> anyhow::Result<Vec<Recording>> {
        let mut by_stem: BTreeMap<String, u64> = BTreeMap::new();
        let entries = std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot list {}", self.dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", self.dir.display()))?;
            let name = entry.file_name();
            let Some((stem, extension)) = name.to_str().and_then(|n| n.rsplit_once('.')) else {
                continue;
            };
            if extension != "avi" && extension != "jsonl" {
                continue;
            }
            // A file deleted meanwhile counts as empty.
            let bytes = entry.metadata().map_or(0, |m| m.len());
            *by_stem.entry(stem.to_owned()).or_default() += bytes;
        }
        Ok(by_stem
            .into_iter()
            .map(|(stem, bytes)| Recording { stem, bytes })
            .collect())
    }
}

/// A directory the archive cannot use, said with what the operator needs: which, why, and as
/// whom.
fn unusable(dir: &Path, what: &str, e: &std::io::Error) -> anyhow::Error {
    let user = ProcessUser::current().map_or_else(
        || "this process's user".to_owned(),
        |u| match u.name {
            Some(name) => format!("user {name} (uid {})", u.uid),
            None => format!("uid {}", u.uid),
        },
    );
    anyhow::anyhow!(
        "cannot {what} the archive directory {} (`archive.dir`): {e}; it must be a directory \
         that {user}, which keymash-archive runs as, can write",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "keymash-archive-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    const HOUR: u64 = 1_796_137_200; // 2026-12-01 15:00 UTC

    #[test]
    fn hours_rotate_and_a_taken_name_starts_the_next_part() {
        let dir = temp_dir("rotate");
        let mut archive = Archive::new(&dir.join("new"), 32, 16, 5, u64::MAX).unwrap();
        let dir = dir.join("new");
        archive.record(b"jpeg", 1, HOUR + 10).unwrap();
        archive.second("{}", HOUR + 10).unwrap();
        assert_eq!(
            archive.current().unwrap(),
            dir.join("keymash-20261201-15.avi")
        );
        archive.record(b"jpeg", 2, HOUR + 3600).unwrap();
        assert_eq!(
            archive.current().unwrap(),
            dir.join("keymash-20261201-16.avi")
        );
        archive.finish().unwrap();
        // A restart within the hour: the finished file stays, part 2 begins.
        archive.record(b"jpeg", 1, HOUR + 3700).unwrap();
        assert_eq!(
            archive.current().unwrap(),
            dir.join("keymash-20261201-16-2.avi")
        );
        archive.finish().unwrap();
        let avi = std::fs::read(dir.join("keymash-20261201-16.avi")).unwrap();
        assert_eq!(&avi[..4], b"RIFF");
        assert_eq!(
            std::fs::read_to_string(dir.join("keymash-20261201-15.jsonl")).unwrap(),
            "{}\n"
        );
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn the_oldest_pairs_are_deleted_past_the_cap_and_other_files_stay() {
        let dir = temp_dir("cap");
        std::fs::create_dir_all(&dir).unwrap();
        for stem in ["keymash-20261201-10", "keymash-20261201-11"] {
            std::fs::write(dir.join(format!("{stem}.avi")), vec![0; 1000]).unwrap();
            std::fs::write(dir.join(format!("{stem}.jsonl")), vec![b'\n'; 100]).unwrap();
        }
        std::fs::write(dir.join("notes.txt"), vec![0; 5000]).unwrap();
        // 2 x 1100 old bytes and some 440 of the current file: one old pair must go.
        let mut archive = Archive::new(&dir, 32, 16, 5, 1600).unwrap();
        archive.record(&[0; 200], 1, HOUR).unwrap();
        archive.second("{}", HOUR).unwrap();
        archive.enforce_cap().unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "keymash-20261201-11.avi",
                "keymash-20261201-11.jsonl",
                "keymash-20261201-15.avi",
                "keymash-20261201-15.jsonl",
                "notes.txt"
            ]
        );
        archive.finish().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_directory_is_named_with_the_reason() {
        // A regular file where the directory should be: fails for root too.
        let dir = temp_dir("unwritable");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("not-a-dir");
        std::fs::write(&file, b"").unwrap();
        let err = Archive::new(&file.join("archive"), 32, 16, 5, 1).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains(&file.join("archive").display().to_string()),
            "{text}"
        );
        assert!(
            text.contains("archive.dir") && text.contains("uid"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
