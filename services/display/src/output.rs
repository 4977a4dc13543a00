//! Where presented pictures go. Every output gets the decoded picture, the mash level and the
//! HUD line; the headless ones compose the same picture the window shows.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::Context;
use keymash_codec::{FrameGeometry, I420Frame};
use keymash_core::{FrameNo, MashLevel};
use keymash_present::{compose_headless, headless_canvas, i420_to_rgb, write_ppm, Y4mStream};

/// One presentation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Presentation<'a> {
    pub picture: &'a I420Frame,
    /// The newest stream frame applied to the picture.
    pub frame: FrameNo,
    /// False when no new frame arrived since the last presentation (the window still redraws
    /// to follow the glow; file outputs skip it).
    pub new_frame: bool,
    /// `picture` is this card (`signal-lost`: the last picture dimmed, with why), not a frame.
    pub card: Option<&'a str>,
    /// The card first shows, or shows other text, in this presentation: the file outputs write
    /// it once (tagged as a card), the window uploads it.
    pub card_changed: bool,
    pub mash: MashLevel,
    pub hud: Option<&'a str>,
}

pub(crate) trait Output {
    fn present(&mut self, p: &Presentation<'_>) -> anyhow::Result<()>;
    /// Handle window-system events; true if the user asked to quit (never for files).
    fn pump_events(&mut self) -> bool {
        false
    }
}

/// The composed headless picture, shared by both file outputs.
#[derive(Debug)]
struct Composer {
    border: usize,
    canvas: I420Frame,
}

impl Composer {
    fn new(picture: FrameGeometry, border_px: u32) -> anyhow::Result<Self> {
        let (geometry, border) =
            headless_canvas(picture, border_px).context("display.glow_border_px")?;
        Ok(Composer {
            border,
            canvas: I420Frame::grey(geometry),
        })
    }

    fn compose(&mut self, p: &Presentation<'_>) -> anyhow::Result<&I420Frame> {
        if !compose_headless(
            p.picture.view(),
            p.mash,
            self.border,
            p.hud,
            &mut self.canvas,
        ) {
            anyhow::bail!(
                "picture {} does not fit the {} canvas",
                p.picture.geometry(),
                self.canvas.geometry()
            );
        }
        Ok(&self.canvas)
    }
}

/// `frames:DIR`: one binary PPM per new frame, named by its stream frame number
/// (`frame-00000123.ppm`), so a test can match each with the frame that was sent; a card as
/// `signal-lost-000001.ppm` (numbered in the order shown), which no frame's name can be.
#[derive(Debug)]
pub(crate) struct FramesOutput {
    dir: PathBuf,
    composer: Composer,
    rgb: Vec<u8>,
    cards: u64,
}

impl FramesOutput {
    pub(crate) fn new(dir: &Path, picture: FrameGeometry, border_px: u32) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(FramesOutput {
            dir: dir.to_owned(),
            composer: Composer::new(picture, border_px)?,
            rgb: Vec::new(),
            cards: 0,
        })
    }
}

impl Output for FramesOutput {
    fn present(&mut self, p: &Presentation<'_>) -> anyhow::Result<()> {
        if !(p.new_frame || p.card_changed) {
            return Ok(());
        }
        let canvas = self.composer.compose(p)?;
        i420_to_rgb(canvas.view(), &mut self.rgb);
        let g = canvas.geometry();
        let name = match p.card {
            Some(card) => {
                self.cards += 1;
                format!("{card}-{:06}.ppm", self.cards)
            }
            None => format!("frame-{:08}.ppm", p.frame.0),
        };
        let path = self.dir.join(name);
        // Written under a temporary name and renamed, so a reader never sees half a file.
        let partial = path.with_extension("ppm.partial");
        let file =
            File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
        write_ppm(BufWriter::new(file), g.width(), g.height(), &self.rgb)
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, &path)
            .with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }
}

/// `y4m:PATH`: the composed pictures as one YUV4MPEG2 stream, one picture per new frame and one
/// per card shown (tagged as a card, see [`keymash_present::CARD_TAG`]).
#[derive(Debug)]
pub(crate) struct Y4mOutput {
    stream: Y4mStream<BufWriter<File>>,
    composer: Composer,
}

impl Y4mOutput {
    pub(crate) fn new(
        path: &Path,
        picture: FrameGeometry,
        border_px: u32,
        fps: u32,
    ) -> anyhow::Result<Self> {
        let composer = Composer::new(picture, border_px)?;
        let g = composer.canvas.geometry();
        // A restarted display starts a new file: appending a second header would break it.
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let stream = Y4mStream::new(BufWriter::new(file), g.width(), g.height(), fps)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Y4mOutput { stream, composer })
    }
}

impl Output for Y4mOutput {
    fn present(&mut self, p: &Presentation<'_>) -> anyhow::Result<()> {
        if !(p.new_frame || p.card_changed) {
            return Ok(());
        }
        let canvas = self.composer.compose(p)?;
        match p.card {
            Some(card) => self.stream.write_card(canvas.view(), p.frame, card),
            None => self.stream.write_picture(canvas.view(), p.frame),
        }
        .context("writing the Y4M stream")?;
        Ok(())
    }
}
