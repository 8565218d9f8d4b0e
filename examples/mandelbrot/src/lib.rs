//! mandelbrot: renders the Mandelbrot set to a greyscale PGM image.
//!
//! Shows: a float-heavy job that is still bit-for-bit deterministic under
//! p2pc's deterministic mode (NaN canonicalisation, no host clock or
//! randomness), so two workers can be checked against each other by hash.
//! Smooth colouring uses `ln` and `sqrt`, which Rust compiles to wasm
//! instructions or to code inside the component, never to host libm.
//!
//! Input: `WIDTH HEIGHT MAX_ITER` as text, e.g. `320 240 200` (empty input
//! means `160 120 100`; at most 4096 x 4096).
//!
//! Run it:
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p mandelbrot
//! echo 640 480 500 | p2pctl run target/wasm32-wasip2/release/mandelbrot.wasm --input - -o set.pgm
//! ```
//!
//! Output: a binary PGM (P5) image.

use p2pc_guest::JobError;

fn parse(input: &[u8]) -> Result<(u32, u32, u32), JobError> {
    let text = std::str::from_utf8(input)?.trim();
    if text.is_empty() {
        return Ok((160, 120, 100));
    }
    let nums: Vec<u32> = text
        .split_whitespace()
        .map(|t| {
            t.parse()
                .map_err(|_| JobError::invalid_input(format!("{t:?} is not a whole number")))
        })
        .collect::<Result<_, _>>()?;
    match nums[..] {
        [w, h, it] if (1..=4096).contains(&w) && (1..=4096).contains(&h) && it >= 1 => {
            Ok((w, h, it))
        }
        _ => Err(JobError::invalid_input(
            "expected WIDTH HEIGHT MAX_ITER with sides from 1 to 4096 and MAX_ITER >= 1",
        )),
    }
}

fn render(width: u32, height: u32, max_iter: u32) -> Vec<u8> {
    let header = format!("P5\n{width} {height}\n255\n");
    let mut img = Vec::with_capacity(header.len() + (width * height) as usize);
    img.extend_from_slice(header.as_bytes());
    let (x0, x1, y0, y1) = (-2.5f64, 1.0f64, -1.25f64, 1.25f64);
    for py in 0..height {
        let ci = y0 + (y1 - y0) * (py as f64 + 0.5) / height as f64;
        for px in 0..width {
            let cr = x0 + (x1 - x0) * (px as f64 + 0.5) / width as f64;
            let (mut zr, mut zi, mut n) = (0.0f64, 0.0f64, 0u32);
            while n < max_iter && zr * zr + zi * zi <= 256.0 {
                (zr, zi) = (zr * zr - zi * zi + cr, 2.0 * zr * zi + ci);
                n += 1;
            }
            let shade = if n >= max_iter {
                0
            } else {
                // Smooth iteration count: a fractional escape time.
                let modulus = (zr * zr + zi * zi).sqrt();
                let smooth = n as f64 + 1.0 - modulus.ln().ln() / std::f64::consts::LN_2;
                (255.0 * (smooth / max_iter as f64).sqrt()).clamp(0.0, 255.0) as u8
            };
            img.push(shade);
        }
        p2pc_guest::progress(py as u64 + 1, height as u64);
    }
    img
}

fn run(input: Vec<u8>) -> p2pc_guest::Result {
    let (w, h, it) = parse(&input)?;
    Ok(render(w, h, it))
}

p2pc_guest::job!(run);
