//! Hostile bytes never make the decoder panic, loop or write outside the macroblocks a payload
//! names, and the widest vector unit answers and draws them exactly as the portable reference
//! does. The bench `decoder_fuzz` runs the same generator for millions of cases.

#![allow(clippy::unwrap_used)] // tests may unwrap (workspace rule); helpers here are test code too.

use keymash_codec::fuzz::{run_decoder_fuzz, FuzzOptions};
use keymash_codec::payload::{HeaderError, HEADER_LEN};
use keymash_codec::{DecodeError, Decoder, FrameGeometry, PayloadHeader};
use keymash_core::FrameNo;

#[test]
fn seeded_random_and_mutated_payloads_are_refused_or_applied_safely() {
    let cases: &[(usize, usize, u64, u64)] = &[
        (64, 48, 1, 30_000),
        (48, 32, 2, 30_000),
        (16, 16, 3, 10_000),
        (640, 480, 4, 3_000),
    ];
    for &(w, h, seed, n) in cases {
        let geometry = FrameGeometry::new(w, h).unwrap();
        // The widest unit, checked against the portable reference case by case.
        let summary = run_decoder_fuzz(geometry, seed, n, FuzzOptions::thorough()).unwrap();
        assert_eq!(summary.cases, n);
        // The generator must reach both outcomes, or it is not testing the body decoder.
        assert!(summary.accepted > n / 50, "{geometry}: {summary:?}");
        assert!(summary.rejected > n / 50, "{geometry}: {summary:?}");
        assert!(summary.rejected_in_body > n / 50, "{geometry}: {summary:?}");
    }
}

fn header(geometry: FrameGeometry, first_seq: u16, mb_count: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PayloadHeader {
        width: geometry.width() as u16,
        height: geometry.height() as u16,
        frame_no: FrameNo(1),
        payload_index: 0,
        payload_count: 1,
        mb_stride: 1,
        first_seq,
        mb_count,
    }
    .write(&mut out);
    out
}

#[test]
fn crafted_payloads_are_refused_with_their_cause() {
    let g = FrameGeometry::new(32, 32).unwrap();
    let mut other_size = header(FrameGeometry::VGA, 0, 1);
    other_size.push(0);
    let mut past_end = header(g, 3, 2);
    past_end.push(0);
    let mut repeat_first = header(g, 0, 1);
    repeat_first.push(0x80);
    let mut quality_too_high = header(g, 0, 1);
    quality_too_high.extend_from_slice(&[0x7f, 0xff]);
    let mut all_ones_body = header(g, 0, 4);
    all_ones_body.extend_from_slice(&[0xff; 40]);
    let mut zeros_body = header(g, 0, 1);
    zeros_body.extend_from_slice(&[0x00; 40]);
    let mut trailing = header(g, 0, 0);
    trailing.extend_from_slice(&[0, 0]);

    let mut decoder = Decoder::new(g);
    let expect = |d: &mut Decoder, bytes: &[u8], check: &dyn Fn(&DecodeError) -> bool| {
        let err = d.apply(bytes).unwrap_err();
        assert!(check(&err), "{err:?}");
    };
    expect(&mut decoder, &[], &|e| {
        matches!(e, DecodeError::Header(HeaderError::TooShort(0)))
    });
    expect(&mut decoder, &[0; HEADER_LEN], &|e| {
        matches!(e, DecodeError::Header(HeaderError::BadMagic(0)))
    });
    expect(&mut decoder, &other_size, &|e| {
        matches!(e, DecodeError::GeometryMismatch { width: 640, .. })
    });
    expect(&mut decoder, &past_end, &|e| {
        matches!(e, DecodeError::MacroblocksOutOfFrame { .. })
    });
    expect(&mut decoder, &repeat_first, &|e| {
        matches!(e, DecodeError::Macroblock { index: 0, .. })
    });
    expect(&mut decoder, &quality_too_high, &|e| {
        matches!(e, DecodeError::Macroblock { index: 0, .. })
    });
    expect(&mut decoder, &all_ones_body, &|e| {
        matches!(e, DecodeError::Macroblock { .. })
    });
    expect(&mut decoder, &zeros_body, &|e| {
        matches!(e, DecodeError::Macroblock { index: 0, .. })
    });
    expect(&mut decoder, &trailing, &|e| {
        matches!(e, DecodeError::TrailingBytes(2))
    });
    // Nothing above was written.
    assert!(decoder.frame().y().iter().all(|&p| p == 128));
}
