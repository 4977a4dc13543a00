//! The exhibit screen: an SDL2 window (fullscreen by default) with an IYUV streaming texture
//! the GPU scales into the screen with the aspect kept, inside a band glowing green with the
//! mash level. SDL picks the video driver: X11 or Wayland in a desktop session, KMSDRM on a
//! console (`SDL_VIDEODRIVER=kmsdrm`).

use anyhow::{anyhow, Context};
use keymash_codec::FrameGeometry;
use keymash_present::{fit_inside, glow_rgb, inside_border, stamp_hud};
use sdl2::event::Event;
use sdl2::pixels::{Color, PixelFormatEnum};
use sdl2::rect::Rect as SdlRect;
use sdl2::render::{Texture, TextureCreator, WindowCanvas};
use sdl2::video::WindowContext;
use sdl2::EventPump;

use crate::output::{Output, Presentation};

/// Window size when not fullscreen: the picture's size plus the glow on each side.
fn windowed_size(picture: FrameGeometry, border: u32) -> (u32, u32) {
    (
        picture.width() as u32 + 2 * border,
        picture.height() as u32 + 2 * border,
    )
}

/// SDL's context, window and renderer. Textures borrow the [`TextureCreator`], so it is made
/// separately ([`Screen::texture_creator`]) and the [`WindowOutput`] borrows it.
pub(crate) struct Screen {
    canvas: WindowCanvas,
    events: EventPump,
    // Kept alive for as long as the window exists.
    _video: sdl2::VideoSubsystem,
    _sdl: sdl2::Sdl,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screen").finish_non_exhaustive()
    }
}

impl Screen {
    pub(crate) fn open(
        picture: FrameGeometry,
        border: u32,
        fullscreen: bool,
    ) -> anyhow::Result<Screen> {
        // SIGTERM and SIGINT belong to the service lifecycle (signal-hook), not to SDL.
        sdl2::hint::set("SDL_NO_SIGNAL_HANDLERS", "1");
        // Linear filtering when the GPU scales the picture up to the screen.
        sdl2::hint::set("SDL_RENDER_SCALE_QUALITY", "1");
        let sdl = sdl2::init().map_err(|e| anyhow!("SDL: {e}"))?;
        let video = sdl.video().map_err(|e| {
            anyhow!("SDL video (is there a display? SDL_VIDEODRIVER=kmsdrm on a console): {e}")
        })?;
        let builder = if fullscreen {
            // Sized and placed to cover the screen even before (or without) a window manager
            // honouring the fullscreen request: a kiosk X server often runs none.
            let bounds = video
                .display_bounds(0)
                .map_err(|e| anyhow!("SDL display bounds: {e}"))?;
            let mut b = video.window("keymash", bounds.width(), bounds.height());
            b.position(bounds.x(), bounds.y())
                .borderless()
                .fullscreen_desktop();
            b
        } else {
            let (w, h) = windowed_size(picture, border);
            let mut b = video.window("keymash", w, h);
            b.position_centered();
            b
        };
        let window = builder.build().context("opening the SDL window")?;
        let canvas = window
            .into_canvas()
            .present_vsync()
            .build()
            .context("creating the SDL renderer")?;
        let events = sdl.event_pump().map_err(|e| anyhow!("SDL events: {e}"))?;
        if fullscreen {
            sdl.mouse().show_cursor(false);
        }
        log::info!(
            "SDL video driver {}, renderer {}",
            video.current_video_driver(),
            canvas.info().name
        );
        Ok(Screen {
            canvas,
            events,
            _video: video,
            _sdl: sdl,
        })
    }

    pub(crate) fn texture_creator(&self) -> TextureCreator<WindowContext> {
        self.canvas.texture_creator()
    }
}

/// The window output; `'t` is the texture creator's lifetime.
pub(crate) struct WindowOutput<'t> {
    screen: Screen,
    texture: Texture<'t>,
    picture: FrameGeometry,
    border: u32,
    /// The picture's luma with the HUD stamped on (the decoder's frame stays untouched).
    hud_luma: Vec<u8>,
    /// Whether the texture holds a picture yet (a fresh one holds undefined pixels).
    uploaded: bool,
}

impl std::fmt::Debug for WindowOutput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowOutput")
            .field("picture", &self.picture)
            .field("border", &self.border)
            .finish_non_exhaustive()
    }
}

impl<'t> WindowOutput<'t> {
    pub(crate) fn new(
        screen: Screen,
        creator: &'t TextureCreator<WindowContext>,
        picture: FrameGeometry,
        border: u32,
    ) -> anyhow::Result<Self> {
        let texture = creator
            .create_texture_streaming(
                PixelFormatEnum::IYUV,
                picture.width() as u32,
                picture.height() as u32,
            )
            .context("creating the IYUV texture")?;
        Ok(WindowOutput {
            screen,
            texture,
            picture,
            border,
            hud_luma: Vec::new(),
            uploaded: false,
        })
    }
}

impl Output for WindowOutput<'_> {
    fn present(&mut self, p: &Presentation<'_>) -> anyhow::Result<()> {
        let g = self.picture;
        let frame = p.picture;
        let luma = match p.hud {
            Some(text) => {
                self.hud_luma.clear();
                self.hud_luma.extend_from_slice(frame.y());
                stamp_hud(&mut self.hud_luma, g.width(), g.height(), text);
                &self.hud_luma[..]
            }
            None => frame.y(),
        };
        if p.new_frame || p.card_changed || p.hud.is_some() || !self.uploaded {
            self.uploaded = true;
            self.texture
                .update_yuv(
                    None,
                    luma,
                    g.width(),
                    frame.u(),
                    g.chroma_width(),
                    frame.v(),
                    g.chroma_width(),
                )
                .context("uploading the picture")?;
        }
        let canvas = &mut self.screen.canvas;
        let (w, h) = canvas
            .output_size()
            .map_err(|e| anyhow!("SDL output size: {e}"))?;
        let [r, gr, b] = glow_rgb(p.mash);
        canvas.set_draw_color(Color::RGB(0, 0, 0));
        canvas.clear();
        if self.border > 0 {
            let band = self.border.min(w / 2).min(h / 2);
            canvas.set_draw_color(Color::RGB(r, gr, b));
            let bands = [
                SdlRect::new(0, 0, w, band),
                SdlRect::new(0, (h - band) as i32, w, band),
                SdlRect::new(0, 0, band, h),
                SdlRect::new((w - band) as i32, 0, band, h),
            ];
            canvas
                .fill_rects(&bands)
                .map_err(|e| anyhow!("SDL fill: {e}"))?;
        }
        let area = inside_border(w, h, self.border);
        let fit = fit_inside(area, g.width() as u32, g.height() as u32);
        canvas
            .copy(
                &self.texture,
                None,
                SdlRect::new(fit.x as i32, fit.y as i32, fit.width, fit.height),
            )
            .map_err(|e| anyhow!("SDL copy: {e}"))?;
        canvas.present();
        Ok(())
    }

    fn pump_events(&mut self) -> bool {
        // Keys typed into the window are the visitors' mashing, read by mash-input from evdev;
        // only an explicit close (window manager, Alt-F4 on a desktop) stops the display.
        self.screen
            .events
            .poll_iter()
            .any(|e| matches!(e, Event::Quit { .. }))
    }
}
