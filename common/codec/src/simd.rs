//! Which vector unit the transforms run on, chosen once at run time.
//!
//! Every x86-64 CPU has SSE2, so that path is compiled in unconditionally; AVX2 is used where the
//! CPU has it (detected once, when an [`crate::Encoder`] or [`crate::Decoder`] is built), so the
//! same binary runs on an SSE2-only machine. The portable reference runs anywhere. All three
//! give bit-identical payloads and pictures (tested), so the choice only changes speed.
//!
//! Dispatch happens once per share of a frame (encoder) or per payload (decoder), never per
//! block: the whole share or payload is compiled for the chosen unit ([`Kernel::dispatch`]).

use crate::fdct::Quantiser;
use crate::idct::Dequantiser;

/// The environment variable the codec's binaries and benches read to force a vector unit:
/// `portable`, `sse2` or `avx2` (see [`Simd::from_env`]).
pub const SIMD_ENV: &str = "KEYMASH_CODEC_SIMD";

/// A vector unit the transforms can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Simd {
    /// Plain Rust, the reference the others reproduce bit for bit.
    Portable,
    /// 128-bit SSE2 (every x86-64 CPU): one 8x8 block per pass.
    Sse2,
    /// 256-bit AVX2: two 8x8 blocks per pass.
    Avx2,
}

/// Why [`SIMD_ENV`] could not be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimdEnvError {
    #[error("{SIMD_ENV}={0:?} is not one of portable, sse2, avx2")]
    Unknown(String),
    #[error("{SIMD_ENV} asks for {0}, which this CPU does not have")]
    Unavailable(Simd),
}

impl Simd {
    /// Every unit, narrowest first.
    pub const ALL: [Simd; 3] = [Simd::Portable, Simd::Sse2, Simd::Avx2];

    /// The widest unit this CPU has.
    pub fn detect() -> Simd {
        Kernel::best().simd()
    }

    /// Whether this CPU (and target) can run it.
    pub fn is_available(self) -> bool {
        Kernel::new(self).simd() == self
    }

    pub fn name(self) -> &'static str {
        match self {
            Simd::Portable => "portable",
            Simd::Sse2 => "sse2",
            Simd::Avx2 => "avx2",
        }
    }

    /// The unit [`SIMD_ENV`] names, or the widest available when it is unset or empty. For
    /// binaries and benches, at start-up: the library itself never reads the environment.
    pub fn from_env() -> Result<Simd, SimdEnvError> {
        match std::env::var(SIMD_ENV) {
            Ok(name) if !name.is_empty() => {
                let simd: Simd = name.parse()?;
                if simd.is_available() {
                    Ok(simd)
                } else {
                    Err(SimdEnvError::Unavailable(simd))
                }
            }
            _ => Ok(Simd::detect()),
        }
    }
}

impl std::str::FromStr for Simd {
    type Err = SimdEnvError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Simd::ALL
            .into_iter()
            .find(|simd| simd.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| SimdEnvError::Unknown(s.to_owned()))
    }
}

impl std::fmt::Display for Simd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An 8x8 block of a plane: the plane, its stride and the block's top-left sample.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockAt<'a> {
    pub(crate) plane: &'a [u8],
    pub(crate) stride: usize,
    pub(crate) x: usize,
    pub(crate) y: usize,
}

/// An 8x8 block of a plane to store into: the plane, its stride and the block's top-left sample.
#[derive(Debug)]
pub(crate) struct BlockAtMut<'a> {
    pub(crate) plane: &'a mut [u8],
    pub(crate) stride: usize,
    pub(crate) x: usize,
    pub(crate) y: usize,
}

/// Where a pair of 8x8 blocks to transform lies.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PairSource<'a> {
    /// The first block at (`x`, `y`), the second just right of it at (`x + 8`, `y`): a unit
    /// that transforms two at once loads a row of both with one 16-byte load.
    SideBySide {
        plane: &'a [u8],
        stride: usize,
        x: usize,
        y: usize,
    },
    /// Both at (`x`, `y`), of two planes of the same stride (U and V).
    TwoPlanes {
        first: &'a [u8],
        second: &'a [u8],
        stride: usize,
        x: usize,
        y: usize,
    },
}

impl<'a> PairSource<'a> {
    /// The two blocks, one at a time.
    pub(crate) fn blocks(self) -> [BlockAt<'a>; 2] {
        match self {
            PairSource::SideBySide {
                plane,
                stride,
                x,
                y,
            } => [
                BlockAt {
                    plane,
                    stride,
                    x,
                    y,
                },
                BlockAt {
                    plane,
                    stride,
                    x: x + 8,
                    y,
                },
            ],
            PairSource::TwoPlanes {
                first,
                second,
                stride,
                x,
                y,
            } => [first, second].map(|plane| BlockAt {
                plane,
                stride,
                x,
                y,
            }),
        }
    }
}

/// Two blocks to transform and quantise with the same quantiser, and where their levels go.
#[derive(Debug)]
pub(crate) struct ForwardPair<'a> {
    pub(crate) source: PairSource<'a>,
    pub(crate) levels: [&'a mut [i16; 64]; 2],
}

/// Where the decoder stores a pair of 8x8 blocks.
#[derive(Debug)]
pub(crate) enum PairDestination<'a> {
    /// Only the first block, at (`x`, `y`); the second is not stored. For a block whose partner
    /// is flat (see [`crate::block::store_macroblock`]), on a unit that transforms two at once.
    First {
        plane: &'a mut [u8],
        stride: usize,
        x: usize,
        y: usize,
    },
    /// The first block at (`x`, `y`), the second just right of it at (`x + 8`, `y`).
    SideBySide {
        plane: &'a mut [u8],
        stride: usize,
        x: usize,
        y: usize,
    },
    /// Both at (`x`, `y`), of two planes of the same stride (U and V).
    TwoPlanes {
        first: &'a mut [u8],
        second: &'a mut [u8],
        stride: usize,
        x: usize,
        y: usize,
    },
}

/// The block operations each vector unit provides. Every implementation computes exactly what
/// the portable reference ([`crate::fdct::forward_quantise`], [`crate::idct::inverse_store`])
/// does, block by block; a unit that works on two blocks at once overrides the pair methods.
pub(crate) trait Transforms: Copy {
    /// Whether the decoder hands this unit raw levels (in [`crate::idct::LEVEL_ORDER`]) to
    /// dequantise as it loads them, sixteen at a time
    /// ([`Transforms::dequantise_inverse_store_pair`]), rather than coefficients the reader
    /// dequantised one by one. Only worth it where a 32-bit multiply-add covers 8 lanes (AVX2).
    const TAKES_LEVELS: bool = false;

    /// Transform and quantisation of one block: levels in the transposed layout, and the mask
    /// of its non-zero levels (bit n for `levels[n]`).
    fn forward_quantise(self, block: BlockAt<'_>, q: &Quantiser, levels: &mut [i16; 64]) -> u64;

    /// Inverse transform of one dequantised block (transposed layout), stored at `block`.
    fn inverse_store(self, coefficients: &[i16; 64], block: BlockAtMut<'_>);

    /// [`Transforms::forward_quantise`] of two blocks with the same quantiser.
    #[inline(always)]
    fn forward_quantise_pair(self, pair: ForwardPair<'_>, q: &Quantiser) -> [u64; 2] {
        let ForwardPair {
            source,
            levels: [la, lb],
        } = pair;
        let [a, b] = source.blocks();
        [
            self.forward_quantise(a, q, la),
            self.forward_quantise(b, q, lb),
        ]
    }

    /// Dequantisation ([`Dequantiser::coefficients`]) and inverse transform of two blocks of raw
    /// levels with the same dequantiser, stored where `destination` says. This default is the
    /// reference a [`Transforms::TAKES_LEVELS`] unit reproduces bit for bit.
    #[inline(always)]
    fn dequantise_inverse_store_pair(
        self,
        levels: [&[i16; 64]; 2],
        dequantiser: &Dequantiser,
        destination: PairDestination<'_>,
    ) {
        let [a, b] = levels;
        let coefficients = [dequantiser.coefficients(a), dequantiser.coefficients(b)];
        self.inverse_store_pair([&coefficients[0], &coefficients[1]], destination);
    }

    /// Inverse transform of two blocks, stored where `destination` says.
    #[inline(always)]
    fn inverse_store_pair(self, coefficients: [&[i16; 64]; 2], destination: PairDestination<'_>) {
        let [a, b] = coefficients;
        match destination {
            PairDestination::First {
                plane,
                stride,
                x,
                y,
            } => self.inverse_store(
                a,
                BlockAtMut {
                    plane,
                    stride,
                    x,
                    y,
                },
            ),
            PairDestination::SideBySide {
                plane,
                stride,
                x,
                y,
            } => {
                self.inverse_store(
                    a,
                    BlockAtMut {
                        plane: &mut *plane,
                        stride,
                        x,
                        y,
                    },
                );
                let x = x + 8;
                self.inverse_store(
                    b,
                    BlockAtMut {
                        plane,
                        stride,
                        x,
                        y,
                    },
                );
            }
            PairDestination::TwoPlanes {
                first,
                second,
                stride,
                x,
                y,
            } => {
                self.inverse_store(
                    a,
                    BlockAtMut {
                        plane: first,
                        stride,
                        x,
                        y,
                    },
                );
                self.inverse_store(
                    b,
                    BlockAtMut {
                        plane: second,
                        stride,
                        x,
                        y,
                    },
                );
            }
        }
    }
}

/// Code to run with one vector unit's [`Transforms`]: [`Kernel::dispatch`] compiles `run` once
/// per unit, inside a function built for that unit's instructions.
pub(crate) trait WithTransforms {
    type Output;
    fn run<T: Transforms>(self, transforms: T) -> Self::Output;
}

/// [`Transforms`] of one block at a time, from a module's `forward_quantise` and
/// `inverse_store` (which have the reference's signatures), and any pair methods that follow.
macro_rules! one_block_transforms {
    ($unit:ty, $module:path $(, $($pair_methods:tt)*)?) => {
        impl $crate::simd::Transforms for $unit {
            #[inline(always)]
            fn forward_quantise(
                self,
                block: $crate::simd::BlockAt<'_>,
                q: &$crate::fdct::Quantiser,
                levels: &mut [i16; 64],
            ) -> u64 {
                use $module as m;
                m::forward_quantise(block.plane, block.stride, block.x, block.y, q, levels)
            }

            #[inline(always)]
            fn inverse_store(self, coefficients: &[i16; 64], block: $crate::simd::BlockAtMut<'_>) {
                use $module as m;
                let $crate::simd::BlockAtMut { plane, stride, x, y } = block;
                m::inverse_store(coefficients, plane, stride, x, y);
            }

            $($($pair_methods)*)?
        }
    };
}
pub(crate) use one_block_transforms;

/// The portable reference.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Portable;

/// The reference's transforms are split by direction; one module to name for the macro.
mod reference {
    pub(crate) use crate::fdct::forward_quantise;
    pub(crate) use crate::idct::inverse_store;
}

one_block_transforms!(Portable, reference);

/// SSE2, one block at a time.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sse2;

#[cfg(target_arch = "x86_64")]
one_block_transforms! {
    Sse2,
    crate::sse2,

    #[inline(always)]
    fn forward_quantise_pair(self, pair: ForwardPair<'_>, q: &Quantiser) -> [u64; 2] {
        crate::sse2::forward_quantise_pair(pair, q)
    }
}

/// `work` with the AVX2 transforms, as pulp runs it. Not a closure: pulp compiles `call` inside a
/// function with AVX2 enabled, and only what is inlined there gets AVX2, but a large closure
/// body is not inlined (it was compiled without AVX2, with every 256-bit intrinsic a call or two
/// SSE2 halves); `call` is forced inline, and so is everything it runs.
#[cfg(target_arch = "x86_64")]
struct RunAvx2<W>(W, crate::avx2::Avx2);

#[cfg(target_arch = "x86_64")]
impl<W: WithTransforms> pulp::NullaryFnOnce for RunAvx2<W> {
    type Output = W::Output;

    #[inline(always)]
    fn call(self) -> W::Output {
        self.0.run(self.1)
    }
}

/// The vector unit an encoder or decoder runs on, with the proof (for AVX2) that the CPU has it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Sse2,
    #[cfg(target_arch = "x86_64")]
    Avx2(pulp::x86::V3),
}

impl Kernel {
    /// The widest this CPU has.
    pub(crate) fn best() -> Kernel {
        Kernel::new(Simd::Avx2)
    }

    /// `simd` if the CPU has it, else the widest it has below it.
    pub(crate) fn new(simd: Simd) -> Kernel {
        match simd {
            Simd::Portable => Kernel::Portable,
            #[cfg(target_arch = "x86_64")]
            Simd::Sse2 => Kernel::Sse2,
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => pulp::x86::V3::try_new().map_or(Kernel::Sse2, Kernel::Avx2),
            #[cfg(not(target_arch = "x86_64"))]
            Simd::Sse2 | Simd::Avx2 => Kernel::Portable,
        }
    }

    pub(crate) fn simd(self) -> Simd {
        match self {
            Kernel::Portable => Simd::Portable,
            #[cfg(target_arch = "x86_64")]
            Kernel::Sse2 => Simd::Sse2,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(_) => Simd::Avx2,
        }
    }

    /// Runs `work` with this unit's transforms. For AVX2 the call goes through a function
    /// compiled with AVX2 (and the rest of x86-64-v3) enabled, so everything `work` inlines is
    /// compiled for it too; the cost is one call, paid per share or payload.
    #[inline]
    pub(crate) fn dispatch<W: WithTransforms>(self, work: W) -> W::Output {
        match self {
            Kernel::Portable => work.run(Portable),
            #[cfg(target_arch = "x86_64")]
            Kernel::Sse2 => work.run(Sse2),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(simd) => simd.vectorize(RunAvx2(work, crate::avx2::Avx2(simd))),
        }
    }
}
