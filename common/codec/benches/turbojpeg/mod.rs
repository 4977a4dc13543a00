//! libjpeg-turbo in the bench's own process: the system libturbojpeg through its TurboJPEG 2.x
//! API (Debian's libturbojpeg0-dev, 2.1; the tj3 API is 3.x only), compressing from and
//! decompressing to planar 4:2:0 YUV, the same work keymash's codec does. Default flags, as
//! `tj_baseline.c`: accurate integer DCT, no Huffman optimisation (libjpeg's defaults).
//!
//! Bench-only FFI, so the workspace's `unsafe_code = "deny"` is lifted for this module alone; the
//! codec itself forbids unsafe code. Our own declarations rather than a crate: the `turbojpeg`
//! crate's `-sys` builds libjpeg-turbo 3 from source with cmake by default, which measures a
//! different build than the one CI installs, and five functions do not need a dependency.
#![allow(unsafe_code)]

use keymash_codec::I420Frame;
use std::ffi::{c_char, c_int, c_uchar, c_ulong, c_void, CStr};
use std::ptr::NonNull;

const TJSAMP_420: c_int = 2;
/// Compress into our buffer, never reallocating it (it is sized by `tjBufSize`).
const TJFLAG_NOREALLOC: c_int = 1024;

#[link(name = "turbojpeg")]
extern "C" {
    fn tjInitCompress() -> *mut c_void;
    fn tjInitDecompress() -> *mut c_void;
    fn tjDestroy(handle: *mut c_void) -> c_int;
    fn tjBufSize(width: c_int, height: c_int, jpeg_subsamp: c_int) -> c_ulong;
    fn tjCompressFromYUVPlanes(
        handle: *mut c_void,
        src_planes: *const *const c_uchar,
        width: c_int,
        strides: *const c_int,
        height: c_int,
        subsamp: c_int,
        jpeg_buf: *mut *mut c_uchar,
        jpeg_size: *mut c_ulong,
        jpeg_qual: c_int,
        flags: c_int,
    ) -> c_int;
    fn tjDecompressToYUVPlanes(
        handle: *mut c_void,
        jpeg_buf: *const c_uchar,
        jpeg_size: c_ulong,
        dst_planes: *mut *mut c_uchar,
        width: c_int,
        strides: *mut c_int,
        height: c_int,
        flags: c_int,
    ) -> c_int;
    fn tjDecompressHeader3(
        handle: *mut c_void,
        jpeg_buf: *const c_uchar,
        jpeg_size: c_ulong,
        width: *mut c_int,
        height: *mut c_int,
        jpeg_subsamp: *mut c_int,
        jpeg_colorspace: *mut c_int,
    ) -> c_int;
    fn tjGetErrorStr2(handle: *mut c_void) -> *mut c_char;
}

/// One TurboJPEG handle, destroyed on drop.
#[derive(Debug)]
struct Handle(NonNull<c_void>);

impl Handle {
    fn error(&self) -> String {
        // SAFETY: the handle is live (we own it until drop); tjGetErrorStr2 returns a pointer to
        // a NUL-terminated string inside the handle (or a static one), valid until the next call
        // on this handle, and we copy it out at once.
        unsafe {
            let s = tjGetErrorStr2(self.0.as_ptr());
            if s.is_null() {
                "unknown TurboJPEG error".to_owned()
            } else {
                CStr::from_ptr(s).to_string_lossy().into_owned()
            }
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tjInit* and is destroyed once, here.
        unsafe {
            tjDestroy(self.0.as_ptr());
        }
    }
}

/// Dimensions and strides of the three planes, as TurboJPEG takes them.
fn dims(width: usize, height: usize) -> Result<(c_int, c_int, [c_int; 3]), String> {
    let w = c_int::try_from(width).map_err(|e| e.to_string())?;
    let h = c_int::try_from(height).map_err(|e| e.to_string())?;
    if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(format!("{width}x{height} is not even"));
    }
    Ok((w, h, [w, w / 2, w / 2]))
}

/// Compresses 4:2:0 frames of one size into a buffer it owns.
#[derive(Debug)]
pub(crate) struct Compressor {
    handle: Handle,
    buf: Vec<u8>,
    len: usize,
    width: usize,
    height: usize,
}

impl Compressor {
    pub(crate) fn new(width: usize, height: usize) -> Result<Self, String> {
        let (w, h, _) = dims(width, height)?;
        // SAFETY: no arguments; returns a new handle or null.
        let raw = unsafe { tjInitCompress() };
        let handle = Handle(NonNull::new(raw).ok_or("tjInitCompress failed")?);
        // SAFETY: plain arithmetic on its arguments; returns (unsigned long)-1 on bad ones.
        let cap = unsafe { tjBufSize(w, h, TJSAMP_420) };
        let cap = usize::try_from(cap)
            .ok()
            .filter(|&c| c != 0 && c != usize::MAX)
            .ok_or("tjBufSize failed")?;
        Ok(Compressor {
            handle,
            buf: vec![0; cap],
            len: 0,
            width,
            height,
        })
    }

    /// Compresses `frame` at `quality`; the JPEG is [`Compressor::jpeg`] until the next call.
    pub(crate) fn compress(&mut self, frame: &I420Frame, quality: u8) -> Result<(), String> {
        let g = frame.geometry();
        if (g.width(), g.height()) != (self.width, self.height) {
            return Err(format!(
                "frame is {g}, compressor {}x{}",
                self.width, self.height
            ));
        }
        let (w, h, strides) = dims(self.width, self.height)?;
        let planes = [frame.y().as_ptr(), frame.u().as_ptr(), frame.v().as_ptr()];
        let mut out = self.buf.as_mut_ptr();
        let mut size = c_ulong::try_from(self.buf.len()).map_err(|e| e.to_string())?;
        // SAFETY: the planes are the frame's Y, U and V slices, each at least stride * rows
        // (w x h, w/2 x h/2) long, and only read. With TJFLAG_NOREALLOC TurboJPEG writes at most
        // `size` bytes into `out` (our buffer of tjBufSize bytes, as the API requires) and never
        // frees or replaces it; it stores the JPEG's length in `size`.
        let rc = unsafe {
            tjCompressFromYUVPlanes(
                self.handle.0.as_ptr(),
                planes.as_ptr(),
                w,
                strides.as_ptr(),
                h,
                TJSAMP_420,
                &mut out,
                &mut size,
                c_int::from(quality),
                TJFLAG_NOREALLOC,
            )
        };
        if rc != 0 {
            return Err(format!("tjCompressFromYUVPlanes: {}", self.handle.error()));
        }
        let len = usize::try_from(size).map_err(|e| e.to_string())?;
        if out != self.buf.as_mut_ptr() || len > self.buf.len() {
            return Err("tjCompressFromYUVPlanes left its buffer".to_owned());
        }
        self.len = len;
        Ok(())
    }

    /// The last JPEG compressed.
    pub(crate) fn jpeg(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// Decompresses JPEGs into a 4:2:0 frame of one size.
#[derive(Debug)]
pub(crate) struct Decompressor {
    handle: Handle,
}

impl Decompressor {
    pub(crate) fn new() -> Result<Self, String> {
        // SAFETY: no arguments; returns a new handle or null.
        let raw = unsafe { tjInitDecompress() };
        Ok(Decompressor {
            handle: Handle(NonNull::new(raw).ok_or("tjInitDecompress failed")?),
        })
    }

    /// Checks that `jpeg` is a 4:2:0 JPEG of `width` x `height`, outside any timed region: only
    /// such a JPEG may be decompressed into a frame of that size.
    pub(crate) fn check<'a>(
        &mut self,
        jpeg: &'a [u8],
        width: usize,
        height: usize,
    ) -> Result<Checked<'a>, String> {
        let size = c_ulong::try_from(jpeg.len()).map_err(|e| e.to_string())?;
        let (mut w, mut h, mut subsamp, mut colorspace) = (0, 0, -1, -1);
        // SAFETY: `jpeg` is read only, `size` bytes; the four outputs are our own locals.
        let rc = unsafe {
            tjDecompressHeader3(
                self.handle.0.as_ptr(),
                jpeg.as_ptr(),
                size,
                &mut w,
                &mut h,
                &mut subsamp,
                &mut colorspace,
            )
        };
        if rc != 0 {
            return Err(format!("tjDecompressHeader3: {}", self.handle.error()));
        }
        let (ew, eh, _) = dims(width, height)?;
        if (w, h, subsamp) != (ew, eh, TJSAMP_420) {
            return Err(format!(
                "JPEG is {w}x{h} subsampling {subsamp}, not {width}x{height} 4:2:0"
            ));
        }
        Ok(Checked {
            jpeg,
            width,
            height,
        })
    }

    /// Decompresses a checked JPEG into `frame`, which must be its size.
    pub(crate) fn decompress(
        &mut self,
        jpeg: &Checked<'_>,
        frame: &mut I420Frame,
    ) -> Result<(), String> {
        let g = frame.geometry();
        if (g.width(), g.height()) != (jpeg.width, jpeg.height) {
            return Err(format!("frame is {g}, JPEG {}x{}", jpeg.width, jpeg.height));
        }
        let (w, h, mut strides) = dims(g.width(), g.height())?;
        let size = c_ulong::try_from(jpeg.jpeg.len()).map_err(|e| e.to_string())?;
        let (y, u, v) = frame.planes_mut();
        let mut planes = [y.as_mut_ptr(), u.as_mut_ptr(), v.as_mut_ptr()];
        // SAFETY: the JPEG is read only, `size` bytes. Its header said w x h, 4:2:0 (`check`;
        // a `Checked` is only made there, and borrows the bytes so they cannot change since),
        // so TurboJPEG writes exactly w x h luma and w/2 x h/2 of each chroma at these strides:
        // the frame's Y, U and V slices, which are that long. It keeps and frees no pointer.
        let rc = unsafe {
            tjDecompressToYUVPlanes(
                self.handle.0.as_ptr(),
                jpeg.jpeg.as_ptr(),
                size,
                planes.as_mut_ptr(),
                w,
                strides.as_mut_ptr(),
                h,
                0,
            )
        };
        if rc != 0 {
            return Err(format!("tjDecompressToYUVPlanes: {}", self.handle.error()));
        }
        Ok(())
    }
}

/// A JPEG whose header [`Decompressor::check`] read: 4:2:0, `width` x `height`.
#[derive(Debug)]
pub(crate) struct Checked<'a> {
    jpeg: &'a [u8],
    width: usize,
    height: usize,
}
