//! `keymash codec ...`: codec tools for operators. `roundtrip` encodes and decodes a Y4M video
//! so people can preview a quality setting on their own footage.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use keymash_codec::roundtrip::{roundtrip, RoundtripConfig, RoundtripReport};
use keymash_codec::{Layout, DEFAULT_MAX_PAYLOAD};
use keymash_core::Quality;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

/// Codec tools.
#[derive(Debug, Args)]
pub(crate) struct CodecArgs {
    #[command(subcommand)]
    pub command: CodecCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CodecCommand {
    /// Encode and decode every frame of a 4:2:0 Y4M video, write the decoded video, and print
    /// bytes per frame, PSNR, and encode and decode milliseconds per frame (p50, p99) on this PC.
    Roundtrip {
        /// Codec quality, 1..=100, as in JPEG.
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
        quality: u8,
        /// How macroblocks are spread over payloads.
        #[arg(long, value_enum, default_value_t = LayoutArg::Strips)]
        layout: LayoutArg,
        /// Largest payload in bytes (default: a 1200-byte UDP payload minus the RTP header).
        #[arg(long, default_value_t = DEFAULT_MAX_PAYLOAD)]
        max_payload: usize,
        /// Encoder threads (0 = one per core).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Input Y4M file ("-" for standard input).
        input: PathBuf,
        /// Output Y4M file ("-" for standard output; the report then goes to standard error).
        output: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    /// Raster strips: a lost payload leaves a horizontal band.
    Strips,
    /// Scattered macroblocks: a lost payload leaves single blocks all over.
    Dispersed,
}

impl From<LayoutArg> for Layout {
    fn from(l: LayoutArg) -> Layout {
        match l {
            LayoutArg::Strips => Layout::Strips,
            LayoutArg::Dispersed => Layout::Dispersed,
        }
    }
}

pub(crate) fn run(args: CodecArgs) -> anyhow::Result<()> {
    match args.command {
        CodecCommand::Roundtrip {
            quality,
            layout,
            max_payload,
            threads,
            json,
            input,
            output,
        } => {
            let quality = Quality::new(quality).context("--quality")?;
            let config = RoundtripConfig {
                quality,
                layout: layout.into(),
                max_payload,
                threads,
            };
            let reader: Box<dyn Read> = if input.as_os_str() == "-" {
                Box::new(BufReader::new(io::stdin().lock()))
            } else {
                let f =
                    File::open(&input).with_context(|| format!("opening {}", input.display()))?;
                Box::new(BufReader::new(f))
            };
            let to_stdout = output.as_os_str() == "-";
            let writer: Box<dyn Write> = if to_stdout {
                Box::new(BufWriter::new(io::stdout().lock()))
            } else {
                let f = File::create(&output)
                    .with_context(|| format!("creating {}", output.display()))?;
                Box::new(BufWriter::new(f))
            };
            let start = Instant::now();
            let clock = || u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let report = roundtrip(reader, writer, config, clock).with_context(|| {
                format!("round trip of {} to {}", input.display(), output.display())
            })?;
            let text = if json {
                report_json(&report, &config)
            } else {
                report_table(&report, &config)
            };
            if to_stdout {
                eprintln!("{text}");
            } else {
                println!("{text}");
            }
            Ok(())
        }
    }
}

fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::Strips => "strips",
        Layout::Dispersed => "dispersed",
    }
}

fn report_json(r: &RoundtripReport, c: &RoundtripConfig) -> String {
    let s = &r.stats;
    serde_json::json!({
        "frames": r.frames,
        "width": r.width,
        "height": r.height,
        "quality": c.quality.get(),
        "layout": layout_name(c.layout),
        "max_payload": c.max_payload,
        "bytes_per_frame": r.bytes_per_frame,
        "payloads_per_frame": r.payloads_per_frame,
        "psnr_y": r.psnr_y,
        "psnr_yuv": r.psnr_yuv,
        "truncated_macroblocks": s.truncated_macroblocks,
        "threads": c.threads,
        "simd": r.simd.name(),
        "encode_ms": { "p50": r.encode_ms.p50, "p99": r.encode_ms.p99 },
        "decode_ms": { "p50": r.decode_ms.p50, "p99": r.decode_ms.p99 },
        "bits": {
            "header": s.header_bits,
            "quality": s.syntax.quality_bits,
            "dc": s.syntax.dc_bits,
            "ac_count": s.syntax.ac_count_bits,
            "ac_run": s.syntax.ac_run_bits,
            "ac_level": s.syntax.ac_level_bits,
            "padding": s.padding_bits,
        },
    })
    .to_string()
}

fn report_table(r: &RoundtripReport, c: &RoundtripConfig) -> String {
    let s = &r.stats;
    let total = (s.header_bits
        + s.padding_bits
        + s.syntax.quality_bits
        + s.syntax.dc_bits
        + s.syntax.ac_count_bits
        + s.syntax.ac_run_bits
        + s.syntax.ac_level_bits)
        .max(1) as f64;
    let share = |bits: u64| 100.0 * bits as f64 / total;
    let mut out = String::new();
    out.push_str(&format!(
        "{} frames {}x{}, quality {}, layout {}, payloads <= {} bytes\n",
        r.frames,
        r.width,
        r.height,
        c.quality.get(),
        layout_name(c.layout),
        c.max_payload
    ));
    out.push_str(&format!("  bytes/frame     {:>10.0}\n", r.bytes_per_frame));
    out.push_str(&format!(
        "  payloads/frame  {:>10.1}\n",
        r.payloads_per_frame
    ));
    out.push_str(&format!("  PSNR Y          {:>10.2} dB\n", r.psnr_y));
    out.push_str(&format!("  PSNR YUV        {:>10.2} dB\n", r.psnr_yuv));
    out.push_str(&format!(
        "  truncated MBs   {:>10}\n",
        s.truncated_macroblocks
    ));
    let threads = match c.threads {
        0 => "all cores".to_owned(),
        1 => "1 thread".to_owned(),
        n => format!("{n} threads"),
    };
    out.push_str(&format!(
        "  encode ms/frame {:>10.2} p50, {:.2} p99 ({threads}, {})\n",
        r.encode_ms.p50,
        r.encode_ms.p99,
        r.simd.name()
    ));
    out.push_str(&format!(
        "  decode ms/frame {:>10.2} p50, {:.2} p99\n",
        r.decode_ms.p50, r.decode_ms.p99
    ));
    out.push_str("  where the bytes go:");
    for (name, bits) in [
        ("headers", s.header_bits),
        ("quality", s.syntax.quality_bits),
        ("DC", s.syntax.dc_bits),
        ("AC count", s.syntax.ac_count_bits),
        ("AC runs", s.syntax.ac_run_bits),
        ("AC levels", s.syntax.ac_level_bits),
        ("padding", s.padding_bits),
    ] {
        out.push_str(&format!(" {name} {:.1}%", share(bits)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        codec: Top,
    }

    #[derive(Debug, Subcommand)]
    enum Top {
        Codec(CodecArgs),
    }

    #[test]
    fn roundtrip_arguments_parse_and_out_of_range_quality_is_refused() {
        let ok = Cli::try_parse_from([
            "keymash",
            "codec",
            "roundtrip",
            "--quality",
            "75",
            "--layout",
            "dispersed",
            "--json",
            "a.y4m",
            "b.y4m",
        ]);
        let Top::Codec(CodecArgs {
            command:
                CodecCommand::Roundtrip {
                    quality,
                    layout,
                    json,
                    ..
                },
        }) = ok.unwrap().codec;
        assert_eq!((quality, layout, json), (75, LayoutArg::Dispersed, true));
        for bad in ["0", "101", "x"] {
            assert!(
                Cli::try_parse_from(["keymash", "codec", "roundtrip", "--quality", bad, "a", "b"])
                    .is_err(),
                "{bad}"
            );
        }
    }
}
