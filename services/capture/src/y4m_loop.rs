//! The `y4m:PATH` source: a 4:2:0 Y4M file (as ffmpeg writes it), played in a loop.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use keymash_codec::y4m::Y4mReader;
use keymash_codec::{FrameGeometry, I420Frame};

#[derive(Debug)]
pub(crate) struct Y4mLoop {
    path: PathBuf,
    reader: Y4mReader<BufReader<File>>,
    loops: u64,
}

impl Y4mLoop {
    /// Opens `path` and checks it has the configured size (the pipeline does not scale).
    pub(crate) fn open(path: &Path, geometry: FrameGeometry) -> anyhow::Result<Self> {
        let reader = open_reader(path)?;
        let found = reader.header().geometry;
        if found != geometry {
            bail!(
                "{} is {found}, the pipeline is configured for {geometry} (`video.width`/`video.height`)",
                path.display()
            );
        }
        Ok(Y4mLoop {
            path: path.to_owned(),
            reader,
            loops: 0,
        })
    }

    /// The next frame, starting over at the end of the file.
    pub(crate) fn next_frame(&mut self, out: &mut I420Frame) -> anyhow::Result<()> {
        if self
            .reader
            .read_frame(out)
            .with_context(|| format!("reading {}", self.path.display()))?
        {
            return Ok(());
        }
        self.reader = open_reader(&self.path)?;
        self.loops += 1;
        if !self
            .reader
            .read_frame(out)
            .with_context(|| format!("reading {}", self.path.display()))?
        {
            bail!("{} holds no frames", self.path.display());
        }
        Ok(())
    }

    /// How many times the file has been played through.
    pub(crate) fn loops(&self) -> u64 {
        self.loops
    }
}

fn open_reader(path: &Path) -> anyhow::Result<Y4mReader<BufReader<File>>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Y4mReader::new(BufReader::new(file))
        .with_context(|| format!("{} is not a 4:2:0 Y4M file", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymash_codec::y4m::{Y4mHeader, Y4mWriter};

    #[test]
    fn the_file_loops_and_a_wrong_size_is_refused() {
        let geometry = FrameGeometry::new(32, 16).unwrap();
        let path =
            std::env::temp_dir().join(format!("keymash-capture-loop-{}.y4m", std::process::id()));
        let mut writer = Y4mWriter::new(
            File::create(&path).unwrap(),
            &Y4mHeader::new(geometry, "30:1"),
        )
        .unwrap();
        for level in [10u8, 20, 30] {
            let mut frame = I420Frame::grey(geometry);
            frame.planes_mut().0.fill(level);
            writer.write_frame(frame.view()).unwrap();
        }
        writer.finish().unwrap();

        let mut source = Y4mLoop::open(&path, geometry).unwrap();
        let mut frame = I420Frame::grey(geometry);
        let levels: Vec<u8> = (0..7)
            .map(|_| {
                source.next_frame(&mut frame).unwrap();
                frame.y()[0]
            })
            .collect();
        assert_eq!(levels, [10, 20, 30, 10, 20, 30, 10]);
        assert_eq!(source.loops(), 2);
        let err = Y4mLoop::open(&path, FrameGeometry::new(64, 16).unwrap()).unwrap_err();
        assert!(err.to_string().contains("video.width"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
}
