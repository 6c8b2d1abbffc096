//! Property tests on the stable toolchain: the fuzz targets' invariants (invariants.rs) over streams from a seeded
//! generator, about two seconds of `cargo test` in all (debug build). Each test runs a fixed number of cases from
//! fixed seeds, so a failure repeats; its message names the case's seed.

use super::internal::{self, Handshake};
use super::invariants::{self, Rng};

const MAXES: [usize; 8] = [0, 1, 4, 16, 64, 100, 256, 4096];

/// Characters that test UTF-8 handling across cuts: one to four bytes, U+2028 (valid JSON, a line separator to
/// JavaScript), and the ones JSON escapes.
const CHARS: [&str; 10] = [
    "a", "é", "中", "😀", "\u{2028}", "\"", "\\", "\n", "\u{0}", "ÿ",
];

/// Byte sequences that are not UTF-8: a lone continuation or lead byte, an overlong form, a surrogate, a code point
/// past U+10FFFF, a sequence cut short.
const BAD: [&[u8]; 7] = [
    b"\xff",
    b"\x80",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe4\xb8",
    b"\xc3",
];

fn text(rng: &mut Rng, chars: usize) -> String {
    (0..chars).map(|_| *rng.pick(&CHARS)).collect()
}

fn key(rng: &mut Rng) -> String {
    let longest = if rng.one_in(8) { 200 } else { 16 };
    let n = rng.below(longest);
    text(rng, n)
}

/// A number of any magnitude, small ones (Smis) often.
fn number(rng: &mut Rng) -> u64 {
    rng.u64() >> rng.below(64)
}

fn json_message(rng: &mut Rng, max: usize) -> Vec<u8> {
    let line = |s: String| {
        let mut v = s.into_bytes();
        v.push(b'\n');
        v
    };
    match rng.below(9) {
        0 | 1 => {
            let n = rng.below(12);
            line(serde_json::json!({ "s": text(rng, n), "n": number(rng) }).to_string())
        }
        2 => internal::encode(
            *rng.pick(&[Handshake::Handle, Handshake::Ack, Handshake::Nack]),
            false,
        ),
        3 => internal::encode_newconn(&key(rng), number(rng), false),
        4 => {
            // A line with bytes that are not UTF-8 somewhere in it.
            let n = rng.below(8);
            let mut v = serde_json::Value::from(text(rng, n))
                .to_string()
                .into_bytes();
            let at = rng.below(v.len() + 1);
            v.splice(at..at, rng.pick(&BAD).iter().copied());
            v.push(b'\n');
            v
        }
        5 => {
            // Over max, or just at it.
            let n = max
                + if rng.one_in(3) {
                    0
                } else {
                    1 + rng.below(2 * max + 8)
                };
            let mut v: Vec<u8> = text(rng, n)
                .bytes()
                .filter(|&b| b != b'\n')
                .take(n)
                .collect();
            v.resize(n, b'x');
            v.push(b'\n');
            v
        }
        6 => b"\n".to_vec(),
        _ => (0..rng.below(16)).map(|_| rng.u64() as u8).collect(),
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn advanced_message(rng: &mut Rng, max: usize) -> Vec<u8> {
    match rng.below(9) {
        0 | 1 => {
            let body: Vec<u8> = (0..rng.below(max.min(64) + 1))
                .map(|_| rng.u64() as u8)
                .collect();
            frame(&body)
        }
        2 => internal::encode(
            *rng.pick(&[Handshake::Handle, Handshake::Ack, Handshake::Nack]),
            true,
        ),
        3 => internal::encode_newconn(&key(rng), number(rng), true),
        4 => frame(&vec![7; max + 1 + rng.below(2 * max + 8)]),
        5 => frame(&vec![9; max]),
        // A prefix claiming more than the stream will ever hold.
        6 => rng
            .pick(&[
                [0xff, 0xff, 0xff, 0xff],
                [0x7f, 0xff, 0xff, 0xff],
                [0, 1, 0, 0],
            ])
            .to_vec(),
        7 => frame(&[]),
        _ => (0..rng.below(8)).map(|_| rng.u64() as u8).collect(),
    }
}

/// A stream of messages, sometimes ending partway through one; and the offsets where NODE_HANDLE envelopes start.
fn stream(rng: &mut Rng, advanced: bool, max: usize) -> (Vec<u8>, Vec<usize>) {
    let mut data = Vec::new();
    let mut envelopes = Vec::new();
    for _ in 0..rng.below(12) {
        let message = if advanced {
            advanced_message(rng, max)
        } else {
            json_message(rng, max)
        };
        if is_envelope(&message, advanced) {
            envelopes.push(data.len());
        }
        data.extend(message);
    }
    if rng.one_in(3) {
        let last = if advanced {
            advanced_message(rng, max)
        } else {
            json_message(rng, max)
        };
        let cut = rng.below(last.len());
        data.extend_from_slice(&last[..cut]);
    }
    (data, envelopes)
}

fn is_envelope(message: &[u8], advanced: bool) -> bool {
    if advanced {
        message.len() >= 4 && internal::v8_handshake(&message[4..]) == Some(Handshake::Handle)
    } else {
        std::str::from_utf8(message)
            .ok()
            .and_then(|s| internal::json_handshake(s.trim_end_matches('\n')))
            == Some(Handshake::Handle)
    }
}

#[test]
fn json_lines_split_anywhere_give_the_same_lines_within_max() {
    for seed in 0..5000 {
        let mut rng = Rng::new(seed);
        let max = *rng.pick(&MAXES);
        let (data, _) = stream(&mut rng, false, max);
        let cuts = invariants::cuts(data.len(), rng.u64());
        let run = std::panic::catch_unwind(|| invariants::check_json_lines(&data, max, &cuts));
        assert!(run.is_ok(), "seed {seed}: max {max}, stream {data:?}");
    }
}

#[test]
fn advanced_frames_split_anywhere_give_the_same_frames_within_max() {
    for seed in 0..10000 {
        let mut rng = Rng::new(seed);
        let max = *rng.pick(&MAXES);
        let (data, _) = stream(&mut rng, true, max);
        let cuts = invariants::cuts(data.len(), rng.u64());
        let run = std::panic::catch_unwind(|| invariants::check_advanced_frames(&data, max, &cuts));
        assert!(run.is_ok(), "seed {seed}: max {max}, stream {data:?}");
    }
}

#[test]
fn every_fd_is_handed_out_or_closed() {
    for seed in 0..1000 {
        let mut rng = Rng::new(seed);
        let advanced = rng.one_in(2);
        let max = *rng.pick(&[64, 256, 4096]);
        let (data, envelopes) = stream(&mut rng, advanced, max);
        // An fd rides with its envelope's first byte; now and then it is lost (MSG_CTRUNC) or comes unasked.
        let cuts = invariants::cuts(data.len(), rng.u64());
        let mut reads = Vec::new();
        let mut from = 0;
        for end in cuts.into_iter().chain([data.len()]) {
            let mut fds = envelopes
                .iter()
                .filter(|&&at| at >= from && at < end)
                .count();
            if rng.one_in(6) {
                fds = fds.saturating_sub(1);
            }
            if rng.one_in(8) {
                fds += 1 + rng.below(2);
            }
            reads.push((&data[from..end], fds));
            from = end;
        }
        let run = std::panic::catch_unwind(|| invariants::check_fd_pairing(advanced, max, &reads));
        assert!(
            run.is_ok(),
            "seed {seed}: advanced {advanced}, max {max}, reads {reads:?}"
        );
    }
}

#[test]
fn recognisers_hold_on_mangled_messages_and_encoders_read_back() {
    for seed in 0..1500 {
        let mut rng = Rng::new(seed);
        let advanced = rng.one_in(2);
        let mut bytes = if advanced {
            advanced_message(&mut rng, 256)
        } else {
            json_message(&mut rng, 256)
        };
        if advanced && bytes.len() >= 4 {
            bytes.drain(..4);
        } else if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        for _ in 0..rng.below(3) {
            match rng.below(3) {
                0 if !bytes.is_empty() => {
                    let at = rng.below(bytes.len());
                    bytes[at] = rng.u64() as u8;
                }
                1 => bytes.truncate(rng.below(bytes.len() + 1)),
                _ => {
                    let at = rng.below(bytes.len() + 1);
                    bytes.insert(at, rng.u64() as u8);
                }
            }
        }
        let key = key(&mut rng);
        let (seq, ack, accepted, order) = (
            number(&mut rng),
            number(&mut rng),
            rng.one_in(2),
            rng.below(6),
        );
        let run = std::panic::catch_unwind(|| {
            invariants::check_recognisers(&bytes);
            let cuts = invariants::cuts(bytes.len(), seed | 1);
            let mut parts = Vec::new();
            let mut from = 0;
            for at in cuts.into_iter().chain([bytes.len()]) {
                parts.push(&bytes[from..at]);
                from = at;
            }
            invariants::check_run(&parts);
            invariants::check_encoders(&key, seq, ack, accepted, order);
        });
        assert!(
            run.is_ok(),
            "seed {seed}: bytes {bytes:?}, key {key:?}, seq {seq}, ack {ack}"
        );
    }
}

/// The fuzz targets' seed corpus (fuzz/seeds/, bytes node wrote) passes the same checks.
#[test]
fn fuzz_seeds_pass_the_invariants() {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    if !fuzz.exists() {
        return; // a packed crate ships no fuzz/
    }
    type Target = (&'static str, fn(&[u8]));
    let targets: [Target; 4] = [
        ("json_lines", invariants::json_lines),
        ("advanced_frames", invariants::advanced_frames),
        ("internal", invariants::internal),
        ("fd_pairing", invariants::fd_pairing),
    ];
    for (target, check) in targets {
        let dir = std::fs::read_dir(fuzz.join("seeds").join(target)).expect("fuzz/seeds/<target>");
        for entry in dir {
            let path = entry.expect("a seed").path();
            let data = std::fs::read(&path).expect("a seed's bytes");
            let run = std::panic::catch_unwind(|| check(&data));
            assert!(run.is_ok(), "{}", path.display());
        }
    }
}
